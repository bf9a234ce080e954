//! Watch streams: newline-delimited `{"type": ..., "object": ...}` events,
//! resumable from a resourceVersion, with bookmarks, timeouts and the
//! apiserver's 410 Expired ERROR event for compacted history.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::objects::Target;
use crate::router::Query;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::Shared;
use crate::status::{ApiError, ApiResult};
use crate::store::{key_of, Event, EventType};
use crate::table;

/// What a watch request asked for.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// None: resourceVersion unset or "0" (start with the current state).
    pub from: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Set when watching one object by URL.
    pub name: Option<String>,
}

/// When `timeoutSeconds` is absent (the apiserver picks 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn parse_rv(raw: Option<&str>) -> ApiResult<Option<u64>> {
    match raw {
        None | Some("0") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{s}\": must be a valid resource version"
            ))
        }),
    }
}

impl WatchParams {
    pub fn parse(q: &Query, supported_fields: &[&str], name: Option<String>) -> ApiResult<Self> {
        let send_initial_events = q.flag("sendInitialEvents");
        let bookmarks = q.flag("allowWatchBookmarks");
        if send_initial_events && !bookmarks {
            return Err(ApiError::unprocessable(
                "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is specified",
            ));
        }
        let timeout = match q.get("timeoutSeconds") {
            Some(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s}")))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        Ok(WatchParams {
            from: parse_rv(q.get("resourceVersion"))?,
            send_initial_events,
            bookmarks,
            timeout,
            labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(
                q.get("fieldSelector").unwrap_or_default(),
                supported_fields,
            )?,
            name,
        })
    }
}

struct Filter {
    namespace: Option<String>,
    params: WatchParams,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let (ns, name) = key_of(obj);
        self.namespace.as_ref().is_none_or(|n| *n == ns)
            && self.params.name.as_ref().is_none_or(|n| *n == name)
            && self.params.labels.matches(obj)
            && self.params.fields.matches(obj)
    }

    /// The event this watcher sees, with label/field transitions turned
    /// into ADDED/DELETED like the apiserver's watch cache does.
    fn view(&self, ev: &Event) -> Option<(EventType, Arc<Value>)> {
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        match ev.kind {
            EventType::Added => now.then(|| (EventType::Added, ev.object.clone())),
            EventType::Deleted => (before || now).then(|| (EventType::Deleted, ev.object.clone())),
            EventType::Modified => match (before, now) {
                (true, true) => Some((EventType::Modified, ev.object.clone())),
                (false, true) => Some((EventType::Added, ev.object.clone())),
                (true, false) => {
                    let mut old = ev.prev.as_deref().cloned().unwrap_or_default();
                    if let Some(m) = old.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("resourceVersion".into(), json!(ev.rv.to_string()));
                    }
                    Some((EventType::Deleted, Arc::new(old)))
                }
                (false, false) => None,
            },
        }
    }
}

fn line(kind: &str, object: &Value, api_version: &str) -> Bytes {
    let mut buf = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    let converted;
    let object = if object
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v != api_version)
    {
        let mut o = object.clone();
        o["apiVersion"] = json!(api_version);
        converted = o;
        &converted
    } else {
        object
    };
    if serde_json::to_writer(&mut buf, object).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// Renders events as objects, or as one-row Tables for `as=Table` clients.
struct Renderer {
    target: Target,
    api_version: String,
    table: Option<Query>,
}

impl Renderer {
    fn event(&self, kind: EventType, obj: &Arc<Value>) -> Bytes {
        match &self.table {
            Some(q) => {
                let t = table::render(&self.target, std::slice::from_ref(obj), None, q);
                line(kind.as_str(), &t, "meta.k8s.io/v1")
            }
            None => line(kind.as_str(), obj, &self.api_version),
        }
    }
}

fn bookmark(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        api_version,
    )
}

/// Starts a watch and returns the receiver of its body chunks; `table`
/// carries the query of a client that wants Table rows.
pub fn start(
    shared: &Arc<Shared>,
    t: &Target,
    namespace: Option<String>,
    params: WatchParams,
    table: Option<Query>,
) -> mpsc::Receiver<Bytes> {
    let (out, body) = mpsc::channel::<Bytes>(256);
    let api_version = t.api_version();
    let renderer = Renderer {
        target: t.clone(),
        api_version: api_version.clone(),
        table,
    };
    let kind = t.ty.kind.clone();
    let gr = t.gr();
    let filter = Filter { namespace, params };
    let mut first: Vec<Bytes> = Vec::new();
    let subscribed = {
        let mut store = shared.store.lock();
        match filter.params.from {
            Some(rv) if !filter.params.send_initial_events => match store.watch_from(&gr, rv) {
                Ok((backlog, rx)) => {
                    for ev in backlog {
                        if let Some((k, obj)) = filter.view(&ev) {
                            first.push(renderer.event(k, &obj));
                        }
                    }
                    Some(rx)
                }
                Err(e) => {
                    first.push(line("ERROR", &e.to_status(), "v1"));
                    None
                }
            },
            _ => {
                for obj in store.list(&gr, filter.namespace.as_deref()) {
                    if filter.matches(&obj) {
                        first.push(renderer.event(EventType::Added, &obj));
                    }
                }
                if filter.params.send_initial_events {
                    first.push(bookmark(&kind, &api_version, store.rv(), true));
                }
                Some(store.subscribe(&gr))
            }
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        for chunk in first {
            if out.send(chunk).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = subscribed else { return };
        let mut close = shared.close_watches.subscribe();
        let deadline = tokio::time::sleep(filter.params.timeout);
        tokio::pin!(deadline);
        let period = shared
            .config
            .bookmark_interval
            .max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if let Some((k, obj)) = filter.view(&ev) {
                        if out.send(renderer.event(k, &obj)).await.is_err() {
                            break;
                        }
                    }
                }
                _ = ticks.tick(), if filter.params.bookmarks => {
                    // Drain under the store lock so the bookmark's revision
                    // covers every event already sent.
                    let (pending, rv) = {
                        let store = shared.store.lock();
                        let mut pending = Vec::new();
                        while let Ok(ev) = rx.try_recv() {
                            pending.push(ev);
                        }
                        (pending, store.rv())
                    };
                    let mut chunks: Vec<Bytes> = pending
                        .iter()
                        .filter_map(|ev| filter.view(ev))
                        .map(|(k, obj)| renderer.event(k, &obj))
                        .collect();
                    chunks.push(bookmark(&kind, &api_version, rv, false));
                    let mut gone = false;
                    for c in chunks {
                        if out.send(c).await.is_err() {
                            gone = true;
                            break;
                        }
                    }
                    if gone {
                        break;
                    }
                }
                _ = &mut deadline => break,
                _ = close.changed() => break,
                _ = out.closed() => break,
            }
        }
    });
    body
}

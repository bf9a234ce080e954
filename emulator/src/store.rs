//! The in-memory object store: one global revision counter (like etcd's),
//! objects per group/resource, a bounded event history per resource for
//! watches, and the live watchers to notify.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::resources::{GroupResource, Registry};
use crate::status::{ApiError, ApiResult};

/// `(namespace, name)`; cluster-scoped objects use an empty namespace.
pub type ObjKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    /// The object after the write (for DELETED: the last state, at `rv`).
    pub object: Arc<Value>,
    /// The object before the write (None for ADDED).
    pub prev: Option<Arc<Value>>,
}

/// The retained events after a revision, and the feed of later ones.
pub type WatchStart = (Vec<Arc<Event>>, mpsc::Receiver<Arc<Event>>);

#[derive(Debug, Default)]
struct History {
    events: VecDeque<Arc<Event>>,
    /// Events at or below this revision are no longer retained.
    compacted: u64,
}

pub fn key_of(object: &Value) -> ObjKey {
    let m = &object["metadata"];
    (
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn resource_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

#[derive(Debug)]
pub struct Store {
    rv: u64,
    pub registry: Registry,
    tables: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Value>>>,
    histories: HashMap<GroupResource, History>,
    history_cap: usize,
    watcher_buffer: usize,
    watchers: HashMap<GroupResource, Vec<mpsc::Sender<Arc<Event>>>>,
    /// Whether workloads get the status their controllers would write.
    pub workload_status: bool,
    /// The workload controller stand-ins (off unless configured).
    pub controllers: crate::controllers::Settings,
    /// Set while the controllers run, so their own writes do not re-enter.
    pub controllers_running: bool,
}

impl Store {
    pub fn new(history_cap: usize, watcher_buffer: usize) -> Self {
        Store {
            rv: 1,
            registry: Registry::with_builtins(),
            tables: HashMap::new(),
            histories: HashMap::new(),
            history_cap: history_cap.max(1),
            watcher_buffer: watcher_buffer.max(16),
            watchers: HashMap::new(),
            workload_status: false,
            controllers: Default::default(),
            controllers_running: false,
        }
    }

    /// The current (latest committed) revision.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.tables
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, sorted by namespace then name; `ns` narrows
    /// to one namespace.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(table) = self.tables.get(gr) else {
            return Vec::new();
        };
        match ns {
            None => table.values().cloned().collect(),
            Some(ns) => table
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// The list as it was at revision `rv` (resourceVersionMatch=Exact),
    /// rebuilt by undoing later events; 410 when they are no longer retained.
    pub fn list_at(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        rv: u64,
    ) -> ApiResult<Vec<Arc<Value>>> {
        if rv > self.rv {
            return Err(ApiError::too_large_resource_version(rv, self.rv));
        }
        let history = self.histories.get(gr);
        let compacted = history.map_or(0, |h| h.compacted);
        if rv < compacted {
            return Err(ApiError::expired(rv, compacted + 1));
        }
        let mut map: BTreeMap<ObjKey, Arc<Value>> = self
            .list(gr, ns)
            .into_iter()
            .map(|o| (key_of(&o), o))
            .collect();
        for ev in history.iter().flat_map(|h| h.events.iter().rev()) {
            if ev.rv <= rv {
                break;
            }
            let key = key_of(&ev.object);
            if ns.is_some_and(|n| n != key.0) {
                continue;
            }
            match (ev.kind, &ev.prev) {
                (EventType::Added, _) => {
                    map.remove(&key);
                }
                (_, Some(prev)) => {
                    map.insert(key, prev.clone());
                }
                (_, None) => {}
            }
        }
        Ok(map.into_values().collect())
    }

    /// Stores `object` (or removes it, for DELETED) at a new revision and
    /// notifies watchers. Returns the object as stored.
    pub fn commit(&mut self, gr: &GroupResource, kind: EventType, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(object);
        let key = key_of(&object);
        let table = self.tables.entry(gr.clone()).or_default();
        let prev = match kind {
            EventType::Deleted => table.remove(&key),
            _ => table.insert(key, object.clone()),
        };
        let event = Arc::new(Event {
            rv,
            kind,
            object: object.clone(),
            prev,
        });
        let history = self.histories.entry(gr.clone()).or_default();
        history.events.push_back(event.clone());
        while history.events.len() > self.history_cap {
            if let Some(old) = history.events.pop_front() {
                history.compacted = old.rv;
            }
        }
        if let Some(list) = self.watchers.get_mut(gr) {
            list.retain(|tx| match tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(resource = %gr.resource, "closing a watcher that fell behind");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        object
    }

    /// Starts a watch from revision `from` (exclusive): returns the retained
    /// events after it and a receiver for everything later; 410 when events
    /// after `from` have been compacted away.
    pub fn watch_from(&mut self, gr: &GroupResource, from: u64) -> ApiResult<WatchStart> {
        let history = self.histories.get(gr);
        let compacted = history.map_or(0, |h| h.compacted);
        if from < compacted {
            return Err(ApiError::expired(from, compacted + 1));
        }
        let backlog = history
            .map(|h| {
                h.events
                    .iter()
                    .skip_while(|e| e.rv <= from)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok((backlog, self.subscribe(gr)))
    }

    /// A receiver for every future event of `gr`.
    pub fn subscribe(&mut self, gr: &GroupResource) -> mpsc::Receiver<Arc<Event>> {
        let (tx, rx) = mpsc::channel(self.watcher_buffer);
        self.watchers.entry(gr.clone()).or_default().push(tx);
        rx
    }

    /// Ends every open watch on `gr` (their streams finish after draining).
    pub fn drop_watchers(&mut self, gr: &GroupResource) {
        self.watchers.remove(gr);
    }

    /// Forgets all retained events, as an etcd compaction at the current
    /// revision would: watches from any older revision get 410 Gone.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for h in self.histories.values_mut() {
            h.events.clear();
            h.compacted = rv;
        }
        for gr in self.tables.keys() {
            self.histories.entry(gr.clone()).or_default().compacted = rv;
        }
    }

    /// Removes a resource's objects without events (its CRD is gone).
    pub fn drop_table(&mut self, gr: &GroupResource) {
        self.tables.remove(gr);
        self.histories.remove(gr);
        self.drop_watchers(gr);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, v: i64) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name}, "v": v})
    }

    #[test]
    fn every_write_bumps_the_revision_and_history_rebuilds_old_lists() {
        let gr = GroupResource::new("", "configmaps");
        let mut s = Store::new(100, 100);
        let a = s.commit(&gr, EventType::Added, obj("a", 1));
        let at = resource_version(&a).unwrap();
        s.commit(&gr, EventType::Modified, obj("a", 2));
        s.commit(&gr, EventType::Added, obj("b", 1));
        assert_eq!(s.rv(), at + 2);
        let old = s.list_at(&gr, Some("ns"), at).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0]["v"], 1);
        s.compact();
        assert_eq!(s.list_at(&gr, None, at).unwrap_err().code, 410);
        assert_eq!(s.watch_from(&gr, at).unwrap_err().code, 410);
    }

    #[test]
    fn history_is_bounded_per_resource() {
        let gr = GroupResource::new("", "configmaps");
        let other = GroupResource::new("", "secrets");
        let mut s = Store::new(2, 100);
        let first = s.rv();
        for i in 0..3 {
            s.commit(&gr, EventType::Added, obj(&format!("o{i}"), i));
        }
        assert!(s.watch_from(&gr, first).is_err());
        assert!(s.watch_from(&other, first).is_ok());
    }
}

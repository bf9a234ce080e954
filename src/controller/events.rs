//! Events (events.k8s.io/v1) for every scale and every new failure.
//!
//! Why not kube-runtime's `Recorder`: it keeps every Event it sent for six
//! minutes to turn repeats into a series, and scans that whole cache on
//! every publish. Our notes carry the decision's numbers, so they almost
//! never repeat, and failures are already sent once per episode by the
//! reconciler: at thousands of pools the cache held tens of MiB and cost a
//! scan per scale for nothing. This sender creates each Event once, and
//! bounds how many Event requests are in flight, so a burst of scales does
//! not open a connection per Event.
//!
//! Events are the least important write: they get their own small share of
//! the write budget, so a slow API server delays Events, never the scale
//! PATCHes and statuses; and at most `MAX_WAITING_EVENTS` wait (as
//! client-go's broadcaster queue), the rest are dropped and counted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::Client;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tracing::warn;

/// The default of the most API writes in flight at once, Events and the
/// controller's own writes together: with the four watches and the lease
/// this keeps the operator within 32 connections to the API server (each
/// request in flight holds one HTTP/1.1 connection).
pub const WRITES_IN_FLIGHT: usize = 26;

/// Events waiting for a permit beyond this many are dropped.
pub const MAX_WAITING_EVENTS: usize = 1000;

/// Events' share of `total` writes in flight: a sixth, at least one. With
/// a single permit in all, Events and the controller share it.
pub fn event_share(total: usize) -> usize {
    (total / 6).max(1)
}

/// The permits of the controller's writes and of Events, split from one
/// budget of `total` so that together they never hold more.
fn split_permits(total: usize) -> (Arc<Semaphore>, Arc<Semaphore>) {
    let total = total.max(1);
    if total == 1 {
        let one = Arc::new(Semaphore::new(1));
        return (one.clone(), one);
    }
    let events = event_share(total);
    (
        Arc::new(Semaphore::new(total - events)),
        Arc::new(Semaphore::new(events)),
    )
}

/// Sends Events as `reportingController` / `reportingInstance`.
#[derive(Clone)]
pub struct EventSender {
    client: Client,
    controller: String,
    instance: String,
    /// The controller's writes (status, scale, pod annotations).
    writes: Arc<Semaphore>,
    /// Events' own share.
    permits: Arc<Semaphore>,
    /// Events spawned and not yet sent.
    waiting: Arc<AtomicUsize>,
    dropped: Counter,
    sequence: Arc<AtomicU64>,
}

impl EventSender {
    /// Events and the controller's writes together hold at most
    /// `writes_in_flight` permits; `dropped` counts Events given up.
    pub fn new(
        client: Client,
        controller: &str,
        instance: &str,
        writes_in_flight: usize,
        dropped: Counter,
    ) -> Self {
        let (writes, permits) = split_permits(writes_in_flight);
        EventSender {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            writes,
            permits,
            waiting: Arc::new(AtomicUsize::new(0)),
            dropped,
            sequence: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The permits of the controller's own writes (the rest of the budget).
    pub fn permits(&self) -> Arc<Semaphore> {
        self.writes.clone()
    }

    /// Sends one Event about `regarding` in the background; a failure is
    /// logged, never retried (the next scale or episode sends its own).
    pub fn send(
        &self,
        regarding: ObjectReference,
        kind: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(namespace) = regarding.namespace.clone() else {
            return;
        };
        if !self.admit(reason) {
            return;
        }
        let object = regarding.name.clone().unwrap_or_default();
        let event = self.event(regarding, &namespace, kind, reason, action, note);
        // Waiting for a permit, the Event is held as its JSON text (a few
        // hundred bytes), not as the object (~1.7 KiB with its strings):
        // up to `MAX_WAITING_EVENTS` wait when a burst of scales meets a
        // slow API server.
        let body = match serde_json::to_vec(&event) {
            Ok(body) => body,
            Err(e) => {
                warn!(workerpool = %object, error = %e, "could not encode event");
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        drop(event);
        let sender = self.clone();
        tokio::spawn(async move {
            if let Ok(_permit) = sender.permits.acquire().await {
                // Boxed: a waiting Event's task holds only its text, not
                // room for a request in flight.
                let created = Box::pin(create(&sender.client, &namespace, body)).await;
                if let Err(e) = created {
                    warn!(workerpool = %object, error = %e, "could not publish event");
                }
            }
            sender.waiting.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Counts one more Event waiting, or drops it (false) when
    /// `MAX_WAITING_EVENTS` wait already.
    fn admit(&self, reason: &str) -> bool {
        if self.waiting.fetch_add(1, Ordering::Relaxed) < MAX_WAITING_EVENTS {
            return true;
        }
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if self.dropped.inc().is_multiple_of(100) {
            warn!(reason, "the API server is slow: Events are being dropped");
        }
        false
    }

    /// The Event, named as client-go names them: the object's name and a
    /// unique suffix (the name cut so that the whole stays a 253-character
    /// DNS name).
    fn event(
        &self,
        regarding: ObjectReference,
        namespace: &str,
        kind: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Event {
        let now = Timestamp::now();
        let stem: String = regarding
            .name
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let name = format!(
            "{stem}.{:x}{:04x}",
            now.as_nanosecond(),
            self.sequence.fetch_add(1, Ordering::Relaxed) & 0xffff
        );
        let type_ = match kind {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// POSTs an Event's JSON text. The answer (the Event again) is not parsed:
/// nothing reads it.
async fn create(client: &Client, namespace: &str, body: Vec<u8>) -> Result<(), kube::Error> {
    use kube::Resource;
    let url = Event::url_path(&(), Some(namespace));
    let request = kube::core::Request::new(url)
        .create(&PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_controller_writes_never_hold_more_than_the_budget() {
        for total in 1..=64 {
            let (writes, events) = split_permits(total);
            let held = if Arc::ptr_eq(&writes, &events) {
                writes.available_permits()
            } else {
                writes.available_permits() + events.available_permits()
            };
            assert_eq!(held, total, "budget {total}");
            assert!(events.available_permits() >= 1 && writes.available_permits() >= 1);
        }
        assert_eq!(split_permits(26).1.available_permits(), 4);
    }
}

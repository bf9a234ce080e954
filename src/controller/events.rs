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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::Client;
use tokio::sync::Semaphore;
use tracing::warn;

/// The default of the most API writes in flight at once, Events and the
/// controller's own writes together: with the four watches and the lease
/// this keeps the operator within 32 connections to the API server (each
/// request in flight holds one HTTP/1.1 connection).
pub const WRITES_IN_FLIGHT: usize = 26;

/// Sends Events as `reportingController` / `reportingInstance`.
#[derive(Clone)]
pub struct EventSender {
    client: Client,
    controller: String,
    instance: String,
    permits: Arc<Semaphore>,
    sequence: Arc<AtomicU64>,
}

impl EventSender {
    /// Events share `writes_in_flight` permits with the controller's writes.
    pub fn new(client: Client, controller: &str, instance: &str, writes_in_flight: usize) -> Self {
        EventSender {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            permits: Arc::new(Semaphore::new(writes_in_flight)),
            sequence: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The permits every API write takes, Events' and the controller's.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
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
        let now = Timestamp::now();
        let object = regarding.name.clone().unwrap_or_default();
        // As client-go names Events: the object's name and a unique suffix
        // (the name cut so that the whole stays a 253-character DNS name).
        let stem: String = object.chars().take(200).collect();
        let name = format!(
            "{stem}.{:x}{:04x}",
            now.as_nanosecond(),
            self.sequence.fetch_add(1, Ordering::Relaxed) & 0xffff
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(
                match kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let sender = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = sender.permits.acquire().await else {
                return;
            };
            let api: Api<Event> = Api::namespaced(sender.client.clone(), &namespace);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                warn!(workerpool = %object, error = %e, "could not publish event");
            }
        });
    }
}

//! The `dramatiq` measure of a Redis trigger: one queue of Dramatiq's
//! Redis broker, counted on the broker's own key layout.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::frameworks::{check_include, FrameworkMeasureKind, JobState};
use super::validate::SpecError;

/// A Dramatiq queue on its `RedisBroker` (Dramatiq 2.2 key layout: the
/// list `<namespace>:<queue>`, its `.msgs` hash, and the delay queue's
/// `<namespace>:<queue>.DQ.msgs` hash).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.measure == 'Count'").message("dramatiq.measure: Dramatiq stores only when a message was first sent (message_timestamp), which a delayed or retried message keeps, not when it joined the queue: only Count is supported").field_path(".measure"))]
#[x_kube(validation = Rule::new("!self.queue.endsWith('.DQ') && !self.queue.endsWith('.XQ')").message("dramatiq.queue: name the queue as the actor does (queue_name); its .DQ delay queue and .XQ dead letters are read with it").field_path(".queue"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DramatiqMeasure {
    /// The queue's name, as an actor's `queue_name` (Dramatiq's default is `default`).
    #[schemars(length(min = 1, max = 512))]
    pub queue: String,
    /// The broker's key prefix (`RedisBroker(namespace=...)`); default `dramatiq`.
    #[serde(default = "default_namespace")]
    #[schemars(length(min = 1, max = 512))]
    pub namespace: String,
    /// Which messages to count: Waiting (the queue list), InFlight (fetched
    /// by a worker and not acknowledged: prefetched or running), Scheduled
    /// (delayed messages whose eta has passed, still in the delay queue),
    /// Retrying (the same for retries of failed messages). Default: Waiting
    /// and InFlight. Scheduled and Retrying read every delayed message
    /// (refused above 10,000 of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (the only one Dramatiq allows).
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

fn default_namespace() -> String {
    "dramatiq".into()
}

/// The operator's own check of a `dramatiq` measure (the CRD's rules again,
/// for manifests read from files), `at` being the trigger's path.
pub(super) fn validate_dramatiq(r: &super::RedisTrigger, at: &str) -> Result<(), SpecError> {
    let Some(d) = &r.dramatiq else {
        return Ok(());
    };
    let bad = |f: &str, m: &str| SpecError {
        field: format!("{at}.dramatiq.{f}"),
        message: m.to_string(),
    };
    if d.queue.is_empty() {
        return Err(bad("queue", "must not be empty"));
    }
    if d.queue.ends_with(".DQ") || d.queue.ends_with(".XQ") {
        return Err(bad(
            "queue",
            "name the queue itself: its .DQ and .XQ queues are read with it",
        ));
    }
    if d.namespace.is_empty() {
        return Err(bad("namespace", "must not be empty"));
    }
    if d.measure != FrameworkMeasureKind::Count {
        return Err(bad(
            "measure",
            "Dramatiq stores no enqueue time (only when a message was first sent): only Count",
        ));
    }
    check_include(&d.include, d.measure, "Dramatiq", &[]).map_err(|m| bad("include", &m))
}

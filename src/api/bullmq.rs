//! The `bullmq` measure of a Redis trigger: one queue of Node's BullMQ,
//! counted on BullMQ's own keys (its waiting jobs are split between a list
//! and a priority set, and its delayed jobs and retries are never moved to
//! be worked while no worker runs).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::frameworks::{check_include, FrameworkMeasureKind, JobState};
use super::validate::SpecError;

/// A BullMQ queue (BullMQ 6.7 key layout: `<prefix>:<queue>:wait`,
/// `:prioritized`, `:active`, `:delayed`, `:meta`, and the job hashes
/// `<prefix>:<queue>:<id>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.queue.contains(':')").message("bullmq.queue: BullMQ refuses queue names that contain ':'").field_path(".queue"))]
#[x_kube(validation = Rule::new("self.measure != 'OldestAgeSeconds' || !has(self.include)").message("include applies to measure Count only").field_path(".include"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BullMqMeasure {
    /// The queue's name as given to `new Queue(name)` and `new Worker(name)`, e.g. `emails`.
    #[schemars(length(min = 1, max = 512))]
    pub queue: String,
    /// The key prefix given to BullMQ's `prefix` option; default `bull`. On
    /// a Redis Cluster BullMQ needs a hash tag here, e.g. `{bull}`.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 1, max = 512))]
    pub prefix: String,
    /// Which jobs to count (measure Count): Waiting (the wait list and the
    /// prioritized set), InFlight (the active list), Scheduled (due delayed
    /// jobs never tried), Retrying (due delayed jobs that failed before and
    /// wait out their backoff). A paused queue counts only InFlight.
    /// Default: Waiting and InFlight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (default), or OldestAgeSeconds: the age of the next job to run,
    /// from the `timestamp` BullMQ stored when it was added.
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

fn default_prefix() -> String {
    "bull".into()
}

/// The operator's own check of a `bullmq` measure (the CRD's rules again,
/// for manifests read from files), `at` being the trigger's path.
pub(super) fn validate_bullmq(r: &super::RedisTrigger, at: &str) -> Result<(), SpecError> {
    let Some(b) = &r.bullmq else {
        return Ok(());
    };
    let bad = |f: &str, m: &str| SpecError {
        field: format!("{at}.bullmq.{f}"),
        message: m.to_string(),
    };
    if b.queue.is_empty() {
        return Err(bad("queue", "must not be empty"));
    }
    if b.queue.contains(':') {
        return Err(bad("queue", "BullMQ refuses queue names that contain ':'"));
    }
    if b.prefix.is_empty() {
        return Err(bad(
            "prefix",
            "must not be empty (BullMQ's default is bull)",
        ));
    }
    check_include(&b.include, b.measure, "BullMQ", &[]).map_err(|m| bad("include", &m))
}

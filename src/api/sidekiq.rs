//! The `sidekiq` measure of a Redis trigger: one queue of Ruby's Sidekiq,
//! counted on Sidekiq's own key layout.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::frameworks::{check_include, FrameworkMeasureKind, JobState};
use super::validate::SpecError;

/// A Sidekiq queue (Sidekiq 6.4 to 8 key layout: the list `queue:<queue>`,
/// the shared `schedule` and `retry` sorted sets, the `processes` set and
/// each process's busy threads).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.measure != 'OldestAgeSeconds' || !has(self.include)").message("include applies to measure Count only").field_path(".include"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidekiqMeasure {
    /// The queue's name, as `sidekiq_options queue:` and `sidekiq -q` name it (`default`).
    #[schemars(length(min = 1, max = 512))]
    pub queue: String,
    /// Which jobs to count (measure Count): Waiting (`queue:<queue>`),
    /// InFlight (running on a live Sidekiq process, as its last heartbeat
    /// reported), Scheduled (due jobs of this queue in the `schedule` set),
    /// Retrying (due jobs of this queue in the `retry` set). Default:
    /// Waiting and InFlight. Scheduled and Retrying read each due entry of
    /// the shared set (refused above 10,000 due entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (default), or OldestAgeSeconds: Sidekiq's latency, the age of the
    /// job at the head of the queue from its `enqueued_at`.
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

/// The operator's own check of a `sidekiq` measure (the CRD's rules again,
/// for manifests read from files), `at` being the trigger's path.
pub(super) fn validate_sidekiq(r: &super::RedisTrigger, at: &str) -> Result<(), SpecError> {
    let Some(s) = &r.sidekiq else {
        return Ok(());
    };
    if s.queue.is_empty() {
        return Err(SpecError {
            field: format!("{at}.sidekiq.queue"),
            message: "must not be empty".into(),
        });
    }
    check_include(&s.include, s.measure, "Sidekiq", &[]).map_err(|m| SpecError {
        field: format!("{at}.sidekiq.include"),
        message: m,
    })
}

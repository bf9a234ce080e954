//! `spec.schedules[]`: time windows that raise the floor (and may move the
//! ceiling) before a known peak, as part of the one decision.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A window that opens at each firing of `cron` (in `timeZone`) and stays
/// open `durationSeconds`. While open, the pool runs at least `minReplicas`
/// and at most `maxReplicas` (when set) of this window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must be <= maxReplicas of the same schedule").field_path(".minReplicas"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Unique name within the pool; shown in status, metrics and explanations.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// When each window opens: a 5-field cron expression
    /// (minute hour day-of-month month day-of-week, e.g. `0 8 * * 1-5`) or
    /// @hourly, @daily, @weekly, @monthly, @yearly; read on the wall clock of `timeZone`.
    #[schemars(length(min = 1, max = 256))]
    pub cron: String,
    /// How long each window stays open, in seconds (60 to 604800, a week).
    /// A firing while a window is open extends it.
    #[schemars(range(min = 60, max = 604800))]
    pub duration_seconds: i32,
    /// IANA time zone the cron is read in (e.g. `Europe/Berlin`); default UTC.
    /// Daylight-saving changes are followed.
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: String,
    /// The floor while the window is open (the pool scales up to it at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub min_replicas: Option<i32>,
    /// The ceiling while the window is open; the largest among open windows
    /// wins, and without one `spec.maxReplicas` stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub max_replicas: Option<i32>,
}

fn default_time_zone() -> String {
    "UTC".into()
}

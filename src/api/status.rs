//! `WorkerPool.status`: what the operator saw and decided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::decision::History;

/// Condition types (DESIGN.md section 1).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const ACTIVE: &str = "Active";
    pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
    pub const SCALING_LIMITED: &str = "ScalingLimited";
    pub const PAUSED: &str = "Paused";
}

/// What the operator last saw and decided for a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerStatus>,
    /// The last decision's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Names of the schedules whose windows are open (their bounds are in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_schedules: Vec<String>,
    /// When each schedule's window opens next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_openings: Vec<ScheduleOpening>,
    /// Recent recommendations and scale events, kept so stabilization
    /// windows and rate policies survive an operator restart or leader change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

/// One trigger's last reading.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    pub name: String,
    /// The last value read, as a decimal string; absent when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    #[serde(default)]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Why the last read failed (never contains a Secret's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The next opening of one schedule's window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleOpening {
    /// The schedule's name.
    pub name: String,
    /// When its window opens next; absent when it could not be computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// The next opening of each schedule at `now_ms` (Unix milliseconds).
pub fn next_openings(windows: &[crate::decision::Window], now_ms: i64) -> Vec<ScheduleOpening> {
    let Ok(now) = k8s_openapi::jiff::Timestamp::from_millisecond(now_ms) else {
        return Vec::new();
    };
    windows
        .iter()
        .map(|w| ScheduleOpening {
            name: w.name.clone(),
            time: w.next_opening(now).ok().flatten().map(Time),
        })
        .collect()
}

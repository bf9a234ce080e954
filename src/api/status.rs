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
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the target at the last poll (its `/scale` spec.replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Replicas the last decision asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// When the operator last changed the target's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// When any trigger was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    /// The last reading of each trigger, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerStatus>,
    /// The last decision's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// Ready, Active, MetricsAvailable, ScalingLimited and Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Recent recommendations and scale events, kept so stabilization
    /// windows and rate policies survive an operator restart or leader change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

/// One trigger's last reading.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// The trigger's name (given, or `<type>-<index>`).
    pub name: String,
    /// The last value read, as a decimal string; absent when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Replicas this trigger alone asks for: ceil(value / targetPerReplica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    /// Whether the value is above the activation threshold.
    #[serde(default)]
    pub active: bool,
    /// When the trigger was last read without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// Failed reads in a row (0 after a success).
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Why the last read failed (never contains a Secret's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

//! `WorkerPool.status`: what the operator saw and decided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::decision::{DrainEstimate, History};

/// Condition types.
pub mod condition {
    /// Spec valid, target found, scaling works.
    pub const READY: &str = "Ready";
    /// Some trigger is above its activation threshold.
    pub const ACTIVE: &str = "Active";
    /// Every trigger was read on the last poll.
    pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
    /// The desired count differs from what the triggers asked for.
    pub const SCALING_LIMITED: &str = "ScalingLimited";
    /// `spec.paused` or the pause annotation is set.
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
    /// Names of the schedules whose windows are open (their bounds are in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_schedules: Vec<String>,
    /// When each schedule's window opens next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_openings: Vec<ScheduleOpening>,
    /// `spec.scaleIn`: busy pods of the target when the last poll read the
    /// busy signal (before a scale-in); absent when it was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_pods: Option<i32>,
    /// Recent recommendations and scale events, kept so stabilization
    /// windows and rate policies survive an operator restart or leader change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Box<History>>,
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
    /// The last read succeeded, but something needs attention: e.g. the
    /// Redis ACL denies what the shared Celery in-flight index reads, so
    /// each poll uses the costly fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Drain triggers: items per second arriving, estimated over
    /// `drain.rateWindowSeconds` (absent until the window has two samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<String>,
    /// Drain triggers: seconds to clear the backlog at the current replicas,
    /// rounded up; absent when the backlog does not shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_drain_seconds: Option<i64>,
}

impl TriggerStatus {
    /// The drain fields of a trigger status (everything else default), for
    /// struct update syntax where the status is built.
    pub fn drain_fields(est: Option<&DrainEstimate>) -> TriggerStatus {
        TriggerStatus {
            arrival_rate: est.and_then(|e| e.arrival_rate).map(rate_text),
            estimated_drain_seconds: est.and_then(|e| e.drain_seconds).map(whole_seconds),
            ..TriggerStatus::default()
        }
    }
}

/// A rate as a short decimal string (3 decimals at most).
pub fn rate_text(r: f64) -> String {
    let rounded = (r * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

/// Seconds rounded up, saturating (a huge backlog over a tiny surplus).
pub fn whole_seconds(s: f64) -> i64 {
    if s.is_finite() {
        s.ceil().clamp(0.0, i64::MAX as f64) as i64
    } else {
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{estimate_drain, DrainPolicy, DrainTrack, Throughput};

    #[test]
    fn drain_fields_and_history_round_trip_through_status() {
        let p = DrainPolicy {
            seconds: 60.0,
            throughput: Throughput::PerReplica(2.5),
            rate_window_ms: 60_000,
        };
        let mut track = DrainTrack::default();
        track.record(&p, &estimate_drain(&p, None, 0, 300.0, 8, None));
        let est = estimate_drain(&p, Some(&track), 10_000, 200.0, 8, None);
        let t = TriggerStatus::drain_fields(Some(&est));
        assert_eq!(t.arrival_rate.as_deref(), Some("10"));
        assert_eq!(t.estimated_drain_seconds, Some(20));
        let none = TriggerStatus::drain_fields(None);
        assert_eq!(
            (none.arrival_rate, none.estimated_drain_seconds),
            (None, None)
        );

        let mut history = History::default();
        history.drain.insert("payments".into(), track);
        let status = WorkerPoolStatus {
            history: Some(Box::new(history.clone())),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["history"]["drain"]["payments"]["samples"][0],
            serde_json::json!({"at": "1970-01-01T00:00:00.000Z", "depth": 300.0, "served": 0.0})
        );
        let back: WorkerPoolStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.history, Some(Box::new(history)));
        assert_eq!(whole_seconds(f64::INFINITY), i64::MAX);
        assert_eq!(rate_text(1.23456), "1.235");
    }
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

//! Building and writing `WorkerPool.status`: server-side apply with field
//! manager `workerpool-operator`, only when something a person would care
//! about changed, or every `resync` to refresh values — never once per poll
//! (KEDA throttled itself to minutes writing status every loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

use crate::api::{condition, TriggerStatus, WorkerPool, WorkerPoolStatus};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "workerpool-operator";

/// One condition as the poll sees it (transition time is filled in later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Cond {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Converts to metav1.Condition, keeping `lastTransitionTime` from `previous`
/// when the status did not flip.
pub fn conditions(
    conds: &[Cond],
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| Time(now));
            Condition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason.clone(),
                message: truncate(&c.message, 1024),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// What must be written at once when it changes: everything but the values
/// and timestamps that move every poll.
pub fn signature(s: &WorkerPoolStatus) -> String {
    let mut sig = format!(
        "{:?}|{:?}|{:?}|",
        s.observed_generation, s.current_replicas, s.desired_replicas
    );
    for c in &s.conditions {
        sig.push_str(&c.type_);
        sig.push_str(&c.status);
        sig.push_str(&c.reason);
        sig.push('|');
    }
    for t in &s.triggers {
        sig.push_str(&format!(
            "{}:{}:{}:{}|",
            t.name,
            t.active,
            t.error.is_some(),
            t.consecutive_failures.min(1)
        ));
    }
    sig
}

/// Writes the whole status by server-side apply (the operator owns every
/// status field, so `force` is safe and makes a new leader take over
/// ownership from the old one).
pub async fn write(
    api: &Api<WorkerPool>,
    name: &str,
    status: &WorkerPoolStatus,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": { "name": name },
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &pp, &Patch::Apply(body)).await?;
    Ok(())
}

/// Unix milliseconds to a metav1.Time.
pub fn time_ms(ms: i64) -> Option<Time> {
    Timestamp::from_millisecond(ms).ok().map(Time)
}

/// A trigger's value as a short decimal string for status (`137`, `2.3`).
pub fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Condition names, re-exported for the reconciler.
pub use condition::{ACTIVE, METRICS_AVAILABLE, PAUSED, READY, SCALING_LIMITED};

/// A trigger status with only a name (before any poll).
pub fn empty_trigger(name: &str) -> TriggerStatus {
    TriggerStatus {
        name: name.to_string(),
        ..Default::default()
    }
}

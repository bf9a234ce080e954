//! Building and writing `WorkerPool.status`: server-side apply with field
//! manager `workerpool-operator`, only when something a person would care
//! about changed, or every `resync` to refresh values — never once per poll
//! (KEDA throttled itself to minutes writing status every loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

use crate::api::condition::{ACTIVE, METRICS_AVAILABLE, PAUSED, READY, SCALING_LIMITED};
use crate::api::{TriggerStatus, WorkerPool, WorkerPoolStatus};
use crate::decision::{Busy, Decision, Limit, TriggerOutcome};
use crate::sources::SourceError;
use crate::text::truncate;

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
            t.error.is_some() || t.warning.is_some(),
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

/// Whether the operator writes to the pool's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    Active,
    /// `spec.paused` (true) or the pause annotation (false).
    Paused {
        by_spec: bool,
    },
    /// `spec.mode: Shadow`.
    Shadow,
}

impl Writes {
    /// Reads and decides, but never writes to the target.
    pub fn passive(self) -> bool {
        self != Writes::Active
    }

    fn paused_condition(self) -> Cond {
        match self {
            Writes::Paused { by_spec } => Cond::new(
                PAUSED,
                true,
                "Paused",
                if by_spec {
                    "spec.paused is true"
                } else {
                    "annotation workerpool.dev/paused is \"true\""
                },
            ),
            _ => Cond::new(PAUSED, false, "NotPaused", ""),
        }
    }
}

/// One poll's results, as status reports them.
pub struct PollReport<'a> {
    pub pool: &'a WorkerPool,
    pub decision: &'a Decision,
    pub results: &'a [Result<f64, SourceError>],
    /// Each trigger's source's warning, if any.
    pub warnings: &'a [Option<String>],
    /// The target's replicas after this poll.
    pub current: i32,
    pub applied: bool,
    pub writes: Writes,
    pub now_ms: i64,
}

/// The status after a poll that read and decided.
pub fn decided(r: &PollReport<'_>) -> WorkerPoolStatus {
    let none = WorkerPoolStatus::default();
    let prev = r.pool.status.as_ref().unwrap_or(&none);
    let generation = r.pool.metadata.generation;
    let d = r.decision;
    let conds = [
        ready_condition(r),
        active_condition(d),
        metrics_condition(d),
        limited_condition(d),
        r.writes.paused_condition(),
    ];
    let explanation = match r.writes {
        Writes::Active => d.explanation.clone(),
        Writes::Paused { .. } => format!("paused, not applied: {}", d.explanation),
        Writes::Shadow => format!("shadow, not applied: {}", d.explanation),
    };
    WorkerPoolStatus {
        observed_generation: generation,
        current_replicas: Some(r.current),
        desired_replicas: Some(d.desired),
        last_scale_time: if r.applied {
            time_ms(r.now_ms)
        } else {
            prev.last_scale_time.clone()
        },
        last_active_time: d.last_active().and_then(time_ms),
        triggers: trigger_statuses(r, &prev.triggers),
        last_decision: Some(truncate(&explanation, 2048)),
        conditions: conditions(&conds, &prev.conditions, generation, Timestamp::now()),
        // Added by the poll when the status is written (see `Poll::maybe_write_status`).
        history: None,
        busy_pods: match d.busy {
            Busy::Pods(n) => Some(n),
            _ => None,
        },
        ..WorkerPoolStatus::default()
    }
}

/// The status of a pool that cannot be polled: `Ready=False` with `reason`,
/// every value kept from the last status.
pub fn stood_down(
    pool: &WorkerPool,
    reason: &str,
    message: &str,
    writes: Writes,
) -> WorkerPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    status.observed_generation = pool.metadata.generation;
    let conds = [
        Cond::new(READY, false, reason, message),
        writes.paused_condition(),
    ];
    let prev = std::mem::take(&mut status.conditions);
    status.conditions = conditions(&conds, &prev, pool.metadata.generation, Timestamp::now());
    status
}

fn trigger_statuses(r: &PollReport<'_>, prev: &[TriggerStatus]) -> Vec<TriggerStatus> {
    r.decision
        .triggers
        .iter()
        .zip(r.results)
        .zip(r.warnings.iter().chain(std::iter::repeat(&None)))
        .map(|((t, result), warning)| TriggerStatus {
            warning: warning.as_deref().map(|w| truncate(w, 512)),
            ..trigger_status(t, result, prev, r.now_ms)
        })
        .collect()
}

fn trigger_status(
    t: &TriggerOutcome,
    result: &Result<f64, SourceError>,
    prev: &[TriggerStatus],
    now_ms: i64,
) -> TriggerStatus {
    let last_ok = || {
        prev.iter()
            .find(|p| p.name == t.name)
            .and_then(|p| p.last_success_time.clone())
    };
    TriggerStatus {
        name: t.name.clone(),
        value: t.value.map(value_text),
        proposed_replicas: t.proposed,
        active: t.active,
        last_success_time: if result.is_ok() {
            time_ms(now_ms)
        } else {
            last_ok()
        },
        consecutive_failures: t.consecutive_failures.min(i32::MAX as u32) as i32,
        error: result.as_ref().err().map(|e| truncate(&e.to_string(), 512)),
        ..TriggerStatus::drain_fields(t.drain.as_ref())
    }
}

fn ready_condition(r: &PollReport<'_>) -> Cond {
    let t = &r.pool.spec.scale_target_ref;
    let every = r.pool.spec.polling_interval_seconds;
    match r.writes {
        Writes::Active => Cond::new(
            READY,
            true,
            "Scaling",
            format!("scaling {} {} every {every}s", t.kind, t.name),
        ),
        // A paused pool is not failing: Ready stays True, the reason says why
        // nothing is written.
        Writes::Paused { .. } => Cond::new(
            READY,
            true,
            "Paused",
            format!(
                "paused: reading every {every}s, not scaling {} {}",
                t.kind, t.name
            ),
        ),
        Writes::Shadow => Cond::new(
            READY,
            true,
            "Shadow",
            format!(
                "shadow: reading every {every}s, not scaling {} {}",
                t.kind, t.name
            ),
        ),
    }
}

fn active_condition(d: &Decision) -> Cond {
    let active: Vec<&str> = d
        .triggers
        .iter()
        .filter(|t| t.active)
        .map(|t| t.name.as_str())
        .collect();
    if active.is_empty() {
        Cond::new(
            ACTIVE,
            false,
            "NoTriggerActive",
            "no trigger is above its activation threshold",
        )
    } else {
        Cond::new(
            ACTIVE,
            true,
            "TriggerActive",
            format!("active: {}", active.join(", ")),
        )
    }
}

fn metrics_condition(d: &Decision) -> Cond {
    let failed: Vec<String> = d
        .triggers
        .iter()
        .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {}", t.name, e)))
        .collect();
    if failed.is_empty() {
        Cond::new(
            METRICS_AVAILABLE,
            true,
            "AllTriggersRead",
            "every trigger was read on the last poll",
        )
    } else if d.fallback {
        Cond::new(
            METRICS_AVAILABLE,
            false,
            "FallbackApplied",
            failed.join("; "),
        )
    } else {
        Cond::new(METRICS_AVAILABLE, false, "TriggerFailed", failed.join("; "))
    }
}

/// `ScalingLimited` names the limit that decided the outcome.
fn limited_condition(d: &Decision) -> Cond {
    match d.binding_limit() {
        Some(l) => Cond::new(
            SCALING_LIMITED,
            true,
            limit_reason(l),
            d.explanation.clone(),
        ),
        None => Cond::new(
            SCALING_LIMITED,
            false,
            "DesiredWithinRange",
            "the desired count is what the triggers ask for",
        ),
    }
}

/// HPA-style condition reasons for the limit that bit.
pub fn limit_reason(l: &Limit) -> &'static str {
    match l {
        Limit::MaxReplicas(_) => "TooManyReplicas",
        Limit::MinReplicas(_) => "TooFewReplicas",
        Limit::OutOfRange(_) => "OutOfRange",
        Limit::ScaleUpStabilized(_) => "ScaleUpStabilized",
        Limit::ScaleDownStabilized(_) => "ScaleDownStabilized",
        Limit::ScaleUpPolicy(_) => "ScaleUpLimit",
        Limit::ScaleDownPolicy(_) => "ScaleDownLimit",
        Limit::Disabled => "ScalingDisabled",
        Limit::FailingTriggerHold(_) => "TriggerFailed",
        Limit::CooldownPending { .. } => "CooldownPending",
        Limit::KeepBusy { .. } => "KeepBusy",
        Limit::BusySignalFailed(_) => "BusySignalFailed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{decide, History, Policy, Reading, Rules, TriggerPolicy};

    fn policy(min: i32) -> Policy {
        Policy {
            min_replicas: min,
            max_replicas: 10,
            cooldown_ms: 60_000,
            triggers: vec![TriggerPolicy {
                name: "q".into(),
                target_per_replica: 1.0,
                activation_threshold: 0.0,
                drain: None,
            }],
            scale_up: Rules::default_scale_up(),
            scale_down: Rules::default_scale_down(),
            tolerance: 0.1,
            fallback: None,
            schedules: Vec::new(),
            scale_in: None,
        }
    }

    fn reason(min: i32, current: i32, reading: Reading, history: &History) -> String {
        let d = decide(&policy(min), 1_000_000, current, &[reading], history);
        limited_condition(&d).reason
    }

    #[test]
    fn scaling_limited_names_the_limit_that_decided_the_outcome() {
        // Wants 0, floor 1, but the scale-down window (seeded with the
        // current count) holds 5: the window decided, not the floor.
        let held = reason(1, 5, Reading::Value(0.0), &History::default());
        assert_eq!(held, "ScaleDownStabilized");
        // Inactive with minReplicas 0, inside the cooldown.
        let mut h = History::default();
        h.record_recommendation(999_000, 0);
        h.inactive_since = Some(999_000);
        assert_eq!(reason(0, 2, Reading::Value(0.0), &h), "CooldownPending");
        // Nothing bound it.
        let free = reason(1, 3, Reading::Value(3.0), &History::default());
        assert_eq!(free, "DesiredWithinRange");
    }
}

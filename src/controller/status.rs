//! Building and writing `WorkerPool.status`: server-side apply with field
//! manager `workerpool-operator`, only when something a person would care
//! about changed, or every `resync` to refresh values — never once per poll
//! (KEDA throttled itself to minutes writing status every loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};

use super::status_memory::StatusMemory;
use crate::api::condition::{ACTIVE, METRICS_AVAILABLE, PAUSED, READY, SCALING_LIMITED};
use crate::api::{TriggerStatus, WorkerPool, WorkerPoolStatus};
use crate::decision::{Busy, Decision, Limit, TriggerOutcome};
use crate::sources::SourceError;
use crate::text::truncate;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "workerpool-operator";

/// One condition as the poll sees it (transition time is filled in later).
/// Its message is rendered only for a status that is written: most polls
/// change nothing and only hash the type, status and reason.
#[derive(Clone, Debug)]
pub struct Cond<'a> {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'a str,
    pub message: Msg<'a>,
}

/// A condition's message, kept as what it is made of until rendered.
#[derive(Clone, Debug)]
pub enum Msg<'a> {
    Text(&'a str),
    /// "<how>: reading every <n>s, not scaling <kind> <name>" or, active,
    /// "scaling <kind> <name> every <n>s".
    Reading {
        how: Option<&'static str>,
        target: &'a crate::api::ScaleTargetRef,
        every: i64,
    },
    /// "active: <trigger>, <trigger>".
    Active(&'a Decision),
    /// "<trigger>: <error>; ..." for each failed trigger.
    Failed(&'a Decision),
}

impl Msg<'_> {
    fn render(&self) -> String {
        match self {
            Msg::Text(t) => t.to_string(),
            Msg::Reading {
                how: None,
                target: t,
                every,
            } => format!("scaling {} {} every {every}s", t.kind, t.name),
            Msg::Reading {
                how: Some(how),
                target: t,
                every,
            } => format!(
                "{how}: reading every {every}s, not scaling {} {}",
                t.kind, t.name
            ),
            Msg::Active(d) => {
                let active: Vec<&str> = (d.triggers.iter().filter(|t| t.active))
                    .map(|t| t.name.as_str())
                    .collect();
                format!("active: {}", active.join(", "))
            }
            Msg::Failed(d) => {
                let failed: Vec<String> = (d.triggers.iter())
                    .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {}", t.name, e)))
                    .collect();
                failed.join("; ")
            }
        }
    }
}

impl<'a> Cond<'a> {
    pub fn new(type_: &'static str, status: bool, reason: &'a str, message: Msg<'a>) -> Self {
        Cond {
            type_,
            status,
            reason,
            message,
        }
    }

    fn status_text(&self) -> &'static str {
        if self.status {
            "True"
        } else {
            "False"
        }
    }
}

/// Converts to metav1.Condition, keeping `lastTransitionTime` from the
/// last status when the status did not flip.
pub fn conditions(
    conds: &[Cond<'_>],
    previous: &StatusMemory,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    conds
        .iter()
        .map(|c| {
            let since = previous.since(c.type_, c.status).unwrap_or(Time(now));
            Condition {
                type_: c.type_.to_string(),
                status: c.status_text().to_string(),
                reason: c.reason.to_string(),
                message: truncate(&c.message.render(), 1024),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// What must be written at once when it changes: everything but the values
/// and timestamps that move every poll, as a hash (kept per pool; two
/// statuses that differ in it are never mistaken for equal but with odds
/// of one in 2^64).
pub fn signature(s: &WorkerPoolStatus) -> u64 {
    let mut sig = Signature::new(
        s.observed_generation,
        s.current_replicas,
        s.desired_replicas,
    );
    for c in &s.conditions {
        sig.condition(&c.type_, &c.status, &c.reason);
    }
    for t in &s.triggers {
        let failing = t.error.is_some() || t.warning.is_some();
        sig.trigger(&t.name, t.active, failing, t.consecutive_failures);
    }
    sig.finish()
}

/// `signature` of the status `decided(r)` would build, without building it
/// (most polls change nothing, and their status is never built).
pub fn decided_signature(r: &PollReport<'_>) -> u64 {
    let generation = r.pool.metadata.generation;
    let mut sig = Signature::new(generation, Some(r.current), Some(r.decision.desired));
    for c in &decided_conditions(r) {
        sig.condition(c.type_, c.status_text(), c.reason);
    }
    let warnings = r.warnings.iter().chain(std::iter::repeat(&None));
    for ((t, result), warning) in r.decision.triggers.iter().zip(r.results).zip(warnings) {
        let failing = result.is_err() || warning.is_some();
        let failures = t.consecutive_failures.min(i32::MAX as u32) as i32;
        sig.trigger(&t.name, t.active, failing, failures);
    }
    sig.finish()
}

/// The one hashing both signatures go through (same hasher, same seed,
/// same parts in the same order), so the two can never disagree.
struct Signature<H>(H);

impl Signature<foldhash::fast::FoldHasher<'static>> {
    fn new(generation: Option<i64>, current: Option<i32>, desired: Option<i32>) -> Self {
        use std::hash::{BuildHasher, Hash};
        const SEED: foldhash::fast::FixedState =
            foldhash::fast::FixedState::with_seed(0x5747_5f73_6967);
        let mut h = SEED.build_hasher();
        (generation, current, desired).hash(&mut h);
        Signature(h)
    }
}

impl<H: std::hash::Hasher> Signature<H> {
    fn condition(&mut self, type_: &str, status: &str, reason: &str) {
        std::hash::Hash::hash(&(type_, status, reason), &mut self.0);
    }

    fn trigger(&mut self, name: &str, active: bool, failing: bool, failures: i32) {
        std::hash::Hash::hash(&(name, active, failing, failures.min(1)), &mut self.0);
    }

    fn finish(self) -> u64 {
        self.0.finish()
    }
}

/// A status ready to send: its JSON, made when it is handed to the
/// writer, so a status waiting for its write holds only its bytes.
pub struct StatusBody(Box<serde_json::value::RawValue>);

impl StatusBody {
    /// None only if `status` cannot be serialized (it always can: every
    /// map in it has string keys).
    pub fn of(status: &WorkerPoolStatus) -> Option<StatusBody> {
        serde_json::value::to_raw_value(status).ok().map(StatusBody)
    }

    pub fn json(&self) -> &str {
        self.0.get()
    }
}

/// The body of a status apply; the status goes in as the bytes it was
/// made into (a `json!` body would parse them again).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplyStatus<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ApplyMeta<'a>,
    status: &'a serde_json::value::RawValue,
}

#[derive(serde::Serialize)]
struct ApplyMeta<'a> {
    name: &'a str,
}

/// Writes the whole status by server-side apply (the operator owns every
/// status field, so `force` is safe and makes a new leader take over
/// ownership from the old one). The answer — the whole object again — is
/// not parsed: the watch delivers it anyway, and parsing it was a large
/// share of a write's cost.
pub async fn write(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &StatusBody,
) -> Result<(), kube::Error> {
    use kube::Resource;
    let body = ApplyStatus {
        api_version: "workerpool.dev/v1alpha1",
        kind: "WorkerPool",
        metadata: ApplyMeta { name },
        status: &status.0,
    };
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let url = WorkerPool::url_path(&(), Some(namespace));
    let request = kube::core::Request::new(url)
        .patch_subresource("status", name, &pp, &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await?;
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

    fn paused_condition(self) -> Cond<'static> {
        match self {
            Writes::Paused { by_spec } => Cond::new(
                PAUSED,
                true,
                "Paused",
                Msg::Text(if by_spec {
                    "spec.paused is true"
                } else {
                    "annotation workerpool.dev/paused is \"true\""
                }),
            ),
            _ => Cond::new(PAUSED, false, "NotPaused", Msg::Text("")),
        }
    }
}

/// One poll's results, as status reports them.
pub struct PollReport<'a> {
    pub pool: &'a WorkerPool,
    /// What the next status needs from the last one.
    pub last: &'a StatusMemory,
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
    let prev = r.last.kept();
    let generation = r.pool.metadata.generation;
    let d = r.decision;
    let conds = decided_conditions(r);
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
        conditions: conditions(&conds, r.last, generation, Timestamp::now()),
        // Added by the poll when the status is written (see `Poll::maybe_write_status`).
        history: None,
        busy_pods: match d.busy {
            Busy::Pods(n) => Some(n),
            _ => None,
        },
        ..WorkerPoolStatus::default()
    }
}

/// The conditions of a poll that read and decided.
fn decided_conditions<'a>(r: &PollReport<'a>) -> [Cond<'a>; 5] {
    let d = r.decision;
    [
        ready_condition(r),
        active_condition(d),
        metrics_condition(d),
        limited_condition(d),
        r.writes.paused_condition(),
    ]
}

/// The status of a pool that cannot be polled: `Ready=False` with `reason`,
/// every value kept from the last status.
pub fn stood_down(
    pool: &WorkerPool,
    last: &StatusMemory,
    reason: &str,
    message: &str,
    writes: Writes,
) -> WorkerPoolStatus {
    let generation = pool.metadata.generation;
    let conds = [
        Cond::new(READY, false, reason, Msg::Text(message)),
        writes.paused_condition(),
    ];
    WorkerPoolStatus {
        observed_generation: generation,
        conditions: conditions(&conds, last, generation, Timestamp::now()),
        ..last.kept().clone()
    }
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

fn ready_condition<'a>(r: &PollReport<'a>) -> Cond<'a> {
    let (reason, how) = match r.writes {
        Writes::Active => ("Scaling", None),
        // A paused pool is not failing: Ready stays True, the reason says
        // why nothing is written.
        Writes::Paused { .. } => ("Paused", Some("paused")),
        Writes::Shadow => ("Shadow", Some("shadow")),
    };
    let message = Msg::Reading {
        how,
        target: &r.pool.spec.scale_target_ref,
        every: r.pool.spec.polling_interval_seconds.into(),
    };
    Cond::new(READY, true, reason, message)
}

fn active_condition(d: &Decision) -> Cond<'_> {
    if d.triggers.iter().any(|t| t.active) {
        Cond::new(ACTIVE, true, "TriggerActive", Msg::Active(d))
    } else {
        let message = Msg::Text("no trigger is above its activation threshold");
        Cond::new(ACTIVE, false, "NoTriggerActive", message)
    }
}

fn metrics_condition(d: &Decision) -> Cond<'_> {
    if d.triggers.iter().all(|t| t.error.is_none()) {
        let message = Msg::Text("every trigger was read on the last poll");
        Cond::new(METRICS_AVAILABLE, true, "AllTriggersRead", message)
    } else if d.fallback {
        Cond::new(METRICS_AVAILABLE, false, "FallbackApplied", Msg::Failed(d))
    } else {
        Cond::new(METRICS_AVAILABLE, false, "TriggerFailed", Msg::Failed(d))
    }
}

/// `ScalingLimited` names the limit that decided the outcome.
fn limited_condition(d: &Decision) -> Cond<'_> {
    match d.binding_limit() {
        Some(l) => Cond::new(
            SCALING_LIMITED,
            true,
            limit_reason(l),
            Msg::Text(&d.explanation),
        ),
        None => Cond::new(
            SCALING_LIMITED,
            false,
            "DesiredWithinRange",
            Msg::Text("the desired count is what the triggers ask for"),
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
        limited_condition(&d).reason.to_string()
    }

    fn pool() -> WorkerPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": "p", "namespace": "ns", "generation": 3},
            "spec": {"scaleTargetRef": {"name": "w"}, "maxReplicas": 10,
                     "triggers": [{"redis": {"url": "redis://r", "list": "q"}, "targetPerReplica": 1}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_polls_signature_is_the_signature_of_the_status_it_would_build() {
        let pool = pool();
        type Case = (Reading, Result<f64, SourceError>, Option<String>, Writes);
        let cases: [Case; 5] = [
            (Reading::Value(3.0), Ok(3.0), None, Writes::Active),
            (Reading::Value(0.0), Ok(0.0), None, Writes::Shadow),
            (
                Reading::Value(7.0),
                Ok(7.0),
                Some("slow".into()),
                Writes::Active,
            ),
            (
                Reading::Failed("down".into()),
                Err(SourceError::Connection("down".into())),
                None,
                Writes::Paused { by_spec: true },
            ),
            (Reading::Value(12.0), Ok(12.0), None, Writes::Active),
        ];
        let mut seen = std::collections::HashSet::new();
        for (reading, result, warning, writes) in cases {
            let d = decide(&policy(1), 1_000_000, 2, &[reading], &History::default());
            let (results, warnings) = ([result], [warning]);
            let last = StatusMemory::default();
            let r = PollReport {
                pool: &pool,
                last: &last,
                decision: &d,
                results: &results,
                warnings: &warnings,
                current: 2,
                applied: false,
                writes,
                now_ms: 1_000_000,
            };
            let sig = decided_signature(&r);
            assert_eq!(sig, signature(&decided(&r)), "{writes:?} {d:?}");
            seen.insert(sig);
        }
        assert_eq!(
            seen.len(),
            5,
            "each case differs in what a person cares about"
        );
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

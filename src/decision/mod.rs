//! The scaling decision: pure functions, no I/O, no
//! clock of their own — time is an input. The same code backs the
//! controller, `simulate` and `check`.
//!
//! Order of the steps, each mirroring the Kubernetes HPA where one exists
//! (pkg/controller/podautoscaler/horizontal.go):
//! 1. per trigger, `ceil(value / targetPerReplica)` with tolerance ([`propose`]);
//! 2. the maximum over triggers read OK; a failed trigger forbids a
//!    scale-down and, after `failureThreshold` polls, brings the fallback;
//! 3. with `minReplicas: 0`, all triggers inactive for `cooldownSeconds`
//!    → 0 (this step bypasses behavior, as KEDA's cooldown does); from 0 an
//!    active trigger → at least 1;
//! 4. clamp to [minReplicas, maxReplicas] (a current count outside the range
//!    goes straight to the bound, as `reconcileAutoscaler` does);
//! 5. stabilization windows, then rate policies ([`behavior`]);
//! 6. a scale-in with `spec.scaleIn` keeps the busy pods, or holds when
//!    the busy signal could not be read ([`keep_busy`]).

#![warn(missing_docs)]

mod behavior;
mod busy;
mod cron;
mod drain;
mod explain;
mod history;
mod policy;
mod proposal;
mod schedule;
pub mod status_time;

pub use behavior::{
    limit_rate, scale_down_limit, scale_up_limit, stabilize, RateLimit, Stabilized,
};
pub use busy::{keep_busy, Busy};
pub use cron::{Cron, CronError};
pub use drain::{
    estimate as estimate_drain, DrainEstimate, DrainPolicy, DrainSample, DrainTrack, Throughput,
};
pub use history::{History, RecommendationSpan, ScaleEvent};
pub use policy::{
    FallbackPolicy, Policy, PolicyType, RatePolicy, Rules, ScaleInPolicy, SelectPolicy,
    TriggerPolicy,
};
pub use proposal::propose;
pub use schedule::{bounds_at, states_at, time_zone, Bounds, ScheduleError, Window, WindowState};

/// One trigger's reading on one poll.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// The value read.
    Value(f64),
    /// The read failed; the text says why (never a Secret's value).
    Failed(String),
    /// A drain trigger's value with its `throughputFrom` reading: total
    /// items per second the pool completed.
    WithThroughput {
        /// The backlog read.
        value: f64,
        /// The measured total completions per second.
        throughput: f64,
    },
}

impl Reading {
    /// A source's result as the decision sees it (the error's text only).
    pub fn of<E: std::fmt::Display>(result: &Result<f64, E>) -> Reading {
        match result {
            Ok(v) => Reading::Value(*v),
            Err(e) => Reading::Failed(e.to_string()),
        }
    }

    /// A source's result with a drain trigger's measured throughput, if any.
    pub fn measured<E: std::fmt::Display>(
        result: &Result<f64, E>,
        throughput: Option<f64>,
    ) -> Self {
        match (result, throughput) {
            (Ok(v), Some(t)) => Reading::WithThroughput {
                value: *v,
                throughput: t,
            },
            _ => Reading::of(result),
        }
    }
}

/// What one trigger contributed to a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerOutcome {
    /// The trigger's name.
    pub name: String,
    /// The value read (None: the read failed).
    pub value: Option<f64>,
    /// Replicas this trigger asks for (None: the read failed).
    pub proposed: Option<i32>,
    /// The value is within tolerance of the current count (HPA's tolerance).
    pub within_tolerance: bool,
    /// The value is above the activation threshold.
    pub active: bool,
    /// Why the read failed.
    pub error: Option<String>,
    /// Failed polls in a row, this one included.
    pub consecutive_failures: u32,
    /// The drain estimate (drain triggers read OK only).
    pub drain: Option<DrainEstimate>,
}

/// The Event a decision deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleEventKind {
    /// More replicas.
    ScaledOut,
    /// Fewer replicas, not zero.
    ScaledIn,
    /// Down to zero after the cooldown.
    ScaledToZero,
    /// A trigger failed `failureThreshold` polls: the fallback count applies.
    FallbackApplied,
}

impl ScaleEventKind {
    /// The Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleEventKind::ScaledOut => "ScaledOut",
            ScaleEventKind::ScaledIn => "ScaledIn",
            ScaleEventKind::ScaledToZero => "ScaledToZero",
            ScaleEventKind::FallbackApplied => "FallbackApplied",
        }
    }
}

/// A limit that changed what the triggers asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Capped at `maxReplicas` (HPA's `TooManyReplicas`).
    MaxReplicas(i32),
    /// Raised to `minReplicas` (HPA's `TooFewReplicas`).
    MinReplicas(i32),
    /// Current count was outside [min, max] and goes straight to the bound.
    OutOfRange(i32),
    /// Held by the scale-up stabilization window.
    ScaleUpStabilized(i32),
    /// Held by the scale-down stabilization window.
    ScaleDownStabilized(i32),
    /// Limited by a scale-up rate policy.
    ScaleUpPolicy(i32),
    /// Limited by a scale-down rate policy.
    ScaleDownPolicy(i32),
    /// A trigger failed, so no scale-down on this poll.
    FailingTriggerHold(i32),
    /// Inactive, but not yet for `cooldownSeconds`: stays at >= 1.
    CooldownPending {
        /// How long every trigger has been inactive.
        inactive_ms: i64,
    },
    /// Scale-up from zero, or zero, blocked by `selectPolicy: Disabled`.
    Disabled,
    /// `scaleIn.keepBusy`: a scale-in held at the busy pods.
    KeepBusy {
        /// The count held.
        held: i32,
        /// Busy pods the signal reported.
        busy: i32,
    },
    /// `scaleIn`: the busy signal could not be read, so no scale-in.
    BusySignalFailed(i32),
}

/// The result of one poll.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The target's replicas before the decision.
    pub current: i32,
    /// The replicas to set.
    pub desired: i32,
    /// The recommendation to remember for stabilization (None when HPA
    /// would not record one: current outside [min, max]).
    pub recommendation: Option<i32>,
    /// What each trigger read and proposed, in the policy's order.
    pub triggers: Vec<TriggerOutcome>,
    /// Some trigger is above its activation threshold.
    pub active: bool,
    /// Every trigger was read on this poll.
    pub metrics_available: bool,
    /// The fallback is in effect on this poll.
    pub fallback: bool,
    /// Every limit that changed the count, in the order applied.
    pub limits: Vec<Limit>,
    /// The Event this decision deserves, if any.
    pub event: Option<ScaleEventKind>,
    /// A one-line explanation naming every input and every limit.
    pub explanation: String,
    /// The replica range in force on this poll, and the schedules behind it.
    pub bounds: Bounds,
    /// What the busy signal said (read only before a scale-in).
    pub busy: Busy,
    inactive_since: Option<i64>,
    last_active: Option<i64>,
    /// What the explanation says beyond the fields above.
    why: Why,
}

/// The parts of a decision's explanation not kept in its public fields.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Why {
    fallback_target: Option<i32>,
    zeroed: bool,
    inactive_ms: Option<i64>,
}

impl Decision {
    /// Desired differs from what the triggers asked for: clamped by
    /// min/max, held by a behavior rule, a failing trigger or the cooldown.
    pub fn scaling_limited(&self) -> bool {
        !self.limits.is_empty()
    }

    /// The limit that decided the outcome: each rule works on what the
    /// rules before it left, so the last one that changed anything bound it.
    pub fn binding_limit(&self) -> Option<&Limit> {
        self.limits.last()
    }

    /// Last time a trigger was active (after this poll).
    pub fn last_active(&self) -> Option<i64> {
        self.last_active
    }

    /// Fills [`Decision::explanation`] (once) for a decision made by
    /// [`decide_unexplained`] with the same `policy`.
    pub fn explain(&mut self, policy: &Policy) {
        if self.explanation.is_empty() {
            let w = self.why;
            self.explanation =
                explain::explain(policy, self, w.fallback_target, w.zeroed, w.inactive_ms);
        }
    }
}

/// Decides desired replicas for one poll. `readings` are in the order of
/// `policy.triggers`; a missing reading counts as failed. The busy signal
/// is not read yet: when [`Decision::wants_busy_signal`], decide again
/// with [`decide_with_busy`].
pub fn decide(
    policy: &Policy,
    now: i64,
    current: i32,
    readings: &[Reading],
    history: &History,
) -> Decision {
    decide_with_busy(policy, now, current, readings, history, &Busy::NotRead)
}

/// [`decide`], with what the busy signal said (`spec.scaleIn`).
pub fn decide_with_busy(
    policy: &Policy,
    now: i64,
    current: i32,
    readings: &[Reading],
    history: &History,
    busy: &Busy,
) -> Decision {
    let mut decision = decide_unexplained(policy, now, current, readings, history, busy);
    decision.explain(policy);
    decision
}

/// [`decide_with_busy`] with an empty explanation, for a caller that
/// needs it only sometimes (the controller: for a log line, an Event or a
/// status, not on the thousands of polls that change nothing) and calls
/// [`Decision::explain`] then.
pub fn decide_unexplained(
    policy: &Policy,
    now: i64,
    current: i32,
    readings: &[Reading],
    history: &History,
    busy: &Busy,
) -> Decision {
    let current = current.max(0);
    let bounds = bounds_at(policy, now, current);
    let read = read_triggers(policy, now, current, readings, history);
    let inactive_since = if read.any_active {
        None
    } else if read.any_failed {
        history.inactive_since
    } else {
        history.inactive_since.or(Some(now))
    };
    let last_active = if read.any_active {
        Some(now)
    } else {
        history.last_active
    };
    let fallback_target = read
        .fallback_due
        .then(|| policy.fallback.and_then(|f| f.replicas).unwrap_or(current));
    let step = Step {
        policy,
        history,
        now,
        current,
        min: bounds.min,
        max: bounds.max,
        read: &read,
        inactive_since,
        fallback_target,
        busy,
    };
    let (desired, recommendation, limits, zeroed) = step.recommend();
    let event = event_of(&step, desired);
    Decision {
        current,
        desired,
        recommendation,
        active: read.any_active,
        metrics_available: !read.any_failed,
        fallback: fallback_target.is_some(),
        triggers: read.triggers,
        limits,
        event,
        explanation: String::new(),
        bounds,
        busy: busy.clone(),
        inactive_since,
        last_active,
        why: Why {
            fallback_target,
            zeroed,
            inactive_ms: inactive_since.map(|s| now.saturating_sub(s)),
        },
    }
}

/// Every trigger's outcome, and what they say together.
struct Readout {
    triggers: Vec<TriggerOutcome>,
    any_failed: bool,
    any_active: bool,
    /// The largest proposal of the triggers read OK.
    raw_ok: Option<i32>,
    /// A trigger failed `fallback.failureThreshold` polls in a row.
    fallback_due: bool,
}

/// Step 1 (HPA's per-metric replica calculation): each trigger's proposal,
/// or its failure.
fn read_triggers(
    policy: &Policy,
    now: i64,
    current: i32,
    readings: &[Reading],
    history: &History,
) -> Readout {
    let mut read = Readout {
        triggers: Vec::with_capacity(policy.triggers.len()),
        any_failed: false,
        any_active: false,
        raw_ok: None,
        fallback_due: false,
    };
    for (i, t) in policy.triggers.iter().enumerate() {
        let judged = drain::judged_reading(t, readings.get(i));
        let outcome = match judged.as_ref() {
            Some(Reading::Value(v)) if v.is_finite() => {
                let (proposed, within_tolerance, drain) = drain::propose_trigger(
                    t,
                    *v,
                    readings.get(i),
                    current,
                    policy.tolerance,
                    &history.drain,
                    now,
                );
                let active = *v > t.activation_threshold;
                read.any_active |= active;
                read.raw_ok = Some(read.raw_ok.map_or(proposed, |r| r.max(proposed)));
                TriggerOutcome {
                    name: t.name.clone(),
                    value: Some(*v),
                    proposed: Some(proposed),
                    within_tolerance,
                    active,
                    error: None,
                    consecutive_failures: 0,
                    drain,
                }
            }
            other => failed_outcome(policy, t, other, history, &mut read),
        };
        read.triggers.push(outcome);
    }
    read
}

/// A trigger whose read failed (or gave no finite number).
fn failed_outcome(
    policy: &Policy,
    t: &TriggerPolicy,
    reading: Option<&Reading>,
    history: &History,
    read: &mut Readout,
) -> TriggerOutcome {
    let error = match reading {
        Some(Reading::Failed(e)) => e.clone(),
        Some(Reading::Value(v) | Reading::WithThroughput { value: v, .. }) => {
            format!("value {v} is not a finite number")
        }
        None => "no reading".to_string(),
    };
    read.any_failed = true;
    let prior = history.failures.get(&t.name).copied().unwrap_or(0);
    let failures = prior.saturating_add(1);
    if policy
        .fallback
        .is_some_and(|f| failures >= f.failure_threshold)
    {
        read.fallback_due = true;
    }
    TriggerOutcome {
        name: t.name.clone(),
        value: None,
        proposed: None,
        within_tolerance: false,
        active: false,
        error: Some(error),
        consecutive_failures: failures,
        drain: None,
    }
}

/// What steps 2–5 work on.
struct Step<'a> {
    policy: &'a Policy,
    history: &'a History,
    now: i64,
    current: i32,
    /// The effective bounds (schedules applied).
    min: i32,
    max: i32,
    read: &'a Readout,
    inactive_since: Option<i64>,
    fallback_target: Option<i32>,
    busy: &'a Busy,
}

impl Step<'_> {
    /// Steps 2–6, then the invariants: the desired count, the
    /// recommendation to remember, the limits that bit, and whether the
    /// cooldown took the pool to zero.
    fn recommend(&self) -> (i32, Option<i32>, Vec<Limit>, bool) {
        let (min, max, current) = (self.min, self.max, self.current);
        let mut limits = Vec::new();
        let mut zeroed = false;
        let (desired, recommendation) = if current > max {
            limits.push(Limit::OutOfRange(max));
            (max, None)
        } else if current < min {
            limits.push(Limit::OutOfRange(min));
            (min, None)
        } else if self.stays_at_zero() {
            (0, Some(0))
        } else if self.cooled_down() {
            zeroed = true;
            (0, Some(0))
        } else {
            self.within_behavior(&mut limits)
        };
        // Invariants, whatever the rules above did: stay in range, and never
        // scale down on a poll where a trigger failed (unless out of range).
        let mut desired = desired.clamp(min, max);
        if self.read.any_failed && desired < current && current <= max {
            desired = current;
            limits.push(Limit::FailingTriggerHold(current));
        }
        // Step 6, on what every rule above left: it only ever holds a
        // scale-in, within [min, max].
        let scale_in = self.policy.scale_in.as_ref();
        let (desired, held) = keep_busy(desired, current, max, scale_in, self.busy);
        limits.extend(held);
        (desired, recommendation, limits, zeroed)
    }

    /// At zero with nothing active (and no fallback above zero): stay.
    fn stays_at_zero(&self) -> bool {
        self.min == 0
            && self.current == 0
            && !self.read.any_active
            && self.fallback_target.unwrap_or(0) <= 0
    }

    /// Step 3: every trigger inactive for `cooldownSeconds` with
    /// `minReplicas: 0` goes to zero (bypassing behavior, as KEDA does).
    fn cooled_down(&self) -> bool {
        self.min == 0
            && self.current > 0
            && !self.read.any_active
            && !self.read.any_failed
            && self
                .inactive_since
                .is_some_and(|s| self.now.saturating_sub(s) >= self.policy.cooldown_ms)
    }

    /// Steps 2, 4 and 5: the failing-trigger hold and fallback, the clamp,
    /// stabilization, then rate policies. Returns (desired, recommendation).
    fn within_behavior(&self, limits: &mut Vec<Limit>) -> (i32, Option<i32>) {
        let current = self.current;
        // While minReplicas is 0 but the pool is active (or cooling down),
        // the floor is 1: only the cooldown rule reaches 0.
        let floor = self.min.max(1);
        let mut rec = self.read.raw_ok.unwrap_or(current);
        if self.read.any_failed && rec < current {
            rec = current;
            limits.push(Limit::FailingTriggerHold(current));
        }
        if let Some(f) = self.fallback_target {
            rec = rec.max(f);
        }
        let clamped = rec.clamp(floor, self.max);
        self.clamp_limit(rec, clamped, limits);
        let stable = self.stabilized(clamped, limits);
        let mut d = self.rate_limited(stable, floor, limits);
        if current == 0 && d == 0 {
            // Percent policies allow nothing from 0; activation is what wakes a pool.
            if self.policy.scale_up.select_policy == SelectPolicy::Disabled {
                limits.push(Limit::Disabled);
            } else {
                d = 1;
            }
        }
        (d, Some(clamped))
    }

    /// Step 4: which bound changed the recommendation, if one did.
    fn clamp_limit(&self, rec: i32, clamped: i32, limits: &mut Vec<Limit>) {
        if clamped < rec {
            limits.push(Limit::MaxReplicas(self.max));
        } else if clamped > rec {
            if self.min == 0 && !self.read.any_active && self.current > 0 {
                limits.push(Limit::CooldownPending {
                    inactive_ms: self
                        .inactive_since
                        .map_or(0, |s| self.now.saturating_sub(s)),
                });
            } else if self.min > 0 {
                limits.push(Limit::MinReplicas(self.min));
            }
        }
    }

    /// Step 5a: the stabilization windows. With no memory of earlier polls,
    /// the current count counts as a recent recommendation (HPA's
    /// `maybeInitScaleDownStabilizationWindow`), so a fresh start never
    /// scales down before a window has passed.
    fn stabilized(&self, clamped: i32, limits: &mut Vec<Limit>) -> i32 {
        let seeded;
        let h = if self.history.recommendations.is_empty() {
            seeded = History {
                recommendations: vec![RecommendationSpan {
                    from: self.now,
                    to: self.now,
                    replicas: self.current,
                }],
                ..History::default()
            };
            &seeded
        } else {
            self.history
        };
        let p = self.policy;
        let (stable, how) = stabilize(
            clamped,
            self.current,
            h,
            &p.scale_up,
            &p.scale_down,
            self.now,
        );
        match how {
            Some(Stabilized::ScaleUp(n)) => limits.push(Limit::ScaleUpStabilized(n)),
            Some(Stabilized::ScaleDown(n)) => limits.push(Limit::ScaleDownStabilized(n)),
            None => {}
        }
        stable
    }

    /// Step 5b: the rate policies over past scale events.
    fn rate_limited(&self, stable: i32, floor: i32, limits: &mut Vec<Limit>) -> i32 {
        let p = self.policy;
        let (d, rate) = limit_rate(
            stable,
            self.current,
            (floor, self.max),
            self.history,
            &p.scale_up,
            &p.scale_down,
            self.now,
        );
        match rate {
            Some(RateLimit::ScaleUpPolicy(n)) => limits.push(Limit::ScaleUpPolicy(n)),
            Some(RateLimit::ScaleDownPolicy(n)) => limits.push(Limit::ScaleDownPolicy(n)),
            Some(RateLimit::Max(n)) if !limits.contains(&Limit::MaxReplicas(n)) => {
                limits.push(Limit::MaxReplicas(n))
            }
            Some(RateLimit::Min(n)) if self.min > 0 && !limits.contains(&Limit::MinReplicas(n)) => {
                limits.push(Limit::MinReplicas(n))
            }
            _ => {}
        }
        d
    }
}

/// The Event a decision deserves.
fn event_of(step: &Step<'_>, desired: i32) -> Option<ScaleEventKind> {
    let (current, history) = (step.current, step.history);
    let fallback = step.fallback_target.is_some();
    if fallback && (history.fallback_since.is_none() || desired != current) {
        Some(ScaleEventKind::FallbackApplied)
    } else if desired == 0 && current > 0 {
        Some(ScaleEventKind::ScaledToZero)
    } else if desired > current {
        Some(ScaleEventKind::ScaledOut)
    } else if desired < current {
        Some(ScaleEventKind::ScaledIn)
    } else {
        None
    }
}

impl History {
    /// Remembers a decision: its recommendation, the scale if it was applied
    /// (`applied` = the target's /scale was written), failure counters,
    /// inactivity and the fallback episode. Then forgets what no window sees.
    pub fn commit(&mut self, policy: &Policy, decision: &Decision, now: i64, applied: bool) {
        if let Some(rec) = decision.recommendation {
            if self.recommendations.is_empty() {
                self.record_recommendation(now, decision.current);
            }
            self.record_recommendation(now, rec);
        }
        if applied {
            self.record_scale(now, decision.current, decision.desired);
        }
        self.failures.clear();
        for t in &decision.triggers {
            if t.consecutive_failures > 0 {
                self.failures.insert(t.name.clone(), t.consecutive_failures);
            }
        }
        self.record_drain(policy, decision, now);
        self.inactive_since = decision.inactive_since;
        self.last_active = decision.last_active;
        self.fallback_since = if decision.fallback {
            self.fallback_since.or(Some(now))
        } else {
            None
        };
        self.prune(now, policy.history_horizon_ms());
    }
}

#[cfg(test)]
mod tests;

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
//! 5. stabilization windows, then rate policies ([`behavior`]).

#![warn(missing_docs)]

mod behavior;
mod cron;
mod drain;
mod explain;
mod history;
mod policy;
mod proposal;
mod schedule;

pub use behavior::{
    limit_rate, scale_down_limit, scale_up_limit, stabilize, RateLimit, Stabilized,
};
pub use cron::{Cron, CronError};
pub use drain::{
    estimate as estimate_drain, DrainEstimate, DrainPolicy, DrainSample, DrainTrack, Throughput,
};
pub use history::{History, RecommendationSpan, ScaleEvent};
pub use policy::{
    FallbackPolicy, Policy, PolicyType, RatePolicy, Rules, SelectPolicy, TriggerPolicy,
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
    inactive_since: Option<i64>,
    last_active: Option<i64>,
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
}

/// Decides desired replicas for one poll. `readings` are in the order of
/// `policy.triggers`; a missing reading counts as failed.
pub fn decide(
    policy: &Policy,
    now: i64,
    current: i32,
    readings: &[Reading],
    history: &History,
) -> Decision {
    let current = current.max(0);
    let bounds = bounds_at(policy, now, current);
    let (min, max) = (bounds.min, bounds.max);
    let mut triggers = Vec::with_capacity(policy.triggers.len());
    let (mut any_failed, mut any_active, mut fallback_due) = (false, false, false);
    let mut raw_ok: Option<i32> = None;

    for (i, t) in policy.triggers.iter().enumerate() {
        let prior = history.failures.get(&t.name).copied().unwrap_or(0);
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
                any_active |= active;
                raw_ok = Some(raw_ok.map_or(proposed, |r| r.max(proposed)));
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
            other => {
                let error = match other {
                    Some(Reading::Failed(e)) => e.clone(),
                    Some(Reading::Value(v) | Reading::WithThroughput { value: v, .. }) => {
                        format!("value {v} is not a finite number")
                    }
                    None => "no reading".to_string(),
                };
                any_failed = true;
                let failures = prior.saturating_add(1);
                if policy
                    .fallback
                    .is_some_and(|f| failures >= f.failure_threshold)
                {
                    fallback_due = true;
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
        };
        triggers.push(outcome);
    }

    let inactive_since = if any_active {
        None
    } else if any_failed {
        history.inactive_since
    } else {
        history.inactive_since.or(Some(now))
    };
    let last_active = if any_active {
        Some(now)
    } else {
        history.last_active
    };
    let fallback_target =
        fallback_due.then(|| policy.fallback.and_then(|f| f.replicas).unwrap_or(current));

    let mut limits = Vec::new();
    let mut zeroed = false;
    let (mut desired, recommendation) = if current > max {
        limits.push(Limit::OutOfRange(max));
        (max, None)
    } else if current < min {
        limits.push(Limit::OutOfRange(min));
        (min, None)
    } else if min == 0 && current == 0 && !any_active && fallback_target.unwrap_or(0) <= 0 {
        (0, Some(0))
    } else if min == 0
        && current > 0
        && !any_active
        && !any_failed
        && inactive_since.is_some_and(|s| now.saturating_sub(s) >= policy.cooldown_ms)
    {
        zeroed = true;
        (0, Some(0))
    } else {
        // While minReplicas is 0 but the pool is active (or cooling down),
        // the floor is 1: only the cooldown rule above reaches 0.
        let floor = min.max(1);
        let mut rec = raw_ok.unwrap_or(current);
        if any_failed && rec < current {
            rec = current;
            limits.push(Limit::FailingTriggerHold(current));
        }
        if let Some(f) = fallback_target {
            rec = rec.max(f);
        }
        let clamped = rec.clamp(floor, max);
        if clamped < rec {
            limits.push(Limit::MaxReplicas(max));
        } else if clamped > rec {
            if min == 0 && !any_active && current > 0 {
                limits.push(Limit::CooldownPending {
                    inactive_ms: inactive_since.map_or(0, |s| now.saturating_sub(s)),
                });
            } else if min > 0 {
                limits.push(Limit::MinReplicas(min));
            }
        }
        let seeded;
        // HPA's maybeInitScaleDownStabilizationWindow: with no memory of
        // earlier polls, the current count counts as a recent recommendation,
        // so a fresh start never scales down before a window has passed.
        let h = if history.recommendations.is_empty() {
            seeded = History {
                recommendations: vec![RecommendationSpan {
                    from: now,
                    to: now,
                    replicas: current,
                }],
                ..History::default()
            };
            &seeded
        } else {
            history
        };
        let (stable, how) = stabilize(
            clamped,
            current,
            h,
            &policy.scale_up,
            &policy.scale_down,
            now,
        );
        match how {
            Some(Stabilized::ScaleUp(n)) => limits.push(Limit::ScaleUpStabilized(n)),
            Some(Stabilized::ScaleDown(n)) => limits.push(Limit::ScaleDownStabilized(n)),
            None => {}
        }
        let (mut d, rate) = limit_rate(
            stable,
            current,
            (floor, max),
            history,
            &policy.scale_up,
            &policy.scale_down,
            now,
        );
        match rate {
            Some(RateLimit::ScaleUpPolicy(n)) => limits.push(Limit::ScaleUpPolicy(n)),
            Some(RateLimit::ScaleDownPolicy(n)) => limits.push(Limit::ScaleDownPolicy(n)),
            Some(RateLimit::Max(n)) if !limits.contains(&Limit::MaxReplicas(n)) => {
                limits.push(Limit::MaxReplicas(n))
            }
            Some(RateLimit::Min(n)) if min > 0 && !limits.contains(&Limit::MinReplicas(n)) => {
                limits.push(Limit::MinReplicas(n))
            }
            _ => {}
        }
        if current == 0 && d == 0 {
            // Percent policies allow nothing from 0; activation is what wakes a pool.
            if policy.scale_up.select_policy == SelectPolicy::Disabled {
                limits.push(Limit::Disabled);
            } else {
                d = 1;
            }
        }
        (d, Some(clamped))
    };

    // Invariants, whatever the rules above did: stay in range, and never
    // scale down on a poll where a trigger failed (unless out of range).
    desired = desired.clamp(min, max);
    if any_failed && desired < current && current <= max {
        desired = current;
        limits.push(Limit::FailingTriggerHold(current));
    }

    let fallback = fallback_target.is_some();
    let event = if fallback && (history.fallback_since.is_none() || desired != current) {
        Some(ScaleEventKind::FallbackApplied)
    } else if desired == 0 && current > 0 {
        Some(ScaleEventKind::ScaledToZero)
    } else if desired > current {
        Some(ScaleEventKind::ScaledOut)
    } else if desired < current {
        Some(ScaleEventKind::ScaledIn)
    } else {
        None
    };

    let mut decision = Decision {
        current,
        desired,
        recommendation,
        triggers,
        active: any_active,
        metrics_available: !any_failed,
        fallback,
        limits,
        event,
        explanation: String::new(),
        bounds,
        inactive_since,
        last_active,
    };
    decision.explanation = explain::explain(
        policy,
        &decision,
        fallback_target,
        zeroed,
        inactive_since.map(|s| now.saturating_sub(s)),
    );
    decision
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

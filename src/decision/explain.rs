//! The human explanation of a decision: every input and every limit that bit.
//! It becomes `status.lastDecision` and the Event message, so it is what a
//! person reads when asking "why did it scale?".

use std::fmt::Write;

use super::{Decision, Limit, Policy};

pub(super) fn explain(
    policy: &Policy,
    d: &Decision,
    fallback_target: Option<i32>,
    zeroed: bool,
    inactive_ms: Option<i64>,
) -> String {
    let mut s = String::with_capacity(128);
    if d.desired == d.current {
        let _ = write!(s, "{} -> {} (no change): ", d.current, d.desired);
    } else {
        let _ = write!(s, "{} -> {}: ", d.current, d.desired);
    }
    for (i, (t, p)) in d.triggers.iter().zip(&policy.triggers).enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        trigger_text(&mut s, t, p);
    }
    if let Some(f) = fallback_target {
        let _ = write!(
            s,
            "; fallback {} applied after {} failed polls",
            f,
            fail_threshold(policy)
        );
    }
    if zeroed {
        let secs = inactive_ms.unwrap_or(0) / 1000;
        let _ = write!(
            s,
            "; all triggers inactive for {}s >= cooldown {}s, scaling to zero",
            secs,
            policy.cooldown_ms / 1000
        );
    }
    for limit in &d.limits {
        s.push_str("; ");
        limit_text(&mut s, policy, d, limit);
    }
    busy_text(&mut s, d);
    schedules_text(&mut s, &d.bounds);
    s
}

/// What one trigger read and wants, or why it has no value.
fn trigger_text(s: &mut String, t: &super::TriggerOutcome, p: &super::TriggerPolicy) {
    match (t.value, t.proposed, &t.error) {
        (Some(v), Some(n), _) => {
            let verb = if t.within_tolerance {
                "within tolerance, keeps"
            } else {
                "wants"
            };
            let _ = write!(s, "{}={} {} {} (", t.name, v, verb, n);
            sizing(s, p, t);
            if !t.active {
                let _ = write!(s, ", inactive at <= {}", p.activation_threshold);
            }
            s.push(')');
        }
        (_, _, Some(e)) => {
            let _ = write!(
                s,
                "{} failed ({} in a row): {}",
                t.name, t.consecutive_failures, e
            );
        }
        _ => {
            let _ = write!(s, "{} not read", t.name);
        }
    }
}

/// How one limit changed the count, in the words of the rule.
fn limit_text(s: &mut String, policy: &Policy, d: &Decision, limit: &Limit) {
    let _ = match *limit {
        Limit::MaxReplicas(n) => match &d.bounds.max_from {
            Some(_) => write!(s, "capped at the schedule ceiling {n}"),
            None => write!(s, "capped at maxReplicas {n}"),
        },
        Limit::MinReplicas(n) => match &d.bounds.min_from {
            Some(_) => write!(s, "raised to the schedule floor {n}"),
            None => write!(s, "raised to minReplicas {n}"),
        },
        Limit::OutOfRange(n) => write!(
            s,
            "current count outside [{}, {}], moving to {n}",
            d.bounds.min, d.bounds.max
        ),
        Limit::ScaleUpStabilized(n) => write!(
            s,
            "scale-up stabilization window {}s holds {n} (lowest recent recommendation)",
            policy.scale_up.stabilization_window_ms / 1000
        ),
        Limit::ScaleDownStabilized(n) => write!(
            s,
            "scale-down stabilization window {}s holds {n} (highest recent recommendation)",
            policy.scale_down.stabilization_window_ms / 1000
        ),
        Limit::ScaleUpPolicy(n) => write!(
            s,
            "scale-up policies allow at most {n} now ({})",
            rules_text(&policy.scale_up)
        ),
        Limit::ScaleDownPolicy(n) => write!(
            s,
            "scale-down policies allow no fewer than {n} now ({})",
            rules_text(&policy.scale_down)
        ),
        Limit::FailingTriggerHold(n) => write!(
            s,
            "a trigger failed: holding at least {n} (no scale-down while blind)"
        ),
        Limit::CooldownPending { inactive_ms } => write!(
            s,
            "inactive for {}s of cooldown {}s, keeping 1",
            inactive_ms / 1000,
            policy.cooldown_ms / 1000
        ),
        Limit::Disabled => write!(s, "scale-up selectPolicy is Disabled"),
        Limit::KeepBusy { held, busy } => {
            write!(s, "keepBusy held {held}: {busy} {} busy", pods(busy))
        }
        Limit::BusySignalFailed(n) => write!(
            s,
            "busy signal failed, holding {n} (no scale-in while blind to busy pods): {}",
            busy_error(&d.busy)
        ),
    };
}

fn pods(n: i32) -> &'static str {
    if n == 1 {
        "pod"
    } else {
        "pods"
    }
}

fn busy_error(b: &super::Busy) -> &str {
    match b {
        super::Busy::Failed(e) => e,
        _ => "",
    }
}

/// Busy pods seen before a scale-in that `keepBusy` did not hold: they are
/// ranked last for deletion, and a person reading the decision should know.
fn busy_text(s: &mut String, d: &Decision) {
    let held = (d.limits.iter()).any(|l| matches!(l, Limit::KeepBusy { .. }));
    if let (super::Busy::Pods(n), false) = (&d.busy, held) {
        let _ = write!(s, "; {n} {} busy", pods(*n));
    }
}

/// How a trigger sized its proposal: `20/replica`, or the drain estimate.
fn sizing(s: &mut String, p: &super::TriggerPolicy, t: &super::TriggerOutcome) {
    let (Some(d), Some(est)) = (&p.drain, &t.drain) else {
        let _ = write!(s, "{}/replica", p.target_per_replica);
        return;
    };
    let _ = write!(s, "drain within {}s", d.seconds);
    match est.arrival_rate {
        Some(r) => {
            let _ = write!(s, ", arrivals {}/s", round3(r));
        }
        None => s.push_str(", arrivals not yet known"),
    }
    if let Some(r) = est.per_replica {
        let _ = write!(s, ", {}/s per replica", round3(r));
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Which schedules are open and which bound each set ("floor 5 from
/// schedule business-hours"), or why the pool holds.
fn schedules_text(s: &mut String, b: &super::Bounds) {
    if let Some(e) = &b.error {
        let _ = write!(s, "; {e}: holding {}", b.min);
        return;
    }
    if b.open.is_empty() {
        return;
    }
    let _ = write!(s, "; open schedules: {}", b.open.join(", "));
    if let Some(name) = &b.min_from {
        let _ = write!(s, "; floor {} from schedule {name}", b.min);
    }
    if let Some(name) = &b.max_from {
        let _ = write!(s, "; ceiling {} from schedule {name}", b.max);
    }
}

fn fail_threshold(policy: &Policy) -> u32 {
    policy.fallback.map_or(0, |f| f.failure_threshold)
}

fn rules_text(rules: &super::Rules) -> String {
    let mut s = format!("{:?}", rules.select_policy);
    s.push_str(" of");
    for p in &rules.policies {
        let unit = match p.kind {
            super::PolicyType::Pods => " pods",
            super::PolicyType::Percent => "%",
        };
        let _ = write!(s, " {}{}/{}s", p.value, unit, p.period_ms / 1000);
    }
    s
}

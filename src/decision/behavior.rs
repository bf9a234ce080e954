//! HPA behavior: stabilization windows and rate policies, mirroring
//! kubernetes/pkg/controller/podautoscaler/horizontal.go.

use super::history::History;
use super::policy::{PolicyType, Rules, SelectPolicy};

/// Which behavior step changed the recommendation, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stabilized {
    /// The scale-up window held the count down to the lowest recent recommendation.
    ScaleUp(i32),
    /// The scale-down window held the count up to the highest recent recommendation.
    ScaleDown(i32),
}

/// Mirrors `stabilizeRecommendationWithBehaviors`: the scale-up window
/// applies the lowest recommendation within it, the scale-down window the
/// highest; the current count is then moved only as far as both allow.
/// Recommendations count when strictly newer than `now - window`
/// (`rec.timestamp.After(cutoff)`); `desired` counts as the newest one.
pub fn stabilize(
    desired: i32,
    current: i32,
    history: &History,
    up: &Rules,
    down: &Rules,
    now: i64,
) -> (i32, Option<Stabilized>) {
    let up_cutoff = now.saturating_sub(up.stabilization_window_ms);
    let down_cutoff = now.saturating_sub(down.stabilization_window_ms);
    let mut up_rec = desired;
    let mut down_rec = desired;
    for span in &history.recommendations {
        if span.to > up_cutoff {
            up_rec = up_rec.min(span.replicas);
        }
        if span.to > down_cutoff {
            down_rec = down_rec.max(span.replicas);
        }
    }
    let mut recommendation = current;
    if recommendation < up_rec {
        recommendation = up_rec;
    }
    if recommendation > down_rec {
        recommendation = down_rec;
    }
    let how = if recommendation == desired {
        None
    } else if desired > recommendation {
        Some(Stabilized::ScaleUp(recommendation))
    } else {
        Some(Stabilized::ScaleDown(recommendation))
    };
    (recommendation, how)
}

/// Which limit `limit_rate` applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    /// The scale-up policies allowed at most this many.
    ScaleUpPolicy(i32),
    /// The scale-down policies allowed no fewer than this many.
    ScaleDownPolicy(i32),
    /// maxReplicas bit (HPA's `TooManyReplicas`).
    Max(i32),
    /// minReplicas bit (HPA's `TooFewReplicas`).
    Min(i32),
}

/// Mirrors `convertDesiredReplicasWithBehaviorRate`: bounds a stabilized
/// recommendation by the rate policies of its direction and by [min, max].
pub fn limit_rate(
    desired: i32,
    current: i32,
    (min, max): (i32, i32),
    history: &History,
    up: &Rules,
    down: &Rules,
    now: i64,
) -> (i32, Option<RateLimit>) {
    if desired > current {
        let mut limit = scale_up_limit(current, history, up, now);
        if limit < current {
            // No further scale-up until old scale-up events leave the period.
            limit = current;
        }
        let (allowed, why) = if max > limit {
            (limit, RateLimit::ScaleUpPolicy(limit))
        } else {
            (max, RateLimit::Max(max))
        };
        if desired > allowed {
            return (allowed, Some(why));
        }
    } else if desired < current {
        let mut limit = scale_down_limit(current, history, down, now);
        if limit > current {
            limit = current;
        }
        let (allowed, why) = if min < limit {
            (limit, RateLimit::ScaleDownPolicy(limit))
        } else {
            (min, RateLimit::Min(min))
        };
        if desired < allowed {
            return (allowed, Some(why));
        }
    }
    (desired, None)
}

/// Replicas at the start of a policy's period: current minus what was added
/// plus what was removed within it.
fn period_start(current: i32, history: &History, period_ms: i64, now: i64) -> i32 {
    let added = History::change_in_period(&history.scale_up_events, now, period_ms);
    let removed = History::change_in_period(&history.scale_down_events, now, period_ms);
    current.saturating_sub(added).saturating_add(removed)
}

/// Mirrors `calculateScaleUpLimitWithScalingRules`: the most replicas the
/// scale-up policies allow now. Percent rounds up so that a small pool can
/// always grow.
pub fn scale_up_limit(current: i32, history: &History, rules: &Rules, now: i64) -> i32 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MAX), std::cmp::min),
        SelectPolicy::Max => (i64::from(i32::MIN), std::cmp::max),
    };
    for policy in &rules.policies {
        let start = i64::from(period_start(current, history, policy.period_ms, now));
        let proposed = match policy.kind {
            PolicyType::Pods => start + i64::from(policy.value),
            PolicyType::Percent => {
                (start as f64 * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i64
            }
        };
        result = pick(result, proposed);
    }
    saturate(result)
}

/// Mirrors `calculateScaleDownLimitWithBehaviors`: the fewest replicas the
/// scale-down policies allow now. Percent truncates (Go's `int32(float64)`).
pub fn scale_down_limit(current: i32, history: &History, rules: &Rules, now: i64) -> i32 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MIN), std::cmp::max),
        SelectPolicy::Max => (i64::from(i32::MAX), std::cmp::min),
    };
    for policy in &rules.policies {
        let start = i64::from(period_start(current, history, policy.period_ms, now));
        let proposed = match policy.kind {
            PolicyType::Pods => start - i64::from(policy.value),
            PolicyType::Percent => (start as f64 * (1.0 - f64::from(policy.value) / 100.0)) as i64,
        };
        result = pick(result, proposed);
    }
    saturate(result)
}

fn saturate(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::history::ScaleEvent;
    use crate::decision::policy::RatePolicy;

    fn rules(select: SelectPolicy, policies: &[(PolicyType, i32, i64)]) -> Rules {
        Rules {
            stabilization_window_ms: 0,
            select_policy: select,
            policies: policies
                .iter()
                .map(|&(kind, value, s)| RatePolicy {
                    kind,
                    value,
                    period_ms: s * 1000,
                })
                .collect(),
        }
    }

    #[test]
    fn scale_up_default_rules_allow_double_or_plus_four() {
        let r = Rules::default_scale_up();
        let h = History::default();
        assert_eq!(scale_up_limit(1, &h, &r, 0), 5); // Pods 4 beats Percent 100
        assert_eq!(scale_up_limit(10, &h, &r, 0), 20); // Percent 100 beats Pods 4
    }

    #[test]
    fn scale_up_percent_rounds_up_and_select_min_picks_smaller() {
        let r = rules(
            SelectPolicy::Min,
            &[(PolicyType::Percent, 10, 60), (PolicyType::Pods, 5, 60)],
        );
        // 3 * 1.1 = 3.3 -> 4; Pods -> 8; Min -> 4.
        assert_eq!(scale_up_limit(3, &History::default(), &r, 0), 4);
    }

    #[test]
    fn scale_up_limit_counts_events_within_period_only() {
        let r = rules(SelectPolicy::Max, &[(PolicyType::Pods, 4, 60)]);
        let mut h = History::default();
        h.scale_up_events.push(ScaleEvent {
            at: 10_000,
            change: 3,
        });
        // At t=30s the +3 is inside the 60s period: start = 7 - 3 = 4 -> limit 8.
        assert_eq!(scale_up_limit(7, &h, &r, 30_000), 8);
        // Exactly 60s later the event is no longer strictly after the cutoff.
        assert_eq!(scale_up_limit(7, &h, &r, 70_000), 11);
    }

    #[test]
    fn scale_down_percent_truncates() {
        let r = rules(SelectPolicy::Max, &[(PolicyType::Percent, 50, 60)]);
        // 5 * 0.5 = 2.5 -> 2 (truncation, as Go's int32 conversion)
        assert_eq!(scale_down_limit(5, &History::default(), &r, 0), 2);
    }

    #[test]
    fn disabled_select_policy_freezes_direction() {
        let r = rules(SelectPolicy::Disabled, &[(PolicyType::Pods, 4, 60)]);
        assert_eq!(scale_up_limit(3, &History::default(), &r, 0), 3);
        assert_eq!(scale_down_limit(3, &History::default(), &r, 0), 3);
        let (d, why) = limit_rate(9, 3, (1, 10), &History::default(), &r, &r, 0);
        assert_eq!((d, why), (3, Some(RateLimit::ScaleUpPolicy(3))));
    }

    #[test]
    fn stabilization_scale_down_uses_highest_recent() {
        let mut h = History::default();
        h.record_recommendation(0, 8);
        h.record_recommendation(10_000, 5);
        let up = Rules::default_scale_up();
        let mut down = Rules::default_scale_down();
        down.stabilization_window_ms = 60_000;
        let (r, how) = stabilize(2, 8, &h, &up, &down, 20_000);
        assert_eq!((r, how), (8, Some(Stabilized::ScaleDown(8))));
        // After the window passed the 8 (to=0 <= 65_000-60_000), 5 still counts.
        let (r, _) = stabilize(2, 8, &h, &up, &down, 65_000);
        assert_eq!(r, 5);
    }

    #[test]
    fn stabilization_scale_up_uses_lowest_recent() {
        let mut h = History::default();
        h.record_recommendation(0, 3);
        let mut up = Rules::default_scale_up();
        up.stabilization_window_ms = 30_000;
        let down = Rules::default_scale_down();
        let (r, how) = stabilize(10, 2, &h, &up, &down, 10_000);
        assert_eq!((r, how), (3, Some(Stabilized::ScaleUp(3))));
    }

    #[test]
    fn max_replicas_reported_when_tighter_than_policy() {
        let h = History::default();
        let up = Rules::default_scale_up();
        let down = Rules::default_scale_down();
        assert_eq!(
            limit_rate(30, 4, (1, 6), &h, &up, &down, 0),
            (6, Some(RateLimit::Max(6)))
        );
        assert_eq!(
            limit_rate(30, 4, (1, 100), &h, &up, &down, 0),
            (8, Some(RateLimit::ScaleUpPolicy(8)))
        );
    }
}

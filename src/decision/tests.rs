//! Per-rule unit tests and property tests for the decision.

use proptest::prelude::*;

use super::*;

fn trig(name: &str, target: f64) -> TriggerPolicy {
    TriggerPolicy {
        name: name.into(),
        target_per_replica: target,
        activation_threshold: 0.0,
        drain: None,
    }
}

fn policy(min: i32, max: i32) -> Policy {
    Policy {
        min_replicas: min,
        max_replicas: max,
        cooldown_ms: 120_000,
        triggers: vec![trig("orders", 20.0)],
        scale_up: Rules::default_scale_up(),
        scale_down: Rules::default_scale_down(),
        tolerance: 0.1,
        fallback: None,
        schedules: vec![],
        scale_in: None,
    }
}

fn v(x: f64) -> Reading {
    Reading::Value(x)
}

fn failed() -> Reading {
    Reading::Failed("connection refused".into())
}

#[test]
fn an_unexplained_decision_explains_itself_as_decide_would() {
    let p = Policy {
        fallback: Some(FallbackPolicy {
            failure_threshold: 1,
            replicas: Some(4),
        }),
        ..policy(0, 10)
    };
    let cases: [(i32, Vec<Reading>, History); 3] = [
        (2, vec![v(100.0)], History::default()),
        (3, vec![failed()], History::default()),
        (
            2,
            vec![v(0.0)],
            History {
                inactive_since: Some(0),
                ..History::default()
            },
        ),
    ];
    for (current, readings, history) in cases {
        let now = 10_000_000;
        let told = decide(&p, now, current, &readings, &history);
        let mut quiet = decide_unexplained(&p, now, current, &readings, &history, &Busy::NotRead);
        assert!(quiet.explanation.is_empty());
        quiet.explain(&p);
        assert!(!told.explanation.is_empty());
        assert_eq!(quiet, told, "same decision, same words");
    }
}

/// Runs polls every `step_ms` and returns desired after each, applying each decision.
fn run(p: &Policy, start: i32, step_ms: i64, values: &[Vec<Reading>]) -> Vec<i32> {
    let mut h = History::default();
    let mut cur = start;
    let mut out = vec![];
    for (i, r) in values.iter().enumerate() {
        let now = i as i64 * step_ms;
        let d = decide(p, now, cur, r, &h);
        h.commit(p, &d, now, d.desired != d.current);
        cur = d.desired;
        out.push(cur);
    }
    out
}

#[test]
fn max_over_triggers_wins() {
    let mut p = policy(1, 40);
    p.triggers.push(trig("rate", 5.0));
    let d = decide(&p, 0, 4, &[v(137.0), v(2.3)], &History::default());
    assert_eq!(d.desired, 7);
    assert_eq!(d.event, Some(ScaleEventKind::ScaledOut));
    assert!(
        d.explanation
            .starts_with("4 -> 7: orders=137 wants 7 (20/replica); rate=2.3 wants 1 (5/replica"),
        "{}",
        d.explanation
    );
}

#[test]
fn clamp_to_max_is_explained() {
    let d = decide(&policy(1, 10), 0, 8, &[v(240.0)], &History::default());
    assert_eq!(d.desired, 10);
    assert!(d.limits.contains(&Limit::MaxReplicas(10)));
    assert!(d.scaling_limited());
    assert!(
        d.explanation.contains("capped at maxReplicas 10"),
        "{}",
        d.explanation
    );
}

#[test]
fn scale_up_policy_limits_rate_from_one() {
    // Default scale-up: max(Percent 100 -> 2, Pods 4 -> 5) = 5.
    let d = decide(&policy(1, 100), 0, 1, &[v(2000.0)], &History::default());
    assert_eq!(d.desired, 5);
    assert!(d.limits.contains(&Limit::ScaleUpPolicy(5)));
}

#[test]
fn fresh_start_does_not_scale_down_within_window() {
    // The seed recommendation (current) holds for the scale-down window.
    let p = policy(1, 10);
    let out = run(&p, 8, 60_000, &vec![vec![v(0.0)]; 7]);
    assert_eq!(out[..5], [8, 8, 8, 8, 8]);
    assert_eq!(out[5], 1, "after 300s the window no longer holds: {out:?}");
}

#[test]
fn failed_trigger_never_scales_down() {
    let mut p = policy(1, 10);
    p.triggers.push(trig("rate", 1.0));
    let mut h = History::default();
    h.record_recommendation(-400_000, 1);
    let d = decide(&p, 0, 6, &[v(0.0), failed()], &h);
    assert_eq!(d.desired, 6);
    assert!(!d.metrics_available);
    assert!(
        d.explanation
            .contains("rate failed (1 in a row): connection refused"),
        "{}",
        d.explanation
    );
}

#[test]
fn failed_trigger_still_allows_scale_up_from_others() {
    let mut p = policy(1, 10);
    p.triggers.push(trig("rate", 1.0));
    let d = decide(&p, 0, 2, &[v(80.0), failed()], &History::default());
    assert_eq!(d.desired, 4);
}

#[test]
fn fallback_after_threshold_then_recovers() {
    let mut p = policy(0, 10);
    p.fallback = Some(FallbackPolicy {
        failure_threshold: 3,
        replicas: Some(5),
    });
    let mut h = History::default();
    let mut cur = 2;
    let mut events = vec![];
    for i in 0..4 {
        let d = decide(&p, i * 1000, cur, &[failed()], &h);
        h.commit(&p, &d, i * 1000, d.desired != d.current);
        events.push((d.desired, d.event, d.fallback));
        cur = d.desired;
    }
    assert_eq!(events[0], (2, None, false));
    assert_eq!(events[1], (2, None, false));
    assert_eq!(events[2], (5, Some(ScaleEventKind::FallbackApplied), true));
    assert_eq!(events[3], (5, None, true));
    let d = decide(&p, 5000, cur, &[v(20.0)], &h);
    assert!(!d.fallback);
    assert!(d.metrics_available);
}

#[test]
fn fallback_without_replicas_holds_current() {
    let mut p = policy(1, 10);
    p.fallback = Some(FallbackPolicy {
        failure_threshold: 1,
        replicas: None,
    });
    let d = decide(&p, 0, 3, &[failed()], &History::default());
    assert_eq!(
        (d.desired, d.fallback, d.event),
        (3, true, Some(ScaleEventKind::FallbackApplied))
    );
}

#[test]
fn tolerance_keeps_current() {
    let d = decide(&policy(1, 10), 0, 4, &[v(84.0)], &History::default());
    assert_eq!(d.desired, 4);
    assert!(d.triggers[0].within_tolerance);
    assert!(
        d.explanation.contains("within tolerance"),
        "{}",
        d.explanation
    );
}

#[test]
fn scale_to_zero_after_cooldown_only() {
    let mut p = policy(0, 10);
    p.cooldown_ms = 30_000;
    p.scale_down.stabilization_window_ms = 0;
    let mut h = History::default();
    let mut cur = 3;
    let mut seen = vec![];
    for i in 0..5 {
        let now = i * 10_000;
        let d = decide(&p, now, cur, &[v(0.0)], &h);
        h.commit(&p, &d, now, d.desired != d.current);
        seen.push((d.desired, d.event));
        cur = d.desired;
    }
    // Inactive from t=0: held at >= 1 until t=30s, then zero.
    assert_eq!(seen[0], (1, Some(ScaleEventKind::ScaledIn)));
    assert_eq!(seen[1], (1, None));
    assert_eq!(seen[2], (1, None));
    assert_eq!(seen[3], (0, Some(ScaleEventKind::ScaledToZero)));
    assert_eq!(seen[4], (0, None));
}

#[test]
fn activation_wakes_from_zero_and_threshold_gates_it() {
    let mut p = policy(0, 10);
    p.triggers[0].activation_threshold = 5.0;
    let d = decide(&p, 0, 0, &[v(3.0)], &History::default());
    assert_eq!(d.desired, 0, "3 <= activation 5: stays asleep");
    let d = decide(&p, 0, 0, &[v(6.0)], &History::default());
    assert_eq!((d.desired, d.event), (1, Some(ScaleEventKind::ScaledOut)));
    let d = decide(&p, 0, 0, &[v(200.0)], &History::default());
    assert_eq!(d.desired, 4, "from 0: Pods 4/15s allows 4");
}

#[test]
fn no_zero_while_a_trigger_fails() {
    let mut p = policy(0, 10);
    p.cooldown_ms = 0;
    p.triggers.push(trig("rate", 1.0));
    let d = decide(&p, 0, 2, &[v(0.0), failed()], &History::default());
    assert_eq!(d.desired, 2);
}

#[test]
fn out_of_range_current_goes_to_bound() {
    let d = decide(&policy(2, 10), 0, 50, &[v(1000.0)], &History::default());
    assert_eq!(d.desired, 10);
    assert!(d.limits.contains(&Limit::OutOfRange(10)));
    let d = decide(&policy(2, 10), 0, 1, &[v(0.0)], &History::default());
    assert_eq!(d.desired, 2);
}

#[test]
fn scale_down_rate_limited_by_pods_policy() {
    let mut p = policy(1, 20);
    p.scale_down = Rules {
        stabilization_window_ms: 0,
        select_policy: SelectPolicy::Max,
        policies: vec![RatePolicy {
            kind: PolicyType::Pods,
            value: 2,
            period_ms: 60_000,
        }],
    };
    let out = run(&p, 10, 30_000, &vec![vec![v(0.0)]; 5]);
    // -2 per 60s: at t=0 -> 8, t=30 (period has -2) -> 8, t=60 -> 6 ...
    assert_eq!(out, vec![8, 8, 6, 6, 4]);
}

#[test]
fn explanation_names_stabilization() {
    let p = policy(1, 10);
    let mut h = History::default();
    h.record_recommendation(0, 8);
    let d = decide(&p, 10_000, 8, &[v(20.0)], &h);
    assert_eq!(d.desired, 8);
    assert!(
        d.explanation
            .contains("scale-down stabilization window 300s holds 8"),
        "{}",
        d.explanation
    );
}

#[test]
fn non_finite_value_counts_as_failure() {
    let d = decide(&policy(1, 10), 0, 3, &[v(f64::NAN)], &History::default());
    assert!(!d.metrics_available);
    assert_eq!(d.desired, 3);
}

#[test]
fn history_survives_serialization_and_stays_small() {
    let p = policy(1, 10);
    let mut h = History::default();
    let mut cur = 1;
    for i in 0..1000 {
        let now = i * 1000;
        let val = if i % 100 < 50 { 150.0 } else { 10.0 };
        let d = decide(&p, now, cur, &[v(val)], &h);
        h.commit(&p, &d, now, d.desired != d.current);
        cur = d.desired;
    }
    assert!(h.recommendations.len() <= 10, "{}", h.recommendations.len());
    let json = serde_json::to_string(&h).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    (
        0i64..600,
        prop_oneof![
            Just(SelectPolicy::Max),
            Just(SelectPolicy::Min),
            Just(SelectPolicy::Disabled)
        ],
        prop::collection::vec(
            (
                prop_oneof![Just(PolicyType::Pods), Just(PolicyType::Percent)],
                1i32..200,
                1i64..120,
            ),
            1..3,
        ),
    )
        .prop_map(|(w, sel, ps)| Rules {
            stabilization_window_ms: w * 1000,
            select_policy: sel,
            policies: ps
                .into_iter()
                .map(|(kind, value, s)| RatePolicy {
                    kind,
                    value,
                    period_ms: s * 1000,
                })
                .collect(),
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        0i32..5,
        0i32..30,
        0i64..200,
        arb_rules(),
        arb_rules(),
        0.0f64..0.5,
        prop::option::of((1u32..4, prop::option::of(0i32..40))),
        1usize..3,
    )
        .prop_map(|(min, extra, cool, up, down, tol, fb, n)| Policy {
            min_replicas: min,
            max_replicas: min.max(1) + extra,
            cooldown_ms: cool * 1000,
            triggers: (0..n)
                .map(|i| TriggerPolicy {
                    name: format!("t{i}"),
                    target_per_replica: 1.0 + i as f64 * 7.0,
                    activation_threshold: 0.0,
                    drain: None,
                })
                .collect(),
            scale_up: up,
            scale_down: down,
            tolerance: tol,
            fallback: fb.map(|(t, r)| FallbackPolicy {
                failure_threshold: t,
                replicas: r,
            }),
            schedules: vec![],
            scale_in: None,
        })
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        6 => (0.0f64..500.0).prop_map(Reading::Value),
        1 => Just(Reading::Value(0.0)),
        1 => Just(Reading::Failed("down".into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Whatever the history, the result is always within [min, max].
    #[test]
    fn prop_result_always_within_bounds(
        p in arb_policy(),
        start in 0i32..60,
        polls in prop::collection::vec((prop::collection::vec(arb_reading(), 2), 1i64..40), 1..40),
    ) {
        let mut h = History::default();
        let mut cur = start;
        let mut now = 0;
        for (readings, dt) in polls {
            now += dt * 1000;
            let d = decide(&p, now, cur, &readings, &h);
            prop_assert!(d.desired >= p.min_replicas && d.desired <= p.max_replicas, "{} not in [{}, {}]: {}", d.desired, p.min_replicas, p.max_replicas, d.explanation);
            h.commit(&p, &d, now, d.desired != d.current);
            cur = d.desired;
        }
    }

    /// A poll with a failed trigger never scales down (from a count within range).
    #[test]
    fn prop_no_scale_down_on_failed_poll(
        p in arb_policy(),
        start in 0i32..60,
        polls in prop::collection::vec((prop::collection::vec(arb_reading(), 2), 1i64..40), 1..40),
    ) {
        let mut h = History::default();
        let mut cur = start;
        let mut now = 0;
        for (readings, dt) in polls {
            now += dt * 1000;
            let d = decide(&p, now, cur, &readings, &h);
            let failed = readings.iter().take(p.triggers.len()).any(|r| matches!(r, Reading::Failed(_)));
            if failed && cur >= p.min_replicas && cur <= p.max_replicas {
                prop_assert!(d.desired >= cur, "scaled down {} -> {} with a failed trigger: {}", cur, d.desired, d.explanation);
            }
            h.commit(&p, &d, now, d.desired != d.current);
            cur = d.desired;
        }
    }

    /// The decision never moves against the direction of need: if every
    /// trigger was read and the triggers want more than current, it does not
    /// scale down; if they want fewer (and none is failing), it does not scale up.
    #[test]
    fn prop_never_against_direction_of_need(
        p in arb_policy(),
        start in 0i32..60,
        polls in prop::collection::vec((prop::collection::vec(arb_reading(), 2), 1i64..40), 1..40),
    ) {
        let mut h = History::default();
        let mut cur = start;
        let mut now = 0;
        for (readings, dt) in polls {
            now += dt * 1000;
            let d = decide(&p, now, cur, &readings, &h);
            let in_range = cur >= p.min_replicas && cur <= p.max_replicas;
            let all_ok = d.metrics_available;
            if in_range && all_ok && cur > 0 {
                let want = d.triggers.iter().filter_map(|t| t.proposed).max().unwrap_or(0);
                if want > cur { prop_assert!(d.desired >= cur, "{}", d.explanation); }
                if want < cur { prop_assert!(d.desired <= cur, "{}", d.explanation); }
                if want == cur { prop_assert_eq!(d.desired, cur, "{}", d.explanation); }
            }
            if in_range && cur == 0 && !d.active && !d.fallback {
                prop_assert_eq!(d.desired, 0);
            }
            if in_range && cur == 0 && d.active {
                prop_assert!(d.desired >= 1 || p.scale_up.select_policy == SelectPolicy::Disabled);
            }
            h.commit(&p, &d, now, d.desired != d.current);
            cur = d.desired;
        }
    }
}

fn scale_in_policy(min: i32, max: i32, keep_busy: bool) -> Policy {
    let mut p = policy(min, max);
    p.scale_down = Rules {
        stabilization_window_ms: 0,
        ..Rules::default_scale_down()
    };
    p.scale_in = Some(ScaleInPolicy {
        keep_busy,
        deletion_cost: true,
    });
    p
}

#[test]
fn keep_busy_holds_a_drained_queue_at_the_busy_pods() {
    let p = scale_in_policy(1, 10, true);
    let first = decide(&p, 0, 6, &[v(0.0)], &History::default());
    assert!(first.wants_busy_signal(&p), "{}", first.explanation);
    let d = decide_with_busy(&p, 0, 6, &[v(0.0)], &History::default(), &Busy::Pods(2));
    assert_eq!(d.desired, 2);
    assert_eq!(
        d.binding_limit(),
        Some(&Limit::KeepBusy { held: 2, busy: 2 })
    );
    assert_eq!(d.event, Some(ScaleEventKind::ScaledIn));
    assert!(
        d.explanation.ends_with("; keepBusy held 2: 2 pods busy"),
        "{}",
        d.explanation
    );
    // The busy tasks finish: the next poll scales in further.
    let mut h = History::default();
    h.commit(&p, &d, 0, true);
    let d = decide_with_busy(&p, 15_000, 2, &[v(0.0)], &h, &Busy::Pods(0));
    assert_eq!(d.desired, 1, "{}", d.explanation);
}

#[test]
fn without_keep_busy_the_busy_pods_are_named_but_not_kept() {
    let p = scale_in_policy(1, 10, false);
    let d = decide_with_busy(&p, 0, 6, &[v(0.0)], &History::default(), &Busy::Pods(2));
    assert_eq!(d.desired, 1);
    assert!(
        d.explanation.ends_with("; 2 pods busy"),
        "{}",
        d.explanation
    );
}

#[test]
fn a_failed_busy_signal_holds_the_scale_in_but_not_a_scale_out() {
    let p = scale_in_policy(1, 10, true);
    let failed = Busy::Failed("RQ workers on redis://r:6379/0: connection refused".into());
    let d = decide_with_busy(&p, 0, 6, &[v(0.0)], &History::default(), &failed);
    assert_eq!(d.desired, 6);
    assert_eq!(d.binding_limit(), Some(&Limit::BusySignalFailed(6)));
    assert!(
        d.explanation.contains(
            "busy signal failed, holding 6 (no scale-in while blind to busy pods): RQ workers"
        ),
        "{}",
        d.explanation
    );
    let up = decide_with_busy(&p, 0, 2, &[v(100.0)], &History::default(), &failed);
    assert_eq!(up.desired, 5);
    assert!(!up.wants_busy_signal(&p));
}

#[test]
fn keep_busy_also_holds_the_cooldown_to_zero() {
    let p = scale_in_policy(0, 10, true);
    let h = History {
        inactive_since: Some(0),
        ..History::default()
    };
    let d = decide_with_busy(&p, 200_000, 3, &[v(0.0)], &h, &Busy::Pods(1));
    assert_eq!(d.desired, 1, "{}", d.explanation);
    assert_eq!(d.event, Some(ScaleEventKind::ScaledIn));
}

fn arb_busy() -> impl Strategy<Value = Busy> {
    prop_oneof![
        2 => Just(Busy::NotRead),
        4 => (0i32..80).prop_map(Busy::Pods),
        1 => Just(Busy::Failed("down".into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// With any busy reading: within [min, max], a failed busy read never
    /// scales in, keepBusy never goes below min(busy, current), and the busy
    /// signal never changes a decision that was not a scale-in.
    #[test]
    fn prop_busy_step_keeps_the_invariants(
        p in arb_policy(),
        keep in any::<bool>(),
        start in 0i32..60,
        polls in prop::collection::vec((prop::collection::vec(arb_reading(), 2), arb_busy(), 1i64..40), 1..30),
    ) {
        let mut p = p;
        p.scale_in = Some(ScaleInPolicy { keep_busy: keep, deletion_cost: true });
        let mut h = History::default();
        let mut cur = start;
        let mut now = 0;
        for (readings, busy, dt) in polls {
            now += dt * 1000;
            let plain = decide(&p, now, cur, &readings, &h);
            let d = decide_with_busy(&p, now, cur, &readings, &h, &busy);
            prop_assert!(d.desired >= p.min_replicas && d.desired <= p.max_replicas, "{}", d.explanation);
            if !plain.wants_busy_signal(&p) {
                prop_assert_eq!(d.desired, plain.desired);
            }
            let in_range = cur >= p.min_replicas && cur <= p.max_replicas;
            if let (Busy::Failed(_), true) = (&busy, in_range) {
                prop_assert!(d.desired >= cur, "{}", d.explanation);
            }
            if let (Busy::Pods(n), true, true) = (&busy, keep, in_range) {
                prop_assert!(d.desired >= (*n).min(cur), "{}", d.explanation);
            }
            h.commit(&p, &d, now, d.desired != d.current);
            cur = d.desired;
        }
    }
}

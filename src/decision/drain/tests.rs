//! Hand-computed drain estimates.

use super::*;

fn per_replica(rate: f64) -> DrainPolicy {
    DrainPolicy {
        seconds: 60.0,
        throughput: Throughput::PerReplica(rate),
        rate_window_ms: 60_000,
    }
}

fn measured() -> DrainPolicy {
    DrainPolicy {
        throughput: Throughput::Measured,
        ..per_replica(1.0)
    }
}

fn trigger(p: DrainPolicy) -> TriggerPolicy {
    TriggerPolicy {
        name: "payments".into(),
        target_per_replica: 150.0,
        activation_threshold: 0.0,
        drain: Some(p),
    }
}

/// Estimates one poll and records it, as decide + commit do.
fn poll(
    p: &DrainPolicy,
    track: &mut DrainTrack,
    now: i64,
    depth: f64,
    current: i32,
    measured: Option<f64>,
) -> DrainEstimate {
    let est = estimate(p, Some(track), now, depth, current, measured);
    track.record(p, &est);
    est
}

fn proposal(p: DrainPolicy, track: &DrainTrack, now: i64, reading: Reading, current: i32) -> i32 {
    let t = trigger(p);
    let tracks = BTreeMap::from([("payments".to_string(), track.clone())]);
    let value = match reading {
        Reading::Value(v) | Reading::WithThroughput { value: v, .. } => v,
        Reading::Failed(_) => unreachable!(),
    };
    propose_trigger(&t, value, Some(&reading), current, 0.1, &tracks, now).0
}

#[test]
fn first_poll_sizes_for_the_backlog_and_never_below_current() {
    let p = per_replica(2.5);
    let est = estimate(&p, None, 0, 150.0, 2, None);
    assert_eq!(est.arrival_rate, None);
    assert_eq!(est.drain_seconds, None);
    // 150/60 = 2.5 items/s -> 1 replica, held at the current 2.
    let t = trigger(p);
    let (n, within, _) = propose_trigger(&t, 150.0, None, 2, 0.1, &BTreeMap::new(), 0);
    assert_eq!((n, within), (2, false));
    let (n, _, _) = propose_trigger(&t, 600.0, None, 2, 0.1, &BTreeMap::new(), 0);
    assert_eq!(n, 4, "600/60 = 10 items/s at 2.5 each");
}

#[test]
fn growing_backlog_counts_completions_as_arrivals() {
    let p = per_replica(2.5);
    let mut track = DrainTrack::default();
    poll(&p, &mut track, 0, 100.0, 4, None);
    let est = estimate(&p, Some(&track), 10_000, 160.0, 4, None);
    // served 2.5 * 4 * 10 = 100; λ = (160 - 100 + 100) / 10 = 16/s.
    assert_eq!(est.sample.served, 100.0);
    assert_eq!(est.arrival_rate, Some(16.0));
    // capacity 10/s < 16/s: the backlog does not shrink.
    assert_eq!(est.drain_seconds, None);
    // (16 + 160/60) / 2.5 = 7.47 -> 8.
    assert_eq!(proposal(p, &track, 10_000, Reading::Value(160.0), 4), 8);
}

#[test]
fn shrinking_backlog_reports_its_drain_time() {
    let p = per_replica(2.5);
    let mut track = DrainTrack::default();
    poll(&p, &mut track, 0, 300.0, 8, None);
    let est = estimate(&p, Some(&track), 10_000, 200.0, 8, None);
    // served 200; λ = (200 - 300 + 200) / 10 = 10/s; capacity 20/s.
    assert_eq!(est.arrival_rate, Some(10.0));
    assert_eq!(est.drain_seconds, Some(20.0));
    // (10 + 200/60) / 2.5 = 5.33 -> 6.
    assert_eq!(proposal(p, &track, 10_000, Reading::Value(200.0), 8), 6);
}

#[test]
fn an_emptied_queue_does_not_invent_arrivals() {
    let p = per_replica(2.5);
    let mut track = DrainTrack::default();
    poll(&p, &mut track, 0, 30.0, 4, None);
    let est = estimate(&p, Some(&track), 10_000, 0.0, 4, None);
    // Capacity was 100 but only 30 were there: served 30, λ = 0.
    assert_eq!(est.sample.served, 30.0);
    assert_eq!(est.arrival_rate, Some(0.0));
    assert_eq!(est.drain_seconds, Some(0.0));
    assert_eq!(proposal(p, &track, 10_000, Reading::Value(0.0), 4), 0);
}

#[test]
fn measured_throughput_sets_the_per_replica_rate() {
    let p = measured();
    let mut track = DrainTrack::default();
    poll(&p, &mut track, 0, 200.0, 5, Some(10.0));
    assert_eq!(track.per_replica, Some(2.0));
    let est = estimate(&p, Some(&track), 10_000, 180.0, 5, Some(12.0));
    // served 120; λ = (180 - 200 + 120) / 10 = 10/s; per replica 12/5 = 2.4.
    assert_eq!(est.arrival_rate, Some(10.0));
    assert_eq!(est.per_replica, Some(2.4));
    assert_eq!(est.drain_seconds, Some(90.0));
    // (10 + 180/60) / (2.4 * 5) = 1.08: within tolerance 0.1, keeps 5;
    // with no tolerance 13 / 2.4 = 5.42 -> 6.
    let r = Reading::WithThroughput {
        value: 180.0,
        throughput: 12.0,
    };
    assert_eq!(proposal(p, &track, 10_000, r.clone(), 5), 5);
    let tracks = BTreeMap::from([("payments".to_string(), track.clone())]);
    let (n, _, _) = propose_trigger(&trigger(p), 180.0, Some(&r), 5, 0.0, &tracks, 10_000);
    assert_eq!(n, 6);
}

#[test]
fn idle_replicas_keep_the_rate_measured_while_busy() {
    let p = measured();
    let mut track = DrainTrack::default();
    poll(&p, &mut track, 0, 50.0, 10, Some(24.0));
    let est = poll(&p, &mut track, 10_000, 0.0, 10, Some(1.0));
    // 1/s over 10 idle replicas says nothing about what they can do.
    assert_eq!(est.per_replica, Some(2.4));
    assert_eq!(track.per_replica, Some(2.4));
}

#[test]
fn no_replicas_and_no_rate_asks_for_one_replica_while_there_is_work() {
    let p = measured();
    let t = trigger(p);
    let r = Reading::WithThroughput {
        value: 50.0,
        throughput: 0.0,
    };
    let (n, _, est) = propose_trigger(&t, 50.0, Some(&r), 0, 0.1, &BTreeMap::new(), 0);
    assert_eq!(n, 1);
    assert_eq!(est.and_then(|e| e.per_replica), None);
    let r = Reading::WithThroughput {
        value: 0.0,
        throughput: 0.0,
    };
    let (n, _, _) = propose_trigger(&t, 0.0, Some(&r), 0, 0.1, &BTreeMap::new(), 0);
    assert_eq!(n, 0);
}

#[test]
fn a_measured_trigger_without_its_throughput_reading_has_failed() {
    let t = trigger(measured());
    let judged = judged_reading(&t, Some(&Reading::Value(3.0)));
    assert!(matches!(judged, Some(Reading::Failed(e)) if e.contains("drain.throughputFrom")));
    let judged = judged_reading(
        &t,
        Some(&Reading::WithThroughput {
            value: 3.0,
            throughput: 1.0,
        }),
    );
    assert_eq!(judged, Some(Reading::Value(3.0)));
}

#[test]
fn the_window_starts_at_the_newest_sample_before_it() {
    let p = per_replica(1.0);
    let mut track = DrainTrack::default();
    for (at, depth) in [(0, 0.0), (30_000, 30.0), (60_000, 60.0), (90_000, 90.0)] {
        poll(&p, &mut track, at, depth, 0, None);
    }
    // Window 60 s at 100 s: anchor is the sample at 30 s (depth 30).
    let est = estimate(&p, Some(&track), 100_000, 100.0, 0, None);
    assert_eq!(est.arrival_rate, Some(1.0));
    assert_eq!(track.samples.first().map(|s| s.at), Some(30_000));
}

#[test]
fn samples_stay_bounded_at_fast_polling() {
    let p = DrainPolicy {
        rate_window_ms: 3_600_000,
        ..per_replica(1.0)
    };
    let mut track = DrainTrack::default();
    for i in 0..5_000 {
        poll(&p, &mut track, i * 1000, 10.0, 3, None);
    }
    assert!(
        track.samples.len() <= MAX_SAMPLES + 2,
        "{}",
        track.samples.len()
    );
    // Steady backlog with 3 busy replicas: arrivals equal capacity.
    let est = estimate(&p, Some(&track), 5_000_000, 10.0, 3, None);
    let rate = est.arrival_rate.unwrap_or_default();
    assert!((rate - 3.0).abs() < 1e-9, "{rate}");
    assert_eq!(track.samples.first().map(|s| s.served), Some(0.0));
}

#[test]
fn untrusted_samples_from_status_are_dropped() {
    let p = per_replica(1.0);
    let s = |at, depth, served| DrainSample { at, depth, served };
    let mut track = DrainTrack {
        samples: vec![
            s(0, f64::NAN, 0.0),
            s(1_000, 10.0, 5.0),
            s(2_000, -4.0, 6.0),
            s(3_000, 12.0, 1.0),
            s(500, 12.0, 9.0),
            s(4_000, 1e300, 9.0),
            s(99_000_000, 1.0, 9.0),
        ],
        per_replica: Some(f64::INFINITY),
    };
    let est = poll(&p, &mut track, 10_000, 10.0, 0, None);
    // Only (1 s, 10, 5) is valid: λ = (10 - 10 + 0) / 9 = 0.
    assert_eq!(est.arrival_rate, Some(0.0));
    assert_eq!(track.samples.len(), 2);
    assert_eq!(track.per_replica, None);
    let huge = DrainTrack {
        samples: (0..10_000).map(|i| s(i, 1.0, i as f64)).collect(),
        per_replica: None,
    };
    assert!(valid_samples(&huge.samples, 20_000).len() <= MAX_SAMPLES + 2);
}

mod properties {
    use proptest::prelude::*;

    use super::super::super::{decide, History, Policy, Rules};
    use super::*;

    fn arb_drain() -> impl Strategy<Value = DrainPolicy> {
        (1i32..600, prop::option::of(0.01f64..50.0), 5i64..600).prop_map(|(s, rate, w)| {
            DrainPolicy {
                seconds: f64::from(s),
                throughput: rate.map_or(Throughput::Measured, Throughput::PerReplica),
                rate_window_ms: w * 1000,
            }
        })
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (0i32..4, 0i32..60, arb_drain(), 0.0f64..0.5).prop_map(|(min, extra, d, tol)| Policy {
            min_replicas: min,
            max_replicas: min.max(1) + extra,
            cooldown_ms: 60_000,
            triggers: vec![trigger(d)],
            scale_up: Rules::default_scale_up(),
            scale_down: Rules::default_scale_down(),
            tolerance: tol,
            fallback: None,
            schedules: Vec::new(),
            scale_in: None,
        })
    }

    fn arb_reading() -> impl Strategy<Value = Reading> {
        let value =
            prop_oneof![4 => 0.0f64..5000.0, 1 => Just(0.0), 1 => -10.0f64..0.0, 1 => Just(1e300)];
        let rate =
            prop_oneof![3 => 0.0f64..100.0, 1 => Just(0.0), 1 => Just(-1.0), 1 => Just(f64::NAN)];
        prop_oneof![
            3 => value.clone().prop_map(Reading::Value),
            3 => (value, rate).prop_map(|(value, throughput)| Reading::WithThroughput { value, throughput }),
            1 => Just(Reading::Failed("down".into())),
        ]
    }

    fn arb_garbage_track() -> impl Strategy<Value = DrainTrack> {
        let sample = (
            -1_000_000i64..2_000_000,
            prop_oneof![Just(f64::NAN), -1e3f64..1e18],
            -1e3f64..1e18,
        )
            .prop_map(|(at, depth, served)| DrainSample { at, depth, served });
        (
            prop::collection::vec(sample, 0..80),
            prop::option::of(prop_oneof![Just(f64::NAN), -1.0f64..1e20]),
        )
            .prop_map(|(samples, per_replica)| DrainTrack {
                samples,
                per_replica,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the readings and whatever status held, desired stays in
        /// [min, max], a poll with a failed read never scales down, and the
        /// remembered samples stay bounded.
        #[test]
        fn drain_decisions_stay_in_range_and_never_scale_down_blind(
            p in arb_policy(),
            start in 0i32..80,
            garbage in arb_garbage_track(),
            polls in prop::collection::vec((arb_reading(), 1i64..30), 1..40),
        ) {
            let mut h = History::default();
            h.drain.insert("payments".into(), garbage);
            let (mut cur, mut now) = (start, 0);
            for (reading, dt) in polls {
                now += dt * 1000;
                let d = decide(&p, now, cur, std::slice::from_ref(&reading), &h);
                prop_assert!(d.desired >= p.min_replicas && d.desired <= p.max_replicas, "{}", d.explanation);
                let in_range = cur >= p.min_replicas && cur <= p.max_replicas;
                let failed = !d.metrics_available;
                if failed && in_range {
                    prop_assert!(d.desired >= cur, "scaled down {} -> {} blind: {}", cur, d.desired, d.explanation);
                }
                if matches!(reading, Reading::Failed(_)) {
                    prop_assert!(failed);
                }
                h.commit(&p, &d, now, d.desired != d.current);
                let kept = h.drain.get("payments").map_or(0, |t| t.samples.len());
                prop_assert!(kept <= MAX_SAMPLES + 2, "{kept} samples");
                cur = d.desired;
            }
        }
    }
}

#[test]
fn the_explanation_names_the_drain_estimate() {
    use super::super::{decide, History, Policy, Rules};
    let p = Policy {
        min_replicas: 1,
        max_replicas: 40,
        cooldown_ms: 60_000,
        triggers: vec![trigger(per_replica(2.5))],
        scale_up: Rules::default_scale_up(),
        scale_down: Rules::default_scale_down(),
        tolerance: 0.1,
        fallback: None,
        schedules: Vec::new(),
        scale_in: None,
    };
    let mut h = History::default();
    let d = decide(&p, 0, 4, &[Reading::Value(100.0)], &h);
    assert!(
        d.explanation.contains(
            "payments=100 wants 4 (drain within 60s, arrivals not yet known, 2.5/s per replica)"
        ),
        "{}",
        d.explanation
    );
    h.commit(&p, &d, 0, false);
    let d = decide(&p, 10_000, 4, &[Reading::Value(160.0)], &h);
    assert!(
        d.explanation
            .contains("payments=160 wants 8 (drain within 60s, arrivals 16/s, 2.5/s per replica)"),
        "{}",
        d.explanation
    );
    let est = d.triggers[0].drain.expect("estimate");
    assert_eq!(est.arrival_rate, Some(16.0));
    h.commit(&p, &d, 10_000, false);
    assert_eq!(h.drain["payments"].samples.len(), 2);
}

#[test]
fn a_surplus_of_rounding_error_is_no_drain_time() {
    assert_eq!(drain_time(100.0, Some(40.0), Some(40.0 + 1e-12)), None);
    assert_eq!(drain_time(100.0, Some(40.0), Some(50.0)), Some(10.0));
    assert_eq!(drain_time(0.0, Some(40.0), Some(10.0)), Some(0.0));
    assert_eq!(drain_time(100.0, None, Some(10.0)), None);
}

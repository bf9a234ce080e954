use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::*;

fn window(cron: &str, zone: &str, secs: i64) -> Window {
    Window {
        name: "w".into(),
        cron: Cron::parse(cron).unwrap(),
        zone_name: zone.into(),
        zone: time_zone(zone).unwrap(),
        duration_ms: secs * 1000,
        min_replicas: Some(5),
        max_replicas: None,
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn open(w: &Window, t: &str) -> bool {
    w.last_opening(at(t)).unwrap().is_some()
}

#[test]
fn spring_forward_0230_opens_when_the_clock_passes_it() {
    // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 never shows.
    // The window fires as much later as the clock jumped: 03:30 CEST = 01:30Z.
    let w = window("30 2 * * *", "Europe/Berlin", 3600);
    assert_eq!(
        w.next_opening(at("2026-03-28T22:00:00Z")).unwrap(),
        Some(at("2026-03-29T01:30:00Z"))
    );
    assert!(!open(&w, "2026-03-29T01:29:59Z"));
    assert!(open(&w, "2026-03-29T01:30:00Z"));
    assert!(open(&w, "2026-03-29T02:29:59Z"));
    assert!(!open(&w, "2026-03-29T02:30:00Z"));
    // The day before and after: 02:30 local as usual.
    assert_eq!(
        w.last_opening(at("2026-03-28T02:00:00Z")).unwrap(),
        Some(at("2026-03-28T01:30:00Z"))
    );
    assert_eq!(
        w.next_opening(at("2026-03-29T03:00:00Z")).unwrap(),
        Some(at("2026-03-30T00:30:00Z"))
    );
}

#[test]
fn window_across_autumn_fall_back_lasts_its_real_seconds() {
    // 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET. A window from
    // 22:00 for 8 h closes at 05:00 CET (04:00Z), not 06:00 wall-clock.
    let w = window("0 22 * * 6", "Europe/Berlin", 8 * 3600);
    assert_eq!(
        w.last_opening(at("2026-10-25T03:59:59Z")).unwrap(),
        Some(at("2026-10-24T20:00:00Z"))
    );
    assert!(!open(&w, "2026-10-25T04:00:00Z"));
    // A firing inside the repeated hour happens once, at its first occurrence.
    let w = window("30 2 * * *", "Europe/Berlin", 60);
    assert_eq!(
        w.next_opening(at("2026-10-24T23:00:00Z")).unwrap(),
        Some(at("2026-10-25T00:30:00Z"))
    );
    assert!(open(&w, "2026-10-25T00:30:30Z"));
    assert!(!open(&w, "2026-10-25T01:30:30Z"));
    assert_eq!(
        w.next_opening(at("2026-10-25T00:30:00Z")).unwrap(),
        Some(at("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn zones_come_from_the_bundled_database() {
    assert!(time_zone("Europe/Berlin").is_some());
    assert!(time_zone("America/Argentina/Buenos_Aires").is_some());
    assert!(time_zone("Europe/Atlantis").is_none());
    assert!(time_zone("../../etc/passwd").is_none());
    assert!(time_zone("").is_none());
}

#[test]
fn window_across_midnight() {
    let w = window("0 22 * * *", "UTC", 4 * 3600);
    assert!(open(&w, "2026-11-30T23:59:00Z"));
    assert!(open(&w, "2026-12-01T01:59:59Z"));
    assert!(!open(&w, "2026-12-01T02:00:00Z"));
    assert!(!open(&w, "2026-12-01T21:59:59Z"));
}

#[test]
fn window_longer_than_the_gap_between_openings_stays_open() {
    // Every hour, open 90 minutes: always open, closing 90 min after the last firing.
    let w = window("0 * * * *", "UTC", 5400);
    for m in 0..180 {
        let t = at("2026-11-30T00:00:00Z") + jiff::SignedDuration::from_mins(m);
        assert!(w.last_opening(t).unwrap().is_some(), "minute {m}");
    }
    let states = states_at(&[w], at("2026-11-30T10:15:00Z").as_millisecond()).unwrap();
    assert_eq!(states[0].closes_at, Some(at("2026-11-30T11:30:00Z")));
    assert_eq!(states[0].next_opening, Some(at("2026-11-30T11:00:00Z")));
}

fn policy_with(windows: Vec<Window>) -> Policy {
    Policy {
        min_replicas: 1,
        max_replicas: 40,
        cooldown_ms: 300_000,
        triggers: vec![],
        scale_up: super::super::Rules::default_scale_up(),
        scale_down: super::super::Rules::default_scale_down(),
        tolerance: 0.1,
        fallback: None,
        schedules: windows,
        scale_in: None,
    }
}

#[test]
fn overlapping_windows_take_the_largest_floor_and_ceiling() {
    let mut a = window("0 8 * * 1-5", "Europe/Berlin", 10 * 3600);
    a.name = "business-hours".into();
    a.min_replicas = Some(5);
    let mut b = window("0 9 * * 1", "Europe/Berlin", 3600);
    b.name = "monday-import".into();
    b.min_replicas = Some(12);
    b.max_replicas = Some(60);
    let p = policy_with(vec![a, b]);
    // Monday 2026-11-30, 09:30 CET = 08:30Z: both open.
    let t = at("2026-11-30T08:30:00Z").as_millisecond();
    let bnd = bounds_at(&p, t, 3);
    assert_eq!((bnd.min, bnd.max), (12, 60));
    assert_eq!(bnd.min_from.as_deref(), Some("monday-import"));
    assert_eq!(bnd.open, vec!["business-hours", "monday-import"]);
    // 10:30 CET: only business hours.
    let bnd = bounds_at(&p, t + 3_600_000, 3);
    assert_eq!((bnd.min, bnd.max), (5, 40));
    assert_eq!(bnd.min_from.as_deref(), Some("business-hours"));
    assert_eq!(bnd.max_from, None);
    // Sunday: spec bounds.
    let bnd = bounds_at(&p, at("2026-11-29T08:30:00Z").as_millisecond(), 3);
    assert_eq!((bnd.min, bnd.max, bnd.open.len()), (1, 40, 0));
}

#[test]
fn a_floor_above_an_open_ceiling_lifts_the_ceiling() {
    let mut a = window("0 8 * * *", "UTC", 3600);
    a.min_replicas = Some(20);
    let mut b = window("0 8 * * *", "UTC", 3600);
    b.name = "night-cap".into();
    b.min_replicas = None;
    b.max_replicas = Some(4);
    let p = policy_with(vec![a, b]);
    let bnd = bounds_at(&p, at("2026-11-30T08:10:00Z").as_millisecond(), 3);
    assert_eq!((bnd.min, bnd.max), (20, 20));
}

#[test]
fn an_instant_beyond_the_calendar_holds_current() {
    let p = policy_with(vec![window("0 8 * * *", "UTC", 3600)]);
    let bnd = bounds_at(&p, i64::MAX, 7);
    assert_eq!((bnd.min, bnd.max), (7, 7));
    assert!(bnd.error.is_some());
    let bnd = bounds_at(&p, i64::MAX, 99);
    assert_eq!((bnd.min, bnd.max), (40, 40));
}

#[test]
fn leap_day_cron_finds_its_next_opening_years_ahead() {
    let w = window("0 0 29 2 *", "UTC", 3600);
    assert_eq!(
        w.next_opening(at("2097-03-01T00:00:00Z")).unwrap(),
        Some(at("2104-02-29T00:00:00Z"))
    );
}

/// Brute force in UTC (no transitions): step minute by minute.
fn brute_last(cron: &Cron, now: Timestamp, secs: i64) -> Option<Timestamp> {
    let start = now.as_second() / 60 * 60;
    (0..=secs / 60 + 1)
        .map(|k| Timestamp::from_second(start - k * 60).unwrap())
        .filter(|t| *t <= now && t.as_second() > now.as_second() - secs)
        .find(|t| {
            let dt = TimeZone::UTC.to_datetime(*t);
            cron.matches_day(dt.date()) && cron.times().any(|hm| hm == (dt.hour(), dt.minute()))
        })
}

#[test]
fn agrees_with_brute_force_in_utc() {
    let crons = [
        "*/7 3-5 * * *",
        "0 0 1,15 * mon",
        "15 10 * * 2-4",
        "0 */6 * 1,7 *",
    ];
    for c in crons {
        let w = window(c, "UTC", 2 * 86400);
        for k in 0..40 {
            let now = at("2026-06-29T00:00:00Z") + jiff::SignedDuration::from_secs(k * 7919 * 7);
            assert_eq!(
                w.last_opening(now).unwrap(),
                brute_last(&w.cron, now, 2 * 86400),
                "{c} at {now}"
            );
        }
    }
    let _ = date(2026, 1, 1);
}

mod decisions {
    use super::*;
    use crate::decision::{decide, History, Limit, Reading, TriggerPolicy};

    fn pool(min: i32) -> Policy {
        let mut w = window("0 8 * * 1-5", "Europe/Berlin", 10 * 3600);
        w.name = "business-hours".into();
        let mut p = policy_with(vec![w]);
        p.min_replicas = min;
        p.triggers = vec![TriggerPolicy {
            name: "orders".into(),
            target_per_replica: 10.0,
            activation_threshold: 0.0,
            drain: None,
        }];
        p
    }

    /// Runs polls every 15 s from `from` for `n` polls with a constant value,
    /// applying each decision; returns the replica counts.
    fn run(
        p: &Policy,
        from: &str,
        n: i64,
        start: i32,
        value: Option<f64>,
        h: &mut History,
    ) -> Vec<i32> {
        let t0 = at(from).as_millisecond();
        let mut cur = start;
        (0..n)
            .map(|k| {
                let now = t0 + k * 15_000;
                let r = value.map_or(Reading::Failed("down".into()), Reading::Value);
                let d = decide(p, now, cur, &[r], h);
                h.commit(p, &d, now, d.desired != d.current);
                cur = d.desired;
                cur
            })
            .collect()
    }

    #[test]
    fn a_raised_floor_applies_at_once_and_names_the_schedule() {
        let p = pool(1);
        // Monday 08:00 Berlin = 07:00Z.
        let mut h = History::default();
        run(&p, "2026-11-30T06:50:00Z", 20, 1, Some(0.0), &mut h);
        let d = decide(
            &p,
            at("2026-11-30T07:00:00Z").as_millisecond(),
            1,
            &[Reading::Value(0.0)],
            &h,
        );
        assert_eq!(d.desired, 5);
        assert!(d.limits.contains(&Limit::OutOfRange(5)));
        assert!(
            d.explanation
                .contains("floor 5 from schedule business-hours"),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn a_closed_window_comes_down_through_scale_down_stabilization() {
        let p = pool(1);
        let mut h = History::default();
        // From 17:50 Berlin (16:50Z), polls every 15 s; the window closes at
        // 18:00 (poll 40), and the 300 s scale-down window then holds the
        // floor's recommendations for 20 more polls.
        let counts = run(&p, "2026-11-30T16:50:00Z", 80, 5, Some(0.0), &mut h);
        let first_drop = counts.iter().position(|c| *c < 5).unwrap();
        assert!((59..=61).contains(&first_drop), "{counts:?}");
        assert_eq!(*counts.last().unwrap(), 1);
    }

    #[test]
    fn triggers_above_the_floor_still_scale_and_failed_reads_never_scale_down() {
        let p = pool(0);
        let mut h = History::default();
        let counts = run(&p, "2026-11-30T08:00:00Z", 8, 5, Some(200.0), &mut h);
        assert_eq!(*counts.last().unwrap(), 20);
        // A failing trigger under the raised floor: hold 20.
        let counts = run(&p, "2026-11-30T08:02:00Z", 30, 20, None, &mut h);
        assert!(counts.iter().all(|c| *c == 20), "{counts:?}");
    }

    #[test]
    fn scale_to_zero_waits_for_the_window_to_close() {
        let p = pool(0);
        let mut h = History::default();
        // Idle all day: held at the floor 5 while open, never 0.
        let counts = run(&p, "2026-11-30T15:00:00Z", 240, 5, Some(0.0), &mut h);
        assert!(counts.iter().all(|c| *c == 5), "{counts:?}");
        // After 18:00 Berlin, idle longer than the cooldown: to zero.
        let counts = run(&p, "2026-11-30T17:00:00Z", 4, 5, Some(0.0), &mut h);
        assert_eq!(*counts.last().unwrap(), 0, "{counts:?}");
    }
}

mod properties {
    use super::*;
    use crate::decision::{decide, History, Reading, TriggerPolicy};
    use proptest::prelude::*;

    fn arb_window() -> impl Strategy<Value = Window> {
        (
            prop::sample::select(vec![
                "*/10 * * * *",
                "0 8 * * 1-5",
                "30 2 * * *",
                "0 * * * *",
            ]),
            prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York"]),
            60i64..20_000,
            prop::option::of(0i32..30),
            prop::option::of(1i32..60),
        )
            .prop_map(|(cron, zone, secs, min, max)| {
                let mut w = window(cron, zone, secs);
                // What validation admits: a window's min is <= its own max.
                w.min_replicas = match (min, max) {
                    (Some(lo), Some(hi)) => Some(lo.min(hi)),
                    (lo, _) => lo.map(|v| v.min(20)),
                };
                w.max_replicas = max;
                w
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the windows and readings: the result is within the bounds
        /// in force, and a poll with a failed read never scales down from a
        /// count inside them.
        #[test]
        fn within_effective_bounds_and_never_down_while_blind(
            windows in prop::collection::vec(arb_window(), 0..4),
            start in 0i32..60,
            t0 in 1_790_000_000i64..1_800_000_000,
            polls in prop::collection::vec((prop::option::of(0.0f64..800.0), 1i64..900), 1..40),
        ) {
            let mut p = policy_with(windows);
            p.min_replicas = 0;
            p.max_replicas = 20;
            p.triggers = vec![TriggerPolicy { name: "q".into(), target_per_replica: 10.0, activation_threshold: 0.0, drain: None }];
            let mut h = History::default();
            let (mut cur, mut now) = (start, t0 * 1000);
            for (value, dt) in polls {
                now += dt * 1000;
                let r = value.map_or(Reading::Failed("down".into()), Reading::Value);
                let d = decide(&p, now, cur, &[r], &h);
                let b = bounds_at(&p, now, cur);
                prop_assert!(d.desired >= b.min && d.desired <= b.max, "{} not in [{}, {}]: {}", d.desired, b.min, b.max, d.explanation);
                if value.is_none() && cur >= b.min && cur <= b.max {
                    prop_assert!(d.desired >= cur, "scaled down while blind: {}", d.explanation);
                }
                h.commit(&p, &d, now, d.desired != d.current);
                cur = d.desired;
            }
        }
    }
}

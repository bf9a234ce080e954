//! The drain target in the closed loop of `simulate --arrivals`: with
//! constant arrivals below the pool's capacity, a backlog drains within
//! `drain.seconds` (+ the polling interval it takes to see it + the
//! tolerance band), desired never leaves [min, max], and a failed read
//! never scales down.

use proptest::prelude::*;
use workerpool_operator::cli::closed_loop::{run_loop, LoopSettings, TICK_MS};
use workerpool_operator::cli::{manifest, trace};
use workerpool_operator::decision::Policy;

struct Case {
    policy: Policy,
    polling_s: i64,
    tolerance: f64,
}

/// A drain pool with scale-up unlimited by rate policies (so the only
/// delays are the poll and the tolerance) and the default scale-down.
fn pool(min: i32, max: i32, polling_s: i64, seconds: i64, rate: f64, window_s: i64) -> Case {
    pool_with(
        min,
        max,
        polling_s,
        seconds,
        &format!("throughputPerReplica: {rate}"),
        window_s,
    )
}

/// The same pool whose completions are measured (`throughputFrom`); the
/// simulator reports what its replicas served as the measurement.
fn measured_pool(min: i32, max: i32, polling_s: i64, seconds: i64, window_s: i64) -> Case {
    let from = "throughputFrom: {prometheus: {url: 'http://p:9090', query: 'sum(rate(done[1m]))'}}";
    pool_with(min, max, polling_s, seconds, from, window_s)
}

fn pool_with(
    min: i32,
    max: i32,
    polling_s: i64,
    seconds: i64,
    throughput: &str,
    window_s: i64,
) -> Case {
    let text = format!(
        "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {{name: p}}
spec:
  scaleTargetRef: {{name: w}}
  minReplicas: {min}
  maxReplicas: {max}
  pollingIntervalSeconds: {polling_s}
  triggers:
    - name: q
      redis: {{url: 'redis://r:6379/0', list: q}}
      drain: {{seconds: {seconds}, {throughput}, rateWindowSeconds: {window_s}}}
  behavior:
    scaleUp:
      policies: [{{type: Pods, value: {max}, periodSeconds: 1}}]
"
    );
    let (_, policy) = manifest::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Case {
        policy,
        polling_s,
        tolerance: 0.1,
    }
}

/// A trace: `burst` items/s for the first second, then `rate`/s until `end`.
fn arrivals(burst: f64, rate: f64, end_s: i64, gap: Option<(i64, i64)>) -> trace::Trace {
    let mut csv = format!("time,q\n0,{burst}\n1,{rate}\n");
    if let Some((from, to)) = gap {
        csv.push_str(&format!("{from},\n{to},{rate}\n"));
    }
    csv.push_str(&format!("{end_s},{rate}\n"));
    trace::parse(csv.as_bytes()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Constant arrivals below capacity: no item waits longer than the
    /// promise, stretched by the tolerance band, plus the polling interval
    /// the pool needs to see a backlog (and one more for the first
    /// estimate), plus the model's tick. With measured completions the loop
    /// settles: what is left at the end is only what the tolerance band
    /// lets wait. (With `throughputPerReplica` an empty queue hides the
    /// arrivals, so the pool shrinks until a backlog shows them again: it
    /// keeps the promise but need not settle.)
    #[test]
    fn backlogs_drain_within_the_promise(
        measured in any::<bool>(),
        seconds in 10i64..240,
        rate in 0.5f64..5.0,
        polling_s in prop::sample::select(vec![1i64, 2, 5, 10, 15]),
        window_s in 10i64..120,
        load in 0.0f64..0.9,
        burst_s in 0.0f64..3.0,
        min in 1i32..3,
        start in 0i32..5,
    ) {
        let max = 200;
        let c = if measured {
            measured_pool(min, max, polling_s, seconds, window_s)
        } else {
            pool(min, max, polling_s, seconds, rate, window_s)
        };
        // Arrivals below what the max can do, and a burst of up to
        // `burst_s` × the promise's worth of what 50 replicas clear.
        let lambda = load * f64::from(max / 2) * rate;
        let burst = burst_s * 50.0 * rate * seconds as f64;
        let end = 900;
        let settings = LoopSettings { throughput: vec![rate], polling_ms: polling_s * 1000, start: start.max(min) };
        let (steps, worst) = run_loop(&c.policy, &arrivals(burst, lambda, end, None), &settings).unwrap();
        let bound = seconds as f64 * (1.0 + c.tolerance) + 2.0 * c.polling_s as f64 + 2.0 * TICK_MS as f64 / 1000.0;
        prop_assert!(worst[0].wait <= bound, "waited {:.1}s > {:.1}s at {}ms (λ {lambda:.2}/s, burst {burst:.0})", worst[0].wait, bound, worst[0].wait_at_ms);
        for s in &steps {
            prop_assert!(s.desired >= min && s.desired <= max, "{}", s.explanation);
        }
        // Settled: what is left is only what the tolerance band lets wait
        // (needed within 10% of capacity keeps the count), well inside the promise.
        let last = steps.last().unwrap();
        if !measured {
            return Ok(());
        }
        let settled = seconds as f64 * c.tolerance + 2.0 * c.polling_s as f64 + TICK_MS as f64 / 1000.0;
        prop_assert!(last.wait[0] <= settled, "oldest item waits {:.1}s at the end (depth {:.0}) > {settled:.1}s", last.wait[0], last.depth[0]);
    }

    /// Reads that fail (an empty trace cell) never scale the pool down.
    #[test]
    fn failed_reads_never_scale_down(
        seconds in 10i64..240,
        rate in 0.5f64..5.0,
        polling_s in prop::sample::select(vec![1i64, 5, 15]),
        load in 0.0f64..0.9,
        gap_from in 30i64..400,
        gap_len in 15i64..300,
    ) {
        let c = pool(1, 60, polling_s, seconds, rate, 60);
        let lambda = load * 30.0 * rate;
        let gap = (gap_from, gap_from + gap_len);
        let settings = LoopSettings { throughput: vec![rate], polling_ms: polling_s * 1000, start: 1 };
        let (steps, _) = run_loop(&c.policy, &arrivals(0.0, lambda, 900, Some(gap)), &settings).unwrap();
        for s in &steps {
            let failed = s.explanation.contains("failed");
            if failed {
                prop_assert!(s.desired >= s.current, "{} -> {} while failing: {}", s.current, s.desired, s.explanation);
            }
            prop_assert!((1..=60).contains(&s.desired));
        }
        prop_assert!(steps.iter().any(|s| s.explanation.contains("failed")), "the gap made no read fail");
    }
}

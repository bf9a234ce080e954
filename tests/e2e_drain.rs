//! End to end: a drain-time trigger on a real Redis list, the real operator
//! against the Kubernetes API emulator, and the test as the workload —
//! a backlog of 600, producers push 40 items/s, and "workers" pop 5 items/s per replica the
//! Deployment has. Status shows the arrival rate and the drain time, the
//! estimate's samples are kept in status.history, /metrics exports both
//! gauges, and replicas stay within [min, max]. Every wait polls with a
//! deadline; rates are computed from elapsed time, so load does not skew them.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{http_get, Cluster};
use support::redis::{connect, shared_url, unique};

const ARRIVALS_PER_S: f64 = 40.0;
const PER_REPLICA_PER_S: f64 = 5.0;

fn drain_pool(list: &str) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": "payments"},
        "spec": {
            "scaleTargetRef": {"name": "payments-worker"},
            "minReplicas": 1,
            "maxReplicas": 20,
            "pollingIntervalSeconds": 1,
            "triggers": [{"name": "payments", "redis": {"url": shared_url(), "list": list},
                          "drain": {"seconds": 30, "throughputPerReplica": PER_REPLICA_PER_S, "rateWindowSeconds": 10}}],
            "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}]}}
        }
    })
}

/// What the test has seen so far.
#[derive(Default, Debug)]
struct Seen {
    arrival_rate: Option<f64>,
    drain_seconds: Option<i64>,
    samples: usize,
    explained: bool,
    metrics: bool,
}

impl Seen {
    fn done(&self) -> bool {
        self.arrival_rate.is_some()
            && self.drain_seconds.is_some()
            && self.samples > 0
            && self.explained
            && self.metrics
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_trigger_reports_arrivals_and_drain_time_end_to_end() {
    let c = Cluster::start("shop").await;
    c.deployment("payments-worker", 1).await;
    let key = unique("payments");
    let mut r = connect(&shared_url());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    // A backlog to start with, so there is something to drain.
    let backlog: Vec<String> = (0..600).map(|i| format!("b{i}")).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&backlog)
        .query(&mut r)
        .unwrap();
    let recorder = c.record_replicas("payments-worker");
    c.apply_pool(drain_pool(&key)).await;
    let op = c.operator(None).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen, mut last) = (Seen::default(), Instant::now());
    let (mut owed_in, mut owed_out) = (0.0f64, 0.0f64);
    while !seen.done() {
        assert!(
            Instant::now() < deadline,
            "not all seen within 120 s: {seen:?}\n{}",
            c.pool("payments")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        // The workload: arrivals, then the replicas' completions.
        owed_in += ARRIVALS_PER_S * dt;
        let push = owed_in.floor() as usize;
        owed_in -= push as f64;
        if push > 0 {
            let items: Vec<String> = (0..push).map(|i| format!("p{i}")).collect();
            let _: () = redis::cmd("RPUSH")
                .arg(&key)
                .arg(&items)
                .query(&mut r)
                .unwrap();
        }
        let replicas = c.replicas("payments-worker").unwrap_or(0) as f64;
        owed_out += PER_REPLICA_PER_S * replicas * dt;
        let pop = owed_out.floor() as usize;
        owed_out -= pop as f64;
        if pop > 0 {
            let _: Option<Vec<String>> =
                redis::cmd("LPOP").arg(&key).arg(pop).query(&mut r).unwrap();
        }

        let pool = c.pool("payments");
        let t = &pool["status"]["triggers"][0];
        if let Some(rate) = t["arrivalRate"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
        {
            seen.arrival_rate = Some(rate);
        }
        // A backlog that shrinks: positive seconds (0 is an empty queue).
        if let Some(s) = t["estimatedDrainSeconds"].as_i64().filter(|s| *s > 0) {
            seen.drain_seconds = Some(s);
        }
        let samples = &pool["status"]["history"]["drain"]["payments"]["samples"];
        seen.samples = samples.as_array().map_or(0, Vec::len);
        seen.explained |= pool["status"]["lastDecision"]
            .as_str()
            .is_some_and(|d| d.contains("payments=") && d.contains("drain within 30s, arrivals"));
        if !seen.metrics {
            if let Some((_, body)) = http_get(op.http_addr, "/metrics").await {
                seen.metrics = body.contains("workerpool_trigger_arrival_rate{namespace=\"shop\",workerpool=\"payments\",trigger=\"payments\"}");
            }
        }
    }
    // 40/s arrive; under CPU load polls are late, but the estimate is made
    // from measured times, so it stays near the truth.
    eprintln!("seen: {seen:?}");
    let rate = seen.arrival_rate.unwrap_or_default();
    assert!(
        (10.0..=160.0).contains(&rate),
        "arrival rate {rate} is far from 40/s"
    );
    let drain = seen.drain_seconds.unwrap_or_default();
    assert!(
        drain <= 60,
        "sized to drain within 30 s, estimated {drain} s"
    );
    let samples = seen.samples;
    assert!(
        samples <= 34,
        "status keeps at most 34 samples, has {samples}"
    );
    recorder.assert_within(&c, 1, 20).await;
}

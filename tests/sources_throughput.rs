//! A drain trigger's `throughputFrom.prometheus` against a real `prometheus`
//! server scraping an exporter served by the test: the throughput is read
//! beside the backlog on the same poll and reaches the decision; a failed
//! throughput read (server down, empty result) fails the trigger's read,
//! names `drain.throughputFrom`, and never scales down.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::prometheus::{Exporter, PrometheusProcess};
use support::redis::free_port;
use workerpool_operator::api::Trigger;
use workerpool_operator::cli::manifest;
use workerpool_operator::decision::{decide, History, Reading};
use workerpool_operator::sources::{Measurement, MetricSource, Sources};

const METRICS: &str = "\
# TYPE test_backlog gauge
test_backlog 42
# TYPE test_done_rate gauge
test_done_rate 7.5
";

fn drain_source(
    sources: &Sources,
    backlog_url: &str,
    rate_url: &str,
    query: &str,
) -> Arc<dyn MetricSource> {
    let t: Trigger = serde_json::from_value(json!({
        "name": "payments",
        "prometheus": {"url": backlog_url, "query": "test_backlog"},
        "drain": {"seconds": 60, "throughputFrom": {"prometheus": {"url": rate_url, "query": query}}},
    }))
    .expect("trigger");
    sources
        .build(&t, &BTreeMap::new(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("build: {e}"))
}

/// Measures until both series are scraped (generous deadline under load).
async fn measure_until_scraped(src: &dyn MetricSource, prom: &PrometheusProcess) -> Measurement {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = src.measure().await;
        if m.value.is_ok() && m.throughput.is_some() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape within 60 s: {m:?}; log:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A drain pool at 5 replicas whose one trigger read `reading`.
fn decide_at_five(reading: Reading) -> workerpool_operator::decision::Decision {
    let text = "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {name: p}
spec:
  scaleTargetRef: {name: w}
  minReplicas: 1
  maxReplicas: 20
  triggers:
    - name: payments
      prometheus: {url: 'http://p:9090', query: test_backlog}
      drain: {seconds: 60, throughputFrom: {prometheus: {url: 'http://p:9090', query: test_done_rate}}}
";
    let (_, policy) = manifest::parse(text).unwrap();
    // A history with an old recommendation of 1, so nothing but the
    // failed read stands between the pool and a scale-down.
    let mut h = History::default();
    h.record_recommendation(0, 1);
    decide(&policy, 600_000, 5, &[reading], &h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_is_read_beside_the_backlog_and_its_failure_fails_the_trigger() {
    let exporter = Exporter::serve(METRICS).await;
    let prom = PrometheusProcess::start(&[exporter.addr]);
    let url = prom.url();
    let sources = Sources::new();

    let ok = drain_source(&sources, &url, &url, "test_done_rate");
    assert!(
        ok.describe().contains("test_done_rate"),
        "{}",
        ok.describe()
    );
    let m = measure_until_scraped(ok.as_ref(), &prom).await;
    assert_eq!(m.value, Ok(42.0));
    assert_eq!(m.throughput, Some(7.5));
    let reading = Reading::measured(&m.value, m.throughput);
    assert_eq!(
        reading,
        Reading::WithThroughput {
            value: 42.0,
            throughput: 7.5
        }
    );
    let d = decide_at_five(reading);
    assert!(d.metrics_available, "{}", d.explanation);
    let est = d.triggers[0].drain.expect("a drain estimate");
    assert_eq!(est.measured, Some(7.5));
    // 7.5/s over 5 replicas while 42 wait: 1.5/s per replica.
    assert_eq!(est.per_replica, Some(1.5));

    // The throughput's server is down: the trigger's read fails.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let down = drain_source(&sources, &url, &dead, "test_done_rate");
    let m = down.measure().await;
    let e = m
        .value
        .clone()
        .expect_err("a down throughput server must fail the read");
    assert!(e.to_string().contains("drain.throughputFrom"), "{e}");
    assert_eq!(m.throughput, None);
    assert!(down.read().await.is_err(), "read() agrees with measure()");
    let d = decide_at_five(Reading::measured(&m.value, m.throughput));
    assert!(!d.metrics_available);
    assert!(d.desired >= 5, "scaled down while blind: {}", d.explanation);

    // An empty throughput result is an error too (onEmpty defaults to Error).
    let empty = drain_source(&sources, &url, &url, "test_missing_series");
    let m = empty.measure().await;
    let e = m
        .value
        .expect_err("an empty throughput result must fail the read");
    assert!(e.to_string().contains("drain.throughputFrom"), "{e}");
}

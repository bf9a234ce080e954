//! The Prometheus source (src/sources/prometheus.rs) against a real
//! `prometheus` server that scrapes an exporter served by the test, every
//! second. Each result shape maps as DESIGN.md 3.4 says: a scalar or a
//! one-sample vector is the value; an empty vector is an error (or 0 with
//! `onEmpty: Zero`); several series, NaN/Inf, a range vector and a failed
//! query are errors, the last carrying Prometheus's own error text.
//! Every wait polls with a deadline.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::prometheus::{http_get, Exporter, PrometheusProcess};
use support::redis::free_port;
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, SourceError, Sources};

const METRICS: &str = "\
# TYPE test_queue_depth gauge
test_queue_depth 42
# TYPE test_jobs gauge
test_jobs{queue=\"a\"} 1
test_jobs{queue=\"b\"} 2
test_jobs{queue=\"c\"} 3
# TYPE test_nan gauge
test_nan NaN
# TYPE test_inf gauge
test_inf +Inf
";

fn source(sources: &Sources, url: &str, query: &str, on_empty: &str) -> Arc<dyn MetricSource> {
    let t: Trigger = serde_json::from_value(json!({
        "prometheus": {"url": url, "query": query, "onEmpty": on_empty},
        "targetPerReplica": 1.0,
    }))
    .expect("trigger");
    sources
        .build(&t, &BTreeMap::new(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("build {query}: {e}"))
}

/// Prometheus's own answer to a query, read without the source.
fn raw_query(port: u16, query: &str) -> Value {
    let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let (_, body) = http_get(port, &format!("/api/v1/query?query={q}"))
        .unwrap_or_else(|| panic!("Prometheus on port {port} did not answer {query}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: not JSON ({e}): {body}"))
}

fn expect_err(r: Result<f64, SourceError>, what: &str) -> SourceError {
    match r {
        Ok(v) => panic!("{what}: expected an error, read {v}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_result_shape_maps_to_a_value_or_a_clear_error() {
    let exporter = Exporter::serve(METRICS).await;
    let prom = PrometheusProcess::start(&[exporter.addr]);
    let port = prom.port;
    let url = prom.url();

    // Wait for the first scrape (all series of a scrape land together).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = raw_query(port, "test_queue_depth");
        if r["data"]["result"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the exporter within 30 s: {r}; targets: {:?}; log:\n{}",
            http_get(port, "/api/v1/targets"),
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let s = Sources::new();
    let read = |query: &str, on_empty: &str| {
        let src = source(&s, &url, query, on_empty);
        async move { src.read().await }
    };

    // A scalar.
    assert_eq!(
        raw_query(port, "scalar(test_queue_depth)")["data"]["resultType"],
        "scalar"
    );
    assert_eq!(read("scalar(test_queue_depth)", "Error").await, Ok(42.0));
    assert_eq!(read("7", "Error").await, Ok(7.0));

    // A vector of one sample (with its labels), and an aggregate.
    assert_eq!(read("test_queue_depth", "Error").await, Ok(42.0));
    assert_eq!(read("sum(test_jobs)", "Error").await, Ok(6.0));
    assert_eq!(read("max(test_jobs)", "Zero").await, Ok(3.0));

    // An empty vector: an error by default, 0 when the user says so.
    let q = "test_no_such_metric";
    assert_eq!(raw_query(port, q)["data"]["result"], json!([]));
    let e = expect_err(read(q, "Error").await, "empty vector");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    assert!(
        e.to_string().contains("no data") && e.to_string().contains("onEmpty: Zero"),
        "{e}"
    );
    assert_eq!(read(q, "Zero").await, Ok(0.0));

    // Many series: an error telling the user to aggregate (the series'
    // labels are the server's bytes, never quoted).
    let e = expect_err(read("test_jobs", "Zero").await, "three series");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    let text = e.to_string();
    assert!(text.contains("3 series") && text.contains("sum("), "{text}");
    assert!(!text.contains(r#""a""#), "{text}");

    // NaN and +Inf, as Prometheus itself returns them.
    assert_eq!(
        raw_query(port, "test_nan")["data"]["result"][0]["value"][1],
        "NaN"
    );
    let e = expect_err(read("test_nan", "Zero").await, "NaN");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    assert!(e.to_string().contains("NaN"), "{e}");
    let e = expect_err(read("scalar(test_inf)", "Zero").await, "+Inf");
    assert!(e.to_string().contains("+Inf"), "{e}");

    // A range vector.
    let e = expect_err(read("test_jobs[1m]", "Zero").await, "matrix");
    assert!(e.to_string().contains("range vector"), "{e}");

    // A syntax error: reported by Prometheus's errorType, never by its text
    // (no byte of an answer is echoed: the URL could be anything).
    let q = "sum(test_jobs";
    let raw = raw_query(port, q);
    assert_eq!(raw["status"], "error", "{raw}");
    let prom_text = raw["error"].as_str().expect("Prometheus error text");
    assert!(prom_text.contains("parse error"), "{raw}");
    let e = expect_err(read(q, "Zero").await, "syntax error");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    let text = e.to_string();
    assert!(!text.contains(prom_text), "{text} echoes {prom_text:?}");
    assert!(text.contains("not valid PromQL"), "{text}");
    assert!(
        text.contains("bad_data") && text.contains("HTTP 400"),
        "{text}"
    );
    assert!(
        text.starts_with("query sum(test_jobs on http://127.0.0.1:"),
        "{text}"
    );

    // The value follows the exporter, scrape by scrape.
    let depth = source(&s, &url, "test_queue_depth", "Error");
    exporter.set(&METRICS.replace("test_queue_depth 42", "test_queue_depth 43.5"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = depth.read().await;
        if v == Ok(43.5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {v:?} 15 s after the exporter changed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Prometheus gone: a connection error, promptly.
    drop(prom);
    let t0 = Instant::now();
    let e = expect_err(depth.read().await, "Prometheus stopped");
    assert_eq!(e.metric_label(), "connection", "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_connection_error() {
    let s = Sources::new();
    let url = format!("http://127.0.0.1:{}", free_port());
    let e = expect_err(
        source(&s, &url, "up", "Error").read().await,
        "nobody listening",
    );
    assert_eq!(e.metric_label(), "connection", "{e}");
    assert!(
        e.to_string().starts_with(&format!("query up on {url}: ")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout_within_the_read_timeout() {
    // Accepts connections and reads requests, but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let t: Trigger = serde_json::from_value(json!({
        "prometheus": {"url": format!("http://{addr}"), "query": "up"},
        "targetPerReplica": 1.0,
    }))
    .expect("trigger");
    let timeout = Duration::from_millis(300);
    let src = Sources::new()
        .build(&t, &BTreeMap::new(), timeout)
        .expect("build");
    let t0 = Instant::now();
    let e = expect_err(src.read().await, "silent server");
    let took = t0.elapsed();
    assert_eq!(
        e,
        SourceError::Timeout {
            target: src.describe(),
            after: timeout
        }
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(300),
        "took {took:?}"
    );
    silent.abort();
}

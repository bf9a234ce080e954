//! Reliability when a metric source fails: Redis killed and restarted,
//! Redis slower than the read timeout, Prometheus down, and Prometheus
//! answers a real server cannot be made to give (500, garbage, NaN, +Inf,
//! a 10 MB body, 10,000 series, an answer later than the timeout) from a
//! fake Prometheus HTTP API served by the test.
//!
//! Every pool has two triggers: the one under test (reading 50 → 5
//! replicas) and a healthy one on the shared Redis reading 0 (→ 1). While
//! the first fails, the second alone would scale the target in to 1: the
//! operator must hold (never scale down on a poll with a failed trigger),
//! apply the fallback (7) after `failureThreshold` (2) failed polls, say so
//! in the conditions, send one Event per failure episode, and come back to 5
//! when the source does. Every test checks that the target never left
//! [minReplicas, maxReplicas].

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use support::cluster::{eventually, Cluster, ReplicaRecorder};
use support::redis::{connect, fill_list, free_port, shared_url, RedisProcess};

const T: Duration = Duration::from_secs(30);
const MIN: i64 = 1;
const MAX: i64 = 10;
/// Replicas the fallback asks for.
const FALLBACK: i64 = 7;

/// A pool whose first trigger is `under_test` and second reads an empty
/// list on the shared Redis.
fn pool(name: &str, under_test: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": "w"}, "minReplicas": MIN, "maxReplicas": MAX,
            "pollingIntervalSeconds": 1,
            "triggers": [
                under_test,
                {"name": "idle", "redis": {"url": shared_url(), "list": format!("reliability-metrics-idle-{}", std::process::id())},
                 "targetPerReplica": 10}
            ],
            "fallback": {"failureThreshold": 2, "replicas": FALLBACK},
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 10, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
            }
        }
    })
}

fn prom_trigger(url: &str, query: &str) -> Value {
    json!({"name": "src", "prometheus": {"url": url, "query": query}, "targetPerReplica": 10})
}

fn redis_trigger(url: &str, list: &str) -> Value {
    json!({"name": "src", "redis": {"url": url, "list": list}, "targetPerReplica": 10})
}

/// Counts of the Events a failure episode produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EpisodeEvents {
    failed: i64,
    fallback: i64,
    recovered: i64,
}

fn episode_events(c: &Cluster, pool: &str) -> EpisodeEvents {
    EpisodeEvents {
        failed: c.event_count(pool, "TriggerFailed"),
        fallback: c.event_count(pool, "FallbackApplied"),
        recovered: c.event_count(pool, "TriggerRecovered"),
    }
}

/// Starts a pool that reads 50 from its source and waits until it runs 5.
async fn steady(c: &Cluster, name: &str, under_test: Value) -> ReplicaRecorder {
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    c.apply_pool(pool(name, under_test)).await;
    eventually("steady at 5 (50 / 10)", T, || async {
        (c.replicas("w") == Some(5)
            && c.condition(name, "MetricsAvailable").map(|c| c.0) == Some("True".into()))
        .then_some(())
    })
    .await;
    rec
}

/// One failure episode, from the moment the source fails (`break_it` has
/// just run) until it is healthy again (`heal_it`). `polls` says how many
/// reads the source has answered (or failed) so far, to wait for more than
/// the threshold. Returns the MetricsAvailable message seen during it.
async fn episode<P, H, F>(
    c: &Cluster,
    name: &str,
    rec: &ReplicaRecorder,
    polls: P,
    heal_it: H,
) -> String
where
    P: Fn() -> usize,
    H: FnOnce() -> F,
    F: std::future::Future<Output = ()>,
{
    let before = episode_events(c, name);
    let from = rec.timeline().len().saturating_sub(1);
    let (_, reason, _) = eventually("MetricsAvailable=False", T, || async {
        c.condition(name, "MetricsAvailable")
            .filter(|(s, _, _)| s == "False")
    })
    .await;
    assert!(
        reason == "TriggerFailed" || reason == "FallbackApplied",
        "{reason}"
    );
    eventually("the fallback after 2 failed polls", T, || async {
        (c.replicas("w") == Some(FALLBACK)).then_some(())
    })
    .await;
    // The status write follows the /scale PATCH.
    let (_, _, message) = eventually("MetricsAvailable reason FallbackApplied", T, || async {
        c.condition(name, "MetricsAvailable")
            .filter(|(s, r, _)| s == "False" && r == "FallbackApplied")
    })
    .await;
    assert!(message.starts_with("src: "), "{message}");
    assert_eq!(c.condition(name, "Ready").unwrap().0, "True");
    // More failed polls in the same episode: still one Event of each kind.
    let seen = polls();
    eventually("two more failed polls", T, || async {
        (polls() >= seen + 2).then_some(())
    })
    .await;
    eventually(
        "one TriggerFailed and one FallbackApplied Event",
        T,
        || async {
            let now = episode_events(c, name);
            (now.failed == before.failed + 1 && now.fallback == before.fallback + 1).then_some(())
        },
    )
    .await;
    // Never below 5 (what it had before the source failed) while failing,
    // although the healthy trigger alone asks for 1.
    let during: Vec<i64> = rec.values()[from..].to_vec();
    assert!(
        during.iter().all(|v| *v >= 5),
        "scaled down while a trigger failed: {during:?}"
    );

    heal_it().await;
    eventually("MetricsAvailable=True and back to 5", T, || async {
        (c.replicas("w") == Some(5)
            && c.condition(name, "MetricsAvailable").map(|c| c.0) == Some("True".into()))
        .then_some(())
    })
    .await;
    eventually("one TriggerRecovered Event", T, || async {
        (episode_events(c, name).recovered == before.recovered + 1).then_some(())
    })
    .await;
    let after = episode_events(c, name);
    assert_eq!(
        after,
        EpisodeEvents {
            failed: before.failed + 1,
            fallback: before.fallback + 1,
            recovered: before.recovered + 1
        },
        "exactly one Event of each kind per failure episode"
    );
    message
}

// ---------------------------------------------------------------- Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_holds_then_falls_back_then_recovers() {
    let mut server = RedisProcess::start();
    let url = server.url();
    fill_list(&url, "jobs", 50);
    let c = Cluster::start("shop").await;
    let op = c.operator(None).await;
    let rec = steady(&c, "p", redis_trigger(&url, "jobs")).await;

    server.stop();
    let started = Instant::now();
    let (srv, u) = (&mut server, url.clone());
    let message = episode(
        &c,
        "p",
        &rec,
        || (started.elapsed().as_millis() / 1000) as usize,
        move || async move {
            // Back empty (no persistence), then refilled.
            srv.restart();
            fill_list(&u, "jobs", 50);
        },
    )
    .await;
    assert!(message.contains("LLEN jobs"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port)),
        "{message}"
    );
    rec.assert_within(&c, MIN, MAX).await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slower_than_the_read_timeout_counts_as_a_failed_read() {
    let server = RedisProcess::start();
    let url = server.url();
    fill_list(&url, "jobs", 50);
    let c = Cluster::start("shop").await;
    let op = c.operator(None).await;
    let rec = steady(&c, "p", redis_trigger(&url, "jobs")).await;

    // Redis stops answering every client for 6 s (the read timeout is 1 s
    // at a 1 s polling interval), then answers again by itself.
    let mut admin = connect(&url);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(6000)
        .arg("ALL")
        .query(&mut admin)
        .unwrap();
    let started = Instant::now();
    let message = episode(
        &c,
        "p",
        &rec,
        || (started.elapsed().as_millis() / 1000) as usize,
        || async {},
    )
    .await;
    assert!(message.contains("no answer within 1s"), "{message}");
    rec.assert_within(&c, MIN, MAX).await;
    drop(server);
    op.shutdown(Duration::from_secs(5)).await;
}

// ------------------------------------------------------ real Prometheus

struct PrometheusProcess {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrometheusProcess {
    fn start() -> Self {
        Self::start_with("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    }

    /// A Prometheus that scrapes `target`'s /metrics every second as job
    /// `operator`.
    fn scraping(target: SocketAddr) -> Self {
        Self::start_with(&format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: operator\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ))
    }

    fn start_with(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let mut p = PrometheusProcess {
            port: free_port(),
            dir,
            child: None,
        };
        p.restart();
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let d = self.dir.path();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus not found: scripts/test.sh installs it (apt-get install prometheus)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n").ok()?;
                    let mut out = String::new();
                    s.read_to_string(&mut out).ok()?;
                    out.starts_with("HTTP/1.0 200").then_some(())
                });
            if ready.is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus on port {} not ready within 30 s", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_holds_then_falls_back_then_recovers() {
    let mut prom = PrometheusProcess::start();
    let c = Cluster::start("shop").await;
    let op = c.operator(None).await;
    let rec = steady(&c, "p", prom_trigger(&prom.url(), "vector(50)")).await;

    prom.stop();
    let started = Instant::now();
    let p = &mut prom;
    let message = episode(
        &c,
        "p",
        &rec,
        || (started.elapsed().as_millis() / 1000) as usize,
        move || async move { p.restart() },
    )
    .await;
    assert!(message.contains("query vector(50)"), "{message}");
    rec.assert_within(&c, MIN, MAX).await;
    op.shutdown(Duration::from_secs(5)).await;
}

/// The value of the one series `query` gives on the real Prometheus at
/// `url` (None: no answer, or not exactly one series).
async fn instant_value(url: &str, query: &str) -> Option<f64> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    match answer["data"]["result"].as_array()?.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_operators_metrics() {
    let c = Cluster::start("shop").await;
    let op = c.operator(None).await;
    let list = format!("reliability-metrics-scraped-{}", std::process::id());
    fill_list(&shared_url(), &list, 50);
    steady(&c, "scraped", redis_trigger(&shared_url(), &list)).await;
    // /metrics is sent a family at a time, chunked: the scrape must still
    // parse whole, from the first family to the operator's own counters.
    let prom = PrometheusProcess::scraping(op.http_addr);
    let url = prom.url();
    for (query, want) in [
        (r#"up{job="operator"}"#, 1.0),
        (r#"workerpool_current_replicas{workerpool="scraped"}"#, 5.0),
        (
            r#"workerpool_trigger_value{workerpool="scraped",trigger="src"}"#,
            50.0,
        ),
        (r#"workerpool_pools{job="operator"}"#, 1.0),
    ] {
        eventually(&format!("{query} = {want} in Prometheus"), T, || async {
            (instant_value(&url, query).await == Some(want)).then_some(())
        })
        .await;
    }
    fill_list(&shared_url(), &list, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

// ------------------------------------------------------ fake Prometheus

/// What the fake Prometheus answers.
#[derive(Clone, Debug)]
enum Answer {
    /// A vector of one sample with this value text.
    Sample(&'static str),
    /// This status and body.
    Raw(u16, String),
    /// A body of `n` bytes of a JSON string, sent with a Content-Length
    /// (`chunked: false`) or as a chunked stream without one.
    Huge { bytes: usize, chunked: bool },
    /// A vector of `n` series.
    Series(usize),
    /// The healthy answer, but only after this long.
    Late(Duration),
}

#[derive(Clone)]
struct Fake {
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

fn sample_body(value: &str) -> String {
    json!({"status": "success", "data": {"resultType": "vector",
           "result": [{"metric": {}, "value": [1_700_000_000.0, value]}]}})
    .to_string()
}

async fn answer(State(f): State<Fake>) -> Response {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let a = f.answer.lock().unwrap().clone();
    let (code, body) = match a {
        Answer::Sample(v) => (200, Body::from(sample_body(v))),
        Answer::Raw(code, body) => (code, Body::from(body)),
        Answer::Huge {
            bytes,
            chunked: false,
        } => {
            let mut s = String::with_capacity(bytes);
            s.push_str(r#"{"status":"success","data":{"resultType":"string","result":[0,""#);
            s.extend(std::iter::repeat_n('x', bytes));
            s.push_str(r#""]}}"#);
            (200, Body::from(s))
        }
        Answer::Huge {
            bytes,
            chunked: true,
        } => {
            let head = Bytes::from_static(
                br#"{"status":"success","data":{"resultType":"string","result":[0,""#,
            );
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = std::iter::once(head)
                .chain(std::iter::repeat_n(chunk, bytes / (64 * 1024)))
                .chain(std::iter::once(Bytes::from_static(br#""]}}"#)))
                .map(Ok::<_, std::convert::Infallible>);
            (200, Body::from_stream(futures::stream::iter(chunks)))
        }
        Answer::Series(n) => {
            let result: Vec<Value> = (0..n)
                .map(|i| json!({"metric": {"pod": format!("worker-{i}")}, "value": [1_700_000_000.0, "1"]}))
                .collect();
            let body =
                json!({"status": "success", "data": {"resultType": "vector", "result": result}});
            (200, Body::from(body.to_string()))
        }
        Answer::Late(after) => {
            tokio::time::sleep(after).await;
            (200, Body::from(sample_body("50")))
        }
    };
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

impl Fake {
    async fn start() -> (Fake, SocketAddr) {
        let f = Fake {
            answer: Arc::new(Mutex::new(Answer::Sample("50"))),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route("/api/v1/query", axum::routing::get(answer))
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (f, addr)
    }

    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Runs one episode per answer against one pool, each followed by recovery.
async fn fake_prometheus_episodes(faults: Vec<(Answer, &'static str)>) {
    let (fake, addr) = Fake::start().await;
    let c = Cluster::start("shop").await;
    let op = c.operator(None).await;
    let url = format!("http://{addr}");
    let rec = steady(&c, "p", prom_trigger(&url, "sum(queue_depth)")).await;
    for (fault, expected) in faults {
        eprintln!("fault: {fault:?}");
        fake.set(fault.clone());
        let f = fake.clone();
        let message = episode(
            &c,
            "p",
            &rec,
            || fake.hits(),
            || async move { f.set(Answer::Sample("50")) },
        )
        .await;
        assert!(
            message.contains(expected),
            "{fault:?}: MetricsAvailable message lacks {expected:?}: {message}"
        );
        assert!(message.len() <= 1024, "{}", message.len());
    }
    rec.assert_within(&c, MIN, MAX).await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_errors_garbage_nan_and_inf_hold_fall_back_and_recover() {
    fake_prometheus_episodes(vec![
        (
            Answer::Raw(
                500,
                json!({"status": "error", "errorType": "internal", "error": "tsdb on fire"})
                    .to_string(),
            ),
            "errorType internal",
        ),
        (
            Answer::Raw(502, "<html>bad gateway</html>".into()),
            "HTTP 502",
        ),
        (
            Answer::Raw(200, "{\"status\": \"success\", \"data\": [".into()),
            "not Prometheus API JSON",
        ),
        (Answer::Sample("NaN"), "NaN"),
        (Answer::Sample("+Inf"), "+Inf"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_huge_late_and_many_series_answers_hold_fall_back_and_recover() {
    fake_prometheus_episodes(vec![
        (
            Answer::Huge {
                bytes: 10 * 1024 * 1024,
                chunked: false,
            },
            "larger than 1024 KiB",
        ),
        (
            Answer::Huge {
                bytes: 10 * 1024 * 1024,
                chunked: true,
            },
            "larger than 1024 KiB",
        ),
        (Answer::Series(10_000), "10000 series"),
        (Answer::Late(Duration::from_secs(3)), "no answer within 1s"),
    ])
    .await;
}

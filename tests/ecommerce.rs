//! The e-commerce case study (examples/ecommerce) on real processes: its
//! own redis-server, the Celery worker (app.tasks) and the FastAPI order API
//! (app.api under uvicorn). Orders posted over HTTP are charged and reserved
//! by the worker; then, with the worker stopped, a backlog builds up and
//! `workerpool-operator check` on the example's own WorkerPool manifests
//! (Redis address rewritten to the test's server) reads exactly the queue
//! length, across Celery's priority lists, and decides to scale out.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::redis::{connect, free_port, RedisProcess};

const TIMEOUT: Duration = Duration::from_secs(60);
/// The Redis address in the example manifests (cluster DNS).
const CLUSTER_REDIS: &str = "redis://redis.shop.svc.cluster.local:6379";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/ecommerce")
}

fn python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// A child process killed (and reaped) on drop; its output goes to a log
/// file that is printed if the test fails.
struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, dir: &Path, redis_url: &str, args: &[&str]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(python())
            .args(args)
            .current_dir(example())
            .env("REDIS_URL", redis_url)
            // The simulated payment provider answers quickly in tests.
            .env("PAYMENT_SECONDS", "0.01")
            .env("INVENTORY_SECONDS", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run the tests through scripts/test.sh",
                    python().display()
                )
            });
        Process {
            name,
            child: Some(child),
            log,
        }
    }

    /// Kills the process and waits until it is gone.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} log (last lines) ---", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One Celery worker consuming both queues (in the cluster each queue has
/// its own Deployment; one process is enough to drain both here).
fn worker(dir: &Path, redis_url: &str) -> Process {
    let node = format!("smoke-{}@localhost", std::process::id());
    Process::spawn(
        "celery worker",
        dir,
        redis_url,
        &[
            "-m",
            "celery",
            "-A",
            "app.tasks",
            "worker",
            "-Q",
            "payments,inventory",
            "-P",
            "threads",
            "-c",
            "4",
            "-n",
            &node,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
    )
}

fn api(dir: &Path, redis_url: &str, port: u16) -> Process {
    Process::spawn(
        "uvicorn order API",
        dir,
        redis_url,
        &[
            "-m",
            "uvicorn",
            "app.api:app",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ],
    )
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Shop {
    http: reqwest::Client,
    base: String,
}

impl Shop {
    async fn order(&self, express: bool) -> String {
        let resp = self
            .http
            .post(format!("{}/orders", self.base))
            .json(&json!({
                "items": [{"sku": "mug-blue", "quantity": 2}, {"sku": "tea-500g", "quantity": 1}],
                "amountCents": 2598,
                "express": express
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "pending");
        body["id"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/orders/{id}", self.base))
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    async fn wait_completed(&self, ids: &[String]) {
        for id in ids {
            let done = until(&format!("order {id} completed"), || async {
                let (code, body) = self.status(id).await;
                assert_eq!(code, 200, "{body}");
                (body["status"] == "completed").then_some(body)
            })
            .await;
            assert_eq!(done["payment"], "charged");
            assert_eq!(done["inventory"], "reserved");
        }
    }
}

/// A copy of an example WorkerPool manifest pointing at the test's Redis
/// (`redis_base`: scheme, host and port; the manifest keeps its database).
fn local_pool(dir: &Path, file: &str, redis_base: &str) -> (PathBuf, Value) {
    let text = std::fs::read_to_string(example().join("k8s").join(file)).unwrap();
    assert!(
        text.contains(CLUSTER_REDIS),
        "{file} no longer uses {CLUSTER_REDIS}; update this test"
    );
    let text = text.replace(CLUSTER_REDIS, redis_base);
    let path = dir.join(file);
    std::fs::write(&path, &text).unwrap();
    (path, workerpool_operator::yaml::from_str(&text).unwrap())
}

/// `workerpool-operator check -f POOL --output json`: exit 0 and the JSON
/// shape the docs promise.
fn check(pool: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .arg("check")
        .arg("-f")
        .arg(pool)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check exited {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&report), ["decision", "schedules", "triggers"]);
    assert_eq!(
        keys(&report["decision"]),
        ["current", "desired", "explanation"]
    );
    assert!(report["decision"]["current"].is_i64());
    assert!(report["decision"]["desired"].is_i64());
    assert!(report["decision"]["explanation"].is_string());
    for t in report["triggers"].as_array().unwrap() {
        assert_eq!(
            keys(t),
            [
                "active",
                "arrivalRate",
                "error",
                "estimatedDrainSeconds",
                "name",
                "proposedReplicas",
                "throughput",
                "value"
            ]
        );
        assert!(t["name"].is_string() && t["active"].is_boolean() && t["error"].is_null());
        assert!(t["value"].is_number() && t["proposedReplicas"].is_i64());
    }
    report
}

/// What kombu's Redis transport holds for a queue: the list itself and its
/// priority lists (default steps 3, 6, 9; separator \x06\x16).
fn queue_lengths(redis_url: &str, queue: &str) -> Vec<(String, i64)> {
    let mut r = connect(redis_url);
    ["", "\x06\x163", "\x06\x166", "\x06\x169"]
        .iter()
        .map(|suffix| {
            let key = format!("{queue}{suffix}");
            let n: i64 = redis::cmd("LLEN").arg(&key).query(&mut r).unwrap();
            (key, n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_through_celery_and_check_reads_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start();
    let redis_url = format!("{}/0", redis.url());
    let port = free_port();
    let mut api = api(dir.path(), &redis_url, port);
    let mut worker = worker(dir.path(), &redis_url);
    let shop = Shop {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        api.assert_running();
        let health = shop.http.get(format!("{}/healthz", shop.base)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the API never answered /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Orders go through: both tasks run, the order completes.
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(shop.order(i % 3 == 0).await);
    }
    worker.assert_running();
    shop.wait_completed(&ids).await;
    assert_eq!(shop.status("no-such-order").await.0, 404);
    let bad = shop
        .http
        .post(format!("{}/orders", shop.base))
        .json(&json!({"items": [], "amountCents": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status().as_u16(),
        422,
        "an order without items is refused"
    );

    let (payments, payments_pool) =
        local_pool(dir.path(), "40-workerpool-payments.yaml", &redis.url());
    let (inventory, inventory_pool) =
        local_pool(dir.path(), "41-workerpool-inventory.yaml", &redis.url());

    // Drained queues: nothing to do, each pool at its minimum. (An order
    // completes inside its last task, which is acknowledged just after; until
    // then includeInFlight still counts it.)
    for (path, pool) in [(&payments, &payments_pool), (&inventory, &inventory_pool)] {
        let r = until("queue drained, nothing in flight", || async {
            let r = check(path);
            (r["triggers"][0]["value"] == 0.0).then_some(r)
        })
        .await;
        let t = &r["triggers"][0];
        assert_eq!(t["value"], 0.0, "{r}");
        assert_eq!(t["active"], false, "{r}");
        assert_eq!(r["decision"]["desired"], pool["spec"]["minReplicas"], "{r}");
    }

    // Worker stopped: a backlog builds up, split over Celery's priority
    // lists (express orders priority 0, standard ones priority 6).
    worker.stop();
    let (express, standard) = (15, 30);
    let mut backlog = vec![];
    for i in 0..express + standard {
        backlog.push(shop.order(i < express).await);
    }
    let total = (express + standard) as f64;
    for (queue, path, pool) in [
        ("payments", &payments, &payments_pool),
        ("inventory", &inventory, &inventory_pool),
    ] {
        let lengths = queue_lengths(&redis_url, queue);
        let queued: i64 = lengths.iter().map(|(_, n)| n).sum();
        assert_eq!(queued as f64, total, "{queue}: {lengths:?}");
        assert_eq!(
            lengths[0].1, express as i64,
            "{queue}: express orders in {queue}: {lengths:?}"
        );
        assert_eq!(
            lengths[2].1, standard as i64,
            "{queue}: standard orders at priority 6: {lengths:?}"
        );

        let r = check(path);
        let t = &r["triggers"][0];
        let spec = &pool["spec"];
        let per_replica = spec["triggers"][0]["targetPerReplica"].as_f64().unwrap();
        let proposed = (total / per_replica).ceil() as i64;
        assert_eq!(t["name"], queue);
        assert_eq!(
            t["value"], total,
            "{queue}: check must read the whole queue: {r}"
        );
        assert_eq!(t["active"], true, "{r}");
        assert_eq!(t["proposedReplicas"], proposed, "{r}");
        let min = spec["minReplicas"].as_i64().unwrap();
        let max = spec["maxReplicas"].as_i64().unwrap();
        assert_eq!(
            r["decision"]["current"], min,
            "check starts from minReplicas: {r}"
        );
        // Within the default scale-up policies (+4 pods or +100% per 15 s).
        assert_eq!(
            r["decision"]["desired"],
            proposed.clamp(min.max(1), max),
            "{r}"
        );
        let explanation = r["decision"]["explanation"].as_str().unwrap();
        assert!(explanation.contains(queue), "{explanation}");
    }

    // A new worker drains the backlog; every order completes.
    let mut worker = self::worker(dir.path(), &redis_url);
    shop.wait_completed(&backlog).await;
    worker.assert_running();
    until("payments queue drained", || async {
        let r = check(&payments);
        (r["triggers"][0]["value"] == 0.0).then_some(())
    })
    .await;
    api.assert_running();
    drop(worker);
    drop(api);
    drop(redis);
}

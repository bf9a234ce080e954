//! Busy signals against the real frameworks: RQ workers and a Sidekiq
//! process whose host names are (fake) pod names, and a real Prometheus.
//! `check --output json` must report exactly the pods the framework's own
//! API calls busy, while they are busy, and none once their work is done.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::frameworks::{eventually, fixtures, python, run_json, WorkerProcess};
use support::prometheus::{Exporter, PrometheusProcess};
use support::redis::{connect, shared_url, unique};

const T: Duration = Duration::from_secs(90);

/// A pool with one Redis trigger `jobs` and `scaleIn.busySignal`.
fn pool(trigger: Value, signal: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "busy", "namespace": "test"},
        "spec": {
            "scaleTargetRef": {"name": "worker"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "triggers": [trigger],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            "scaleIn": {"busySignal": signal},
        }
    })
}

/// `check --output json`: the whole report and the exit status.
fn check(dir: &Path, pool: &Value) -> (Value, i32) {
    let path = dir.join("pool.yaml");
    std::fs::write(&path, workerpool_operator::yaml::to_string(pool).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .args(["check", "--current", "6", "--output", "json", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().unwrap_or(-1))
}

fn names(v: &Value) -> Vec<String> {
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    list.iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Waits until `check` reports `want` busy and the framework agrees.
fn busy_pods_become(
    what: &str,
    dir: &Path,
    pool: &Value,
    framework: impl Fn() -> Vec<String>,
    want: &[String],
) -> Value {
    eventually(what, T, || {
        let (report, _) = check(dir, pool);
        let ours = names(&report["scaleIn"]["busyPods"]);
        (ours == want && framework() == want).then_some(report)
    })
}

/// The pods whose worker took a held job, sorted (the jobs say so).
fn started(url: &str, queue: &str, n: usize) -> Vec<String> {
    let mut r = connect(url);
    let key = format!("test:busy-started:{queue}");
    eventually("the held jobs to start", T, || {
        let hosts: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut r)
            .unwrap();
        (hosts.len() == n).then(|| {
            let mut h = hosts;
            h.sort();
            h
        })
    })
}

#[test]
fn rq_busy_workers_are_the_pods_running_jobs() {
    let (py, url) = (python(), shared_url());
    let queue = unique("busy-rq");
    let dir = tempfile::tempdir().unwrap();
    let pods: Vec<String> = (0..3).map(|i| format!("{queue}-pod-{i}")).collect();
    let _workers: Vec<WorkerProcess> = pods
        .iter()
        .map(|p| {
            let log = dir.path().join(format!("{p}.log"));
            WorkerProcess::start(&py, &["busy_rq.py", "worker", &url, p, &queue], log)
        })
        .collect();
    // Waiting jobs only: once both are taken, the trigger wants the minimum.
    let rq = json!({"queue": queue, "include": ["Waiting"]});
    let trigger = json!({"name": "jobs", "redis": {"url": url, "rq": rq}, "targetPerReplica": 1});
    let pool = pool(trigger, json!({"rq": {"trigger": "jobs"}}));
    let rq_busy = || names(&run_json(&py, "busy_rq.py", &["busy", &url, &queue])["busy"]);
    // Registered and idle: no busy pod.
    eventually("three idle RQ workers", T, || {
        let (report, code) = check(dir.path(), &pool);
        let registered: i64 = redis::cmd("SCARD")
            .arg(format!("rq:workers:{queue}"))
            .query(&mut connect(&url))
            .unwrap();
        (registered == 3 && code == 0 && report["scaleIn"]["busyPods"] == json!([])).then_some(())
    });

    run_json(&py, "busy_rq.py", &["enqueue", &url, &queue, "2"]);
    let busy = started(&url, &queue, 2);
    let report = busy_pods_become("two busy RQ pods", dir.path(), &pool, rq_busy, &busy);
    // The queue is drained (both jobs taken): the decision holds the two busy pods.
    let why = report["decision"]["explanation"].as_str().unwrap();
    assert_eq!(report["decision"]["desired"], 2, "{why}");
    assert!(why.ends_with("keepBusy held 2: 2 pods busy"), "{why}");

    run_json(&py, "busy_rq.py", &["release", &url, &queue, "2"]);
    busy_pods_become("no busy RQ pod", dir.path(), &pool, rq_busy, &[]);
}

#[test]
fn sidekiq_busy_processes_are_the_pods_running_jobs() {
    // A database of its own: Sidekiq's `processes` set is per database.
    let url = format!("{}/9", shared_url().trim_end_matches('/'));
    let queue = unique("busy-sidekiq");
    let dir = tempfile::tempdir().unwrap();
    let _: () = redis::cmd("DEL")
        .arg("processes")
        .query(&mut connect(&url))
        .unwrap();
    let pods: Vec<String> = (0..2).map(|i| format!("{queue}-pod-{i}")).collect();
    let _workers: Vec<WorkerProcess> = pods
        .iter()
        .map(|p| sidekiq(&url, p, &queue, dir.path()))
        .collect();
    let ruby = |args: &[&str]| -> Value {
        let out = Command::new("ruby")
            .arg("busy_sidekiq.rb")
            .args(args)
            .env("REDIS_URL", &url)
            .current_dir(fixtures())
            .output()
            .expect("ruby (scripts/test.sh installs ruby-sidekiq)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or(json!({}))
    };
    let sidekiq_busy = || names(&ruby(&["busy"])["busy"]);
    let trigger = json!({"name": "mail", "redis": {"url": url, "list": format!("queue:{queue}")}, "targetPerReplica": 1});
    let pool = pool(trigger, json!({"sidekiq": {"trigger": "mail"}}));
    eventually("two idle Sidekiq processes", T, || {
        let (report, code) = check(dir.path(), &pool);
        let registered: i64 = redis::cmd("SCARD")
            .arg("processes")
            .query(&mut connect(&url))
            .unwrap();
        (registered == 2 && code == 0 && report["scaleIn"]["busyPods"] == json!([])).then_some(())
    });

    // Three jobs: one pod runs two of them (two threads), or each runs some.
    ruby(&["enqueue", &queue, "3"]);
    let mut busy = started(&url, &queue, 3);
    busy.dedup();
    busy_pods_become("busy Sidekiq pods", dir.path(), &pool, sidekiq_busy, &busy);

    ruby(&["release", &queue, "3"]);
    busy_pods_become("no busy Sidekiq pod", dir.path(), &pool, sidekiq_busy, &[]);
}

fn sidekiq(url: &str, pod: &str, queue: &str, dir: &Path) -> WorkerProcess {
    let log = dir.join(format!("{pod}.log"));
    let script = format!(
        "cd {} && DYNO={pod} REDIS_URL={url} exec sidekiq -r ./busy_sidekiq.rb -q {queue} -c 2",
        fixtures().display()
    );
    WorkerProcess::start("sh", &["-c", &script], log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_busy_pods_are_the_samples_above_zero() {
    let exporter = Exporter::serve("busy_tasks{pod=\"w-a\"} 2\nbusy_tasks{pod=\"w-b\"} 0\n").await;
    let prom = PrometheusProcess::start(&[exporter.addr]);
    let dir = tempfile::tempdir().unwrap();
    let trigger = json!({"name": "jobs", "redis": {"url": shared_url(), "list": unique("busy-prom")}, "targetPerReplica": 1});
    let query = "sum by (pod) (busy_tasks)";
    let signal = json!({"prometheus": {"url": prom.url(), "query": query}});
    let pool = pool(trigger, signal);
    let path = dir.path().to_path_buf();
    let checked = move |want: Vec<&'static str>| {
        let (pool, path) = (pool.clone(), path.clone());
        eventually("the busy pods from Prometheus", T, move || {
            let (report, _) = check(&path, &pool);
            (report["scaleIn"]["busyPods"] == json!(want)).then_some(report)
        })
    };
    let c = checked.clone();
    tokio::task::spawn_blocking(move || c(vec!["w-a"]))
        .await
        .unwrap();
    exporter
        .set("busy_tasks{pod=\"w-a\"} 0\nbusy_tasks{pod=\"w-b\"} 1\nbusy_tasks{pod=\"w-c\"} 3\n");
    let c = checked.clone();
    tokio::task::spawn_blocking(move || c(vec!["w-b", "w-c"]))
        .await
        .unwrap();
    // Without a `pod` label the read fails, and the scale-in holds.
    exporter.set("busy_tasks 1\n");
    let mut bad = checked_pool(&prom.url(), "sum(busy_tasks)");
    bad["metadata"]["name"] = json!("bad");
    let report = tokio::task::spawn_blocking(move || {
        eventually("an error naming the pod label", T, || {
            let (report, code) = check(dir.path(), &bad);
            let e = report["scaleIn"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (code == 1 && e.contains("sum by (pod)")).then_some(report)
        })
    })
    .await
    .unwrap();
    let why = report["decision"]["explanation"].as_str().unwrap();
    assert_eq!(report["decision"]["desired"], 6, "{why}");
    assert!(why.contains("busy signal failed, holding 6"), "{why}");
}

fn checked_pool(url: &str, query: &str) -> Value {
    let trigger = json!({"name": "jobs", "redis": {"url": shared_url(), "list": unique("busy-prom")}, "targetPerReplica": 1});
    pool(trigger, json!({"prometheus": {"url": url, "query": query}}))
}

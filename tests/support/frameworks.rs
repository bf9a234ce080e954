//! Driving real task-queue frameworks from tests: their fixture scripts
//! (tests/fixtures/<framework>_app.py), their workers as processes killed
//! with their whole group on drop, and the operator's `check` on a pool
//! of framework triggers.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(
            venv.exists(),
            "no Python with the frameworks: run the tests through scripts/test.sh \
             (it installs tests/requirements.txt into .venv)"
        );
        venv.display().to_string()
    })
}

/// arq's own venv (arq pins a redis client older than Celery's).
pub fn python_arq() -> String {
    std::env::var("PYTHON_ARQ").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-arq/bin/python");
        assert!(
            venv.exists(),
            "no Python with arq: run the tests through scripts/test.sh \
             (it installs tests/requirements-arq.txt into .venv-arq)"
        );
        venv.display().to_string()
    })
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `program script args...` in tests/fixtures and parses the last
/// line of its output as JSON (the frameworks log to the same streams).
pub fn run_json(program: &str, script: &str, args: &[&str]) -> Value {
    let out = Command::new(program)
        .arg(script)
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {script} ({e})"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().rev().find(|l| l.starts_with('{'));
    serde_json::from_str(last.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} {args:?} printed no JSON ({e}): {stdout}"))
}

/// A framework worker process in a group of its own.
pub struct WorkerProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn start(program: &str, args: &[&str], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("worker log");
        let child = Command::new(program)
            .args(args)
            .current_dir(fixtures())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("worker log"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} {args:?} ({e})"));
        WorkerProcess {
            child: Some(child),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The whole group: forked work horses too.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `probe` until it returns Some, or panics after `limit` with `what`.
pub fn eventually<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pool with one trigger per `(name, redis measure)`, all on `url`.
pub fn pool(url: &str, triggers: &[(String, Value)]) -> Value {
    let triggers: Vec<Value> = triggers
        .iter()
        .map(|(name, measure)| {
            let mut redis = json!({ "url": url });
            for (k, v) in measure.as_object().expect("a measure object") {
                redis[k] = v.clone();
            }
            json!({ "name": name, "redis": redis, "targetPerReplica": 1 })
        })
        .collect();
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": { "name": "frameworks", "namespace": "test" },
        "spec": {
            "scaleTargetRef": { "name": "worker" },
            "minReplicas": 0,
            "maxReplicas": 1000,
            "triggers": triggers,
        }
    })
}

/// Each trigger's `(value, error)` from a `check` report, by name.
pub type Report = std::collections::BTreeMap<String, (Option<f64>, Option<String>)>;

/// `workerpool-operator check -f POOL --output json`, whatever its exit
/// code (a trigger's error is in the report): each trigger's
/// `(value, error)` by name.
pub fn check(
    dir: &Path,
    pool: &Value,
) -> std::collections::BTreeMap<String, (Option<f64>, Option<String>)> {
    let path = dir.join("pool.yaml");
    std::fs::write(&path, workerpool_operator::yaml::to_string(pool).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .arg("check")
        .arg("-f")
        .arg(&path)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                (t["value"].as_f64(), t["error"].as_str().map(String::from)),
            )
        })
        .collect()
}

/// Every non-empty subset of `states`, as include lists.
pub fn include_combinations(states: &[&str]) -> Vec<Vec<String>> {
    (1..(1u32 << states.len()))
        .map(|mask| {
            states
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s.to_string())
                .collect()
        })
        .collect()
}

/// The four job kinds of a framework measure's `include`.
pub const JOB_STATES: [&str; 4] = ["Waiting", "InFlight", "Scheduled", "Retrying"];

/// An integer field of a fixture's JSON report.
pub fn int_field(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// What a fixture's report (fields `waiting`, `inFlight`, `scheduledDue`,
/// `retryingDue`) says of one job kind.
pub fn reported_count(o: &Value, state: &str) -> i64 {
    match state {
        "Waiting" => int_field(o, "waiting"),
        "InFlight" => int_field(o, "inFlight"),
        "Scheduled" => int_field(o, "scheduledDue"),
        "Retrying" => int_field(o, "retryingDue"),
        other => panic!("{other}"),
    }
}

/// An RQ worker (`busy_rq.py`) on each of `pods`, its host name the pod's
/// name, serving `queue` on `url`; then two long jobs, taken by two of
/// them. Returns the workers (killed on drop) and the two busy pods.
pub fn rq_workers_two_busy(
    pods: &std::collections::BTreeSet<String>,
    url: &str,
    queue: &str,
    dir: &std::path::Path,
) -> (Vec<WorkerProcess>, std::collections::BTreeSet<String>) {
    const LIMIT: Duration = Duration::from_secs(60);
    let py = python();
    let workers = pods
        .iter()
        .map(|p| {
            let log = dir.join(format!("{p}.log"));
            WorkerProcess::start(&py, &["busy_rq.py", "worker", url, p, queue], log)
        })
        .collect();
    let mut redis = super::redis::connect(url);
    let registered = format!("rq:workers:{queue}");
    eventually("every RQ worker registered", LIMIT, || {
        let n: usize = ::redis::cmd("SCARD")
            .arg(&registered)
            .query(&mut redis)
            .unwrap();
        (n == pods.len()).then_some(())
    });
    run_json(&py, "busy_rq.py", &["enqueue", url, queue, "2"]);
    let started = format!("test:busy-started:{queue}");
    let busy = eventually("two jobs running", LIMIT, || {
        let hosts: Vec<String> = ::redis::cmd("LRANGE")
            .arg(&started)
            .arg(0)
            .arg(-1)
            .query(&mut redis)
            .unwrap();
        (hosts.len() == 2).then(|| hosts.into_iter().collect())
    });
    (workers, busy)
}

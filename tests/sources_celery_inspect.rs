//! Celery inspect (src/sources/redis/celery_inspect.rs) against real Celery:
//! two real workers named like pods (`-n celery@<pod>`), one running a task
//! that blocks until the test releases it (with more prefetched), one idle.
//! The operator's counts per worker must equal what the real
//! `celery inspect active/reserved --json` prints; after the release the
//! operator must see both idle. Also: concurrent calls each get every reply,
//! no reply queue is left in Redis, a fake worker's malformed or oversized
//! reply is an error, and a broker that cannot be asked is an error, never
//! an idle answer. Each test owns its redis-server; every wait polls with
//! a deadline; workers are killed on drop.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::redis::{connect, RedisProcess};
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{
    BusyWorkers, CeleryInspector, InspectError, SourceError, Sources, WorkerLoad,
};

const T: Duration = Duration::from_secs(5);
/// The database the broker uses: not 0, so the channel's `/<db>.` prefix counts.
const DB: u32 = 3;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(
            venv.exists(),
            "no Python with Celery: set PYTHON or run the tests through scripts/test.sh \
             (it installs tests/requirements.txt into .venv)"
        );
        venv.display().to_string()
    })
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `python -m celery -A celery_inspect_app <args>` against `broker`.
fn celery(broker: &str, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.args(["-m", "celery", "-A", "celery_inspect_app"])
        .args(args)
        .current_dir(fixtures())
        .env("CELERY_BROKER_URL", broker);
    c
}

fn enqueue(broker: &str, queue: &str, key: &str, n: usize) {
    let out = Command::new(python())
        .args([
            "celery_inspect_app.py",
            "enqueue",
            queue,
            key,
            &n.to_string(),
        ])
        .current_dir(fixtures())
        .env("CELERY_BROKER_URL", broker)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", python()));
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the real `celery inspect <command> --json` reports: task count per
/// worker hostname; empty when no worker replied.
fn cli_counts(broker: &str, command: &str) -> BTreeMap<String, u32> {
    let out = celery(broker, &["inspect", command, "--json", "--timeout", "3"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run celery inspect ({e})"));
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(json_line) = text.lines().find(|l| l.starts_with('{')) else {
        return BTreeMap::new();
    };
    let v: Value = serde_json::from_str(json_line)
        .unwrap_or_else(|e| panic!("celery inspect {command} printed no JSON ({e}): {text}"));
    v.as_object()
        .expect("a JSON object")
        .iter()
        .map(|(host, tasks)| {
            let n = tasks.as_array().map_or(0, Vec::len) as u32;
            (host.clone(), n)
        })
        .collect()
}

/// The CLI's answers as the operator's type.
fn cli_view(broker: &str) -> BTreeMap<String, WorkerLoad> {
    let active = cli_counts(broker, "active");
    let reserved = cli_counts(broker, "reserved");
    active
        .iter()
        .filter_map(|(h, a)| {
            let r = reserved.get(h)?;
            Some((
                h.clone(),
                WorkerLoad {
                    active: *a,
                    reserved: *r,
                },
            ))
        })
        .collect()
}

/// A real `celery worker` named `celery@<pod>`, in a process group of its
/// own so that dropping it kills the prefork children too.
struct Worker {
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    fn start(broker: &str, queue: &str, pod: &str, log_dir: &Path) -> Worker {
        let log = log_dir.join(format!("worker-{pod}.log"));
        let log_file = std::fs::File::create(&log).expect("worker log");
        let node = format!("celery@{pod}");
        let child = celery(broker, &["worker", "-Q", queue, "-n", &node])
            .args(["--pool", "prefork", "--concurrency", "1"])
            .args(["--prefetch-multiplier", "4"])
            .args([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ])
            .args(["-l", "info"])
            .stdout(log_file.try_clone().expect("worker log"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Celery worker with {} ({e})", python()));
        Worker {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn redis_trigger(url: &str) -> Trigger {
    serde_json::from_value(json!({
        "redis": {"url": url, "celery": {"queue": "celery"}},
        "targetPerReplica": 1.0,
    }))
    .expect("trigger")
}

fn inspector(sources: &Sources, url: &str) -> CeleryInspector {
    sources
        .celery_inspector("default", &redis_trigger(url), &BTreeMap::new(), T)
        .unwrap_or_else(|e| panic!("celery_inspector: {e}"))
}

/// Reply lists and binding-set members a call could leave in `url`'s db.
fn leftovers(url: &str) -> BTreeSet<String> {
    let mut c = connect(url);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("_kombu.binding.reply.celery.pidbox")
        .query(&mut c)
        .expect("SMEMBERS");
    keys.into_iter()
        .filter(|k| k.contains(".reply.celery.pidbox"))
        .chain(members.into_iter().map(|m| format!("binding {m:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_the_celery_cli_and_follow_a_release() {
    let server = RedisProcess::start();
    let broker = format!("{}/{DB}", server.url());
    let logs = tempfile::tempdir().expect("tempdir");
    let pid = std::process::id();
    let (busy_pod, idle_pod) = (
        format!("web-busy-{pid}-x2x4z"),
        format!("web-idle-{pid}-q7k2m"),
    );
    let (busy_host, idle_host) = (format!("celery@{busy_pod}"), format!("celery@{idle_pod}"));
    let release = format!("release-{pid}");
    enqueue(&broker, "busy", &release, 6);
    let busy = Worker::start(&broker, "busy", &busy_pod, logs.path());
    let idle = Worker::start(&broker, "idle", &idle_pod, logs.path());
    let sources = Sources::new();
    let insp = inspector(&sources, &broker);

    // 1. Busy: one task running, several prefetched; the CLI agrees.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (seen, took) = loop {
        assert!(
            Instant::now() < deadline,
            "the workers did not settle within 120 s; logs:\n{}\n{}",
            busy.log(),
            idle.log()
        );
        let started = Instant::now();
        let first = insp.busy_workers(Duration::from_secs(3)).await;
        let took = started.elapsed();
        let Ok(first) = first else {
            panic!("busy_workers: {first:?}");
        };
        let settled = first.workers.get(&busy_host).is_some_and(|l| l.active == 1)
            && first.workers.contains_key(&idle_host)
            && first.all_answered();
        if !settled {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let cli = cli_view(&broker);
        let again = insp
            .busy_workers(Duration::from_secs(3))
            .await
            .expect("again");
        if cli == first.workers && again == first {
            break (first, took);
        }
    };
    eprintln!("busy_workers answered in {took:?}: {seen:?}");
    assert_eq!(seen.listeners, 2, "{seen:?}");
    assert!(seen.unknown.is_empty(), "{seen:?}");
    let load = seen.workers[&busy_host];
    assert!(load.reserved >= 2, "prefetch holds several tasks: {seen:?}");
    assert_eq!(seen.workers[&idle_host], WorkerLoad::default());
    assert_eq!(seen.pod_load(&busy_pod), Some(load));
    assert_eq!(seen.pod_load(&idle_pod), Some(WorkerLoad::default()));
    assert_eq!(seen.pod_load("web-gone-0"), None);
    // The same through `scaleIn.busySignal.celery` in `check`: the busy pod
    // only (the idle worker answered and holds nothing).
    assert_eq!(check_busy_pods(&broker, logs.path()), json!([busy_pod]));

    // 2. Concurrent calls each get every reply (unique reply queues).
    let other = inspector(&sources, &broker);
    let (a, b, c) = tokio::join!(
        insp.busy_workers(Duration::from_secs(3)),
        insp.busy_workers(Duration::from_secs(3)),
        other.busy_workers(Duration::from_secs(3)),
    );
    for r in [a, b, c] {
        assert_eq!(r.as_ref().map(|r| &r.workers), Ok(&seen.workers), "{r:?}");
    }
    assert_eq!(
        leftovers(&broker),
        BTreeSet::new(),
        "no reply queue is left"
    );

    // 3. Released: every task finishes; the operator sees both idle.
    let _: () = redis::cmd("SET")
        .arg(&release)
        .arg(1)
        .query(&mut connect(&broker))
        .expect("SET");
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "the busy worker did not finish within 120 s; log:\n{}",
            busy.log()
        );
        let r: BusyWorkers = insp
            .busy_workers(Duration::from_secs(3))
            .await
            .expect("inspect");
        if r.all_answered() && r.workers.values().all(WorkerLoad::is_idle) && r.workers.len() == 2 {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        cli_view(&broker),
        done.workers,
        "the CLI sees them idle too"
    );
    assert_eq!(check_busy_pods(&broker, logs.path()), json!([]));
    assert_eq!(
        leftovers(&broker),
        BTreeSet::new(),
        "no reply queue is left"
    );
}

/// `check --output json` of a pool whose busy signal is Celery on `broker`:
/// its `scaleIn.busyPods`.
fn check_busy_pods(broker: &str, dir: &Path) -> Value {
    let pool = json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": {"name": "web"}, "minReplicas": 1, "maxReplicas": 10,
                 "triggers": [{"name": "tasks", "targetPerReplica": 1,
                               "redis": {"url": broker, "celery": {"queue": "busy"}}}],
                 "scaleIn": {"busySignal": {"celery": {"trigger": "tasks"}}}}
    });
    let path = dir.join("pool.yaml");
    std::fs::write(&path, workerpool_operator::yaml::to_string(&pool).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .args(["check", "--current", "3", "--output", "json", "-f"])
        .arg(&path)
        .output()
        .expect("run check");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["scaleIn"]
        .get("busyPods")
        .cloned()
        .unwrap_or_else(|| panic!("no busyPods: {report}"))
}

/// A fake worker on `url`'s database `db`: subscribes to the broadcast
/// channel, takes `n` requests, then LPUSHes `reply(ticket)` for each to the
/// reply queue they name, all at once (so none arrives after the caller
/// removed its queue). Returns once subscribed.
fn fake_worker(
    url: String,
    db: u32,
    n: usize,
    reply: fn(&str) -> String,
) -> std::thread::JoinHandle<()> {
    let (ready, subscribed) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut sub = connect(&url);
        let mut pubsub = sub.as_pubsub();
        pubsub
            .subscribe(format!("/{db}.celery.pidbox"))
            .expect("SUBSCRIBE");
        ready.send(()).expect("ready");
        let mut pushes: Vec<(String, String)> = Vec::new();
        for _ in 0..n {
            let msg = pubsub.get_message().expect("message");
            let envelope: Value =
                serde_json::from_slice(msg.get_payload_bytes()).expect("a JSON envelope");
            let body = base64::engine::general_purpose::STANDARD
                .decode(envelope["body"].as_str().expect("body"))
                .expect("base64 body");
            let body: Value = serde_json::from_slice(&body).expect("a JSON body");
            let rk = body["reply_to"]["routing_key"]
                .as_str()
                .expect("routing key");
            let exchange = body["reply_to"]["exchange"].as_str().expect("exchange");
            let ticket = body["ticket"].as_str().expect("ticket");
            pushes.push((format!("{rk}.{exchange}"), reply(ticket)));
        }
        let mut c = connect(&format!("{url}/{db}"));
        let mut lpush = redis::cmd("LPUSH");
        lpush.arg(&pushes[0].0);
        for (_, item) in &pushes {
            lpush.arg(item);
        }
        let _: () = lpush.query(&mut c).expect("LPUSH");
    });
    subscribed.recv().expect("the fake worker subscribed");
    handle
}

fn good_reply(ticket: &str) -> String {
    let body =
        base64::engine::general_purpose::STANDARD.encode(r#"{"celery@fake-1": [{"id": "x"}]}"#);
    json!({"body": body, "content-type": "application/json", "content-encoding": "utf-8",
           "headers": {"ticket": ticket}, "properties": {"body_encoding": "base64"}})
    .to_string()
}

fn garbage_reply(_ticket: &str) -> String {
    "{this is not json".into()
}

fn huge_reply(_ticket: &str) -> String {
    "x".repeat(5 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replies_are_errors_and_leave_no_reply_queue() {
    let server = RedisProcess::start();
    let url = server.url();
    let broker = format!("{url}/{DB}");
    let sources = Sources::new();
    let insp = inspector(&sources, &broker);

    // Nobody listens: an answer at once, with no workers and no listeners.
    let none = insp
        .busy_workers(Duration::from_secs(2))
        .await
        .expect("inspect");
    assert_eq!(none, BusyWorkers::default());
    assert!(none.all_answered());

    // A well-formed fake worker: counted, then the reply queue is gone.
    let fake = fake_worker(url.clone(), DB, 2, good_reply);
    let r = insp
        .busy_workers(Duration::from_secs(5))
        .await
        .expect("inspect");
    fake.join().expect("fake worker");
    let expected = BTreeMap::from([(
        "celery@fake-1".to_string(),
        WorkerLoad {
            active: 1,
            reserved: 1,
        },
    )]);
    assert_eq!(r.workers, expected, "{r:?}");
    assert_eq!(r.listeners, 1);

    // A reply that is not JSON, then one over the size limit: errors.
    let fake = fake_worker(url.clone(), DB, 2, garbage_reply);
    let err = insp
        .busy_workers(Duration::from_secs(5))
        .await
        .expect_err("garbage");
    fake.join().expect("fake worker");
    assert!(matches!(err, InspectError::BadReply { .. }), "{err:?}");
    assert!(err.to_string().contains("a reply is not JSON"), "{err}");
    assert!(
        !err.to_string().contains("this is not json"),
        "quotes the reply: {err}"
    );

    let fake = fake_worker(url.clone(), DB, 2, huge_reply);
    let err = insp
        .busy_workers(Duration::from_secs(5))
        .await
        .expect_err("huge");
    fake.join().expect("fake worker");
    assert!(matches!(err, InspectError::TooMuch { .. }), "{err:?}");
    assert!(err.to_string().contains("5242880 bytes"), "{err}");

    // A call dropped midway (a listener that never answers keeps it
    // waiting) still removes its reply queue, from a task spawned on drop.
    let mut silent = connect(&url);
    let mut silent = silent.as_pubsub();
    silent
        .subscribe(format!("/{DB}.celery.pidbox"))
        .expect("SUBSCRIBE");
    {
        let call = insp.busy_workers(Duration::from_secs(30));
        tokio::pin!(call);
        let bound = async {
            while leftovers(&broker).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            r = &mut call => panic!("the call should still be waiting: {r:?}"),
            () = bound => {}
        }
    }

    // Whatever happened, no reply list or binding is left behind (the
    // spawned cleanup of a dropped call may still be running: poll).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !leftovers(&broker).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", leftovers(&broker));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_be_asked_is_an_error_not_idle() {
    let sources = Sources::new();
    let wait = Duration::from_millis(500);

    // Nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let err = inspector(&sources, &format!("redis://127.0.0.1:{port}/0"))
        .busy_workers(wait)
        .await
        .expect_err("closed port");
    assert!(
        matches!(err, InspectError::Redis(SourceError::Connection(_))),
        "{err:?}"
    );

    // Something that is not Redis answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let err = inspector(&sources, &format!("redis://127.0.0.1:{port}/0"))
        .busy_workers(wait)
        .await
        .expect_err("not redis");
    assert!(matches!(err, InspectError::Redis(_)), "{err:?}");

    // A Redis user that may not run scripts: refused, said so.
    let server = RedisProcess::start();
    let mut admin = connect(&server.url());
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("noscripts")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-@scripting")
        .query(&mut admin)
        .expect("ACL SETUSER");
    let url = format!("redis://noscripts:pw@127.0.0.1:{}/0", server.port);
    let err = inspector(&sources, &url).busy_workers(wait).await;
    // With no listener there is nothing to collect: the script never runs.
    assert_eq!(err, Ok(BusyWorkers::default()));
    let fake = fake_worker(server.url(), 0, 1, good_reply);
    let err = inspector(&sources, &url)
        .busy_workers(Duration::from_secs(5))
        .await;
    fake.join().expect("fake worker");
    assert!(
        matches!(err, Err(InspectError::Redis(SourceError::Auth(_)))),
        "{err:?}"
    );
    assert!(
        format!("{err:?}").contains("EVALSHA"),
        "says what is needed: {err:?}"
    );
    assert!(
        !format!("{err:?}").contains("pw@"),
        "no credentials in errors"
    );

    // A cluster is refused when the inspector is made.
    let t: Trigger = serde_json::from_value(json!({
        "redis": {"cluster": {"addresses": ["127.0.0.1:7000"]}, "celery": {"queue": "q"}},
        "targetPerReplica": 1.0,
    }))
    .expect("trigger");
    let err = sources
        .celery_inspector("default", &t, &BTreeMap::new(), T)
        .expect_err("cluster");
    assert!(err.to_string().contains("redis.cluster"), "{err}");
}

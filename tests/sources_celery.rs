//! The Celery source (src/sources/celery.rs) against real Celery: the
//! fixture app (tests/fixtures/celery_app.py) enqueues real tasks with
//! priorities 0..9 into two queues, a real worker (prefork, concurrency 1,
//! prefetch 4) holds some of one queue, and the source's numbers must equal
//! what Celery and kombu report themselves. The kombu key layout the
//! source assumes is checked against what Celery actually wrote.
//! Every wait polls with a deadline; the worker is killed on drop.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use support::redis::{connect, RedisProcess};
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, Sources};

const SEP: &str = "\x06\x16";
const T: Duration = Duration::from_secs(2);

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

/// Runs `python celery_app.py <args>` against `broker` and parses its JSON.
fn fixture<T: serde::de::DeserializeOwned>(broker: &str, args: &[&str]) -> T {
    let out = Command::new(python())
        .arg("celery_app.py")
        .args(args)
        .current_dir(fixtures())
        .env("CELERY_BROKER_URL", broker)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", python()));
    assert!(
        out.status.success(),
        "celery_app.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "celery_app.py {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Sends one task per priority to `queue`, each sleeping longer than the
/// test runs (so nothing finishes under it); returns the task ids.
fn enqueue(broker: &str, queue: &str, priorities: &[i64]) -> Vec<String> {
    let prios: Vec<String> = priorities.iter().map(i64::to_string).collect();
    let mut args = vec!["enqueue", queue, "600"];
    args.extend(prios.iter().map(String::as_str));
    fixture(broker, &args)
}

/// What Celery and kombu report about a queue (celery_app.py `observe`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Observed {
    /// kombu's message count of the queue (`Channel._size`).
    queued: i64,
    unacked_ids: Vec<String>,
    unacked_other: i64,
    /// `inspect().reserved()` / `active()` of the worker; None: no reply.
    reserved_ids: Option<Vec<String>>,
    active_ids: Option<Vec<String>>,
}

/// A real `celery worker`, in a process group of its own so that dropping
/// it kills the prefork children too (no leaked processes).
struct Worker {
    child: Option<Child>,
    node: String,
    log: PathBuf,
}

impl Worker {
    fn start(broker: &str, queue: &str, acks_late: bool, log_dir: &Path) -> Worker {
        let node = format!("w{}-{}@localhost", std::process::id(), queue);
        let log = log_dir.join(format!("worker-{queue}.log"));
        let log_file = std::fs::File::create(&log).expect("worker log");
        let child = Command::new(python())
            .args([
                "-m",
                "celery",
                "-A",
                "celery_app",
                "worker",
                "-Q",
                queue,
                "-n",
                &node,
            ])
            .args([
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "4",
            ])
            .args([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ])
            .current_dir(fixtures())
            .env("CELERY_BROKER_URL", broker)
            .env("CELERY_ACKS_LATE", if acks_late { "1" } else { "0" })
            .stdout(log_file.try_clone().expect("worker log"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Celery worker with {} ({e})", python()));
        Worker {
            child: Some(child),
            node,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL to the whole group, then waits until no process of it is left.
    fn kill(&mut self) {
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
        eprintln!("worker process group {group} still alive after SIGKILL");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn celery_source(
    sources: &Sources,
    url: &str,
    queue: &str,
    in_flight: bool,
) -> Arc<dyn MetricSource> {
    let t: Trigger = serde_json::from_value(json!({
        "redis": {"url": url, "celery": {"queue": queue, "includeInFlight": in_flight}},
        "targetPerReplica": 1.0,
    }))
    .expect("trigger");
    sources
        .build(&t, &BTreeMap::new(), T)
        .unwrap_or_else(|e| panic!("build: {e}"))
}

/// The lists kombu uses for a queue, by priority step.
fn priority_lists(queue: &str) -> [(u8, String); 4] {
    [0u8, 3, 6, 9].map(|step| {
        if step == 0 {
            (step, queue.to_string())
        } else {
            (step, format!("{queue}{SEP}{step}"))
        }
    })
}

/// The raw broker contents, read here (not through the source or Python):
/// each existing list of `queue` with the priorities of its messages.
fn raw_lists(c: &mut redis::Connection, queue: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out = BTreeMap::new();
    for (_, key) in priority_lists(queue) {
        let items: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(c)
            .expect("LRANGE");
        if items.is_empty() {
            continue;
        }
        let prios = items
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(m).expect("a kombu message is JSON");
                v["properties"]["priority"]
                    .as_i64()
                    .expect("message priority")
            })
            .collect();
        out.insert(key, prios);
    }
    out
}

/// The `unacked` hash, read and decoded here: task ids by routing key.
/// Also checks what the source's counting relies on: every value is the
/// JSON array `[message, exchange, routing_key]` ending `, "<routing_key>"]`,
/// and `unacked_index` holds exactly the same delivery tags.
fn raw_unacked(c: &mut redis::Connection) -> BTreeMap<String, BTreeSet<String>> {
    // One MULTI: a worker taking or acknowledging a message between two
    // separate reads would make the hash and the index disagree.
    let (entries, index): (BTreeMap<String, String>, BTreeSet<String>) = redis::pipe()
        .atomic()
        .cmd("HGETALL")
        .arg("unacked")
        .cmd("ZRANGE")
        .arg("unacked_index")
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("HGETALL unacked + ZRANGE unacked_index");
    assert_eq!(
        entries.keys().cloned().collect::<BTreeSet<_>>(),
        index,
        "unacked and unacked_index name the same delivery tags"
    );
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (tag, raw) in &entries {
        let v: Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("unacked[{tag}] is not JSON ({e}): {raw}"));
        let [message, exchange, routing_key] = v.as_array().map(Vec::as_slice).unwrap_or_default()
        else {
            panic!("unacked[{tag}] is not [message, exchange, routing_key]: {raw}");
        };
        assert!(exchange.is_string(), "{raw}");
        let rk = routing_key
            .as_str()
            .unwrap_or_else(|| panic!("routing key: {raw}"));
        assert!(
            raw.ends_with(&format!(", \"{rk}\"]")),
            "unacked[{tag}] ends {:?}",
            &raw[raw.len().saturating_sub(40)..]
        );
        assert_eq!(
            message["properties"]["delivery_tag"].as_str(),
            Some(tag.as_str()),
            "{raw}"
        );
        let id = message["headers"]["id"]
            .as_str()
            .expect("task id")
            .to_string();
        by_key.entry(rk.to_string()).or_default().insert(id);
    }
    by_key
}

/// Keys other than kombu's bookkeeping (bindings, the unacked hash/index).
fn data_keys(c: &mut redis::Connection) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).expect("KEYS");
    keys.into_iter()
        .filter(|k| !k.starts_with("_kombu.") && k != "unacked" && k != "unacked_index")
        .collect()
}

fn expected_lists(queue: &str, priorities: &[i64]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for &p in priorities {
        let step = [9, 6, 3, 0].into_iter().find(|s| p >= *s).unwrap_or(0);
        let key = priority_lists(queue)[(step / 3) as usize].1.clone();
        // kombu LPUSHes: the newest message is first.
        out.entry(key).or_default().insert(0, p);
    }
    out
}

async fn celery_matches_the_source(acks_late: bool) {
    let server = RedisProcess::start();
    let url = server.url();
    let broker = format!("{url}/0");
    let mut c = connect(&url);
    let logs = tempfile::tempdir().expect("tempdir");
    let (orders, emails) = ("orders", "emails");
    let all: Vec<i64> = (0..=9).collect();
    let some = [0i64, 4, 7, 9];

    // 1. Real Celery publishes: the layout is the one the source reads.
    assert_eq!(enqueue(&broker, orders, &all).len(), 10);
    assert_eq!(enqueue(&broker, emails, &some).len(), 4);
    assert_eq!(raw_lists(&mut c, orders), expected_lists(orders, &all));
    assert_eq!(raw_lists(&mut c, emails), expected_lists(emails, &some));
    let lists: BTreeSet<String> = priority_lists(orders)
        .into_iter()
        .chain(priority_lists(emails))
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        data_keys(&mut c),
        lists,
        "kombu wrote exactly the queue lists and priority lists"
    );

    let s = Sources::new();
    let orders_queued = celery_source(&s, &url, orders, false);
    let orders_total = celery_source(&s, &url, orders, true);
    let emails_total = celery_source(&s, &url, emails, true);
    let before: Observed = fixture(&broker, &["observe", orders, "nobody@nowhere"]);
    assert_eq!(before.queued, 10, "{before:?}");
    assert_eq!(orders_queued.read().await, Ok(10.0));
    assert_eq!(orders_total.read().await, Ok(10.0));
    assert_eq!(emails_total.read().await, Ok(4.0));

    // 2. A worker on `orders` takes one task to run and prefetches more.
    let mut worker = Worker::start(&broker, orders, acks_late, logs.path());
    let deadline = Instant::now() + Duration::from_secs(90);
    let (seen, queued, total) = loop {
        assert!(
            Instant::now() < deadline,
            "the worker did not settle within 90 s; its log:\n{}",
            worker.log()
        );
        let a: Observed = fixture(&broker, &["observe", orders, &worker.node]);
        let (Some(reserved), Some(active)) = (&a.reserved_ids, &a.active_ids) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        // Settled: one running, the rest either prefetched or queued.
        if active.len() != 1 || a.queued + (reserved.len() + active.len()) as i64 != 10 {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let queued = orders_queued.read().await;
        let total = orders_total.read().await;
        let b: Observed = fixture(&broker, &["observe", orders, &worker.node]);
        if a == b {
            break (a, queued, total);
        }
    };
    let reserved = seen.reserved_ids.clone().unwrap_or_default();
    let active = seen.active_ids.clone().unwrap_or_default();
    assert!(
        reserved.len() >= 2,
        "prefetch holds several tasks: {seen:?}"
    );

    // What Celery holds unacknowledged is exactly what kombu's `unacked`
    // hash routes to the queue: prefetched tasks, plus the running one
    // only when acks are late.
    let mut held = reserved.clone();
    if acks_late {
        held.extend(active.iter().cloned());
    }
    held.sort();
    assert_eq!(
        held.len(),
        4,
        "the prefetch window (concurrency 1 x multiplier 4): {seen:?}"
    );
    assert_eq!(seen.unacked_ids, held, "{seen:?}");
    let raw = raw_unacked(&mut c);
    assert_eq!(
        raw.keys().collect::<Vec<_>>(),
        [orders],
        "only orders is being worked: {raw:?}"
    );
    assert_eq!(raw[orders].iter().cloned().collect::<Vec<_>>(), held);
    assert_eq!(seen.unacked_other, 0);

    // The source's numbers equal Celery's.
    assert_eq!(
        queued,
        Ok(seen.queued as f64),
        "queued vs kombu's count: {seen:?}"
    );
    assert_eq!(
        total,
        Ok((seen.queued + held.len() as i64) as f64),
        "queued + in-flight: {seen:?}"
    );
    // The worker takes the highest priority first (kombu: 0 before 9), so
    // what is left queued is the low-priority tail.
    let left: Vec<i64> = raw_lists(&mut c, orders).into_values().flatten().collect();
    assert_eq!(left.len() as i64, seen.queued);
    assert!(left.iter().all(|p| *p >= 3), "queued priorities {left:?}");
    // The other queue is untouched: all queued, nothing in flight.
    assert_eq!(emails_total.read().await, Ok(4.0));

    // 3. The worker dies without a word: its prefetched tasks stay in
    // `unacked` (kombu restores them after the visibility timeout) and
    // are still counted as work.
    worker.kill();
    assert_eq!(orders_total.read().await, total);
    assert_eq!(
        raw_unacked(&mut c)[orders]
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        held
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_in_flight_equal_what_celery_reports() {
    celery_matches_the_source(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_late_acks_the_running_task_is_in_flight_too() {
    celery_matches_the_source(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_is_a_bad_result() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut c = connect(&url);
    let s = Sources::new();
    redis::cmd("SET")
        .arg(format!("q{SEP}6"))
        .arg("x")
        .query::<()>(&mut c)
        .expect("SET");
    for in_flight in [false, true] {
        let e = celery_source(&s, &url, "q", in_flight)
            .read()
            .await
            .expect_err("wrong type");
        assert_eq!(e.metric_label(), "bad_result", "{e}");
        assert!(e.to_string().contains("wrong type"), "{e}");
    }
    redis::cmd("DEL")
        .arg(format!("q{SEP}6"))
        .query::<()>(&mut c)
        .expect("DEL");
    redis::cmd("SET")
        .arg("unacked")
        .arg("x")
        .query::<()>(&mut c)
        .expect("SET");
    assert_eq!(celery_source(&s, &url, "q", false).read().await, Ok(0.0));
    let e = celery_source(&s, &url, "q", true)
        .read()
        .await
        .expect_err("wrong type");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    assert!(e.to_string().contains("wrong type"), "{e}");
}

/// A real worker (late acks, so running tasks are in `unacked` too) works
/// through 60 short tasks while the source is read as often as it can be:
/// no reading is ever above what was enqueued, the worker's taking is seen
/// in flight, and once Celery reports the queue drained the source reads
/// exactly 0, as does kombu: the shared index keeps no tag of an
/// acknowledged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_follows_a_worker_taking_and_acknowledging() {
    let server = RedisProcess::start();
    let url = server.url();
    let broker = format!("{url}/0");
    let mut c = connect(&url);
    let logs = tempfile::tempdir().expect("tempdir");
    let queue = "churn";
    let prios: Vec<String> = (0..60).map(|i| (i % 10).to_string()).collect();
    let mut args = vec!["enqueue", queue, "0.05"];
    args.extend(prios.iter().map(String::as_str));
    let ids: Vec<String> = fixture(&broker, &args);
    assert_eq!(ids.len(), 60);
    let s = Sources::new();
    let total = celery_source(&s, &url, queue, true);
    let queued_only = celery_source(&s, &url, queue, false);
    assert_eq!(total.read().await, Ok(60.0));

    let worker = Worker::start(&broker, queue, true, logs.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw_in_flight = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "the worker did not drain the queue within 120 s; its log:\n{}",
            worker.log()
        );
        // Queued first: the lists only shrink, so a total above it can
        // only be messages in flight.
        let q = queued_only.read().await.expect("queued");
        let t = total.read().await.expect("total");
        assert!((0.0..=60.0).contains(&t), "total {t}");
        saw_in_flight |= t > q;
        // Drained, as the broker shows it (kombu's passive declare fails
        // once a queue's lists are gone, so read them here).
        if raw_lists(&mut c, queue).is_empty() && !raw_unacked(&mut c).contains_key(queue) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_in_flight,
        "the worker's prefetch was never seen in flight"
    );
    // Drained: the index must not keep any acknowledged tag. Reads within
    // one poll slot share a refresh, so wait one out.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(total.read().await, Ok(0.0));
}

/// kombu's own writes, made here at a high rate while the source reads: a
/// worker taking a message is `ZADD unacked_index` + `HSET unacked` in one
/// MULTI, an ack `ZREM` + `HDEL` in one MULTI (kombu/transport/redis.py,
/// `QoS.append` and `_remove_from_indices`). Acks take the oldest tags (the
/// lowest ranks of the index), which shifts every rank under the chunked
/// scan; thousands in flight make the scan take several chunks. Each
/// reading must be a count the queue really had at some moment of the read
/// (or of the poll slot before it, which reads share), and after the churn
/// it must be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_is_exact_while_tags_are_taken_and_acknowledged() {
    let server = RedisProcess::start();
    let url = server.url();
    let s = Sources::new();
    let source = celery_source(&s, &url, "q", true);
    let mut c = connect(&url);
    let mut kombu = KombuWrites::default();
    for i in 0..6_000 {
        kombu.take(&mut c, if i % 3 == 0 { "other" } else { "q" });
    }
    assert_eq!(source.read().await, Ok(4_000.0));

    let history = Arc::new(std::sync::Mutex::new(vec![(Instant::now(), 4_000i64)]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (history, stop, url) = (history.clone(), stop.clone(), url.clone());
        std::thread::spawn(move || {
            let mut c = connect(&url);
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                // Alternately more takes or more acks, so the count moves.
                let (takes, acks) = if round % 40 < 20 { (30, 20) } else { (20, 30) };
                for _ in 0..acks {
                    kombu.ack_oldest(&mut c);
                    history
                        .lock()
                        .unwrap()
                        .push((Instant::now(), kombu.count("q")));
                }
                for i in 0..takes {
                    kombu.take(&mut c, if i % 3 == 0 { "other" } else { "q" });
                    history
                        .lock()
                        .unwrap()
                        .push((Instant::now(), kombu.count("q")));
                }
            }
            kombu
        })
    };
    let until = Instant::now() + Duration::from_secs(4);
    let mut reads = 0;
    while Instant::now() < until {
        let asked = Instant::now();
        let v = source.read().await.expect("read during churn");
        let answered = Instant::now();
        let (lo, hi) = range_between(
            &history.lock().unwrap(),
            asked - Duration::from_millis(100),
            answered,
        );
        assert!(
            (lo as f64..=hi as f64).contains(&v),
            "read {v}, but the queue held between {lo} and {hi} meanwhile"
        );
        reads += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kombu = writer.join().expect("writer");
    assert!(reads >= 10, "only {reads} reads in 4 s");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(source.read().await, Ok(kombu.count("q") as f64));
    assert_eq!(
        raw_unacked(&mut c)["q"].len() as i64,
        kombu.count("q"),
        "the emulated writes keep kombu's layout"
    );
}

/// The least and most the queue held between `from` and `to`, from the
/// writer's records (each pushed right after its MULTI took effect, so the
/// state at a moment is that of the last record before it or the next one).
fn range_between(history: &[(Instant, i64)], from: Instant, to: Instant) -> (i64, i64) {
    let first = history.iter().rposition(|(t, _)| *t <= from).unwrap_or(0);
    let last = history
        .iter()
        .position(|(t, _)| *t > to)
        .unwrap_or(history.len() - 1);
    let window = &history[first..=last.max(first)];
    let lo = window.iter().map(|(_, n)| *n).min().unwrap_or(0);
    let hi = window.iter().map(|(_, n)| *n).max().unwrap_or(0);
    (lo, hi)
}

/// What kombu's Redis QoS writes when a worker takes and acknowledges
/// messages, with messages of about 1 KiB like real task payloads.
#[derive(Default)]
struct KombuWrites {
    /// In flight, oldest first: (delivery tag, routing key).
    held: std::collections::VecDeque<(String, String)>,
    next: u64,
}

impl KombuWrites {
    fn take(&mut self, c: &mut redis::Connection, routing_key: &str) {
        self.next += 1;
        let tag = format!(
            "{:08x}-tag-{}",
            self.next * 2_654_435_761 % (1 << 32),
            self.next
        );
        let message = json!({
            "body": "x".repeat(900),
            "headers": {"id": tag},
            "properties": {"delivery_tag": tag, "priority": 0},
        });
        let value = serde_json::to_string(&json!([message, "", routing_key]))
            .expect("json")
            .replace("\",\"", "\", \"");
        let score = self.next as f64;
        redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg("unacked_index")
            .arg(score)
            .arg(&tag)
            .cmd("HSET")
            .arg("unacked")
            .arg(&tag)
            .arg(value)
            .query::<()>(c)
            .expect("take");
        self.held.push_back((tag, routing_key.to_string()));
    }

    fn ack_oldest(&mut self, c: &mut redis::Connection) {
        let Some((tag, _)) = self.held.pop_front() else {
            return;
        };
        redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg("unacked_index")
            .arg(&tag)
            .cmd("HDEL")
            .arg("unacked")
            .arg(&tag)
            .query::<()>(c)
            .expect("ack");
    }

    fn count(&self, routing_key: &str) -> i64 {
        self.held.iter().filter(|(_, k)| k == routing_key).count() as i64
    }
}

/// A Redis ACL user that may not read what the in-flight index needs: the
/// source still counts exactly, the old way, and says so in its warning;
/// when scripts are denied too it scans the hash, still exactly. A user
/// allowed everything gets no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denying_the_index_falls_back_with_a_warning() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut c = connect(&url);
    let mut kombu = KombuWrites::default();
    for i in 0..30 {
        kombu.take(&mut c, if i % 3 == 0 { "other" } else { "q" });
    }
    redis::cmd("LPUSH")
        .arg("q")
        .arg("m1")
        .arg("m2")
        .query::<()>(&mut c)
        .expect("LPUSH");
    let users = [
        ("no-index", "+@all -zrange"),
        ("no-index-no-script", "+@all -zrange -evalsha -eval"),
        ("everything", "+@all"),
    ];
    for (user, rules) in users {
        let mut acl = redis::cmd("ACL");
        acl.arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(">pw-12345")
            .arg("~*");
        acl.arg(rules.split(' ').collect::<Vec<_>>());
        acl.query::<()>(&mut c).expect("ACL SETUSER");
    }
    let secrets: BTreeMap<(String, String), Vec<u8>> = users
        .iter()
        .flat_map(|(u, _)| {
            [
                ((u.to_string(), "username".into()), u.as_bytes().to_vec()),
                ((u.to_string(), "password".into()), b"pw-12345".to_vec()),
            ]
        })
        .collect();
    for (user, _) in users {
        let t: Trigger = serde_json::from_value(json!({
            "redis": {
                "url": url,
                "usernameSecretRef": {"name": user, "key": "username"},
                "passwordSecretRef": {"name": user, "key": "password"},
                "celery": {"queue": "q", "includeInFlight": true},
            },
            "targetPerReplica": 1.0,
        }))
        .expect("trigger");
        let s = Sources::new();
        let source = s.build(&t, &secrets, T).expect("build");
        assert_eq!(source.read().await, Ok(22.0), "as {user}");
        let warning = source.warning();
        if user == "everything" {
            assert_eq!(warning, None);
            continue;
        }
        let w = warning.unwrap_or_else(|| panic!("{user}: no warning"));
        assert!(w.contains("in-flight index"), "{w}");
        assert!(w.to_lowercase().contains("noperm"), "{w}");
        assert!(w.contains("unacked_index"), "{w}");
        assert!(!w.contains("pw-12345"), "{w}");
        // The fallback keeps counting as the messages change.
        kombu.take(&mut c, "q");
        assert_eq!(source.read().await, Ok(23.0), "as {user}");
        kombu.ack_oldest(&mut c);
        kombu.ack_oldest(&mut c);
    }
}

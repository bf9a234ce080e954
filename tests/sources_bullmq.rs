//! The `bullmq` measure against the real BullMQ (npm bullmq 6.7.0, pinned
//! in tests/node/package-lock.json and installed by scripts/test.sh with
//! `npm ci`): tests/node/bullmq_app.js makes a real Worker hold some jobs
//! (they block until the test releases them), fails jobs through BullMQ's
//! own retry path (with a backoff: retrying, due or not; out of attempts:
//! failed), and adds random numbers of immediate, prioritized and delayed
//! (due and future) jobs. `check --output json` must equal BullMQ's own
//! counts (`getJobCounts`, `getDelayedCount`) for every include
//! combination, paused or not, and after the worker drained the queue;
//! OldestAgeSeconds against the `timestamp` of the job BullMQ runs next.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::frameworks::*;
use support::redis::{command, unique};

const LIMIT: Duration = Duration::from_secs(90);
const KINDS: [&str; 4] = ["Waiting", "InFlight", "Scheduled", "Retrying"];

fn node() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

/// tests/node/bullmq_app.js, once scripts/test.sh installed BullMQ beside it.
fn app() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/bullmq/package.json").exists(),
        "BullMQ is not installed: run the tests through scripts/test.sh \
         (it runs `npm ci` in tests/node)"
    );
    dir.join("bullmq_app.js").display().to_string()
}

/// One BullMQ queue on the shared Redis, driven through bullmq_app.js.
struct BullQueue {
    url: String,
    prefix: String,
    queue: String,
    dir: tempfile::TempDir,
}

impl BullQueue {
    fn new(prefix: &str) -> Self {
        BullQueue {
            url: format!("{}/0", redis_url()),
            prefix: prefix.into(),
            queue: unique("bullmq"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Value {
        let mut all = vec![args[0], &self.url, &self.prefix, &self.queue];
        all.extend(&args[1..]);
        run_json(&node(), &app(), &all)
    }

    fn worker(&self, concurrency: i64) -> WorkerProcess {
        let c = concurrency.to_string();
        let args = [
            app(),
            "worker".into(),
            self.url.clone(),
            self.prefix.clone(),
            self.queue.clone(),
            c,
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        WorkerProcess::start(&node(), &args, self.dir.path().join("worker.log"))
    }

    fn measure(&self, extra: Value) -> Value {
        let mut m = json!({ "queue": self.queue, "prefix": self.prefix });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        json!({ "bullmq": m })
    }

    /// `check` on one Count trigger per include combination plus `age`
    /// (OldestAgeSeconds), then on `default` (no include: a pool holds at
    /// most 16 triggers), while BullMQ's own numbers hold still around both.
    fn check_all(&self) -> (Value, Report) {
        let mut triggers: Vec<(String, Value)> = include_combinations(&KINDS)
            .into_iter()
            .map(|inc| (trigger_name(&inc), self.measure(json!({ "include": inc }))))
            .collect();
        triggers.push((
            "age".into(),
            self.measure(json!({ "measure": "OldestAgeSeconds" })),
        ));
        let combos = pool(&self.url, &triggers);
        let default = pool(&self.url, &[("default".into(), self.measure(json!({})))]);
        eventually(
            "BullMQ's counts to hold still around a check",
            LIMIT,
            || {
                let before = self.run(&["observe"]);
                let mut got = check(self.dir.path(), &combos);
                got.extend(check(self.dir.path(), &default));
                (before == self.run(&["observe"])).then_some((before, got))
            },
        )
    }
}

/// What `check` must say for each kind: BullMQ's own counts, the due part
/// of `delayed` split by what the test made (BullMQ's count API does not
/// tell a due retry from a due delayed job); a paused queue runs nothing.
fn own(o: &Value, kind: &str, retry_due: i64) -> i64 {
    let paused = o["paused"].as_bool().expect("paused");
    match kind {
        "InFlight" => int_field(o, "active"),
        _ if paused => 0,
        "Waiting" => int_field(o, "waiting") + int_field(o, "prioritized"),
        "Scheduled" => int_field(o, "delayedDue") - retry_due,
        "Retrying" => retry_due,
        other => panic!("{other}"),
    }
}

fn assert_report(o: &Value, got: &Report, retry_due: i64) {
    for include in include_combinations(&KINDS) {
        let want: i64 = include.iter().map(|k| own(o, k, retry_due)).sum();
        let (value, error) = &got[&trigger_name(&include)];
        assert_eq!(error, &None, "{include:?}");
        assert_eq!(*value, Some(want as f64), "{include:?}; BullMQ says {o}");
    }
    let default = own(o, "Waiting", retry_due) + own(o, "InFlight", retry_due);
    assert_eq!(got["default"].0, Some(default as f64), "{o}");
}

/// A trigger's name for an include list, e.g. `waiting-inflight`.
fn trigger_name(include: &[String]) -> String {
    include.join("-").to_lowercase()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn bullmq_counts_equal_bullmqs_own() {
    let q = BullQueue::new("bull");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("seed {seed}");
    let hold = 1 + (seed % 3) as i64;
    let _worker = q.worker(hold);
    let filled = q.run(&["fill", &seed.to_string(), &hold.to_string()]);
    let retry_due = int_field(&filled, "retryDue");
    let due = int_field(&filled, "scheduledDue") + retry_due;
    // The retries' 2 s backoff runs out; nothing promotes them (the worker
    // is busy with its held jobs).
    let seen = eventually("the retries to come due", LIMIT, || {
        let o = q.run(&["observe"]);
        (int_field(&o, "delayedDue") == due).then_some(o)
    });
    assert_eq!(int_field(&seen, "active"), hold, "{seen}");
    assert_eq!(
        int_field(&seen, "waiting"),
        int_field(&filled, "immediate"),
        "{seen}"
    );
    assert_eq!(
        int_field(&seen, "prioritized"),
        int_field(&filled, "prioritized"),
        "{seen}"
    );
    assert_eq!(
        int_field(&seen, "failed"),
        int_field(&filled, "dead"),
        "{seen}"
    );
    let retried = retry_due + int_field(&filled, "retryFuture");
    assert_eq!(int_field(&seen, "delayedRetried"), retried, "{seen}");
    let future = int_field(&filled, "scheduledFuture") + int_field(&filled, "retryFuture");
    assert_eq!(int_field(&seen, "delayed"), due + future, "{seen}");

    let (o, got) = q.check_all();
    assert_report(&o, &got, retry_due);
    // The head job (the first immediate one) against its recorded timestamp.
    let head = int_field(&filled, "headTimestamp") as f64 / 1000.0;
    let age = got["age"].0.expect("an age");
    let expected = unix_now() - head;
    assert!(
        age > 0.0 && age <= expected + 1.0 && age >= expected - 30.0,
        "age {age}, expected about {expected}"
    );

    // Paused: BullMQ still lists the waiting jobs, but no worker takes them.
    assert_eq!(q.run(&["pause"])["paused"], json!(true));
    let (o, got) = q.check_all();
    assert_eq!(
        int_field(&o, "waiting"),
        int_field(&filled, "immediate"),
        "{o}"
    );
    assert_report(&o, &got, retry_due);
    assert_eq!(got["age"].0, Some(0.0));
    assert_eq!(q.run(&["resume"])["paused"], json!(false));

    // Released, the worker runs everything due (retries succeed on their
    // second try); only future jobs are left.
    let _: () = command(&q.url, &["SET", &format!("{}-release", q.queue), "1"]);
    let pool = pool(
        &q.url,
        &[("all".into(), q.measure(json!({ "include": KINDS })))],
    );
    let o = eventually("the worker to drain what is due", LIMIT, || {
        let o = q.run(&["observe"]);
        let drained =
            int_field(&o, "active") + int_field(&o, "waiting") + int_field(&o, "prioritized") == 0;
        (drained && int_field(&o, "delayedDue") == 0).then_some(o)
    });
    let ran = hold + int_field(&filled, "immediate") + int_field(&filled, "prioritized") + due;
    assert_eq!(int_field(&o, "completed"), ran, "{o}");
    assert_eq!(int_field(&o, "delayed"), future, "{o}");
    assert_eq!(check(q.dir.path(), &pool)["all"].0, Some(0.0));
    cleanup(&q);
}

#[test]
fn bullmq_age_without_waiting_jobs_is_the_next_prioritized_jobs() {
    let q = BullQueue::new("bull");
    let added = q.run(&["prioritized"]);
    let pool = pool(
        &q.url,
        &[(
            "age".into(),
            q.measure(json!({ "measure": "OldestAgeSeconds" })),
        )],
    );
    let age = check(q.dir.path(), &pool)["age"].0.expect("an age");
    // Not the older job of priority 5: BullMQ runs priority 2 first.
    let expected = unix_now() - int_field(&added, "headTimestamp") as f64 / 1000.0;
    assert!(
        (expected - 30.0..=expected + 1.0).contains(&age) && age < 100.0,
        "age {age}, expected about {expected}"
    );
    cleanup(&q);
}

#[test]
fn bullmq_wrong_key_type_names_the_key_and_bullmq() {
    let q = BullQueue::new("wp");
    let key = format!("wp:{}:wait", q.queue);
    let _: () = command(&q.url, &["SET", &key, "x"]);
    for measure in ["Count", "OldestAgeSeconds"] {
        let pool = pool(
            &q.url,
            &[("t".into(), q.measure(json!({ "measure": measure })))],
        );
        let (value, error) = check(q.dir.path(), &pool)["t"].clone();
        assert_eq!(value, None);
        let error = error.unwrap_or_default();
        assert!(
            error.contains(&key) && error.contains("BullMQ") && error.contains("string"),
            "{error}"
        );
    }
    let _: () = command(&q.url, &["DEL", &key]);
}

#[test]
fn bullmq_refuses_to_split_a_huge_due_backlog_but_counts_it_whole() {
    let q = BullQueue::new("bull");
    let key = format!("bull:{}:delayed", q.queue);
    let mut args: Vec<String> = vec!["ZADD".into(), key.clone()];
    for i in 0..10_001 {
        args.push((1000 * 4096 + i).to_string());
        args.push(format!("job{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: i64 = command(&q.url, &args);
    let pool = pool(
        &q.url,
        &[
            (
                "split".into(),
                q.measure(json!({ "include": ["Scheduled"] })),
            ),
            (
                "whole".into(),
                q.measure(json!({ "include": ["Scheduled", "Retrying"] })),
            ),
        ],
    );
    let got = check(q.dir.path(), &pool);
    let error = got["split"].1.clone().unwrap_or_default();
    assert!(
        error.contains(&key) && error.contains("10001 due delayed jobs"),
        "{error}"
    );
    assert_eq!(got["whole"].0, Some(10_001.0));
    let _: () = command(&q.url, &["DEL", &key]);
}

/// Deletes the queue's keys (unique names: nothing else matches).
fn cleanup(q: &BullQueue) {
    let pattern = format!("{}:{}:*", q.prefix, q.queue);
    let keys: Vec<String> = command(&q.url, &["KEYS", &pattern]);
    for k in keys.iter().chain([&format!("{}-release", q.queue)]) {
        let _: () = command(&q.url, &["DEL", k]);
    }
}

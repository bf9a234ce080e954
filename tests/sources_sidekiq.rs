//! The `sidekiq` measure against the real Sidekiq (Debian's ruby-sidekiq,
//! installed by scripts/test.sh; tests/fixtures/sidekiq_app.rb): a real
//! Sidekiq server fails jobs into the dead and retry sets, some retries are
//! made due through Sidekiq's API, the test enqueues immediate and
//! scheduled (due and future) jobs, and `check --output json` must equal
//! Sidekiq's own API (`Queue#size`, `ScheduledSet`/`RetrySet` filtered by
//! queue, `Workers`) for every include combination: first with no server
//! running (due jobs wait in `schedule` and `retry`), then with a real
//! server whose two threads hold a job each (blocked until the test ends).
//! OldestAgeSeconds is checked against `Queue#latency`.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::frameworks::*;
use support::redis::{unique, RedisProcess};

const LIMIT: Duration = Duration::from_secs(90);

fn ruby() -> String {
    std::env::var("RUBY").unwrap_or_else(|_| "ruby".into())
}

/// Runs `check` with one trigger per include combination and the default,
/// and one with OldestAgeSeconds, and asserts each equals what Sidekiq's
/// API said just before and just after (its counts the same both times).
fn assert_counts_match(
    dir: &std::path::Path,
    url: &str,
    queue: &str,
    filled: &Value,
    observe: &dyn Fn() -> Value,
) {
    let combos = include_combinations(&JOB_STATES);
    let mut triggers: Vec<(String, Value)> = vec![];
    for (i, include) in combos.iter().enumerate() {
        triggers.push((
            format!("c{i}"),
            json!({ "sidekiq": { "queue": queue, "include": include } }),
        ));
    }
    triggers.push(("default".into(), json!({ "sidekiq": { "queue": queue } })));
    // A pool holds at most 16 triggers: the age is a check of its own.
    let age = json!({ "sidekiq": { "queue": queue, "measure": "OldestAgeSeconds" } });
    let age_pool = pool(url, &[("age".into(), age)]);
    let counts = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("latency");
        v
    };
    let (before, after, got, asked, answered) = eventually(
        "Sidekiq's counts to hold still around a check",
        LIMIT,
        || {
            let before = observe();
            let mut got = check(dir, &pool(url, &triggers));
            let asked = unix_now();
            got.extend(check(dir, &age_pool));
            let answered = unix_now();
            let after = observe();
            (counts(&before) == counts(&after)).then_some((before, after, got, asked, answered))
        },
    );
    for (i, include) in combos.iter().enumerate() {
        let want: i64 = include.iter().map(|s| reported_count(&before, s)).sum();
        let (value, error) = &got[&format!("c{i}")];
        assert_eq!(error, &None, "{include:?}");
        assert_eq!(
            *value,
            Some(want as f64),
            "include {include:?}; Sidekiq says {before}"
        );
    }
    let want = (int_field(&before, "waiting") + int_field(&before, "inFlight")) as f64;
    assert_eq!(got["default"].0, Some(want), "default include; {before}");
    let age = got["age"]
        .0
        .unwrap_or_else(|| panic!("no age: {:?}", got["age"]));
    assert_age(age, [&before, &after], filled, (asked, answered));
}

/// OldestAgeSeconds `age`, read between `asked` and `answered`, against
/// Sidekiq's latency seen just before and after, the enqueue time Sidekiq
/// recorded and the time the test enqueued the job.
fn assert_age(
    age: f64,
    [before, after]: [&Value; 2],
    filled: &Value,
    (asked, answered): (f64, f64),
) {
    // Sidekiq's latency, read just before and just after the check.
    let (low, high) = (
        before["latency"].as_f64().unwrap(),
        after["latency"].as_f64().unwrap(),
    );
    assert!(
        low - 0.01 <= age && age <= high + 0.01,
        "age {age}, Sidekiq's latency {low}..{high}"
    );
    // The enqueue time Sidekiq recorded for the next job...
    let head = n_f(before, "headEnqueuedAt");
    assert!(
        age > 0.0 && age <= answered - head + 0.01,
        "age {age}, enqueued at {head}"
    );
    // ...and the time the test enqueued it (one of the immediate ones: due
    // jobs are pushed behind them).
    let (from, to) = (n_f(filled, "enqueuedFrom"), n_f(filled, "enqueuedTo"));
    assert!(
        asked - to - 0.01 <= age && age <= answered - from + 0.01,
        "age {age}, enqueued {from}..{to}, checked {asked}..{answered}"
    );
}

fn n_f(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn sidekiq_counts_equal_sidekiqs_own() {
    let url = format!("{}/0", redis_url());
    let queue = unique("sk");
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("seed {seed}");
    let filled = run_json(
        &ruby(),
        "sidekiq_app.rb",
        &["fill", &url, &queue, &seed.to_string()],
    );
    let observe = || run_json(&ruby(), "sidekiq_app.rb", &["observe", &url, &queue]);

    // No server: due scheduled jobs and retries wait in the shared sets.
    let o = observe();
    assert_eq!(
        int_field(&o, "waiting"),
        int_field(&filled, "immediate"),
        "{o}"
    );
    assert_eq!(int_field(&o, "inFlight"), 0, "{o}");
    assert_eq!(
        int_field(&o, "scheduledDue"),
        int_field(&filled, "scheduledDue"),
        "{o}"
    );
    assert_eq!(
        int_field(&o, "retryingDue"),
        int_field(&filled, "retryDue"),
        "{o}"
    );
    assert_eq!(
        int_field(&o, "retryAll"),
        int_field(&filled, "retryDue") + int_field(&filled, "retryFuture"),
        "{o}"
    );
    assert_eq!(int_field(&o, "dead"), int_field(&filled, "dead"), "{o}");
    assert_counts_match(dir.path(), &url, &queue, &filled, &observe);

    // A server with two threads: each holds a job, and its poller moves the
    // due jobs to the queue.
    let _server = WorkerProcess::start(
        &ruby(),
        &["sidekiq_app.rb", "server", &url, &queue, "2"],
        dir.path().join("server.log"),
    );
    let moved = int_field(&filled, "immediate")
        + int_field(&filled, "scheduledDue")
        + int_field(&filled, "retryDue")
        - 2;
    eventually(
        "a Sidekiq server holding two jobs, due jobs moved",
        LIMIT,
        || {
            let o = observe();
            (int_field(&o, "inFlight") == 2 && int_field(&o, "waiting") == moved).then_some(())
        },
    );
    assert_counts_match(dir.path(), &url, &queue, &filled, &observe);
}

#[test]
fn sidekiq_wrong_key_type_names_the_key_and_sidekiq() {
    let url = format!("{}/0", redis_url());
    let queue = unique("sk-hash");
    let key = format!("queue:{queue}");
    let _: () = support::redis::command(&url, &["HSET", &key, "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    for measure in ["Count", "OldestAgeSeconds"] {
        let m = json!({ "sidekiq": { "queue": queue, "measure": measure } });
        let got = check(dir.path(), &pool(&url, &[("t".into(), m)]));
        let (value, error) = &got["t"];
        assert_eq!(*value, None);
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&key) && error.contains("Sidekiq") && error.contains("hash"),
            "{error}"
        );
    }
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

#[test]
fn sidekiq_refuses_to_decode_a_huge_due_set_but_counts_the_rest() {
    // A server of its own: 10,001 due entries in the shared `schedule` set
    // would fail every other Sidekiq reading of the shared server.
    let redis = RedisProcess::start();
    let url = format!("{}/0", redis.url());
    let mut args: Vec<String> = vec!["ZADD".into(), "schedule".into()];
    for i in 0..10_001 {
        args.push("1000".into());
        args.push(format!(r#"{{"queue":"other","jid":"{i}"}}"#));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: i64 = support::redis::command(&url, &args);
    let _: i64 = support::redis::command(&url, &["LPUSH", "queue:q", r#"{"queue":"q"}"#]);
    let dir = tempfile::tempdir().unwrap();
    let trigger = |include: Value| json!({ "sidekiq": { "queue": "q", "include": include } });
    let got = check(
        dir.path(),
        &pool(
            &url,
            &[
                ("scheduled".into(), trigger(json!(["Scheduled"]))),
                (
                    "rest".into(),
                    trigger(json!(["Waiting", "InFlight", "Retrying"])),
                ),
            ],
        ),
    );
    let error = got["scheduled"]
        .1
        .as_deref()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("schedule") && error.contains("10001 due jobs"),
        "{error}"
    );
    assert_eq!(got["rest"], (Some(1.0), None));
    // A due entry that is not JSON fails the read, naming the set.
    let _: i64 = support::redis::command(&url, &["ZADD", "retry", "1000", "\u{4}\u{8}marshal q"]);
    let got = check(
        dir.path(),
        &pool(&url, &[("t".into(), trigger(json!(["Retrying"])))]),
    );
    let error = got["t"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains("retry") && error.contains("not a JSON Sidekiq job"),
        "{error}"
    );
}

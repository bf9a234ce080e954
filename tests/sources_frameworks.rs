//! The queue-framework measures (`rq`, ...) against the real frameworks:
//! each framework's own producer enqueues random numbers of immediate,
//! scheduled (due and future), retrying and dead jobs, real workers hold
//! some jobs (a job that blocks until the test releases it), and the
//! operator's `check --output json` must equal the framework's own count
//! API for every include combination. The fixture scripts are
//! tests/fixtures/<framework>_app.py; scripts/test.sh installs the
//! frameworks (pinned in tests/requirements.txt). Every wait polls with a
//! deadline; workers are killed with their process group on drop.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::frameworks::*;
use support::redis::unique;

const LIMIT: Duration = Duration::from_secs(90);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn seed() -> u64 {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {s}");
    s
}

/// One framework trigger checked against the framework.
struct Case<'a> {
    dir: &'a std::path::Path,
    url: &'a str,
    /// The measure's field (`rq`).
    framework: &'a str,
    /// The measure without `include` (e.g. `{queue: Q}`).
    measure: Value,
    /// The kinds the framework records.
    states: &'a [&'a str],
    /// Also check OldestAgeSeconds.
    with_age: bool,
}

/// Runs `check` with one Count trigger per include combination (plus one
/// OldestAgeSeconds trigger `age` if asked), and asserts each value is the
/// sum of what the framework itself reports for the included kinds
/// (`own`: kind -> count), the framework's numbers being the same before
/// and after the check.
fn assert_counts_match(
    case: Case<'_>,
    observe: &dyn Fn() -> Value,
    own: &dyn Fn(&Value, &str) -> i64,
) -> (Value, Report) {
    let Case {
        dir,
        url,
        framework,
        measure,
        states,
        with_age,
    } = case;
    let combos = include_combinations(states);
    let mut triggers: Vec<(String, Value)> = vec![];
    for (i, include) in combos.iter().enumerate() {
        let mut m = measure.clone();
        m["include"] = json!(include);
        triggers.push((format!("c{i}"), json!({ framework: m })));
    }
    if with_age {
        let mut age = measure.clone();
        age["measure"] = json!("OldestAgeSeconds");
        triggers.push(("age".into(), json!({ framework: age })));
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("headEnqueuedAt");
        v
    };
    // A framework's scheduler may move a job while the check runs: try
    // again until the framework's numbers held still around one check.
    let (before, got) = eventually(
        "the framework's counts to hold still around a check",
        LIMIT,
        || {
            let before = observe();
            let got = check(dir, &pool(url, &triggers));
            (strip(&before) == strip(&observe())).then_some((before, got))
        },
    );
    for (i, include) in combos.iter().enumerate() {
        let want: i64 = include.iter().map(|s| own(&before, s)).sum();
        let (value, error) = &got[&format!("c{i}")];
        assert_eq!(error, &None, "{include:?}");
        assert_eq!(
            *value,
            Some(want as f64),
            "include {include:?}; the framework says {before}"
        );
    }
    (before, got)
}

#[test]
fn rq_counts_equal_rqs_own() {
    let url = format!("{}/0", redis_url());
    let py = python();
    let queue = unique("rq");
    let other = unique("rq-other");
    let dir = tempfile::tempdir().unwrap();
    let filled = run_json(
        &py,
        "rq_app.py",
        &["fill", &url, &queue, &seed().to_string()],
    );
    let observe = || run_json(&py, "rq_app.py", &["observe", &url, &queue]);
    // One worker on the queue alone (it moves a job to the intermediate
    // list, and from there to the started registry), one listening to two
    // queues (it pops with BLPOP: straight to the started registry).
    let _single = WorkerProcess::start(
        &py,
        &["rq_app.py", "worker", &url, &unique("w1"), &queue],
        dir.path().join("w1.log"),
    );
    let _multi = WorkerProcess::start(
        &py,
        &["rq_app.py", "worker", &url, &unique("w2"), &queue, &other],
        dir.path().join("w2.log"),
    );
    let due = int_field(&filled, "due") + int_field(&filled, "retryDue");
    let seen = eventually(
        "two RQ workers holding a job each, retries due",
        LIMIT,
        || {
            let o = observe();
            // A job moves from the intermediate list as it starts.
            let settled = int_field(&o, "started") == 2 && int_field(&o, "intermediate") == 0;
            (settled && int_field(&o, "scheduledDue") == due).then_some(o)
        },
    );
    assert_eq!(
        int_field(&seen, "waiting"),
        int_field(&filled, "immediate") - 2,
        "{seen}"
    );
    assert_eq!(int_field(&seen, "inFlight"), 2, "{seen}");
    assert_eq!(
        int_field(&seen, "failed"),
        int_field(&filled, "dead"),
        "{seen}"
    );
    let own = |o: &Value, s: &str| match s {
        "Waiting" => int_field(o, "waiting"),
        "InFlight" => int_field(o, "inFlight"),
        "Scheduled" => int_field(o, "scheduledDue"),
        other => panic!("{other}"),
    };
    let (o, got) = assert_counts_match(
        Case {
            dir: dir.path(),
            url: &url,
            framework: "rq",
            measure: json!({ "queue": queue }),
            states: &["Waiting", "InFlight", "Scheduled"],
            with_age: true,
        },
        &observe,
        &own,
    );
    // Default include: Waiting + InFlight.
    let d = check(
        dir.path(),
        &pool(&url, &[("d".into(), json!({ "rq": { "queue": queue } }))]),
    );
    assert_eq!(
        d["d"].0,
        Some((int_field(&o, "waiting") + int_field(&o, "inFlight")) as f64)
    );
    // The head job's age, against the enqueue time RQ recorded for it.
    let head = o["headEnqueuedAt"].as_f64().expect("a head job");
    let age = got["age"].0.expect("an age");
    let expected = unix_now() - head;
    assert!(
        age > 0.0 && age <= expected + 1.0 && age >= expected - 30.0,
        "age {age}, expected about {expected}"
    );
}

#[test]
fn rq_wrong_key_type_names_the_key_and_rq() {
    let url = format!("{}/0", redis_url());
    let queue = unique("rq-hash");
    let key = format!("rq:queue:{queue}");
    let _: () = support::redis::command(&url, &["HSET", &key, "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    for measure in ["Count", "OldestAgeSeconds"] {
        let got = check(
            dir.path(),
            &pool(
                &url,
                &[(
                    "t".into(),
                    json!({ "rq": { "queue": queue, "measure": measure } }),
                )],
            ),
        );
        let (value, error) = &got["t"];
        assert_eq!(*value, None);
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&key) && error.contains("RQ") && error.contains("hash"),
            "{error}"
        );
    }
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

#[test]
fn arq_counts_equal_arqs_own() {
    let url = format!("{}/0", redis_url());
    let py = python_arq();
    let queue = unique("arq");
    let dir = tempfile::tempdir().unwrap();
    let filled = run_json(
        &py,
        "arq_app.py",
        &["fill", &url, &queue, &seed().to_string()],
    );
    let observe = || run_json(&py, "arq_app.py", &["observe", &url, &queue]);
    // At most two jobs at once: it takes the lowest scores first, the jobs
    // deferred to the past, and holds them.
    let _worker = WorkerProcess::start(
        &py,
        &["arq_app.py", "worker", &url, &queue, "2"],
        dir.path().join("worker.log"),
    );
    let seen = eventually(
        "an arq worker holding two jobs, the retries due",
        LIMIT,
        || {
            let o = observe();
            (int_field(&o, "inProgress") == 2
                && int_field(&o, "queuedRetry") == int_field(&filled, "retryDue"))
            .then_some(o)
        },
    );
    assert_eq!(
        int_field(&seen, "queued"),
        int_field(&filled, "immediate") + int_field(&filled, "duePast") - 2,
        "{seen}"
    );
    assert_eq!(
        int_field(&seen, "deferred"),
        int_field(&filled, "retryFuture") + int_field(&filled, "future"),
        "{seen}"
    );
    let own = |o: &Value, s: &str| match s {
        "Waiting" => int_field(o, "queued"),
        "InFlight" => int_field(o, "inProgress"),
        "Retrying" => int_field(o, "queuedRetry"),
        other => panic!("{other}"),
    };
    let (o, _) = assert_counts_match(
        Case {
            dir: dir.path(),
            url: &url,
            framework: "arq",
            measure: json!({ "queueName": queue }),
            states: &["Waiting", "InFlight", "Retrying"],
            with_age: false,
        },
        &observe,
        &own,
    );
    // Default include: every due job.
    let d = check(
        dir.path(),
        &pool(
            &url,
            &[("d".into(), json!({ "arq": { "queueName": queue } }))],
        ),
    );
    let due = int_field(&o, "queued") + int_field(&o, "inProgress") + int_field(&o, "queuedRetry");
    assert_eq!(d["d"].0, Some(due as f64));
}

#[test]
fn arq_wrong_key_type_names_the_key_and_arq() {
    let url = format!("{}/0", redis_url());
    let queue = unique("arq-list");
    let _: () = support::redis::command(&url, &["RPUSH", &queue, "a"]);
    let dir = tempfile::tempdir().unwrap();
    let got = check(
        dir.path(),
        &pool(
            &url,
            &[("t".into(), json!({ "arq": { "queueName": queue } }))],
        ),
    );
    let error = got["t"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains(&queue) && error.contains("arq") && error.contains("list"),
        "{error}"
    );
    let _: () = support::redis::command(&url, &["DEL", &queue]);
}

#[test]
fn huey_counts_equal_hueys_own() {
    let url = format!("{}/0", redis_url());
    let py = python();
    let name = unique("huey").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    let filled = run_json(
        &py,
        "huey_app.py",
        &["fill", &url, &name, &seed().to_string()],
    );
    let observe = || run_json(&py, "huey_app.py", &["observe", &url, &name]);
    let _consumer = WorkerProcess::start(
        &py,
        &["huey_app.py", "consumer", &url, &name, "2"],
        dir.path().join("consumer.log"),
    );
    // Two worker threads each take a task and hold it; Huey then keeps no
    // trace of them in Redis.
    let seen = eventually("a Huey consumer holding two tasks", LIMIT, || {
        let o = observe();
        (int_field(&o, "held") == 2).then_some(o)
    });
    assert!(
        int_field(&seen, "scheduled") >= int_field(&filled, "retryFuture"),
        "{seen}"
    );
    let own = |o: &Value, s: &str| match s {
        "Waiting" => int_field(o, "pending"),
        "Scheduled" => int_field(o, "scheduledDue"),
        other => panic!("{other}"),
    };
    let (o, _) = assert_counts_match(
        Case {
            dir: dir.path(),
            url: &url,
            framework: "huey",
            measure: json!({ "name": name }),
            states: &["Waiting", "Scheduled"],
            with_age: false,
        },
        &observe,
        &own,
    );
    // Default include: Waiting (Huey records no in-flight work).
    let d = check(
        dir.path(),
        &pool(&url, &[("d".into(), json!({ "huey": { "name": name } }))]),
    );
    assert_eq!(d["d"].0, Some(int_field(&o, "pending") as f64));
}

#[test]
fn huey_wrong_key_type_names_the_key_and_huey() {
    let url = format!("{}/0", redis_url());
    let name = unique("huey").replace('-', "_");
    let key = format!("huey.redis.{name}");
    let _: () = support::redis::command(&url, &["HSET", &key, "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let got = check(
        dir.path(),
        &pool(&url, &[("t".into(), json!({ "huey": { "name": name } }))]),
    );
    let error = got["t"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains(&key) && error.contains("Huey") && error.contains("hash"),
        "{error}"
    );
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

#[test]
fn arq_refuses_per_job_lookups_on_a_huge_backlog_but_counts_it_whole() {
    let url = format!("{}/0", redis_url());
    let queue = unique("arq-huge");
    let mut args: Vec<String> = vec!["ZADD".into(), queue.clone()];
    for i in 0..10_001 {
        args.push("1000".into());
        args.push(format!("job{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: i64 = support::redis::command(&url, &args);
    let dir = tempfile::tempdir().unwrap();
    let got = check(
        dir.path(),
        &pool(
            &url,
            &[
                (
                    "split".into(),
                    json!({ "arq": { "queueName": queue, "include": ["Waiting"] } }),
                ),
                ("whole".into(), json!({ "arq": { "queueName": queue } })),
            ],
        ),
    );
    let error = got["split"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains(&queue) && error.contains("10001 due jobs"),
        "{error}"
    );
    assert_eq!(got["whole"].0, Some(10_001.0));
    let _: () = support::redis::command(&url, &["DEL", &queue]);
}

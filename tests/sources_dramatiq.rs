//! The `dramatiq` measure against the real Dramatiq (tests/fixtures/
//! dramatiq_app.py; scripts/test.sh installs dramatiq from
//! tests/requirements.txt): Dramatiq's own worker fails messages into dead
//! letters and retries, the test sends immediate and delayed (due and
//! future) messages, and `check --output json` must equal what Dramatiq's
//! broker holds for every include combination: first with no worker
//! running (due delayed messages wait in the delay queue), then with a real
//! worker holding messages (blocked until the test ends). Dramatiq's own
//! `do_qsize` must agree with the fixture's reading of its keys.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::frameworks::*;
use support::redis::unique;

const LIMIT: Duration = Duration::from_secs(90);

/// Runs `check` with one trigger per include combination and asserts each
/// equals the sum of Dramatiq's numbers, which held still around the check.
fn assert_counts_match(
    dir: &std::path::Path,
    url: &str,
    measure: &Value,
    observe: &dyn Fn() -> Value,
) {
    let combos = include_combinations(&JOB_STATES);
    let mut triggers: Vec<(String, Value)> = vec![];
    for (i, include) in combos.iter().enumerate() {
        let mut m = measure.clone();
        m["include"] = json!(include);
        triggers.push((format!("c{i}"), json!({ "dramatiq": m })));
    }
    triggers.push(("default".into(), json!({ "dramatiq": measure })));
    let (o, got) = eventually(
        "Dramatiq's counts to hold still around a check",
        LIMIT,
        || {
            let before = observe();
            let got = check(dir, &pool(url, &triggers));
            (before == observe()).then_some((before, got))
        },
    );
    // Dramatiq's own size of the queue: every message not acknowledged,
    // delayed ones too (due or not).
    assert_eq!(
        int_field(&o, "qsize"),
        int_field(&o, "waiting") + int_field(&o, "inFlight") + int_field(&o, "delayedAll"),
        "{o}"
    );
    for (i, include) in combos.iter().enumerate() {
        let want: i64 = include.iter().map(|s| reported_count(&o, s)).sum();
        let (value, error) = &got[&format!("c{i}")];
        assert_eq!(error, &None, "{include:?}");
        assert_eq!(
            *value,
            Some(want as f64),
            "include {include:?}; Dramatiq says {o}"
        );
    }
    let want = (int_field(&o, "waiting") + int_field(&o, "inFlight")) as f64;
    assert_eq!(got["default"].0, Some(want), "default include; {o}");
}

#[test]
fn dramatiq_counts_equal_dramatiqs_own() {
    let url = format!("{}/0", redis_url());
    let py = python();
    let namespace = unique("dq-ns");
    let queue = unique("dq").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("seed {seed}");
    let filled = run_json(
        &py,
        "dramatiq_app.py",
        &["fill", &url, &namespace, &queue, &seed.to_string()],
    );
    let observe = || {
        run_json(
            &py,
            "dramatiq_app.py",
            &["observe", &url, &namespace, &queue],
        )
    };
    let measure = json!({ "queue": queue, "namespace": namespace });

    // No worker: due delayed messages and retries wait in the delay queue.
    let o = observe();
    assert_eq!(
        int_field(&o, "waiting"),
        int_field(&filled, "immediate"),
        "{o}"
    );
    assert_eq!(int_field(&o, "inFlight"), 0, "{o}");
    assert_eq!(
        int_field(&o, "scheduledDue"),
        int_field(&filled, "delayedDue"),
        "{o}"
    );
    assert_eq!(
        int_field(&o, "retryingDue"),
        int_field(&filled, "retryDue"),
        "{o}"
    );
    assert_eq!(int_field(&o, "dead"), int_field(&filled, "dead"), "{o}");
    assert_counts_match(dir.path(), &url, &measure, &observe);

    // A worker with two threads prefetches four messages (twice its
    // threads), runs two and holds them; it moves the due delayed ones to
    // the queue and keeps the future ones in memory.
    let _worker = WorkerProcess::start(
        &py,
        &["dramatiq_app.py", "worker", &url, &namespace, &queue, "2"],
        dir.path().join("worker.log"),
    );
    let moved = int_field(&filled, "immediate")
        + int_field(&filled, "delayedDue")
        + int_field(&filled, "retryDue")
        - 4;
    eventually("a Dramatiq worker holding four messages", LIMIT, || {
        let o = observe();
        (int_field(&o, "inFlight") == 4 && int_field(&o, "waiting") == moved).then_some(())
    });
    assert_counts_match(dir.path(), &url, &measure, &observe);
}

#[test]
fn dramatiq_default_namespace_is_dramatiqs() {
    let url = format!("{}/0", redis_url());
    let queue = unique("dq-default");
    let key = format!("dramatiq:{queue}");
    let _: () = support::redis::command(&url, &["RPUSH", &key, "a", "b", "c"]);
    let dir = tempfile::tempdir().unwrap();
    let got = check(
        dir.path(),
        &pool(
            &url,
            &[(
                "t".into(),
                json!({ "dramatiq": { "queue": queue, "include": ["Waiting"] } }),
            )],
        ),
    );
    assert_eq!(got["t"], (Some(3.0), None));
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

#[test]
fn dramatiq_wrong_key_type_names_the_key_and_dramatiq() {
    let url = format!("{}/0", redis_url());
    let queue = unique("dq-hash");
    let key = format!("dramatiq:{queue}");
    let _: () = support::redis::command(&url, &["HSET", &key, "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let got = check(
        dir.path(),
        &pool(
            &url,
            &[("t".into(), json!({ "dramatiq": { "queue": queue } }))],
        ),
    );
    let (value, error) = &got["t"];
    assert_eq!(*value, None);
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&key) && error.contains("Dramatiq") && error.contains("hash"),
        "{error}"
    );
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

#[test]
fn dramatiq_refuses_to_decode_a_huge_delay_queue_and_names_an_unreadable_one() {
    let url = format!("{}/0", redis_url());
    let queue = unique("dq-huge");
    let key = format!("dramatiq:{queue}.DQ.msgs");
    let mut args: Vec<String> = vec!["HSET".into(), key.clone()];
    for i in 0..10_001 {
        args.push(format!("m{i}"));
        args.push(r#"{"options":{"eta":1000}}"#.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _: i64 = support::redis::command(&url, &args);
    let dir = tempfile::tempdir().unwrap();
    let triggers = |include: Value| {
        pool(
            &url,
            &[(
                "t".into(),
                json!({ "dramatiq": { "queue": queue, "include": include } }),
            )],
        )
    };
    let got = check(dir.path(), &triggers(json!(["Scheduled"])));
    let error = got["t"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains(&key) && error.contains("10001 messages"),
        "{error}"
    );
    // Waiting and InFlight never read the delay queue.
    let got = check(dir.path(), &triggers(json!(["Waiting", "InFlight"])));
    assert_eq!(got["t"], (Some(0.0), None));
    // A message Dramatiq's JSON encoder did not write fails the read, named.
    let _: () = support::redis::command(&url, &["DEL", &key]);
    let _: i64 = support::redis::command(&url, &["HSET", &key, "m", "\u{80}pickle"]);
    let got = check(dir.path(), &triggers(json!(["Retrying"])));
    let error = got["t"].1.as_deref().unwrap_or_default().to_string();
    assert!(
        error.contains(&key) && error.contains("not a JSON Dramatiq message"),
        "{error}"
    );
    let _: () = support::redis::command(&url, &["DEL", &key]);
}

//! The Redis metric sources (src/sources/redis.rs) against real
//! `redis-server`s: the shared test server for plain reads, and servers of
//! their own for what the shared one must not see (ACL users, killed
//! connections, TLS, a paused server, counting connections).
//! Every wait polls with a deadline.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::redis::{connect, free_port, shared_url, unique, RedisProcess, RedisWithArgs};
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, SourceError, Sources};

type Secrets = BTreeMap<(String, String), Vec<u8>>;

const T: Duration = Duration::from_secs(2);

fn trigger(redis: Value) -> Trigger {
    serde_json::from_value(json!({"redis": redis, "targetPerReplica": 1.0}))
        .unwrap_or_else(|e| panic!("bad test trigger {redis}: {e}"))
}

fn build(sources: &Sources, redis: Value) -> Arc<dyn MetricSource> {
    build_with(sources, redis, &Secrets::new(), T)
}

fn build_with(
    sources: &Sources,
    redis: Value,
    secrets: &Secrets,
    timeout: Duration,
) -> Arc<dyn MetricSource> {
    sources
        .build(&trigger(redis.clone()), secrets, timeout)
        .unwrap_or_else(|e| panic!("cannot build {redis}: {e}"))
}

fn cmd(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    json!(format!("{v:?}"))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reads until the source returns `want`, or fails with the last result.
async fn read_until(source: &dyn MetricSource, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = source.read().await;
        if got == Ok(want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{}: wanted {want} within {within:?}, last read {got:?}",
                source.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `redis-server` `INFO` field as a number.
fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(c)
        .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}: {text}"))
}

/// The clients a server has, other than the connection asking.
fn other_clients(admin: &mut redis::Connection) -> Vec<String> {
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(admin)
        .expect("CLIENT ID");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(admin)
        .expect("CLIENT LIST");
    list.lines()
        .filter(|l| !l.starts_with(&format!("id={me} ")))
        .map(str::to_string)
        .collect()
}

async fn wait_for_clients(admin: &mut redis::Connection, want: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let clients = other_clients(admin);
        if clients.len() == want {
            return;
        }
        if Instant::now() > deadline {
            panic!("wanted {want} client connection(s) within {within:?}, have {clients:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn expect_err(r: Result<f64, SourceError>, what: &str) -> SourceError {
    match r {
        Ok(v) => panic!("{what}: expected an error, read {v}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_count_items_and_a_missing_list_is_zero() {
    let url = shared_url();
    let mut c = connect(&url);
    let (k1, k2, k3) = (unique("list"), unique("list"), unique("notalist"));
    let s = Sources::new();

    let one = build(&s, json!({"url": url, "list": k1}));
    assert!(
        one.describe()
            .starts_with(&format!("LLEN {k1} on redis://127.0.0.1:")),
        "{}",
        one.describe()
    );
    assert_eq!(one.read().await, Ok(0.0), "a missing list is an empty list");
    cmd(&mut c, &["RPUSH", &k1, "a", "b", "c"]);
    assert_eq!(one.read().await, Ok(3.0));

    cmd(&mut c, &["RPUSH", &k2, "x", "y"]);
    let both = build(&s, json!({"url": url, "lists": [k1, k2]}));
    assert_eq!(both.read().await, Ok(5.0));
    cmd(&mut c, &["LPOP", &k1]);
    assert_eq!(both.read().await, Ok(4.0));

    cmd(&mut c, &["SET", &k3, "v"]);
    let wrong = build(&s, json!({"url": url, "lists": [k1, k3]}));
    let e = expect_err(wrong.read().await, "a string named as a list");
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{k3} is a string, not a list")),
        "{e}"
    );

    cmd(&mut c, &["DEL", &k1, &k2, &k3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_report_lag_pending_and_length_and_name_what_is_missing() {
    let url = shared_url();
    let mut c = connect(&url);
    let stream = unique("stream");
    let s = Sources::new();
    let source = |group: &str, measure: &str| {
        build(
            &s,
            json!({"url": url, "stream": {"name": stream, "group": group, "measure": measure}}),
        )
    };
    let (lag, pending, length) = (
        source("workers", "Lag"),
        source("workers", "Pending"),
        source("workers", "Length"),
    );

    // Nothing exists yet: an error naming the stream, never 0.
    for src in [&lag, &pending, &length] {
        let e = expect_err(src.read().await, "missing stream");
        assert_eq!(e.metric_label(), "not_found", "{e}");
        assert!(
            e.to_string()
                .contains(&format!("stream {stream} does not exist")),
            "{e}"
        );
    }

    for i in 0..5 {
        cmd(&mut c, &["XADD", &stream, "*", "n", &i.to_string()]);
    }
    cmd(&mut c, &["XGROUP", "CREATE", &stream, "workers", "0"]);
    cmd(&mut c, &["XGROUP", "CREATE", &stream, "audit", "$"]);
    // A consumer takes two entries and acknowledges neither yet.
    cmd(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            &stream,
            ">",
        ],
    );
    let taken: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
        .arg(&[stream.as_str(), "workers", "-", "+", "10"])
        .query(&mut c)
        .expect("XPENDING");
    let ids: Vec<String> = taken.into_iter().map(|(id, ..)| id).collect();
    assert_eq!(ids.len(), 2);

    assert_eq!(lag.read().await, Ok(3.0), "5 entries, 2 delivered");
    assert_eq!(pending.read().await, Ok(2.0), "2 delivered, none acked");
    assert_eq!(length.read().await, Ok(5.0));

    cmd(&mut c, &["XACK", &stream, "workers", &ids[0]]);
    for i in 5..7 {
        cmd(&mut c, &["XADD", &stream, "*", "n", &i.to_string()]);
    }
    assert_eq!(lag.read().await, Ok(5.0));
    assert_eq!(pending.read().await, Ok(1.0));
    assert_eq!(length.read().await, Ok(7.0));
    // Redis's own numbers agree: XPENDING's count and XLEN.
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("workers")
        .query(&mut c)
        .expect("XPENDING");
    assert_eq!(summary.first(), Some(&redis::Value::Int(1)), "{summary:?}");
    let xlen: i64 = redis::cmd("XLEN").arg(&stream).query(&mut c).expect("XLEN");
    assert_eq!(xlen, 7);

    // A group the stream does not have: an error naming it and the groups it has.
    let e = expect_err(source("nosuchgroup", "Lag").read().await, "missing group");
    assert_eq!(e.metric_label(), "not_found", "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "stream {stream} has no consumer group nosuchgroup"
        )),
        "{text}"
    );
    assert!(text.contains("audit") && text.contains("workers"), "{text}");

    // A key of another type named as a stream.
    let list = unique("list");
    cmd(&mut c, &["RPUSH", &list, "x"]);
    let e = expect_err(
        build(
            &s,
            json!({"url": url, "stream": {"name": list, "measure": "Length"}}),
        )
        .read()
        .await,
        "list named as a stream",
    );
    assert_eq!(e.metric_label(), "bad_result", "{e}");
    assert!(e.to_string().contains("is a list, not a stream"), "{e}");

    cmd(&mut c, &["DEL", &stream, &list]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_sets_count_all_or_only_due_entries() {
    let url = shared_url();
    let mut c = connect(&url);
    let key = unique("delayed");
    let s = Sources::new();
    let all = build(&s, json!({"url": url, "sortedSet": {"name": key}}));
    let due = build(
        &s,
        json!({"url": url, "sortedSet": {"name": key, "dueOnly": true}}),
    );
    assert_eq!(all.read().await, Ok(0.0), "a missing sorted set is empty");
    assert_eq!(due.read().await, Ok(0.0));

    let now = now_secs();
    for (score, member) in [
        (now - 100.0, "a"),
        (now - 10.0, "b"),
        (now + 3600.0, "c"),
        (now + 7200.0, "d"),
    ] {
        cmd(&mut c, &["ZADD", &key, &format!("{score:.3}"), member]);
    }
    assert_eq!(all.read().await, Ok(4.0));
    assert_eq!(
        due.read().await,
        Ok(2.0),
        "two entries are due, two are in the future"
    );
    assert!(due.describe().contains("ZCOUNT"), "{}", due.describe());

    // One becomes due a moment from now.
    cmd(
        &mut c,
        &["ZADD", &key, &format!("{:.3}", now_secs() + 1.0), "e"],
    );
    assert_eq!(due.read().await, Ok(2.0));
    read_until(due.as_ref(), 3.0, Duration::from_secs(5)).await;
    assert_eq!(all.read().await, Ok(5.0));

    cmd(&mut c, &["DEL", &key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_reads_with_right_credentials_and_wrong_ones_are_an_auth_error() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut admin = connect(&url);
    cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "scaler",
            "on",
            ">rightpass1",
            "resetkeys",
            "~jobs*",
            "~unacked",
            "+@all",
            "-@scripting",
        ],
    );
    cmd(&mut admin, &["RPUSH", "jobs-a", "1", "2"]);
    cmd(&mut admin, &["RPUSH", "other", "1"]);

    let mut secrets = Secrets::new();
    for (name, key, value) in [
        ("redis-auth", "username", "scaler"),
        ("redis-auth", "password", "rightpass1"),
        ("wrong", "password", "wrongpass9"),
    ] {
        secrets.insert((name.into(), key.into()), value.as_bytes().to_vec());
    }
    let auth = |password_secret: &str, extra: Value| {
        let mut r = json!({
            "url": url,
            "usernameSecretRef": {"name": "redis-auth", "key": "username"},
            "passwordSecretRef": {"name": password_secret, "key": "password"},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            r[k] = v.clone();
        }
        r
    };
    let s = Sources::new();

    let right = build_with(
        &s,
        auth("redis-auth", json!({"list": "jobs-a"})),
        &secrets,
        T,
    );
    assert_eq!(right.read().await, Ok(2.0));

    let wrong = build_with(&s, auth("wrong", json!({"list": "jobs-a"})), &secrets, T);
    let e = expect_err(wrong.read().await, "wrong password");
    assert_eq!(e.metric_label(), "auth", "{e}");
    let text = e.to_string();
    assert!(
        !text.contains("wrongpass9") && !text.contains("rightpass1"),
        "a secret leaked: {text}"
    );
    assert!(
        !format!("{wrong:?}").contains("wrongpass9"),
        "a secret leaked: {wrong:?}"
    );
    assert_eq!(s.redis_endpoints(), 2, "two passwords are two endpoints");

    // A least-privilege user (LLEN only, nothing else) can read a list:
    // connecting needs no other command.
    cmd(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">readerpass1",
            "~jobs*",
            "-@all",
            "+llen",
        ],
    );
    let mut minimal = secrets.clone();
    minimal.insert(("min".into(), "username".into()), b"reader".to_vec());
    minimal.insert(("min".into(), "password".into()), b"readerpass1".to_vec());
    let least = json!({
        "url": url, "list": "jobs-a",
        "usernameSecretRef": {"name": "min", "key": "username"},
        "passwordSecretRef": {"name": "min", "key": "password"},
    });
    assert_eq!(build_with(&s, least, &minimal, T).read().await, Ok(2.0));

    // The user may not read this key: the ACL denial is an Auth error too.
    let denied = build_with(
        &s,
        auth("redis-auth", json!({"list": "other"})),
        &secrets,
        T,
    );
    let e = expect_err(denied.read().await, "key outside the user's ACL");
    assert_eq!(e.metric_label(), "auth", "{e}");
    assert!(e.to_string().contains("NOPERM"), "{e}");
    // ... and did not cost the good source its connection.
    assert_eq!(right.read().await, Ok(2.0));
    // Read together (one pipeline on their shared endpoint), the refused
    // read fails alone, with the same error.
    let (ok, refused) = futures::future::join(right.read(), denied.read()).await;
    assert_eq!(ok, Ok(2.0));
    assert_eq!(refused, Err(e));

    // Celery in-flight counting without scripts (the user has -@scripting):
    // the HSCAN fallback counts what the Lua script counts.
    cmd(&mut admin, &["RPUSH", "jobs-c", "m1", "m2"]);
    cmd(&mut admin, &["RPUSH", "jobs-c\x06\x169", "m3"]);
    for (tag, rk) in [
        ("t1", "jobs-c"),
        ("t2", "jobs-c"),
        ("t3", "jobs-other"),
        ("t4", "xjobs-c"),
    ] {
        // As kombu takes a message: the value in `unacked`, the tag in
        // `unacked_index` (one MULTI).
        let v = format!(r#"[{{"body": "e30=", "properties": {{}}}}, "{rk}", "{rk}"]"#);
        cmd(&mut admin, &["HSET", "unacked", tag, &v]);
        cmd(&mut admin, &["ZADD", "unacked_index", "1700000000", tag]);
    }
    let no_scripts = build_with(
        &s,
        auth("redis-auth", json!({"celery": {"queue": "jobs-c"}})),
        &secrets,
        T,
    );
    let with_scripts = build(&s, json!({"url": url, "celery": {"queue": "jobs-c"}}));
    assert_eq!(with_scripts.read().await, Ok(5.0), "3 queued + 2 unacked");
    assert_eq!(no_scripts.read().await, Ok(5.0), "same count through HSCAN");
    assert_eq!(
        no_scripts.read().await,
        Ok(5.0),
        "and again (the fallback is remembered)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_remade_without_a_failed_read() {
    let mut server = RedisProcess::start();
    let url = server.url();
    let mut admin = connect(&url);
    cmd(&mut admin, &["RPUSH", "q", "1", "2"]);
    let s = Sources::new();
    let source = build(&s, json!({"url": url, "list": "q"}));
    assert_eq!(source.read().await, Ok(2.0));
    wait_for_clients(&mut admin, 1, T).await;

    // Reads run back to back on another task while the connection is
    // killed under them, five times: none may fail.
    let reader = {
        let source = source.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            let stop = Instant::now() + Duration::from_secs(3);
            while Instant::now() < stop {
                results.push(source.read().await);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            results
        })
    };
    let connections_before = info_field(&mut admin, "stats", "total_connections_received");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
            .query(&mut admin)
            .expect("CLIENT KILL");
        assert_eq!(killed, 1, "the source's one connection");
        wait_for_clients(&mut admin, 1, T).await;
    }
    let results = reader.await.expect("reader task");
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(results.len() > 20, "only {} reads ran", results.len());
    assert!(results.iter().all(|r| *r == Ok(2.0)));
    let reconnects =
        info_field(&mut admin, "stats", "total_connections_received") - connections_before;
    assert_eq!(reconnects, 5, "one new connection per kill");

    // The server goes away: a connection error, not a hang; back: reads recover.
    drop(admin);
    server.stop();
    let t0 = Instant::now();
    let e = expect_err(source.read().await, "server stopped");
    assert_eq!(e.metric_label(), "connection", "{e}");
    assert!(t0.elapsed() < T, "took {:?}", t0.elapsed());
    server.restart();
    read_until(source.as_ref(), 0.0, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sources_on_one_endpoint_share_one_connection() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut admin = connect(&url);
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        for _ in 0..i % 7 {
            pipe.cmd("RPUSH").arg(format!("l{i}")).arg("x").ignore();
        }
    }
    pipe.query::<()>(&mut admin).expect("fill lists");
    let before = info_field(&mut admin, "stats", "total_connections_received");

    let s = Sources::new();
    // The same endpoint spelled two ways (db 0 is the default).
    let sources: Vec<_> = (0..1000)
        .map(|i| {
            let u = if i % 2 == 0 {
                url.clone()
            } else {
                format!("{url}/0")
            };
            build(&s, json!({"url": u, "list": format!("l{i}")}))
        })
        .collect();
    assert_eq!(s.redis_endpoints(), 1);
    for round in 0..3 {
        let values = futures::future::join_all(sources.iter().map(|s| s.read())).await;
        for (i, v) in values.into_iter().enumerate() {
            assert_eq!(v, Ok((i % 7) as f64), "round {round}, list l{i}");
        }
        let clients = other_clients(&mut admin);
        assert_eq!(clients.len(), 1, "round {round}: {clients:#?}");
    }
    let opened = info_field(&mut admin, "stats", "total_connections_received") - before;
    assert_eq!(opened, 1, "connections opened for 3,000 reads");

    // Dropping every source forgets the endpoint and closes its connection.
    drop(sources);
    assert_eq!(s.redis_endpoints(), 0);
    wait_for_clients(&mut admin, 0, T).await;
}

/// `INFO commandstats` calls of one command (0 if it never ran).
fn command_calls(c: &mut redis::Connection, command: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(c)
        .expect("INFO commandstats");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_go_as_few_pipelines_and_a_refused_command_fails_only_its_read() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut admin = connect(&url);
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        for _ in 0..i % 7 {
            pipe.cmd("RPUSH").arg(format!("l{i}")).arg("x").ignore();
        }
    }
    // Among them a string, and the lists of a Celery queue.
    pipe.cmd("SET").arg("l500").arg("not a list").ignore();
    pipe.cmd("RPUSH").arg("cq").arg("a").ignore();
    pipe.cmd("RPUSH")
        .arg("cq\x06\x169")
        .arg("b")
        .arg("c")
        .ignore();
    pipe.query::<()>(&mut admin).expect("fill lists");

    let s = Sources::new();
    // Mostly `list`s; every 100th a `lists` of two (answered together in
    // the same pipeline), and one Celery queue.
    let mut sources: Vec<_> = (0..1000)
        .map(|i| {
            if i % 100 == 1 {
                build(&s, json!({"url": url, "lists": [format!("l{i}"), "l2"]}))
            } else {
                build(&s, json!({"url": url, "list": format!("l{i}")}))
            }
        })
        .collect();
    sources.push(build(&s, json!({"url": url, "celery": {"queue": "cq"}})));
    let want = |i: usize| -> f64 {
        match i {
            1000 => 3.0,
            i if i % 100 == 1 => (i % 7 + 2) as f64,
            i => (i % 7) as f64,
        }
    };
    assert_eq!(s.redis_endpoints(), 1);

    let rounds = 3;
    let (mut per_round, mut server_reads) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let llen_before = command_calls(&mut admin, "llen");
        let reads_before = info_field(&mut admin, "stats", "total_reads_processed");
        let trips_before = s.redis_round_trips();
        let values = futures::future::join_all(sources.iter().map(|s| s.read())).await;
        per_round.push(s.redis_round_trips() - trips_before);
        // The server's view: socket reads (this INFO is one of them).
        server_reads.push(info_field(&mut admin, "stats", "total_reads_processed") - reads_before);
        for (i, v) in values.into_iter().enumerate() {
            if i == 500 {
                let e = expect_err(v, "a string among the lists");
                assert_eq!(e.metric_label(), "bad_result", "{e}");
                assert!(
                    e.to_string().contains("l500 is a string, not a list"),
                    "{e}"
                );
            } else {
                assert_eq!(v, Ok(want(i)), "round {round}, {}", sources[i].describe());
            }
        }
        // Every read's LLENs reached the server: 1,000 + 10 extra of the
        // `lists` + 4 of the Celery queue.
        let llens = command_calls(&mut admin, "llen") - llen_before;
        assert_eq!(llens, 1014, "round {round}");
    }
    // One request per pipeline, plus the one that explains the WRONGTYPE:
    // here 2 per round once connected (one pipeline of 1,015 commands) and 4
    // in the round that connects; one per read, 1,001, without batching.
    // Socket reads agree (a 25 KB pipeline takes Redis two reads, and the
    // INFO is one). A batch is sent once no read joined it for 0.2 ms, so a
    // busy machine, more so in a debug build, may split a round: the bounds
    // leave room for that.
    let most = per_round
        .iter()
        .chain(&server_reads)
        .copied()
        .max()
        .unwrap_or(0);
    let least = per_round.iter().copied().min().unwrap_or(0);
    assert!(
        most <= 50 && least <= 5,
        "per round of 1,001 reads: {per_round:?} requests, {server_reads:?} socket reads"
    );
    assert_eq!(
        s.redis_round_trips_by_server().values().sum::<u64>(),
        s.redis_round_trips(),
        "{:?}",
        s.redis_round_trips_by_server()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_gives_a_timeout_within_the_read_timeout() {
    let server = RedisProcess::start();
    let url = server.url();
    let mut admin = connect(&url);
    cmd(&mut admin, &["RPUSH", "q", "1"]);
    let s = Sources::new();
    let timeout = Duration::from_millis(400);
    let source = build_with(
        &s,
        json!({"url": url, "list": "q"}),
        &Secrets::new(),
        timeout,
    );
    assert_eq!(source.read().await, Ok(1.0));

    let pause = Duration::from_millis(2500);
    cmd(
        &mut admin,
        &["CLIENT", "PAUSE", &pause.as_millis().to_string(), "ALL"],
    );
    let paused_at = Instant::now();
    for _ in 0..2 {
        let t0 = Instant::now();
        let e = expect_err(source.read().await, "paused server");
        let took = t0.elapsed();
        assert_eq!(
            e,
            SourceError::Timeout {
                target: source.describe(),
                after: timeout
            },
            "{e}"
        );
        assert!(e.to_string().ends_with("no answer within 400ms"), "{e}");
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(400),
            "took {took:?}"
        );
    }
    assert!(
        paused_at.elapsed() < pause,
        "the test is too slow to see the pause"
    );
    read_until(source.as_ref(), 1.0, Duration::from_secs(10)).await;
    assert!(
        paused_at.elapsed() >= pause,
        "a read succeeded while the server was paused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_gives_a_timeout_within_the_read_timeout() {
    // Accepts connections and never writes a byte: neither the connection
    // set-up nor a command gets an answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                held.lock().expect("held").push(conn);
            }
        });
    }
    let s = Sources::new();
    let timeout = Duration::from_millis(300);
    let url = format!("redis://127.0.0.1:{port}");
    let single = build_with(
        &s,
        json!({"url": url, "list": "q"}),
        &Secrets::new(),
        timeout,
    );
    let group = build_with(
        &s,
        json!({"url": url, "lists": ["a", "b"]}),
        &Secrets::new(),
        timeout,
    );
    for round in 0..3 {
        let t0 = Instant::now();
        let (a, b) = futures::future::join(single.read(), group.read()).await;
        let took = t0.elapsed();
        for (source, r) in [(&single, a), (&group, b)] {
            assert_eq!(
                r,
                Err(SourceError::Timeout {
                    target: source.describe(),
                    after: timeout
                }),
                "round {round}"
            );
        }
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(400),
            "round {round} took {took:?}"
        );
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl not found ({e}): scripts/test.sh installs it (apt-get install openssl)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.crt`, `<name>.key`) valid for a day.
fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN=workerpool test {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "1",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_server_with_the_given_ca_and_refuses_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "otherca");
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
    let path = |f: &str| d.join(f).display().to_string();
    let port = free_port();
    let server = RedisWithArgs::start(
        port,
        tempfile::tempdir().expect("tempdir"),
        &[
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    let url = format!("rediss://127.0.0.1:{}", server.port);

    let mut secrets = Secrets::new();
    for name in ["ca", "otherca"] {
        let pem = std::fs::read(d.join(format!("{name}.crt"))).expect("read CA");
        secrets.insert((name.into(), "ca.crt".into()), pem);
    }
    let with_ca = |ca: &str| json!({"url": url, "list": "q", "tls": {"caSecretRef": {"name": ca, "key": "ca.crt"}}});
    let s = Sources::new();

    let right = build_with(&s, with_ca("ca"), &secrets, T);
    assert_eq!(right.read().await, Ok(0.0));
    assert!(
        right
            .describe()
            .contains(&format!("rediss://127.0.0.1:{port}/0")),
        "{}",
        right.describe()
    );

    let wrong = build_with(&s, with_ca("otherca"), &secrets, T);
    let e = expect_err(wrong.read().await, "server certificate from another CA");
    assert_eq!(e.metric_label(), "connection", "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // No CA: the public roots, which do not know the test CA.
    let public = build(&s, json!({"url": url, "list": "q"}));
    let e = expect_err(public.read().await, "no CA given");
    assert_eq!(e.metric_label(), "connection", "{e}");

    // insecureSkipVerify accepts it.
    let insecure = build(
        &s,
        json!({"url": url, "list": "q", "tls": {"insecureSkipVerify": true}}),
    );
    assert_eq!(insecure.read().await, Ok(0.0));

    // A plain redis:// client against the TLS port does not get a number.
    let plain = build_with(
        &s,
        json!({"url": format!("redis://127.0.0.1:{port}"), "list": "q"}),
        &Secrets::new(),
        Duration::from_millis(500),
    );
    assert!(plain.read().await.is_err());
    drop(server);
}

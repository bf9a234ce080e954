//! Redis Sentinel on loopback (Debian's `redis-server` and `redis-sentinel`,
//! started by the test): one master, one replica, three sentinels, with
//! separate passwords for the data nodes and the sentinels. A failover
//! started by `SENTINEL FAILOVER`, then a master killed outright, while the
//! source is read: every reading is exact or a failed read (never a lower
//! number, which would scale down), and the source reads again within two
//! reads once the sentinels agree on the new master.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::redis::{fill_list, free_port, unique};
use support::topology::{try_command, wait_for, SentinelSet, Server};
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, SourceError, Sources};

type Secrets = BTreeMap<(String, String), Vec<u8>>;

const T: Duration = Duration::from_secs(3);
const DATA_PASS: &str = "data-secret-1";
const SENTINEL_PASS: &str = "sentinel-secret-2";

fn trigger(redis: Value) -> Trigger {
    serde_json::from_value(json!({"redis": redis, "targetPerReplica": 1.0})).unwrap()
}

fn secrets() -> Secrets {
    let mut s = Secrets::new();
    s.insert(("redis".into(), "password".into()), DATA_PASS.into());
    s.insert(("sentinel".into(), "password".into()), SENTINEL_PASS.into());
    s
}

fn sentinel_spec(set: &SentinelSet, list: &str) -> Value {
    json!({
        "sentinel": {
            "addresses": set.sentinel_addresses(),
            "masterName": set.name,
            "sentinelPasswordSecretRef": {"name": "sentinel", "key": "password"},
        },
        "passwordSecretRef": {"name": "redis", "key": "password"},
        "list": list,
    })
}

fn build(redis: Value) -> Result<Arc<dyn MetricSource>, SourceError> {
    Sources::new().build(&trigger(redis), &secrets(), T)
}

fn sentinel_url(s: &Server) -> String {
    format!("redis://:{SENTINEL_PASS}@127.0.0.1:{}", s.port)
}

fn data_url(s: &Server) -> String {
    format!("redis://:{DATA_PASS}@127.0.0.1:{}", s.port)
}

fn start() -> SentinelSet {
    let set = SentinelSet::start(
        &format!("requirepass {DATA_PASS}\nmasterauth {DATA_PASS}"),
        &format!("requirepass {SENTINEL_PASS}\nsentinel sentinel-pass {SENTINEL_PASS}"),
        Some(DATA_PASS),
    );
    set.wait_until_settled(sentinel_url);
    set
}

/// Whether every sentinel names `port` as the master and it says it is one.
fn elected(set: &SentinelSet, port: u16) -> bool {
    set.sentinels
        .iter()
        .all(|s| set.master_port(&sentinel_url(s)) == Some(port))
        && set
            .servers
            .iter()
            .find(|s| s.port == port)
            .and_then(|s| try_command::<Vec<redis::Value>>(&data_url(s), &["ROLE"]))
            .is_some_and(
                |r| matches!(r.first(), Some(redis::Value::BulkString(b)) if b == b"master"),
            )
}

/// Reads until the sentinels have elected `port` and a read succeeded,
/// recording every reading. Panics on a reading other than `want`, or if
/// the source still fails two reads after the election.
async fn read_through_failover(
    source: &dyn MetricSource,
    set: &SentinelSet,
    port: u16,
    want: f64,
    log: &mut Vec<Result<f64, String>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut reads_after_election = 0;
    loop {
        let was_elected = tokio::task::block_in_place(|| elected(set, port));
        let r = source.read().await;
        log.push(r.clone().map_err(|e| e.to_string()));
        if let Ok(v) = r {
            assert_eq!(
                v, want,
                "a reading during the failover was not exact: {log:?}"
            );
        }
        if was_elected {
            reads_after_election += 1;
            if r.is_ok() {
                return;
            }
            assert!(
                reads_after_election < 2,
                "still failing 2 reads after the sentinels elected {port}: {log:?}"
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no election within 90 s: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_and_a_killed_master_are_failed_reads_never_lower_ones() {
    let mut set = start();
    let key = unique("sentinel-q");
    let master = set.servers[0].port;
    let replica = set.servers[1].port;
    fill_list(&data_url(&set.servers[0]), &key, 7);
    let source = build(sentinel_spec(&set, &key)).unwrap();
    assert!(
        source.describe().contains("sentinel"),
        "{}",
        source.describe()
    );
    let mut log = vec![];
    // The replica has the list before the first failover.
    wait_for(Duration::from_secs(30), "replica to have the list", || {
        try_command::<i64>(&data_url(&set.servers[1]), &["LLEN", &key]) == Some(7)
    });
    read_through_failover(&*source, &set, master, 7.0, &mut log).await;

    let _: String = try_command(
        &sentinel_url(&set.sentinels[0]),
        &["SENTINEL", "FAILOVER", &set.name],
    )
    .expect("SENTINEL FAILOVER");
    read_through_failover(&*source, &set, replica, 7.0, &mut log).await;

    // The old master is now the new one's replica: wait until it has synced,
    // then kill the new master outright.
    wait_for(
        Duration::from_secs(60),
        "old master to replicate the new one",
        || {
            try_command::<String>(&data_url(&set.servers[0]), &["INFO", "replication"])
                .is_some_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"))
        },
    );
    set.servers[1].kill();
    read_through_failover(&*source, &set, master, 7.0, &mut log).await;
    assert!(
        log.iter().all(|r| r.as_ref().map_or(true, |v| *v == 7.0)),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sentinel_settings_are_clear_errors_naming_the_field() {
    let set = start();
    let key = unique("sentinel-bad");
    fill_list(&data_url(&set.servers[0]), &key, 3);
    // The right settings read the list.
    let good = build(sentinel_spec(&set, &key)).unwrap();
    assert_eq!(good.read().await, Ok(3.0));

    let mut spec = sentinel_spec(&set, &key);
    spec["sentinel"]["masterName"] = json!("no-such-master");
    let e = build(spec).unwrap().read().await.unwrap_err();
    assert!(e.to_string().contains("redis.sentinel.masterName"), "{e}");
    assert!(e.to_string().contains("no-such-master"), "{e}");

    let mut spec = sentinel_spec(&set, &key);
    spec["sentinel"]["addresses"] = json!([format!("127.0.0.1:{}", free_port())]);
    let e = build(spec).unwrap().read().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("redis.sentinel.addresses: no sentinel reachable"),
        "{e}"
    );

    // The data nodes' password is not the sentinels'.
    let mut spec = sentinel_spec(&set, &key);
    spec["sentinel"]["sentinelPasswordSecretRef"] = json!({"name": "redis", "key": "password"});
    let e = build(spec).unwrap().read().await.unwrap_err();
    assert_eq!(e.metric_label(), "auth", "{e}");
    assert!(!e.to_string().contains(DATA_PASS), "{e}");

    let mut spec = sentinel_spec(&set, &key);
    spec["sentinel"]["sentinelPasswordSecretRef"] = json!({"name": "missing", "key": "password"});
    let e = build(spec).err().unwrap();
    assert!(e.to_string().contains("sentinelPasswordSecretRef"), "{e}");

    let mut spec = sentinel_spec(&set, &key);
    spec["url"] = json!("redis://127.0.0.1:6379");
    let e = build(spec).err().unwrap();
    assert!(
        e.to_string()
            .contains("exactly one of url, sentinel, cluster"),
        "{e}"
    );
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(
            venv.exists(),
            "no Python with Celery: run the tests through scripts/test.sh"
        );
        venv.display().to_string()
    })
}

/// Real Celery publishes through kombu's `sentinel://` transport (one task
/// per priority); `check --output json` on a Sentinel pool reads exactly
/// as many, with the data nodes' and the sentinels' passwords from `--secret`.
#[test]
fn celery_through_kombus_sentinel_transport_reads_exactly() {
    let set = start();
    let queue = unique("sentinel-celery");
    let broker = set
        .sentinels
        .iter()
        .map(|s| format!("sentinel://:{DATA_PASS}@127.0.0.1:{}", s.port))
        .collect::<Vec<_>>()
        .join(";");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = std::process::Command::new(python())
        .args(["celery_app.py", "enqueue", &queue, "600", "0", "4", "9"])
        .current_dir(&fixtures)
        .env("CELERY_BROKER_URL", &broker)
        .env("CELERY_SENTINEL_MASTER", &set.name)
        .env("CELERY_SENTINEL_PASSWORD", SENTINEL_PASS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enqueue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "celery", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"name": "celery"}, "minReplicas": 0, "maxReplicas": 10,
            "triggers": [{"name": "celery", "targetPerReplica": 1,
                "redis": {
                    "sentinel": {"addresses": set.sentinel_addresses(), "masterName": set.name,
                        "sentinelPasswordSecretRef": {"name": "sentinel", "key": "password"}},
                    "passwordSecretRef": {"name": "redis", "key": "password"},
                    "celery": {"queue": queue}}}]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.json");
    std::fs::write(&file, pool.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .arg("check")
        .arg("-f")
        .arg(&file)
        .args(["--output", "json"])
        .args(["--secret", &format!("redis/password={DATA_PASS}")])
        .args(["--secret", &format!("sentinel/password={SENTINEL_PASS}")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["triggers"][0]["value"], json!(3.0), "{report}");
    assert!(report["triggers"][0]["error"].is_null(), "{report}");
}

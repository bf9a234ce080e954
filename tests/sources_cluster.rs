//! Redis Cluster on loopback: three masters made by `redis-cli --cluster
//! create` (started by the test). Keys on every master are read and summed
//! exactly; a slot migrated while the source is read (`MIGRATING`/
//! `IMPORTING`, `MIGRATE`, then `SETSLOT NODE`: `ASK` then `MOVED`) keeps
//! every reading exact; a killed master fails reads, never lowers them.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::redis::{fill_list, unique, RedisProcess};
use support::topology::{try_command, wait_for, ClusterSet};
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, SourceError, Sources};

const T: Duration = Duration::from_secs(3);

fn build(sources: &Sources, redis: Value) -> Result<Arc<dyn MetricSource>, SourceError> {
    let t: Trigger =
        serde_json::from_value(json!({"redis": redis, "targetPerReplica": 1.0})).unwrap();
    sources.build(&t, &BTreeMap::new(), T)
}

/// One key per master (found by asking the cluster which node serves it),
/// each list holding `sizes[node]` items.
fn lists_on_every_master(set: &ClusterSet, prefix: &str, sizes: &[usize]) -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; set.nodes.len()];
    for i in 0.. {
        let k = format!("{}-{i}", unique(prefix));
        let owner = set.owner_of(&k);
        if keys[owner].is_none() {
            fill_list(&set.nodes[owner].url(), &k, sizes[owner]);
            keys[owner] = Some(k);
        }
        if keys.iter().all(Option::is_some) {
            break;
        }
    }
    keys.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measure_reads_across_masters_and_bad_seeds_are_named() {
    let set = ClusterSet::start(3);
    let sources = Sources::new();
    let keys = lists_on_every_master(&set, "cl-lists", &[2, 3, 5]);
    let cluster = json!({"addresses": set.addresses()});
    let lists = build(&sources, json!({"cluster": cluster, "lists": keys})).unwrap();
    assert_eq!(lists.read().await, Ok(10.0), "{}", lists.describe());
    // A source per key shares the cluster's connections.
    for (k, want) in keys.iter().zip([2.0, 3.0, 5.0]) {
        let one = build(&sources, json!({"cluster": cluster, "list": k})).unwrap();
        assert_eq!(one.read().await, Ok(want));
    }
    // Celery's queued count: its priority lists hash to different slots.
    let queue = unique("cl-celery");
    let owner = set.owner_of(&queue);
    fill_list(&set.nodes[owner].url(), &queue, 4);
    let pri = format!("{queue}\x06\x169");
    fill_list(&set.nodes[set.owner_of(&pri)].url(), &pri, 1);
    let celery = json!({"queue": queue, "includeInFlight": false});
    let c = build(&sources, json!({"cluster": cluster, "celery": celery})).unwrap();
    assert_eq!(c.read().await, Ok(5.0));
    let e = build(
        &sources,
        json!({"cluster": cluster, "celery": {"queue": queue}}),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("redis.celery.includeInFlight"),
        "{e}"
    );
    // A stream and a sorted set on whichever master holds them.
    let stream = unique("cl-stream");
    let z = unique("cl-zset");
    let url = |k: &str| set.nodes[set.owner_of(k)].url();
    for i in 0..3 {
        let _: String =
            try_command(&url(&stream), &["XADD", &stream, "*", "n", &i.to_string()]).unwrap();
        let _: i64 =
            try_command(&url(&z), &["ZADD", &z, &i.to_string(), &format!("m{i}")]).unwrap();
    }
    let s = build(
        &sources,
        json!({"cluster": cluster, "stream": {"name": stream, "measure": "Length"}}),
    )
    .unwrap();
    assert_eq!(s.read().await, Ok(3.0));
    let zs = build(
        &sources,
        json!({"cluster": cluster, "sortedSet": {"name": z}}),
    )
    .unwrap();
    assert_eq!(zs.read().await, Ok(3.0));
    // A wrong type is explained through the cluster too.
    let wrong = build(&sources, json!({"cluster": cluster, "list": stream})).unwrap();
    let e = wrong.read().await.unwrap_err();
    assert!(e.to_string().contains("is a stream"), "{e}");

    // A seed that is a standalone server.
    let plain = RedisProcess::start();
    let spec =
        json!({"cluster": {"addresses": [format!("127.0.0.1:{}", plain.port)]}, "list": "x"});
    let e = build(&sources, spec).unwrap().read().await.unwrap_err();
    assert!(e.to_string().contains("redis.cluster.addresses"), "{e}");
    assert!(e.to_string().contains("not a cluster node"), "{e}");
}

/// Every reading of a polled source, in order.
type Readings = Arc<Mutex<Vec<Result<f64, String>>>>;

/// Reads `source` in a loop until `stop`, recording every reading.
fn poll(
    source: Arc<dyn MetricSource>,
    stop: Arc<AtomicBool>,
) -> (Readings, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(vec![]));
    let l = log.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let r = source.read().await.map_err(|e| e.to_string());
            l.lock().unwrap().push(r);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (log, task)
}

/// Waits until `n` more readings have been recorded.
fn wait_readings(log: &Mutex<Vec<Result<f64, String>>>, n: usize) {
    let start = log.lock().unwrap().len();
    wait_for(Duration::from_secs(60), "readings", || {
        log.lock().unwrap().len() >= start + n
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_while_polling_reads_exactly_throughout() {
    let set = ClusterSet::start(3);
    let sources = Sources::new();
    let keys = lists_on_every_master(&set, "cl-mig", &[4, 6, 9]);
    let source = build(
        &sources,
        json!({"cluster": {"addresses": set.addresses()}, "lists": keys}),
    )
    .unwrap();
    assert_eq!(source.read().await, Ok(19.0));
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = poll(source.clone(), stop.clone());

    // Move the slot of the key on node 0 to node 1.
    let moving = &keys[0];
    let slot: i64 = try_command(&set.nodes[0].url(), &["CLUSTER", "KEYSLOT", moving]).unwrap();
    let slot = slot.to_string();
    let (from, to) = (&set.nodes[0], &set.nodes[1]);
    let (from_id, to_id) = (set.id(0), set.id(1));
    tokio::task::block_in_place(|| {
        let _: String = try_command(
            &to.url(),
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        )
        .unwrap();
        let _: String = try_command(
            &from.url(),
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        )
        .unwrap();
        wait_readings(&log, 3);
        let _: String = try_command(
            &from.url(),
            &[
                "MIGRATE",
                "127.0.0.1",
                &to.port.to_string(),
                moving,
                "0",
                "5000",
            ],
        )
        .unwrap();
        // Mid-migration: the key is on the target, its slot still on the source (ASK).
        wait_readings(&log, 5);
        for node in &set.nodes {
            let _: String =
                try_command(&node.url(), &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).unwrap();
        }
        // Migrated: the source answers MOVED until the map is refreshed.
        wait_readings(&log, 5);
    });
    assert_eq!(set.owner_of(moving), 1);
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let log = log.lock().unwrap();
    assert!(log.len() >= 13, "{log:?}");
    assert!(
        log.iter().all(|r| *r == Ok(19.0)),
        "not exact throughout: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_reads_and_never_lowers_them() {
    let mut set = ClusterSet::start(3);
    let sources = Sources::new();
    let keys = lists_on_every_master(&set, "cl-kill", &[1, 2, 3]);
    let source = build(
        &sources,
        json!({"cluster": {"addresses": set.addresses()}, "lists": keys}),
    )
    .unwrap();
    assert_eq!(source.read().await, Ok(6.0));
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = poll(source.clone(), stop.clone());
    tokio::task::block_in_place(|| {
        wait_readings(&log, 3);
        set.nodes[2].kill();
        wait_for(Duration::from_secs(60), "a failed read", || {
            log.lock().unwrap().iter().any(Result::is_err)
        });
        wait_readings(&log, 5);
    });
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.iter().all(|r| r.as_ref().map_or(true, |v| *v == 6.0)),
        "a lower reading: {log:?}"
    );
    // Once the master is gone, every read fails (the last ones at least).
    assert!(log.iter().rev().take(3).all(Result::is_err), "{log:?}");
}

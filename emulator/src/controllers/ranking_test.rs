//! One test per criterion of the ReplicaSet controller's deletion order.

use serde_json::{json, Value};

use super::pod::{parse_time, DELETION_COST};
use super::ranking::victims;

const NOW: &str = "2026-01-01T12:00:00Z";

fn now() -> i64 {
    parse_time(&json!(NOW)).unwrap_or_default()
}

/// RFC 3339 time `secs` seconds before NOW.
fn ago(secs: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(NOW).unwrap() - chrono::Duration::seconds(secs);
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Running, ready, assigned pod created 1000 s ago and ready since 900 s.
fn pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": ago(1000)},
        "spec": {"nodeName": "node-a"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ago(900)}],
            "containerStatuses": [{"name": "c", "restartCount": 0}]
        }
    })
}

fn with(mut p: Value, path: &[&str], v: Value) -> Value {
    let mut cur = &mut p;
    for key in &path[..path.len() - 1] {
        cur = &mut cur[*key];
    }
    cur[path[path.len() - 1]] = v;
    p
}

fn cost(p: Value, c: &str) -> Value {
    with(p, &["metadata", "annotations"], json!({DELETION_COST: c}))
}

fn ready_since(p: Value, secs: i64) -> Value {
    with(
        p,
        &["status", "conditions"],
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": ago(secs)}]),
    )
}

fn not_ready(p: Value) -> Value {
    with(
        p,
        &["status", "conditions"],
        json!([{"type": "Ready", "status": "False"}]),
    )
}

/// Names in deletion order, ranked against each other only.
fn order(pods: &[Value]) -> Vec<String> {
    let refs: Vec<&Value> = pods.iter().collect();
    victims(&refs, &refs, refs.len(), now())
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn unassigned_pods_are_deleted_before_assigned_ones() {
    let assigned = cost(pod("assigned"), "-100");
    let unassigned = with(pod("unassigned"), &["spec", "nodeName"], json!(""));
    assert_eq!(order(&[assigned, unassigned]), ["unassigned", "assigned"]);
}

#[test]
fn pending_before_unknown_before_running() {
    let running = pod("running");
    let unknown = with(pod("unknown"), &["status", "phase"], json!("Unknown"));
    let pending = with(pod("pending"), &["status", "phase"], json!("Pending"));
    assert_eq!(
        order(&[running, unknown, pending]),
        ["pending", "unknown", "running"]
    );
}

#[test]
fn not_ready_pods_are_deleted_before_ready_ones() {
    let ready = cost(pod("ready"), "-100");
    let unready = not_ready(pod("unready"));
    assert_eq!(order(&[ready, unready]), ["unready", "ready"]);
}

#[test]
fn lower_pod_deletion_cost_is_deleted_first_and_invalid_costs_count_as_zero() {
    let busy = ready_since(cost(pod("busy"), "100"), 1);
    let idle = cost(pod("idle"), "-1");
    let invalid = cost(pod("invalid"), "+5");
    let none = pod("none");
    let got = order(&[busy, invalid, none, idle]);
    assert_eq!(got[0], "idle");
    assert_eq!(got[3], "busy", "the newest pod survives on its higher cost");
    // "+5" counts as 0, equal to no annotation: the two tie on every
    // later criterion and keep their list order.
    assert_eq!(&got[1..3], ["invalid", "none"]);
}

#[test]
fn doubled_up_pods_are_deleted_before_pods_alone_on_their_node() {
    let alone = ready_since(
        with(pod("alone"), &["spec", "nodeName"], json!("node-b")),
        1,
    );
    let twin1 = pod("twin1");
    let twin2 = pod("twin2");
    let got = order(&[alone, twin1, twin2]);
    assert_eq!(got[2], "alone", "{got:?}");
}

#[test]
fn doubled_up_counts_every_active_pod_of_the_deployment_on_the_node() {
    // The rank counts related pods (other ReplicaSets of the Deployment).
    let mine_a = pod("mine-a");
    let mine_b = ready_since(
        with(pod("mine-b"), &["spec", "nodeName"], json!("node-b")),
        1,
    );
    let other_rs_on_a = pod("old-rs-pod");
    let pods = [&mine_a, &mine_b];
    let related = [&mine_a, &mine_b, &other_rs_on_a];
    let got = victims(&pods, &related, 1, now());
    assert_eq!(got[0]["metadata"]["name"], "mine-a");
}

#[test]
fn more_recently_ready_pods_are_deleted_first() {
    let old = ready_since(pod("old"), 3000);
    let new = ready_since(pod("new"), 10);
    assert_eq!(order(&[old, new]), ["new", "old"]);
}

#[test]
fn ready_times_in_the_same_log2_bucket_fall_to_uid_order() {
    // 70 s and 100 s both lie in [2^36, 2^37) ns: one bucket, so the
    // smaller uid goes first, and restarts (criterion 7) are never reached.
    let a = ready_since(pod("a"), 100);
    let b = with(
        ready_since(pod("b"), 70),
        &["status", "containerStatuses"],
        json!([{"name": "c", "restartCount": 9}]),
    );
    assert_eq!(order(&[b, a]), ["a", "b"]);
}

#[test]
fn pods_with_more_container_restarts_are_deleted_first() {
    let calm = pod("calm");
    let crashy = with(
        pod("crashy"),
        &["status", "containerStatuses"],
        json!([{"name": "c", "restartCount": 1}, {"name": "d", "restartCount": 4}]),
    );
    assert_eq!(order(&[calm, crashy]), ["crashy", "calm"]);
}

#[test]
fn newer_pods_are_deleted_first_in_log2_buckets_of_age() {
    let unready = |n: &str, age: i64| {
        not_ready(with(
            pod(n),
            &["metadata", "creationTimestamp"],
            json!(ago(age)),
        ))
    };
    assert_eq!(
        order(&[unready("old", 5000), unready("new", 10)]),
        ["new", "old"]
    );
    // 70 s and 100 s old: the same bucket, so uid order.
    assert_eq!(order(&[unready("y", 70), unready("x", 100)]), ["x", "y"]);
}

#[test]
fn a_missing_creation_time_sorts_first_and_full_ties_keep_list_order() {
    let dated = pod("dated");
    let undated = with(
        pod("undated"),
        &["metadata", "creationTimestamp"],
        Value::Null,
    );
    assert_eq!(order(&[dated, undated]), ["undated", "dated"]);
    assert_eq!(order(&[pod("p2"), pod("p1")]), ["p2", "p1"]);
}

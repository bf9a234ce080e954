//! End to end: scale-in that spares busy workers. The real operator against
//! the emulator with its ReplicaSet stand-in (pods created and deleted as
//! the real controller ranks them, pod-deletion-cost included), a real
//! Redis, and real RQ workers whose host names are the pods' names.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{eventually, Cluster};
use support::frameworks::{python, rq_workers_two_busy, run_json, WorkerProcess};
use support::redis::{connect, shared_url, unique};

const T: Duration = Duration::from_secs(60);
const DEPLOYMENT: &str = "reports-worker";

/// The Deployment's running pods, by name.
fn pods(c: &Cluster) -> BTreeSet<String> {
    let list = c.list_json(kube_emulator::Gvr::new("", "v1", "pods"));
    list.into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn pod(c: &Cluster, name: &str) -> Value {
    c.get_json(kube_emulator::Gvr::new("", "v1", "pods"), name)
        .unwrap_or(Value::Null)
}

fn pool(queue: &str, min: i32, keep_busy: bool) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "reports"},
        "spec": {
            "scaleTargetRef": {"name": DEPLOYMENT},
            "minReplicas": min, "maxReplicas": 10, "pollingIntervalSeconds": 1,
            // Waiting jobs only: once every job is taken, the queue is drained.
            "triggers": [{"name": "reports", "redis": {"url": shared_url(), "rq": {"queue": queue, "include": ["Waiting"]}}, "targetPerReplica": 1}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}},
            "scaleIn": {"busySignal": {"rq": {"trigger": "reports"}}, "keepBusy": keep_busy}
        }
    })
}

/// Six pods, an RQ worker on each (host name = pod name), two long jobs
/// taken: returns the workers and the two busy pods.
async fn six_pods_two_busy(
    c: &Cluster,
    queue: &str,
    dir: &std::path::Path,
) -> (Vec<WorkerProcess>, BTreeSet<String>) {
    c.deployment(DEPLOYMENT, 6).await;
    let all = eventually("six pods", T, || async {
        Some(pods(c)).filter(|p| p.len() == 6)
    })
    .await;
    let (workers, busy) = rq_workers_two_busy(&all, &shared_url(), queue, dir);
    assert_eq!(busy.len(), 2, "one job per worker");
    (workers, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_busy_scales_to_the_busy_pods_and_exactly_they_survive() {
    let c = Cluster::start_with_workloads("shop").await;
    let queue = unique("e2e-keep");
    let dir = tempfile::tempdir().unwrap();
    let (_workers, busy) = six_pods_two_busy(&c, &queue, dir.path()).await;
    c.apply_pool(pool(&queue, 1, true)).await;
    let _op = c.operator(None).await;

    let survivors = eventually("scaled to the two busy pods", T, || async {
        (c.replicas(DEPLOYMENT) == Some(2))
            .then(|| pods(&c))
            .filter(|p| p.len() == 2)
    })
    .await;
    assert_eq!(survivors, busy, "exactly the busy pods survive");
    for p in &busy {
        let cost =
            &pod(&c, p)["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"];
        assert_eq!(cost, "1", "{p}");
    }
    let status = eventually("status names the limit", T, || async {
        let s = c.pool("reports")["status"].clone();
        (s["busyPods"] == 2).then_some(s)
    })
    .await;
    let why = status["lastDecision"].as_str().unwrap_or_default();
    assert!(why.contains("keepBusy held 2: 2 pods busy"), "{why}");

    // The busy tasks finish: the next poll scales in to the minimum.
    run_json(
        &python(),
        "busy_rq.py",
        &["release", &shared_url(), &queue, "2"],
    );
    eventually("scaled in further", T, || async {
        (c.replicas(DEPLOYMENT) == Some(1) && pods(&c).len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keep_busy_the_busy_pods_are_ranked_last() {
    let c = Cluster::start_with_workloads("shop").await;
    let queue = unique("e2e-rank");
    let dir = tempfile::tempdir().unwrap();
    let (_workers, busy) = six_pods_two_busy(&c, &queue, dir.path()).await;
    c.apply_pool(pool(&queue, 1, false)).await;
    let _op = c.operator(None).await;

    let survivors = eventually("scaled to the minimum", T, || async {
        (c.replicas(DEPLOYMENT) == Some(1))
            .then(|| pods(&c))
            .filter(|p| p.len() == 1)
    })
    .await;
    let survivor = survivors.iter().next().unwrap();
    assert!(
        busy.contains(survivor),
        "{survivor} is not one of the busy pods {busy:?}"
    );
    let cost =
        &pod(&c, survivor)["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"];
    assert_eq!(cost, "1");
    run_json(
        &python(),
        "busy_rq.py",
        &["release", &shared_url(), &queue, "2"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_busy_signal_holds_scale_in_but_not_scale_out() {
    let c = Cluster::start_with_workloads("shop").await;
    c.deployment(DEPLOYMENT, 4).await;
    let list = unique("e2e-blind");
    // Nothing listens on this port: every busy read fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = pool("unused", 1, true);
    p["spec"]["triggers"][0]["redis"] = json!({"url": shared_url(), "list": list});
    p["spec"]["scaleIn"]["busySignal"] =
        json!({"prometheus": {"url": format!("http://127.0.0.1:{dead}"), "query": "busy"}});
    c.apply_pool(p).await;
    let _op = c.operator(None).await;

    let (status, _, message) = eventually("ScalingLimited BusySignalFailed", T, || async {
        c.condition("reports", "ScalingLimited")
            .filter(|(_, r, _)| r == "BusySignalFailed")
    })
    .await;
    assert_eq!(status, "True");
    assert!(
        message.contains("busy signal failed, holding 4"),
        "{message}"
    );
    // More polls, still held, and still one Event for the episode.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.replicas(DEPLOYMENT), Some(4));
    assert_eq!(c.events("reports", "BusySignalFailed").len(), 1);

    // Scale-out never waits for the busy signal.
    let items: Vec<i32> = (0..7).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg(&items)
        .query(&mut connect(&shared_url()))
        .unwrap();
    eventually("scaled out to 7", T, || async {
        (c.replicas(DEPLOYMENT) == Some(7)).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(&list)
        .query(&mut connect(&shared_url()))
        .unwrap();
}

//! One WorkerPool per target, and pools that write nothing: the real
//! operator (in-process) against the API emulator and a real Redis.
//! Every wait polls with a deadline.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{eventually, Cluster};
use support::redis::{fill_list, shared_url, unique};

const T: Duration = Duration::from_secs(30);

fn pool(name: &str, target: &str, list: &str) -> Value {
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
           "spec": {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 20,
                    "pollingIntervalSeconds": 1,
                    "triggers": [{"name": "q", "redis": {"url": shared_url(), "list": list}, "targetPerReplica": 1}],
                    "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}]},
                                 "scaleDown": {"stabilizationWindowSeconds": 0,
                                               "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}}}})
}

fn scale_patches(c: &Cluster, deployment: &str) -> usize {
    c.scale_patches(deployment).len()
}

async fn wait_for_condition(
    c: &Cluster,
    pool: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let what = format!("{pool}: {type_}={status} {reason}");
    let (_, _, message) = eventually(&what, T, || async {
        c.condition(pool, type_)
            .filter(|(s, r, _)| s == status && r == reason)
    })
    .await;
    message
}

/// Waits until the wall clock is in a later second than `pool`'s
/// creationTimestamp, so the next pool is strictly younger.
async fn next_second_after(c: &Cluster, pool: &str) {
    let created = c.pool(pool)["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .expect("creationTimestamp")
        .as_second();
    eventually("the next second", T, || async {
        (jiff::Timestamp::now().as_second() > created).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_pool_owns_the_target_until_it_is_deleted() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let (ka, kb) = (unique("own-a"), unique("own-b"));
    fill_list(&shared_url(), &ka, 10);
    fill_list(&shared_url(), &kb, 3);
    // The older pool has the later name: age decides, not the name.
    c.apply_pool(pool("zeta", "w", &ka)).await;
    next_second_after(&c, "zeta").await;
    c.apply_pool(pool("alpha", "w", &kb)).await;
    let rec = c.record_replicas("w");
    let op = c.operator(None).await;

    eventually("the owner's count (10)", T, || async {
        (c.replicas("w") == Some(10)).then_some(())
    })
    .await;
    let message = wait_for_condition(&c, "alpha", "Ready", "False", "ConflictingWorkerPool").await;
    assert!(message.contains("zeta"), "{message}");
    // Several polls later the target still holds the owner's count.
    let patches = scale_patches(&c, "w");
    eventually("alpha has polled a few times", T, || async {
        (c.event_count("alpha", "ConflictingWorkerPool") >= 1).then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            assert_eq!(
                c.replicas("w"),
                Some(10),
                "the conflicting pool wrote to the target"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .ok();
    assert_eq!(
        scale_patches(&c, "w"),
        patches,
        "a PATCH while the owner's count held"
    );
    assert_eq!(
        c.event_count("alpha", "ConflictingWorkerPool"),
        1,
        "one Event per episode"
    );
    assert!(
        !rec.values().contains(&3),
        "the target never went to alpha's 3: {:?}",
        rec.values()
    );
    wait_for_condition(&c, "zeta", "Ready", "True", "Scaling").await;

    // The owner goes: the other pool takes over on its next poll.
    c.delete_pool("zeta").await;
    eventually("alpha takes over (3)", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    wait_for_condition(&c, "alpha", "Ready", "True", "Scaling").await;
    rec.assert_within(&c, 1, 20).await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retargeted_owner_hands_over_and_same_second_pools_go_by_name() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.deployment("other", 1).await;
    let (ka, kb) = (unique("tie-a"), unique("tie-b"));
    fill_list(&shared_url(), &ka, 6);
    fill_list(&shared_url(), &kb, 4);
    c.apply_pool(pool("a", "w", &ka)).await;
    c.apply_pool(pool("b", "w", &kb)).await;
    let same_second = c.pool("a")["metadata"]["creationTimestamp"]
        == c.pool("b")["metadata"]["creationTimestamp"];
    let op = c.operator(None).await;
    if same_second {
        // Created in the same second: the name breaks the tie.
        wait_for_condition(&c, "b", "Ready", "False", "ConflictingWorkerPool").await;
        eventually("a's count (6)", T, || async {
            (c.replicas("w") == Some(6)).then_some(())
        })
        .await;
    } else {
        eventually("a's count (6)", T, || async {
            (c.replicas("w") == Some(6)).then_some(())
        })
        .await;
    }
    // a now scales another Deployment: b owns w.
    c.apply_pool(pool("a", "other", &ka)).await;
    eventually("b takes over w (4)", T, || async {
        (c.replicas("w") == Some(4)).then_some(())
    })
    .await;
    eventually("a scales other (6)", T, || async {
        (c.replicas("other") == Some(6)).then_some(())
    })
    .await;
    wait_for_condition(&c, "b", "Ready", "True", "Scaling").await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_shadow_pools_read_decide_and_report_but_never_write() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 2).await;
    c.deployment("s", 2).await;
    let key = unique("passive");
    fill_list(&shared_url(), &key, 9);
    let mut paused = pool("paused", "w", &key);
    paused["spec"]["paused"] = json!(true);
    c.apply_pool(paused).await;
    let mut shadow = pool("shadow", "s", &key);
    shadow["spec"]["mode"] = json!("Shadow");
    c.apply_pool(shadow).await;
    // An HPA on the shadow's target: a shadow pool does not stand down for it.
    c.emu
        .create_json(
            "autoscaling/v2/horizontalpodautoscalers",
            &c.ns,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa"},
                   "spec": {"maxReplicas": 5, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "s"}}}),
        )
        .expect("create HPA");
    let op = c.operator(None).await;

    for name in ["paused", "shadow"] {
        eventually(
            &format!("{name}: value and would-be decision in status"),
            T,
            || async {
                let p = c.pool(name);
                let value = p["status"]["triggers"][0]["value"].as_str() == Some("9");
                let desired = p["status"]["desiredReplicas"] == json!(9);
                let told = p["status"]["lastDecision"]
                    .as_str()
                    .is_some_and(|d| d.contains("not applied"));
                (value && desired && told).then_some(())
            },
        )
        .await;
    }
    wait_for_condition(&c, "paused", "Ready", "True", "Paused").await;
    wait_for_condition(&c, "paused", "Paused", "True", "Paused").await;
    wait_for_condition(&c, "shadow", "Ready", "True", "Shadow").await;
    eventually("a WouldScale Event", T, || async {
        c.events("shadow", "WouldScale").pop()
    })
    .await;
    let metrics = op.metrics.encode();
    assert!(
        metrics.contains(
            "workerpool_shadow_desired_replicas{namespace=\"shop\",workerpool=\"shadow\"} 9"
        ),
        "{metrics}"
    );
    assert_eq!(
        scale_patches(&c, "w") + scale_patches(&c, "s"),
        0,
        "a passive pool wrote"
    );
    assert_eq!((c.replicas("w"), c.replicas("s")), (Some(2), Some(2)));
    op.shutdown(Duration::from_secs(5)).await;
}

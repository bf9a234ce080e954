//! End to end: schedules through the real operator, against the Kubernetes
//! API emulator and a real Redis. Every wait polls with a deadline.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{eventually, http_get, Cluster};
use support::redis::{shared_url, unique};

const T: Duration = Duration::from_secs(30);

fn pool(name: &str, target: &str, list: &str, schedules: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicas": 1,
            "maxReplicas": 10,
            "pollingIntervalSeconds": 1,
            "triggers": [{"name": "orders", "redis": {"url": shared_url(), "list": list}, "targetPerReplica": 20}],
            "schedules": schedules,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_window_raises_the_floor_and_a_bad_cron_is_reported_not_scaled() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.deployment("w-bad", 1).await;
    // An empty queue: only the schedule can ask for replicas.
    let key = unique("sched");
    c.apply_pool(pool(
        "s",
        "w",
        &key,
        json!([
            // Fires every minute and lasts an hour: open whenever the test runs.
            {"name": "always", "cron": "* * * * *", "durationSeconds": 3600, "minReplicas": 4},
            // Open only in the first minute of a year.
            {"name": "new-year", "cron": "0 0 1 1 *", "durationSeconds": 60, "timeZone": "Pacific/Kiritimati", "minReplicas": 7}
        ]),
    ))
    .await;
    c.apply_pool(pool(
        "bad",
        "w-bad",
        &key,
        json!([{"name": "broken", "cron": "0 8 * *", "durationSeconds": 3600, "minReplicas": 4}]),
    ))
    .await;
    let op = c.operator(None).await;

    eventually("the floor of the open window", T, || async {
        (c.replicas("w") == Some(4)).then_some(())
    })
    .await;
    let status = eventually("status names the open window", T, || async {
        let st = c.pool("s")["status"].clone();
        (st["activeSchedules"] == json!(["always"])).then_some(st)
    })
    .await;
    let openings = status["nextOpenings"].as_array().unwrap();
    assert_eq!(openings.len(), 2, "{status}");
    assert_eq!(openings[1]["name"], "new-year");
    // Midnight of 1 January at UTC+14 is 10:00 UTC on 31 December.
    assert!(
        openings[1]["time"]
            .as_str()
            .unwrap()
            .ends_with("-12-31T10:00:00Z"),
        "{status}"
    );
    let decision = status["lastDecision"].as_str().unwrap_or_default();
    assert!(
        decision.contains("floor 4 from schedule always"),
        "{decision}"
    );

    let body = eventually("/metrics has the schedules", T, || async {
        let (_, body) = http_get(op.http_addr, "/metrics").await?;
        body.contains(
            r#"workerpool_schedule_active{namespace="shop",workerpool="s",schedule="always"} 1"#,
        )
        .then_some(body)
    })
    .await;
    assert!(
        body.contains(
            r#"workerpool_schedule_active{namespace="shop",workerpool="s",schedule="new-year"} 0"#
        ),
        "{body}"
    );

    let (s, _, msg) = eventually("Ready=False InvalidSchedule", T, || async {
        c.condition("bad", "Ready")
            .filter(|(_, r, _)| r == "InvalidSchedule")
    })
    .await;
    assert_eq!(s, "False");
    assert!(msg.contains("spec.schedules[0].cron"), "{msg}");
    assert_eq!(
        c.replicas("w-bad"),
        Some(1),
        "a pool with a bad schedule must not scale"
    );
    op.shutdown(Duration::from_secs(5)).await;
}

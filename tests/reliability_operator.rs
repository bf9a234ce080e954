//! Reliability when the operator itself fails: killed between a /scale
//! PATCH and its status write, restarted inside a stabilization window,
//! the leader killed during a scale-up, candidates racing for a free Lease.
//! The real operator runs in-process against the Kubernetes API emulator
//! and a real Redis; every wait polls with a deadline, and every test
//! checks that the target never left [minReplicas, maxReplicas].

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kube_emulator::Verb;
use serde_json::{json, Value};
use support::cluster::{eventually, test_settings, Cluster};
use support::redis::{fill_list, shared_url};
use workerpool_operator::runtime::leader::LeaseConfig;

const T: Duration = Duration::from_secs(30);

fn pool(name: &str, key: &str, min: i32, max: i32, behavior: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": "w"}, "minReplicas": min, "maxReplicas": max,
            "pollingIntervalSeconds": 1,
            "triggers": [{"name": "q", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 10}],
            "behavior": behavior
        }
    })
}

fn key(test: &str) -> String {
    format!("reliability-operator-{test}-{}", std::process::id())
}

/// Makes the shared Redis list `key` hold exactly `n` items.
fn fill(key: &str, n: usize) {
    fill_list(&shared_url(), key, n)
}

fn lease(name: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: name.into(),
        namespace: "default".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(1),
    }
}

/// Waits for the next successful write whose path ends with `suffix`.
async fn next_write(
    writes: &mut tokio::sync::broadcast::Receiver<kube_emulator::WriteRecord>,
    suffix: &str,
) -> kube_emulator::WriteRecord {
    tokio::time::timeout(T, async {
        loop {
            match writes.recv().await {
                Ok(w) if w.path.ends_with(suffix) && w.code < 300 => return w,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("write feed closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no successful write to {suffix} within {T:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_scale_and_status_write_the_restart_keeps_the_rate_policy() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 2).await;
    let rec = c.record_replicas("w");
    let k = key("crash");
    fill(&k, 20);
    // At most 2 pods added per 8 s.
    c.apply_pool(pool(
        "crash",
        &k,
        1,
        20,
        json!({"scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 8}]}}),
    ))
    .await;
    let op = c.operator(None).await;
    eventually("steady at 2 with status written", T, || async {
        let s = &c.pool("crash")["status"];
        (s["currentReplicas"] == 2 && s["desiredReplicas"] == 2).then_some(())
    })
    .await;

    // Every status write fails from now on, so the operator dies after its
    // /scale PATCH and before the status records it.
    c.emu
        .faults()
        .fail_next(Some(Verb::Patch), "/workerpools/crash/status", 500, 100_000);
    let mut writes = c.emu.requests().subscribe_writes();
    fill(&k, 200);
    next_write(&mut writes, "/deployments/w/scale").await;
    op.abort();
    let scaled = Instant::now();
    assert_eq!(c.replicas("w"), Some(4), "2 + 2 pods (the policy)");
    assert_eq!(
        c.pool("crash")["status"]["currentReplicas"],
        2,
        "the status write was meant to be lost"
    );
    c.emu.faults().clear();

    // A new operator finds the Deployment at 4 and a status saying 2: the
    // scale it did not record still counts against the 8 s period.
    let op = c.operator(None).await;
    let decision = eventually("the new operator polled and wrote status", T, || async {
        let s = &c.pool("crash")["status"];
        (s["currentReplicas"] == 4).then(|| s["lastDecision"].as_str().unwrap_or("").to_string())
    })
    .await;
    assert!(
        decision.contains("4"),
        "the decision names the held count: {decision}"
    );
    eventually("the next 2 pods once the period has passed", T, || async {
        (c.replicas("w") == Some(6)).then_some(())
    })
    .await;
    // The recorder's watch may deliver the 6 a moment after the GET saw it.
    let at_six = eventually("the replica watch saw 6", T, || async {
        (rec.timeline().iter())
            .find(|(_, v)| *v == 6)
            .map(|(t, _)| *t)
    })
    .await;
    assert!(
        at_six >= scaled + Duration::from_millis(7500),
        "scaled 4 -> 6 only {:?} after 2 -> 4; the 8 s Pods policy was lost with the status write",
        at_six - scaled
    );
    let values = rec.assert_within(&c, 1, 20).await;
    for pair in values.windows(2) {
        assert!(
            pair[1] - pair[0] <= 2,
            "a step above the policy: {values:?}"
        );
    }
    fill(&k, 0);
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_inside_the_scale_down_window_still_waits_for_the_window() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("window");
    fill(&k, 50);
    c.apply_pool(pool(
        "window",
        &k,
        1,
        10,
        json!({"scaleDown": {"stabilizationWindowSeconds": 6,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}}),
    ))
    .await;
    let op = c.operator(None).await;
    eventually("scaled to 5 (50 / 10)", T, || async {
        let s = &c.pool("window")["status"];
        (c.replicas("w") == Some(5) && s["currentReplicas"] == 5).then_some(())
    })
    .await;
    // The queue stays high for longer than the window: the operator keeps
    // recommending 5 (without a status write: nothing a person sees changed).
    let steady_until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < steady_until {
        assert_eq!(c.replicas("w"), Some(5));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Restart, and the queue drains at the same moment.
    op.shutdown(Duration::from_secs(5)).await;
    fill(&k, 0);
    let restarted = Instant::now();
    let op = c.operator(None).await;
    eventually("the new operator polled", T, || async {
        c.pool("window")["status"]["triggers"][0]["value"]
            .as_str()
            .filter(|v| *v == "0")
            .map(|_| ())
    })
    .await;
    eventually("scaled in after the window", T, || async {
        (c.replicas("w") == Some(1)).then_some(())
    })
    .await;
    let at_one = eventually("the replica watch saw 1 after the restart", T, || async {
        (rec.timeline().into_iter())
            .find(|(t, v)| *v == 1 && *t > restarted)
            .map(|(t, _)| t)
    })
    .await;
    assert!(
        at_one >= restarted + Duration::from_millis(5500),
        "scaled in {:?} after the restart: the 6 s scale-down window restarted empty",
        at_one - restarted
    );
    rec.assert_within(&c, 1, 10).await;
    op.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_scale_up_the_successor_finishes_it_within_policy() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("takeover");
    fill(&k, 0);
    // At most 2 pods added per 3 s: a scale-up from 1 to 10 takes a while.
    c.apply_pool(pool(
        "takeover",
        &k,
        1,
        10,
        json!({"scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 3}]}}),
    ))
    .await;
    let a = c
        .operator_with(
            c.client_as("op-a"),
            Some(lease("takeover", "a")),
            test_settings(),
        )
        .await;
    let b = c
        .operator_with(
            c.client_as("op-b"),
            Some(lease("takeover", "b")),
            test_settings(),
        )
        .await;
    eventually("one leader", T, || async {
        (a.leader.load(Ordering::Acquire) ^ b.leader.load(Ordering::Acquire)).then_some(())
    })
    .await;
    let (leader, standby, standby_agent) = if a.leader.load(Ordering::Acquire) {
        (a, b, "op-b")
    } else {
        (b, a, "op-a")
    };
    let mut writes = c.emu.requests().subscribe_writes();
    fill(&k, 100);
    next_write(&mut writes, "/deployments/w/scale").await;
    next_write(&mut writes, "/deployments/w/scale").await;
    // Killed right after its second step (1 -> 3 -> 5), maybe before its status write.
    leader.abort();
    let killed = Instant::now();
    assert_eq!(c.replicas("w"), Some(5));
    eventually("the standby took over", T, || async {
        standby.leader.load(Ordering::Acquire).then_some(())
    })
    .await;
    eventually("the successor finished the scale-up", T, || async {
        (c.replicas("w") == Some(10)).then_some(())
    })
    .await;
    // Only the successor wrote after the kill.
    let late: BTreeSet<String> = c
        .emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.at > killed && r.method == "PATCH" && r.path.contains("/deployments/w/scale"))
        .map(|r| r.user_agent.unwrap_or_default())
        .collect();
    assert_eq!(late, BTreeSet::from([standby_agent.to_string()]));
    // The Pods policy held across the takeover: at most 2 added within any
    // 3 s (measured with a margin, the watch sees writes a little late).
    let timeline = rec.timeline();
    for (i, (t0, v0)) in timeline.iter().enumerate() {
        for (t1, v1) in &timeline[i + 1..] {
            if *t1 - *t0 < Duration::from_millis(2500) {
                assert!(
                    v1 - v0 <= 2,
                    "{v0} -> {v1} within {:?}: {timeline:?}",
                    *t1 - *t0
                );
            }
        }
    }
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    standby.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_racing_for_a_free_lease_never_both_lead_or_both_write() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("race");
    fill(&k, 30);
    c.apply_pool(pool("race", &k, 1, 10, json!({}))).await;
    // Rounds of three candidates started at once on a Lease nobody holds.
    for round in 0..3 {
        let lease_name = format!("race-{round}");
        c.emu.requests().clear();
        let ops = futures::future::join_all((0..3).map(|i| {
            let agent = format!("op-{round}-{i}");
            let l = lease(&lease_name, &agent);
            let client = c.client_as(&agent);
            c.operator_with(client, Some(l), test_settings())
        }))
        .await;
        let until = Instant::now() + Duration::from_secs(4);
        let mut ever = BTreeSet::new();
        while Instant::now() < until {
            let leaders: Vec<usize> = (0..ops.len())
                .filter(|i| ops[*i].leader.load(Ordering::Acquire))
                .collect();
            assert!(
                leaders.len() <= 1,
                "round {round}: candidates {leaders:?} lead at the same time"
            );
            ever.extend(leaders);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            ever.len(),
            1,
            "round {round}: exactly one leader, got {ever:?}"
        );
        let writers: BTreeSet<String> = c
            .emu
            .requests()
            .all()
            .into_iter()
            .filter(|r| {
                r.method == "PATCH"
                    && (r.path.contains("/deployments/w/scale")
                        || r.path.contains("/workerpools/race/status"))
            })
            .map(|r| r.user_agent.unwrap_or_default())
            .collect();
        assert!(
            writers.len() <= 1,
            "round {round}: more than one instance wrote: {writers:?}"
        );
        for op in ops {
            op.shutdown(Duration::from_secs(5)).await;
        }
    }
    eventually("scaled to 3 (30 / 10)", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
}

/// Two candidates start together on a free Lease; the second one's link to
/// the API server is slow, so its claim lands after the first has taken
/// the Lease. The claim must fail (the Lease's holder is owned by the
/// other candidate), not overwrite the holder while the first still leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_claim_on_a_taken_lease_never_makes_two_leaders() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("split");
    fill(&k, 30);
    c.apply_pool(pool("split", &k, 1, 10, json!({}))).await;
    // A's Lease writes take 300 ms, B's 1 s: B reads the Lease free before
    // A's claim lands, and claims it after A has read itself the holder.
    c.emu.faults().add_latency_for(
        "op-a",
        Some(Verb::Patch),
        "/leases/split",
        Duration::from_millis(300),
    );
    c.emu.faults().add_latency_for(
        "op-b",
        Some(Verb::Patch),
        "/leases/split",
        Duration::from_secs(1),
    );
    let long = |identity: &str| LeaseConfig {
        duration: Duration::from_secs(10),
        ..lease("split", identity)
    };
    c.emu.requests().clear();
    let (a, b) = futures::join!(
        c.operator_with(c.client_as("op-a"), Some(long("a")), test_settings()),
        c.operator_with(c.client_as("op-b"), Some(long("b")), test_settings()),
    );
    let until = Instant::now() + Duration::from_secs(6);
    let mut ever = BTreeSet::new();
    while Instant::now() < until {
        let (la, lb) = (
            a.leader.load(Ordering::Acquire),
            b.leader.load(Ordering::Acquire),
        );
        assert!(!(la && lb), "a and b lead at the same time");
        if la {
            ever.insert("a");
        }
        if lb {
            ever.insert("b");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ever.len(), 1, "exactly one leader: {ever:?}");
    let writers: BTreeSet<String> = c
        .emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && (r.path.contains("/deployments/w/scale")
                    || r.path.contains("/workerpools/split/status"))
        })
        .map(|r| r.user_agent.unwrap_or_default())
        .collect();
    assert!(writers.len() <= 1, "both wrote: {writers:?}");
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

/// The leader's Lease renewals hang (an overloaded or half-partitioned API
/// server answering its other requests): a standby takes the expired Lease,
/// so the old leader must stop scaling once it cannot renew in time, as
/// client-go's `RenewDeadline` makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_stands_down_before_a_standby_takes_over() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let rec = c.record_replicas("w");
    let k = key("hang");
    fill(&k, 30);
    c.apply_pool(pool("hang", &k, 1, 10, json!({}))).await;
    let a = c
        .operator_with(
            c.client_as("op-a"),
            Some(lease("hang", "a")),
            test_settings(),
        )
        .await;
    eventually("a leads", T, || async {
        a.leader.load(Ordering::Acquire).then_some(())
    })
    .await;
    let b = c
        .operator_with(
            c.client_as("op-b"),
            Some(lease("hang", "b")),
            test_settings(),
        )
        .await;
    eventually("scaled to 3 by a", T, || async {
        (c.replicas("w") == Some(3)).then_some(())
    })
    .await;
    c.emu.faults().add_latency_for(
        "op-a",
        Some(Verb::Patch),
        "/leases/hang",
        Duration::from_secs(120),
    );
    let until = Instant::now() + Duration::from_secs(8);
    let mut b_led = false;
    while Instant::now() < until {
        let (la, lb) = (
            a.leader.load(Ordering::Acquire),
            b.leader.load(Ordering::Acquire),
        );
        assert!(!(la && lb), "a and b lead at the same time");
        b_led |= lb;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b_led, "b never took over the expired Lease");
    rec.assert_within(&c, 1, 10).await;
    fill(&k, 0);
    a.abort();
    b.shutdown(Duration::from_secs(5)).await;
}

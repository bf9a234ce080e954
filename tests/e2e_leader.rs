//! Leader election and shutdown, end to end against the API emulator:
//! only the leader writes; a standby takes over when the leader dies; the
//! real binary exits 0 on SIGTERM and releases its Lease.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_emulator::Gvr;
use serde_json::json;
use support::cluster::{eventually, http_get, Cluster};
use support::redis::{connect, free_port, shared_url};
use workerpool_operator::runtime::leader::LeaseConfig;

const T: Duration = Duration::from_secs(30);

fn lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "workerpool-operator".into(),
        namespace: "default".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    let key = format!("leader-{}", std::process::id());
    let mut r = connect(&shared_url());
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    let items: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&items)
        .query(&mut r)
        .unwrap();
    c.apply_pool(json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": "p"},
        "spec": {"scaleTargetRef": {"name": "w"}, "minReplicas": 1, "maxReplicas": 10, "pollingIntervalSeconds": 1,
                 "triggers": [{"name": "q", "redis": {"url": shared_url(), "list": key}, "targetPerReplica": 20}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}
    }))
    .await;
    let a = c.operator(Some(lease("a"))).await;
    let b = c.operator(Some(lease("b"))).await;
    eventually("one leader", T, || async {
        (a.leader.load(std::sync::atomic::Ordering::Acquire)
            ^ b.leader.load(std::sync::atomic::Ordering::Acquire))
        .then_some(())
    })
    .await;
    eventually("scaled to 2 by the leader", T, || async {
        (c.replicas("w") == Some(2)).then_some(())
    })
    .await;
    let (leader, standby) = if a.leader.load(std::sync::atomic::Ordering::Acquire) {
        (a, b)
    } else {
        (b, a)
    };
    // Several polls later the standby still has written nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        standby.metrics.status_writes.get(),
        0,
        "standby wrote status"
    );
    assert_eq!(standby.metrics.polls.get(), 0, "standby polled");
    assert!(leader.metrics.polls.get() > 0);

    // The leader dies without releasing its lease; the standby takes over
    // within the lease duration and scales on the next change.
    let died = Instant::now();
    leader.abort();
    eventually("standby became leader", Duration::from_secs(15), || async {
        standby
            .leader
            .load(std::sync::atomic::Ordering::Acquire)
            .then_some(())
    })
    .await;
    eprintln!("takeover after {:?} (lease duration 3 s)", died.elapsed());
    let more: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&more)
        .query(&mut r)
        .unwrap();
    eventually("new leader scales to 5", T, || async {
        (c.replicas("w") == Some(5)).then_some(())
    })
    .await;
    // The status writer writes after the scale, on a task of its own.
    eventually("the new leader writes status", T, || async {
        (standby.metrics.status_writes.get() > 0).then_some(())
    })
    .await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).unwrap();
    standby.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exits_zero_on_sigterm_and_releases_the_lease() {
    let c = Cluster::start("shop").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    c.emu.write_kubeconfig(&kubeconfig).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .args([
            "run",
            "--leader-election",
            "--lease-namespace",
            "default",
            "--identity",
            "solo",
        ])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually("/readyz 200", T, || async {
        http_get(addr, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    eventually("holds the lease", T, || async {
        let l = c.emu.get_json(
            Gvr::new("coordination.k8s.io", "v1", "leases"),
            "default",
            "workerpool-operator",
        )?;
        (l["spec"]["holderIdentity"] == "solo").then_some(())
    })
    .await;
    let pid = child.id() as i32;
    // SAFETY-free: send SIGTERM through the kill command.
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "operator did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(status.success(), "exit status {status:?}\n{logs}");
    let l = c
        .emu
        .get_json(
            Gvr::new("coordination.k8s.io", "v1", "leases"),
            "default",
            "workerpool-operator",
        )
        .unwrap();
    assert_ne!(
        l["spec"]["holderIdentity"], "solo",
        "lease not released: {l}"
    );
    assert!(
        logs.lines().all(|line| line.trim().is_empty()
            || serde_json::from_str::<serde_json::Value>(line).is_ok()),
        "--log-format json printed a non-JSON line:\n{logs}"
    );
}

//! Secrets are read by name, never listed or watched: the real binary
//! against the API emulator and a real password-protected `redis-server`.
//! A rotated password is picked up at once on the authentication error (not
//! after `--secret-refresh-seconds`), and 10,000 unrelated Secrets cost the
//! operator no request and no memory.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube_emulator::Verb;
use serde_json::{json, Value};
use support::cluster::{eventually, Cluster};
use support::operator_process::OperatorProcess;
use support::redis::{command, free_port, unique, RedisWithArgs};

const T: Duration = Duration::from_secs(30);

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(name: &str, password: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "data": {"password": b64(password)}})
}

fn pool(name: &str, url: &str, list: &str) -> Value {
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
           "spec": {"scaleTargetRef": {"name": "w"}, "minReplicas": 1, "maxReplicas": 10,
                    "pollingIntervalSeconds": 1,
                    "triggers": [{"name": "q", "targetPerReplica": 10,
                                  "redis": {"url": url, "list": list,
                                            "passwordSecretRef": {"name": "redis-auth", "key": "password"}}}]}})
}

fn kubeconfig(c: &Cluster, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    c.emu.write_kubeconfig(&path).unwrap();
    path
}

/// The trigger's value in status once it equals `want`.
async fn value_becomes(c: &Cluster, want: &str) {
    eventually(&format!("status.triggers[0].value = {want}"), T, || async {
        (c.pool("p")["status"]["triggers"][0]["value"].as_str() == Some(want)).then_some(())
    })
    .await;
}

fn password_protected_redis(password: &str) -> RedisWithArgs {
    let port = free_port();
    let args = [
        "--port".to_string(),
        port.to_string(),
        "--requirepass".into(),
        password.into(),
    ];
    RedisWithArgs::start(port, tempfile::tempdir().unwrap(), &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_password_is_picked_up_on_the_authentication_error() {
    let redis = password_protected_redis("first-password");
    let admin = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}/0", redis.port);
    let list = unique("rot");
    let _: i64 = command(&admin("first-password"), &["RPUSH", &list, "a", "b", "c"]);

    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.emu
        .create_json("v1/secrets", &c.ns, secret("redis-auth", "first-password"))
        .unwrap();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    c.apply_pool(pool("p", &url, &list)).await;
    let dir = tempfile::tempdir().unwrap();
    // An hour: the new password can only arrive through the auth-error path.
    let op = OperatorProcess::start(&kubeconfig(&c, &dir), &["--secret-refresh-seconds", "3600"]);
    value_becomes(&c, "3").await;

    // Rotate: the server first, then the Secret (the order a rotation job uses).
    let _: () = command(
        &admin("first-password"),
        &["CONFIG", "SET", "requirepass", "second-password"],
    );
    let _: () = command(
        &admin("second-password"),
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
    );
    let _: i64 = command(&admin("second-password"), &["RPUSH", &list, "d"]);
    Api::<Secret>::namespaced(c.client.clone(), &c.ns)
        .patch(
            "redis-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": b64("second-password")}})),
        )
        .await
        .expect("rotate the Secret");
    value_becomes(&c, "4").await;

    let secret_reads = c
        .emu
        .requests()
        .count_verb(Verb::Get, "/secrets/redis-auth");
    assert!(
        secret_reads >= 2,
        "read once, re-read after the auth error: {secret_reads}"
    );
    op.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn unrelated_secrets_cost_no_request_and_no_memory() {
    let redis = password_protected_redis("pw");
    let admin = format!("redis://:pw@127.0.0.1:{}/0", redis.port);
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.emu
        .create_json("v1/secrets", &c.ns, secret("redis-auth", "pw"))
        .unwrap();
    let list = unique("unrelated");
    c.apply_pool(pool(
        "p",
        &format!("redis://127.0.0.1:{}/0", redis.port),
        &list,
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::start(&kubeconfig(&c, &dir), &[]);
    value_becomes(&c, "0").await;
    let before = rss_kib(op.pid());

    // 10,000 Secrets of about 1 KiB each: ~10 MiB if anything cached them.
    let filler = "x".repeat(1024);
    for i in 0..10_000 {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("unrelated-{i}")},
                       "data": {"blob": b64(&filler)}});
        c.emu.create_json("v1/secrets", &c.ns, s).unwrap();
    }
    let _: i64 = command(&admin, &["RPUSH", &list, "a"]);
    value_becomes(&c, "1").await;
    let after = rss_kib(op.pid());

    let all_secret_requests: Vec<_> = c
        .emu
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .collect();
    for r in &all_secret_requests {
        assert_eq!(r.verb, Some(Verb::Get), "{} {}", r.method, r.path);
        assert!(r.path.ends_with("/secrets/redis-auth"), "{}", r.path);
    }
    // Allocator noise is well under a megabyte; a cache of the Secrets is ten.
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB with 10,000 unrelated Secrets"
    );
    op.stop();
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

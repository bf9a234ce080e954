//! Secrets never leak: the real binary (`workerpool-operator run`, JSON
//! logs at debug level) runs against the Kubernetes API emulator with
//! Secrets holding distinctive credentials — a Redis ACL user with the
//! right password and one with a wrong password, a Prometheus bearer token
//! and basic-auth password sent to a fake Prometheus that echoes the
//! Authorization header back in its error text (as some proxies do). No
//! value, nor its base64 form, may appear in the logs, in any Event, or in
//! any WorkerPool's status.

mod support;

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use kube_emulator::Gvr;
use serde_json::{json, Value};
use support::cluster::{eventually, http_get, Cluster};
use support::operator_process::OperatorProcess;
use support::redis::{connect, RedisProcess};

const T: Duration = Duration::from_secs(30);

const REDIS_USER: &str = "orders-worker-acl-user";
const REDIS_PASSWORD: &str = "Rd1s-Passw0rd-4f7c9a-never-log-me";
const WRONG_PASSWORD: &str = "Wr0ng-Passw0rd-b31d02-never-log-me";
const PROM_TOKEN: &str = "Pr0m-Bearer-Tok3n-88e0c1-never-log-me";
const PROM_USER: &str = "prom-basic-user";
const PROM_PASSWORD: &str = "Pr0m-Basic-Passw0rd-5a6b7c-never-log-me";

fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form a leaked secret could take: the value and its base64 (a
/// Secret's `data`). The basic-auth header form is checked on its own in
/// `an_echoed_basic_auth_header_is_redacted`.
fn forbidden() -> Vec<(String, &'static str)> {
    let mut f = Vec::new();
    for (v, what) in [
        (REDIS_PASSWORD, "redis password"),
        (WRONG_PASSWORD, "wrong redis password"),
        (PROM_TOKEN, "prometheus bearer token"),
        (PROM_PASSWORD, "prometheus basic-auth password"),
    ] {
        f.push((v.to_string(), what));
        f.push((b64(v), what));
    }
    f
}

fn assert_clean(place: &str, text: &str) {
    for (value, what) in forbidden() {
        assert!(
            !text.contains(&value),
            "the {what} appears in {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(&value))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A Prometheus that refuses every request with 401 and quotes the
/// Authorization header it got.
async fn echoing_prometheus() -> String {
    async fn refuse(headers: HeaderMap) -> impl IntoResponse {
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            json!({"status": "error", "errorType": "unauthorized",
                   "error": format!("credentials {got} rejected")})
            .to_string(),
        )
    }
    let app = axum::Router::new().route("/api/v1/query", axum::routing::get(refuse));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn secret(c: &Cluster, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(b64(v))))
        .collect();
    c.emu
        .create_json(
            "v1/secrets",
            &c.ns,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}),
        )
        .expect("create secret");
}

fn pool(name: &str, target: &str, trigger: Value) -> Value {
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 10,
                 "pollingIntervalSeconds": 1, "fallback": {"failureThreshold": 2},
                 "triggers": [trigger]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_reach_logs_events_or_status() {
    let redis_server = RedisProcess::start();
    let mut admin = connect(&redis_server.url());
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(REDIS_USER)
        .arg("on")
        .arg(format!(">{REDIS_PASSWORD}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query(&mut admin)
        .unwrap();
    let items: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("RPUSH")
        .arg("orders")
        .arg(&items)
        .query(&mut admin)
        .unwrap();
    let prom = echoing_prometheus().await;

    let c = Cluster::start("shop").await;
    secret(
        &c,
        "redis-auth",
        &[("username", REDIS_USER), ("password", REDIS_PASSWORD)],
    );
    secret(
        &c,
        "redis-wrong",
        &[("username", REDIS_USER), ("password", WRONG_PASSWORD)],
    );
    secret(&c, "prom-token", &[("token", PROM_TOKEN)]);
    secret(
        &c,
        "prom-basic",
        &[("username", PROM_USER), ("password", PROM_PASSWORD)],
    );
    let mut recorders = Vec::new();
    for d in ["w-good", "w-wrong", "w-bearer", "w-basic"] {
        c.deployment(d, 1).await;
        recorders.push(c.record_replicas(d));
    }
    let redis_url = redis_server.url();
    let redis = |secret: &str| {
        json!({"name": "orders", "targetPerReplica": 10,
               "redis": {"url": redis_url, "list": "orders",
                         "usernameSecretRef": {"name": secret, "key": "username"},
                         "passwordSecretRef": {"name": secret, "key": "password"}}})
    };
    c.apply_pool(pool("good", "w-good", redis("redis-auth")))
        .await;
    c.apply_pool(pool("wrong", "w-wrong", redis("redis-wrong")))
        .await;
    c.apply_pool(pool(
        "bearer",
        "w-bearer",
        json!({"name": "rate", "targetPerReplica": 10,
               "prometheus": {"url": prom, "query": "sum(rate(orders_total[2m]))",
                              "bearerTokenSecretRef": {"name": "prom-token", "key": "token"}}}),
    ))
    .await;
    c.apply_pool(pool(
        "basic",
        "w-basic",
        json!({"name": "rate", "targetPerReplica": 10,
               "prometheus": {"url": prom, "query": "sum(rate(orders_total[2m]))",
                              "basicAuthSecretRef": {"name": "prom-basic"}}}),
    ))
    .await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    c.emu.write_kubeconfig(&kubeconfig).unwrap();
    // The operator binds its HTTP port itself (port 0) and logs it: no port
    // is picked in advance that another process could take meanwhile.
    let op = OperatorProcess::start(&kubeconfig, &[]);

    eventually("the right password scales (30 / 10)", T, || async {
        (c.replicas("w-good") == Some(3)).then_some(())
    })
    .await;
    for (pool, reason) in [
        ("wrong", "authentication failed"),
        ("bearer", "401"),
        ("basic", "401"),
    ] {
        let (_, _, message) = eventually(&format!("{pool}: MetricsAvailable=False"), T, || async {
            c.condition(pool, "MetricsAvailable")
                .filter(|(s, r, _)| s == "False" && r == "FallbackApplied")
        })
        .await;
        assert!(message.contains(reason), "{pool}: {message}");
        eventually(&format!("{pool}: a TriggerFailed Event"), T, || async {
            c.events(pool, "TriggerFailed").pop()
        })
        .await;
    }
    // The echoing server put the credentials in its answer: redacted.
    // The server's answer is never quoted: only its kind.
    let (_, _, bearer) = c.condition("bearer", "MetricsAvailable").unwrap();
    assert!(bearer.contains("HTTP 401"), "{bearer}");
    assert!(!bearer.contains("credentials"), "{bearer}");
    let metrics = http_get(op.http_addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    let logs = op.stop();
    assert!(
        logs.lines().filter(|l| l.contains("\"DEBUG\"")).count() > 10,
        "expected debug logs to scan:\n{}",
        &logs[..logs.len().min(2000)]
    );
    assert!(
        logs.contains("authentication failed"),
        "the failures should be logged"
    );
    assert_clean("the operator's logs", &logs);
    assert_clean("/metrics", &metrics);

    for rec in &recorders {
        rec.assert_within(&c, 1, 10).await;
    }
    for gvr in [
        Gvr::new("events.k8s.io", "v1", "events"),
        Gvr::new("", "v1", "events"),
        Gvr::new("workerpool.dev", "v1alpha1", "workerpools"),
    ] {
        let all = c.emu.list_json(gvr.clone(), None);
        let text = serde_json::to_string_pretty(&all).unwrap();
        assert_clean(&format!("{gvr}"), &text);
    }
}

/// A server that quotes the basic-auth header it got must not get the
/// credentials into status: `Basic base64(user:password)` is as secret as
/// the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_basic_auth_header_is_redacted() {
    let prom = echoing_prometheus().await;
    let c = Cluster::start("shop").await;
    secret(
        &c,
        "prom-basic",
        &[("username", PROM_USER), ("password", PROM_PASSWORD)],
    );
    c.deployment("w-basic", 1).await;
    let rec = c.record_replicas("w-basic");
    c.apply_pool(pool(
        "basic",
        "w-basic",
        json!({"name": "rate", "targetPerReplica": 10,
               "prometheus": {"url": prom, "query": "sum(rate(orders_total[2m]))",
                              "basicAuthSecretRef": {"name": "prom-basic"}}}),
    ))
    .await;
    let op = c.operator(None).await;
    let (_, _, message) = eventually("MetricsAvailable=False", T, || async {
        c.condition("basic", "MetricsAvailable")
            .filter(|(s, _, _)| s == "False")
    })
    .await;
    assert!(message.contains("401"), "{message}");
    let header = b64(&format!("{PROM_USER}:{PROM_PASSWORD}"));
    assert!(
        !message.contains(&header),
        "the basic-auth header is in status: {message}"
    );
    rec.assert_within(&c, 1, 10).await;
    op.shutdown(Duration::from_secs(5)).await;
}

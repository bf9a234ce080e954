//! The operator is not a proxy into the cluster's network: the real binary
//! against the API emulator, with servers on loopback that answer with
//! marker strings standing for credentials. No marker may reach status,
//! Events, the debug log or /metrics; redirects are not followed; a host the
//! endpoint policy refuses gets no connection at all. Traffic goes to
//! 127.0.0.0/8 only.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use kube_emulator::Gvr;
use serde_json::{json, Value};
use support::cluster::{eventually, http_get, Cluster};
use support::operator_process::OperatorProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);
const MARKER: &str = "MARKER7f3a";

fn pool(name: &str, target: &str, trigger: Value) -> Value {
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
           "spec": {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 5,
                    "pollingIntervalSeconds": 1, "triggers": [trigger]}})
}

fn prometheus(url: &str) -> Value {
    json!({"name": "m", "targetPerReplica": 1, "prometheus": {"url": url, "query": "up"}})
}

/// An HTTP server on 127.0.0.1 answering every request with `status`,
/// `headers` and `body`; counts the requests it gets.
async fn http_server(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (headers, body) = (headers.clone(), body.clone());
        h.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut resp =
                (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

/// A fake Redis that answers every command with an error reply carrying the marker.
async fn marker_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    // One error reply per command (RESP arrays: `*N` at a line start).
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let commands = text.starts_with('*') as usize + text.matches("\r\n*").count();
                    let reply =
                        format!("-ERR {MARKER} secret=AKIA-{MARKER}\r\n").repeat(commands.max(1));
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("redis://{addr}/0")
}

fn kubeconfig(c: &Cluster, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    c.emu.write_kubeconfig(&path).unwrap();
    path
}

async fn failed_message(c: &Cluster, pool: &str) -> String {
    let (_, _, m) = eventually(&format!("{pool}: MetricsAvailable=False"), T, || async {
        c.condition(pool, "MetricsAvailable")
            .filter(|(s, _, _)| s == "False")
    })
    .await;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_of_an_answer_reaches_status_events_logs_or_metrics() {
    let json_type = vec![("content-type", "application/json".to_string())];
    let creds = json!({"Code": "Success", "AccessKeyId": format!("ASIA{MARKER}"), "SecretAccessKey": MARKER});
    let (metadata, _) = http_server(200, json_type.clone(), creds.to_string()).await;
    let prom_error =
        json!({"status": "error", "errorType": MARKER, "error": format!("bad {MARKER}")});
    let (prom, _) = http_server(400, json_type, prom_error.to_string()).await;
    let html = vec![("content-type", format!("text/html; x={MARKER}"))];
    let (gateway, _) = http_server(502, html, format!("<html>{MARKER}</html>")).await;
    let redis = marker_redis().await;

    let c = Cluster::start("shop").await;
    let pools = [
        ("metadata", prometheus(&metadata)),
        ("prom-error", prometheus(&prom)),
        ("gateway", prometheus(&gateway)),
        (
            "redis",
            json!({"name": "q", "targetPerReplica": 1, "redis": {"url": redis, "list": "q"}}),
        ),
    ];
    for (name, trigger) in &pools {
        c.deployment(name, 1).await;
        c.apply_pool(pool(name, name, trigger.clone())).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::start(&kubeconfig(&c, &dir), &[]);
    let expected = [
        ("metadata", "HTTP 200, content type application/json"),
        ("prom-error", "errorType unknown"),
        ("gateway", "HTTP 502"),
        ("redis", "the server replied ERR"),
    ];
    for (name, kind) in expected {
        let message = failed_message(&c, name).await;
        assert!(message.contains(kind), "{name}: {message}");
        eventually(&format!("{name}: TriggerFailed Event"), T, || async {
            c.events(name, "TriggerFailed").pop()
        })
        .await;
    }
    let metrics = http_get(op.http_addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    let logs = op.stop();
    assert!(
        logs.lines().filter(|l| l.contains("\"DEBUG\"")).count() > 10,
        "no debug logs to scan"
    );
    let statuses: Vec<String> = pools
        .iter()
        .map(|(n, _)| c.pool(n)["status"].to_string())
        .collect();
    let events =
        serde_json::to_string(&c.list_json(Gvr::new("events.k8s.io", "v1", "events"))).unwrap();
    for (place, text) in [
        ("status", statuses.join("\n")),
        ("Events", events),
        ("logs", logs),
        ("/metrics", metrics),
    ] {
        assert!(
            !text.contains(MARKER),
            "a server's bytes reached {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(MARKER))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_error_and_is_not_followed() {
    let (elsewhere, hits) = http_server(200, vec![], "{}".into()).await;
    let location = vec![("location", format!("{elsewhere}/api/v1/query?query=up"))];
    let (redirecting, _) = http_server(302, location, String::new()).await;
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.apply_pool(pool("redirect", "w", prometheus(&redirecting)))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::start(&kubeconfig(&c, &dir), &[]);
    let message = failed_message(&c, "redirect").await;
    assert!(message.contains("HTTP 302"), "{message}");
    op.stop();
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_endpoint_gets_no_connection_and_is_reported() {
    // A listener on another loopback address, counting connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    let c = Cluster::start("shop").await;
    c.deployment("w", 1).await;
    c.deployment("v", 1).await;
    c.apply_pool(pool("prom", "w", prometheus(&format!("http://{addr}"))))
        .await;
    c.apply_pool(pool(
        "redis",
        "v",
        json!({"name": "q", "targetPerReplica": 1,
        "redis": {"url": format!("redis://{addr}/0"), "list": "q"}}),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::start(&kubeconfig(&c, &dir), &["--deny-endpoints", "127.0.0.2/32"]);
    for name in ["prom", "redis"] {
        let (_, _, m) = eventually(&format!("{name}: EndpointNotAllowed"), T, || async {
            c.condition(name, "Ready")
                .filter(|(s, r, _)| s == "False" && r == "EndpointNotAllowed")
        })
        .await;
        assert!(
            m.contains("127.0.0.2") && m.contains("--deny-endpoints"),
            "{m}"
        );
    }
    // Several polls later: still one Event each, and no connection made.
    let polls = |c: &Cluster| {
        c.event_count("prom", "EndpointNotAllowed") + c.event_count("redis", "EndpointNotAllowed")
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(polls(&c), 2, "one Event per episode");
    op.stop();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a denied endpoint was connected to"
    );
}

//! Fault injection and observation through the test handle.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kube_emulator::{Emulator, Verb};
use serde_json::json;

#[tokio::test]
async fn injected_latency_delays_matching_requests_only() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    emu.faults()
        .add_latency(Some(Verb::List), "/configmaps", Duration::from_millis(300));
    let t = Instant::now();
    api.get(CM).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    api.get(DEPLOY).await;
    assert!(t.elapsed() < Duration::from_millis(300));
    emu.faults().clear();
    let t = Instant::now();
    api.get(CM).await;
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn forced_status_codes_answer_the_next_n_matching_requests() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    api.post(DEPLOY, &deployment("web", 1)).await;
    emu.faults().fail_next(Some(Verb::Patch), "/scale", 409, 2);
    emu.faults().fail_next(None, "/configmaps", 500, 1);
    emu.faults()
        .throttle_next(Some(Verb::Get), "/deployments/web", 3, 1);

    let scale = format!("{DEPLOY}/web/scale");
    for _ in 0..2 {
        let (code, status) = api.patch(&scale, MERGE, r#"{"spec":{"replicas":2}}"#).await;
        assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    }
    assert_eq!(
        api.patch(&scale, MERGE, r#"{"spec":{"replicas":2}}"#)
            .await
            .0,
        200
    );

    let (code, status) = api.get(CM).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (500, Some("InternalError"))
    );
    assert_eq!(api.get(CM).await.0, 200);

    let resp = reqwest::get(format!("{}{DEPLOY}/web", emu.url()))
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let status: serde_json::Value = resp.json().await.expect("status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 3);
    assert_eq!(emu.faults().pending_failures(), 0);
}

#[tokio::test]
async fn refusing_connections_then_serving_again_on_the_same_port() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    api.post(CM, &configmap("kept", json!({}))).await;
    let from = emu.resource_version();
    let mut w = api
        .watch(&format!("{CM}?watch=1&resourceVersion={from}"))
        .await;

    emu.faults()
        .refuse_connections(Duration::from_millis(800))
        .await;
    assert!(
        tokio::net::TcpStream::connect(emu.addr()).await.is_err(),
        "connection refused"
    );
    assert!(w.next(secs(5)).await.is_none(), "open watches are cut");

    let (code, cm) = eventually(secs(10), "the server to come back", || async {
        let fresh = reqwest::Client::new();
        let resp = fresh
            .get(format!("{}{CM}/kept", emu.url()))
            .send()
            .await
            .ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.json::<serde_json::Value>().await.ok()?))
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(cm["metadata"]["name"], "kept", "state survives the outage");
}

#[tokio::test]
async fn request_log_and_write_feed_observe_traffic() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let mut writes = emu.requests().subscribe_writes();
    api.post(DEPLOY, &deployment("web", 1)).await;
    api.patch(
        &format!("{DEPLOY}/web/scale"),
        MERGE,
        r#"{"spec":{"replicas":3}}"#,
    )
    .await;
    api.get(&format!("{DEPLOY}?labelSelector=app%3Dweb")).await;

    let first = writes.recv().await.expect("create");
    assert_eq!((first.verb, first.code), (Verb::Create, 201));
    let second = writes.recv().await.expect("patch");
    assert_eq!(second.verb, Verb::Patch);
    assert!(second.path.ends_with("/web/scale"));
    assert!(second.at >= first.at);

    let log = emu.requests();
    assert_eq!(log.count("PATCH", "/scale"), 1);
    assert_eq!(log.count_verb(Verb::List, "/deployments"), 1);
    let list = log
        .all()
        .into_iter()
        .find(|r| r.verb == Some(Verb::List))
        .expect("list logged");
    assert_eq!(list.query, "labelSelector=app%3Dweb");
    assert_eq!(list.code, 200);
    let patch = log
        .all()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("patch logged");
    assert_eq!(patch.content_type.as_deref(), Some(MERGE));
    log.clear();
    assert!(log.all().is_empty());
}

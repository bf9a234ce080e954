//! Watch semantics: resume from a resourceVersion, 410 Expired, initial
//! events, bookmarks, timeouts and selector transitions.

mod common;

use std::time::Duration;

use common::*;
use kube_emulator::{Config, Emulator};
use serde_json::json;

async fn setup(config: Config) -> (Emulator, Api) {
    let emu = Emulator::start_with(config).await.expect("emulator starts");
    let api = Api::new(&emu);
    (emu, api)
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_with_only_later_events() {
    let (_emu, api) = setup(Config::default()).await;
    let (_, a) = api.post(CM, &configmap("a", json!({}))).await;
    let from = rv(&a);
    api.post(CM, &configmap("b", json!({}))).await;
    api.patch(&format!("{CM}/a"), MERGE, r#"{"data":{"x":"1"}}"#)
        .await;

    let mut w = api
        .watch(&format!("{CM}?watch=1&resourceVersion={from}"))
        .await;
    let e1 = w.next(secs(5)).await.expect("event");
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    let e2 = w.next(secs(5)).await.expect("event");
    assert_eq!(
        (
            e2["type"].as_str(),
            e2["object"]["metadata"]["name"].as_str()
        ),
        (Some("MODIFIED"), Some("a"))
    );
    assert!(rv(&e2["object"]) > rv(&e1["object"]));
    assert_eq!(e1["object"]["kind"], "ConfigMap");

    api.delete(&format!("{CM}/b")).await;
    let e3 = w.next(secs(5)).await.expect("event");
    assert_eq!(e3["type"], "DELETED");
    assert!(
        rv(&e3["object"]) > rv(&e2["object"]),
        "DELETED carries the deletion revision"
    );
}

#[tokio::test]
async fn watch_from_an_expired_resource_version_gets_a_410_expired_error_event() {
    let config = Config {
        history_per_resource: 3,
        ..Config::default()
    };
    let (emu, api) = setup(config).await;
    let (_, first) = api.post(CM, &configmap("a", json!({}))).await;
    for i in 0..5 {
        api.patch(
            &format!("{CM}/a"),
            MERGE,
            &format!(r#"{{"data":{{"i":"{i}"}}}}"#),
        )
        .await;
    }
    let mut w = api
        .watch(&format!("{CM}?watch=true&resourceVersion={}", rv(&first)))
        .await;
    let ev = w.next(secs(5)).await.expect("error event");
    assert_eq!(ev["type"], "ERROR");
    let status = &ev["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(status["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("too old resource version: "));
    assert!(
        w.next(secs(5)).await.is_none(),
        "the stream ends after the error"
    );

    // Compaction expires everything before now, including recent versions.
    let now = emu.resource_version();
    api.post(CM, &configmap("b", json!({}))).await;
    emu.faults().compact();
    let mut w = api
        .watch(&format!("{CM}?watch=1&resourceVersion={now}"))
        .await;
    assert_eq!(
        w.next(secs(5)).await.expect("error event")["object"]["code"],
        410
    );
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_the_current_state() {
    let (_emu, api) = setup(Config::default()).await;
    api.post(CM, &configmap("a", json!({}))).await;
    api.post(CM, &configmap("b", json!({}))).await;
    let mut w = api.watch(&format!("{CM}?watch=1")).await;
    assert_eq!(w.next(secs(5)).await.expect("a")["type"], "ADDED");
    assert_eq!(w.next(secs(5)).await.expect("b")["type"], "ADDED");
    api.post(CM, &configmap("c", json!({}))).await;
    let ev = w.next(secs(5)).await.expect("c");
    assert_eq!(ev["object"]["metadata"]["name"], "c");

    let mut w = api
        .watch(&format!("{CM}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"))
        .await;
    for _ in 0..3 {
        assert_eq!(w.next(secs(5)).await.expect("initial")["type"], "ADDED");
    }
    let end = w.next(secs(5)).await.expect("bookmark");
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn watch_sends_periodic_bookmarks_when_allowed() {
    let config = Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    };
    let (emu, api) = setup(config).await;
    let start = emu.resource_version();
    let mut w = api
        .watch(&format!(
            "{DEPLOY}?watch=1&resourceVersion={start}&allowWatchBookmarks=true"
        ))
        .await;
    api.post(CM, &configmap("elsewhere", json!({}))).await;
    let bm = w.next(secs(5)).await.expect("bookmark");
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(bm["object"]["kind"], "Deployment");
    assert_eq!(bm["object"]["apiVersion"], "apps/v1");
    assert!(
        rv(&bm["object"]) > start,
        "bookmarks carry the current revision"
    );

    let mut quiet = api
        .watch(&format!(
            "{DEPLOY}?watch=1&resourceVersion={start}&timeoutSeconds=1"
        ))
        .await;
    let started = std::time::Instant::now();
    assert!(
        quiet.next(secs(5)).await.is_none(),
        "no bookmarks unless asked; ends at timeoutSeconds"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn watch_with_label_selector_sees_objects_enter_and_leave_the_selection() {
    let (emu, api) = setup(Config::default()).await;
    let from = emu.resource_version();
    let mut w = api
        .watch(&format!(
            "{CM}?watch=1&resourceVersion={from}&labelSelector=team%3Da"
        ))
        .await;
    api.post(CM, &configmap("x", json!({}))).await;
    api.patch(
        &format!("{CM}/x"),
        MERGE,
        r#"{"metadata":{"labels":{"team":"a"}}}"#,
    )
    .await;
    let ev = w.next(secs(5)).await.expect("enter");
    assert_eq!(ev["type"], "ADDED", "entering the selection is ADDED");
    api.patch(
        &format!("{CM}/x"),
        MERGE,
        r#"{"metadata":{"labels":{"team":"b"}}}"#,
    )
    .await;
    let ev = w.next(secs(5)).await.expect("leave");
    assert_eq!(ev["type"], "DELETED", "leaving the selection is DELETED");
    assert_eq!(
        ev["object"]["metadata"]["labels"]["team"], "a",
        "with the last matching state"
    );
}

#[tokio::test]
async fn closing_watches_ends_open_streams() {
    let (emu, api) = setup(Config::default()).await;
    let from = emu.resource_version();
    let mut w = api
        .watch(&format!("{CM}?watch=1&resourceVersion={from}"))
        .await;
    emu.faults().close_watches();
    assert!(w.next(secs(5)).await.is_none());
}

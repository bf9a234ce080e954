//! Lists in pages (`limit` and `continue`): every object once, in order,
//! at the revision of the first page even while objects change; plain HTTP
//! and kube-rs's watcher, which lists in pages of 500.

mod common;

use common::*;
use futures::StreamExt;
use kube::runtime::watcher;
use kube_emulator::{Config, Emulator};
use serde_json::{json, Value};

fn names(list: &Value) -> Vec<String> {
    (list["items"].as_array().unwrap().iter())
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// An emulator holding a ConfigMap of each name.
async fn with_configmaps(names: &[String]) -> (Emulator, Api) {
    let emu = Emulator::start_with(Config::default())
        .await
        .expect("emulator starts");
    let api = Api::new(&emu);
    for n in names {
        assert_eq!(api.post(CM, &configmap(n, json!({}))).await.0, 201);
    }
    (emu, api)
}

#[tokio::test]
async fn pages_list_every_object_once_at_the_first_pages_revision() {
    let five: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let (_emu, api) = with_configmaps(&five).await;
    let (code, first) = api.get(&format!("{CM}?limit=2")).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let at = first["metadata"]["resourceVersion"].clone();
    // Changes after the first page are not in the rest of this list.
    api.post(CM, &configmap("bb", json!({}))).await;
    api.patch(&format!("{CM}/d"), MERGE, r#"{"data":{"x":"1"}}"#)
        .await;
    let mut seen = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let (code, page) = api.get(&format!("{CM}?limit=2&continue={token}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], at);
        for item in page["items"].as_array().unwrap() {
            if item["metadata"]["name"] == "d" {
                assert!(
                    item.get("data").is_none_or(|d| d.get("x").is_none()),
                    "{item}"
                );
            }
        }
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let (code, err) = api
        .get(&format!("{CM}?limit=2&continue={token}&resourceVersion=1"))
        .await;
    assert_eq!(code, 400, "{err}");
    let (_, whole) = api.get(&format!("{CM}?limit=2&resourceVersion=0")).await;
    assert_eq!(names(&whole).len(), 6, "the watch cache answers rv=0 whole");
}

#[tokio::test]
async fn kube_watcher_lists_in_pages_and_sees_every_object() {
    let mut expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    let (emu, _api) = with_configmaps(&expected).await;
    let client = emu.client().expect("client");
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::default_namespaced(client);
    let config = watcher::Config::default().page_size(3);
    let mut stream = watcher(cms, config).boxed();
    let mut listed = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next()).await;
        match event
            .expect("InitDone before the deadline")
            .expect("stream open")
        {
            Ok(watcher::Event::InitApply(cm)) => listed.push(cm.metadata.name.unwrap()),
            Ok(watcher::Event::InitDone) => break,
            Ok(_) => {}
            Err(e) => panic!("watcher error: {e}"),
        }
    }
    let lists = emu
        .requests()
        .count_verb(kube_emulator::Verb::List, "/configmaps");
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(lists, 3, "7 objects in pages of 3");
}

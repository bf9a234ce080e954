//! The apiserver's object rules, checked over HTTP: resourceVersion,
//! optimistic concurrency, status/scale subresources, generation, patches,
//! selectors, errors as Status objects.

mod common;

use common::*;
use kube_emulator::Emulator;
use serde_json::json;

async fn setup() -> (Emulator, Api) {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    (emu, api)
}

#[tokio::test]
async fn resource_version_increments_on_every_write() {
    let (emu, api) = setup().await;
    let start = emu.resource_version();
    let (code, created) = api.post(CM, &configmap("a", json!({"k": "1"}))).await;
    assert_eq!(code, 201);
    let r1 = rv(&created);
    assert!(r1 > start);
    let (_, updated) = api
        .patch(&format!("{CM}/a"), MERGE, r#"{"data":{"k":"2"}}"#)
        .await;
    let r2 = rv(&updated);
    assert!(r2 > r1);
    let (_, other) = api.post(CM, &configmap("b", json!({}))).await;
    let r3 = rv(&other);
    assert!(r3 > r2, "one global counter across objects");
    let (_, list) = api.get(CM).await;
    assert_eq!(list["metadata"]["resourceVersion"], r3.to_string());
    assert_eq!(list["kind"], "ConfigMapList");
    assert!(
        list["items"][0].get("kind").is_none(),
        "typed list items carry no kind"
    );
    assert!(list
        .get("metadata")
        .and_then(|m| m.get("continue"))
        .is_none());
    let (code, _) = api.delete(&format!("{CM}/b")).await;
    assert_eq!(code, 200);
    assert!(emu.resource_version() > r3);
}

#[tokio::test]
async fn update_with_stale_resource_version_is_409_conflict() {
    let (_emu, api) = setup().await;
    let (_, created) = api.post(DEPLOY, &deployment("x", 1)).await;
    let (code, _) = api
        .patch(&format!("{DEPLOY}/x"), MERGE, r#"{"spec":{"replicas":2}}"#)
        .await;
    assert_eq!(code, 200);
    // `created` now carries a stale resourceVersion.
    let (code, status) = api.put(&format!("{DEPLOY}/x"), &created).await;
    assert_eq!(code, 409);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on deployments.apps \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        status["details"],
        json!({"name": "x", "group": "apps", "kind": "deployments"})
    );
    // Without a resourceVersion a Deployment update is unconditional.
    let mut fresh = created.clone();
    fresh["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let (code, _) = api.put(&format!("{DEPLOY}/x"), &fresh).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn create_rules_already_exists_missing_namespace_generate_name() {
    let (_emu, api) = setup().await;
    assert_eq!(api.post(CM, &configmap("dup", json!({}))).await.0, 201);
    let (code, status) = api.post(CM, &configmap("dup", json!({}))).await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["message"], "configmaps \"dup\" already exists");

    let (code, status) = api
        .post(
            "/api/v1/namespaces/nope/configmaps",
            &configmap("a", json!({})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(status["message"], "namespaces \"nope\" not found");

    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let (code, created) = api.post(CM, &body).await;
    assert_eq!(code, 201);
    let name = created["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"]["creationTimestamp"].is_string());

    let (code, status) = api.post(CM, &configmap("Bad_Name", json!({}))).await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn malformed_bodies_are_400_bad_request() {
    let (_emu, api) = setup().await;
    let (code, status) = api.raw_post(CM, JSON, "{not json").await;
    assert_eq!(code, 400);
    assert_eq!(status["reason"], "BadRequest");
    let (code, _) = api.raw_post(CM, "application/yaml", ": : :\n\t-").await;
    assert_eq!(code, 400);
    api.post(CM, &configmap("a", json!({}))).await;
    let (code, _) = api.patch(&format!("{CM}/a"), MERGE, "[1,2").await;
    assert_eq!(code, 400);
    let (code, _) = api
        .patch(&format!("{CM}/a"), JSON_PATCH, r#"{"op":"x"}"#)
        .await;
    assert_eq!(code, 400);
    let (code, _) = api.patch(&format!("{CM}/a"), APPLY, "{{{{").await;
    assert!(code == 400 || code == 422, "{code}");
    let (code, _) = api
        .patch(&format!("{CM}/a?fieldManager=t"), APPLY, "- a\n- b")
        .await;
    assert_eq!(code, 400);
    let (code, _) = api
        .get("/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b")
        .await;
    assert_eq!(code, 400);
    let (code, status) = api.get("/api/v1/namespaces/default/nothings").await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let (code, status) = api
        .post(&format!("{CM}/a"), &configmap("a", json!({})))
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
}

#[tokio::test]
async fn status_subresource_ignores_spec_changes_and_main_resource_ignores_status_changes() {
    let (_emu, api) = setup().await;
    let (_, created) = api.post(DEPLOY, &deployment("d", 2)).await;
    assert_eq!(created["status"], json!({}), "status is cleared on create");

    let (code, after) = api
        .patch(
            &format!("{DEPLOY}/d/status"),
            MERGE,
            r#"{"spec":{"replicas":9},"status":{"replicas":2,"readyReplicas":1}}"#,
        )
        .await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["spec"]["replicas"], 2, "status write ignored spec");
    assert_eq!(after["status"]["readyReplicas"], 1);

    let (_, after) = api
        .patch(
            &format!("{DEPLOY}/d"),
            MERGE,
            r#"{"spec":{"replicas":3},"status":{"readyReplicas":7}}"#,
        )
        .await;
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(
        after["status"]["readyReplicas"], 1,
        "main write ignored status"
    );

    let mut full = after.clone();
    full["status"]["replicas"] = json!(3);
    full["spec"]["replicas"] = json!(8);
    let (code, put) = api.put(&format!("{DEPLOY}/d/status"), &full).await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            put["spec"]["replicas"].as_i64(),
            put["status"]["replicas"].as_i64()
        ),
        (Some(3), Some(3))
    );
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_deployment_replicas() {
    let (emu, api) = setup().await;
    api.post(DEPLOY, &deployment("web", 2)).await;
    api.patch(
        &format!("{DEPLOY}/web/status"),
        MERGE,
        r#"{"status":{"replicas":2}}"#,
    )
    .await;
    let (code, scale) = api.get(&format!("{DEPLOY}/web/scale")).await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=web"})
    );

    let (code, scaled) = api
        .patch(
            &format!("{DEPLOY}/web/scale"),
            MERGE,
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(scaled["kind"], "Scale");
    assert_eq!(scaled["spec"]["replicas"], 5);
    let stored = emu
        .get_json("apps/v1/deployments", "default", "web")
        .expect("stored");
    assert_eq!(stored["spec"]["replicas"], 5);
    assert_eq!(stored["metadata"]["generation"], 2);

    let mut put = scaled.clone();
    put["spec"]["replicas"] = json!(7);
    let (code, _) = api.put(&format!("{DEPLOY}/web/scale"), &put).await;
    assert_eq!(code, 200);
    // `put` now has a stale resourceVersion.
    put["spec"]["replicas"] = json!(1);
    let (code, status) = api.put(&format!("{DEPLOY}/web/scale"), &put).await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "Conflict");
    let (code, status) = api
        .patch(
            &format!("{DEPLOY}/web/scale"),
            MERGE,
            r#"{"spec":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        emu.get_json("apps/v1/deployments", "default", "web")
            .expect("stored")["spec"]["replicas"],
        7
    );
}

#[tokio::test]
async fn generation_bumps_only_on_spec_change() {
    let (_emu, api) = setup().await;
    let (_, d) = api.post(DEPLOY, &deployment("g", 1)).await;
    assert_eq!(d["metadata"]["generation"], 1);
    let (_, d) = api
        .patch(
            &format!("{DEPLOY}/g"),
            MERGE,
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(d["metadata"]["generation"], 1, "metadata change");
    let (_, d) = api
        .patch(
            &format!("{DEPLOY}/g/status"),
            MERGE,
            r#"{"status":{"replicas":1}}"#,
        )
        .await;
    assert_eq!(d["metadata"]["generation"], 1, "status change");
    let (_, d) = api
        .patch(&format!("{DEPLOY}/g"), MERGE, r#"{"spec":{"replicas":4}}"#)
        .await;
    assert_eq!(d["metadata"]["generation"], 2, "spec change");
    let before = rv(&d);
    let (_, d) = api
        .patch(&format!("{DEPLOY}/g"), MERGE, r#"{"spec":{"replicas":4}}"#)
        .await;
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        rv(&d),
        before,
        "a no-op write does not bump resourceVersion"
    );
}

#[tokio::test]
async fn merge_patch_and_json_patch() {
    let (_emu, api) = setup().await;
    api.post(CM, &configmap("p", json!({"a": "1", "b": "2"})))
        .await;
    let (code, cm) = api
        .patch(&format!("{CM}/p"), MERGE, r#"{"data":{"a":null,"c":"3"}}"#)
        .await;
    assert_eq!(code, 200);
    assert_eq!(cm["data"], json!({"b": "2", "c": "3"}));

    let ops = r#"[{"op":"test","path":"/data/b","value":"2"},{"op":"replace","path":"/data/b","value":"20"},{"op":"add","path":"/data/d","value":"4"}]"#;
    let (code, cm) = api.patch(&format!("{CM}/p"), JSON_PATCH, ops).await;
    assert_eq!(code, 200, "{cm}");
    assert_eq!(cm["data"], json!({"b": "20", "c": "3", "d": "4"}));

    let failing =
        r#"[{"op":"test","path":"/data/b","value":"nope"},{"op":"remove","path":"/data/b"}]"#;
    let (code, status) = api.patch(&format!("{CM}/p"), JSON_PATCH, failing).await;
    assert_eq!(code, 422, "{status}");
    let (code, _) = api.patch(&format!("{CM}/missing"), MERGE, "{}").await;
    assert_eq!(code, 404);
    let stale = format!(
        r#"{{"metadata":{{"resourceVersion":"{}"}},"data":{{"x":"1"}}}}"#,
        rv(&cm) - 1
    );
    let (code, _) = api.patch(&format!("{CM}/p"), MERGE, &stale).await;
    assert_eq!(code, 409, "a resourceVersion in a patch is a precondition");
    let (code, _) = api.patch(&format!("{CM}/p"), "text/plain", "{}").await;
    assert_eq!(code, 415);
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let (_emu, api) = setup().await;
    let mut d = deployment("s", 1);
    d["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]);
    api.post(DEPLOY, &d).await;
    let p = r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"z"}]}}}}"#;
    let (code, d) = api
        .patch(
            &format!("{DEPLOY}/s"),
            "application/strategic-merge-patch+json",
            p,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
    );
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors() {
    let (_emu, api) = setup().await;
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
    ] {
        let mut cm = configmap(name, json!({}));
        cm["metadata"]["labels"] = labels;
        api.post(CM, &cm).await;
    }
    api.post(
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "other"}}),
    )
    .await;
    let mut elsewhere = configmap("d", json!({}));
    elsewhere["metadata"]["labels"] = json!({"app": "web"});
    api.post("/api/v1/namespaces/other/configmaps", &elsewhere)
        .await;

    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    for (selector, want) in [
        ("app=web", vec!["a", "b"]),
        ("app!=web", vec!["c"]),
        ("tier in (front,middle)", vec!["a"]),
        ("tier notin (front)", vec!["b", "c"]),
        ("tier", vec!["a", "b"]),
        ("!tier", vec!["c"]),
        ("app=web,tier=back", vec!["b"]),
    ] {
        let q: String = url_encode(selector);
        let (code, list) = api.get(&format!("{CM}?labelSelector={q}")).await;
        assert_eq!(code, 200);
        assert_eq!(names(&list), want, "{selector}");
    }
    let (_, all) = api.get("/api/v1/configmaps?labelSelector=app%3Dweb").await;
    assert_eq!(
        names(&all),
        vec!["a", "b", "d"],
        "all namespaces, sorted by namespace/name"
    );
    let (_, by_field) = api
        .get("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dother")
        .await;
    assert_eq!(names(&by_field), vec!["d"]);
    let (_, by_name) = api
        .get(&format!("{CM}?fieldSelector=metadata.name%21%3Da"))
        .await;
    assert_eq!(names(&by_name), vec!["b", "c"]);
    let (code, _) = api.get(&format!("{CM}?fieldSelector=data.x%3D1")).await;
    assert_eq!(code, 400, "unsupported field label");
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn list_with_exact_old_resource_version_is_served_until_compacted_then_410() {
    let (emu, api) = setup().await;
    let (_, a) = api.post(CM, &configmap("a", json!({"v": "1"}))).await;
    let at = rv(&a);
    api.patch(&format!("{CM}/a"), MERGE, r#"{"data":{"v":"2"}}"#)
        .await;
    api.post(CM, &configmap("b", json!({}))).await;
    let (code, old) = api
        .get(&format!(
            "{CM}?resourceVersion={at}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 200);
    assert_eq!(old["metadata"]["resourceVersion"], at.to_string());
    assert_eq!(old["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(old["items"][0]["data"]["v"], "1");
    emu.faults().compact();
    let (code, status) = api
        .get(&format!(
            "{CM}?resourceVersion={at}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 410);
    assert_eq!(status["reason"], "Expired");
}

#[tokio::test]
async fn delete_is_404_when_absent_and_waits_for_finalizers() {
    let (emu, api) = setup().await;
    let (code, status) = api.delete(&format!("{CM}/none")).await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let mut cm = configmap("f", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.dev/hold"]);
    api.post(CM, &cm).await;
    let (code, pending) = api.delete(&format!("{CM}/f")).await;
    assert_eq!(code, 202);
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    assert!(emu.get_json("v1/configmaps", "default", "f").is_some());
    let (code, _) = api
        .patch(
            &format!("{CM}/f"),
            MERGE,
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert!(
        emu.get_json("v1/configmaps", "default", "f").is_none(),
        "gone once finalizers are removed"
    );
    let (code, _) = api.post(CM, &configmap("g", json!({}))).await;
    assert_eq!(code, 201);
    let (code, status) = api.delete(&format!("{CM}/g")).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("Success")));
}

#[tokio::test]
async fn optional_workload_status_reports_desired_replicas_ready() {
    let config = kube_emulator::Config {
        workload_status: true,
        ..kube_emulator::Config::default()
    };
    let emu = Emulator::start_with(config).await.expect("emulator starts");
    let api = Api::new(&emu);
    api.post(DEPLOY, &deployment("w", 2)).await;
    let d = emu
        .get_json("apps/v1/deployments", "default", "w")
        .expect("stored");
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(d["status"]["observedGeneration"], 1);
    api.patch(
        &format!("{DEPLOY}/w/scale"),
        MERGE,
        r#"{"spec":{"replicas":0}}"#,
    )
    .await;
    let d = emu
        .get_json("apps/v1/deployments", "default", "w")
        .expect("stored");
    assert_eq!(d["status"], json!({"observedGeneration": 2}));
    let (_, scale) = api.get(&format!("{DEPLOY}/w/scale")).await;
    assert_eq!(scale["status"]["replicas"], 0);
}

#[tokio::test]
async fn secret_string_data_is_merged_into_data_as_base64_and_never_stored() {
    let (_emu, api) = setup().await;
    let path = "/api/v1/namespaces/default/secrets";
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"keep": "a2VlcA==", "both": "b2xk"},
        "stringData": {"password": "hunter2", "both": "new"}});
    let (code, created) = api.post(path, &secret).await;
    assert_eq!(code, 201, "{created}");
    assert!(created.get("stringData").is_none());
    assert_eq!(created["data"]["password"], "aHVudGVyMg==");
    assert_eq!(created["data"]["keep"], "a2VlcA==");
    assert_eq!(
        created["data"]["both"], "bmV3",
        "stringData wins on a shared key"
    );
    let (_, patched) = api
        .patch(
            &format!("{path}/s"),
            MERGE,
            r#"{"stringData":{"password":"rotated"}}"#,
        )
        .await;
    assert_eq!(patched["data"]["password"], "cm90YXRlZA==");
    assert!(patched.get("stringData").is_none());
}

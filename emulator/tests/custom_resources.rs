//! CustomResourceDefinitions: discovery, schema validation with the
//! apiserver's 422 wording, defaults, pruning, CEL rules, subresources.

mod common;

use common::*;
use kube_emulator::Emulator;
use serde_json::json;

async fn setup() -> (Emulator, Api) {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    install_widgets(&api).await;
    (emu, api)
}

#[tokio::test]
async fn discovery_lists_a_custom_resource_after_its_crd_is_created_and_drops_it_after_delete() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let (code, _) = api.get("/apis/example.dev/v1").await;
    assert_eq!(code, 404);
    install_widgets(&api).await;

    let (_, groups) = api.get("/apis").await;
    let group = groups["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "example.dev"))
        .cloned()
        .expect("group listed");
    assert_eq!(group["preferredVersion"]["groupVersion"], "example.dev/v1");

    let (code, list) = api.get("/apis/example.dev/v1").await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "APIResourceList");
    let resources = list["resources"].as_array().expect("resources");
    let widgets = resources
        .iter()
        .find(|r| r["name"] == "widgets")
        .expect("widgets");
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["namespaced"], true);
    assert_eq!(widgets["shortNames"], json!(["wd"]));
    assert_eq!(widgets["categories"], json!(["all"]));
    assert!(resources.iter().any(|r| r["name"] == "widgets/status"));
    let scale = resources
        .iter()
        .find(|r| r["name"] == "widgets/scale")
        .expect("scale");
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );

    let (_, crd) = api.get(&format!("{CRDS}/widgets.example.dev")).await;
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    assert!(conditions
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True"));

    api.post(WIDGETS, &widget("w", 1)).await;
    let (code, _) = api.delete(&format!("{CRDS}/widgets.example.dev")).await;
    assert_eq!(code, 200);
    assert_eq!(api.get("/apis/example.dev/v1").await.0, 404);
    assert_eq!(api.get(WIDGETS).await.0, 404);
    let (_, groups) = api.get("/apis").await;
    assert!(!groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .any(|g| g["name"] == "example.dev"));
}

#[tokio::test]
async fn custom_resource_is_validated_against_the_crd_schema_with_a_422_naming_the_field() {
    let (_emu, api) = setup().await;
    let mut bad = widget("bad", 0);
    bad["spec"]["maxReplicas"] = json!(0);
    let (code, status) = api.post(WIDGETS, &bad).await;
    assert_eq!(code, 422);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Widget.example.dev \"bad\" is invalid: spec.maxReplicas: Invalid value: 0: spec.maxReplicas in body should be greater than or equal to 1"
    );
    assert_eq!(status["details"]["name"], "bad");
    assert_eq!(status["details"]["group"], "example.dev");
    assert_eq!(status["details"]["kind"], "Widget");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.maxReplicas");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );

    let missing = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "m"}, "spec": {}});
    let (code, status) = api.post(WIDGETS, &missing).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.replicas"})
    );

    let mut color = widget("c", 1);
    color["spec"]["color"] = json!("green");
    let (_, status) = api.post(WIDGETS, &color).await;
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueNotSupported"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.color");

    let mut typed = widget("t", 1);
    typed["spec"]["replicas"] = json!("three");
    let (code, status) = api.post(WIDGETS, &typed).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueTypeInvalid"
    );
}

#[tokio::test]
async fn cel_rules_from_x_kubernetes_validations_are_enforced() {
    let (_emu, api) = setup().await;
    let mut w = widget("cel", 5);
    w["spec"]["maxReplicas"] = json!(2);
    let (code, status) = api.post(WIDGETS, &w).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Widget.example.dev \"cel\" is invalid: spec: Invalid value: \"object\": maxReplicas must be >= replicas"
    );
    w["spec"]["maxReplicas"] = json!(5);
    assert_eq!(api.post(WIDGETS, &w).await.0, 201);
    let (code, _) = api
        .patch(
            &format!("{WIDGETS}/cel"),
            MERGE,
            r#"{"spec":{"replicas":6}}"#,
        )
        .await;
    assert_eq!(code, 422, "rules apply on update too");
}

#[tokio::test]
async fn custom_resources_get_schema_defaults_and_unknown_fields_pruned() {
    let (emu, api) = setup().await;
    let mut w = widget("d", 1);
    w["spec"]["unknown"] = json!(true);
    w["extra"] = json!(1);
    let (code, created) = api.post(WIDGETS, &w).await;
    assert_eq!(code, 201);
    assert_eq!(created["spec"]["color"], "blue", "defaulted");
    assert!(created["spec"].get("unknown").is_none(), "pruned");
    assert!(created.get("extra").is_none(), "pruned");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        emu.get_json("example.dev/v1/widgets", "default", "d")
            .expect("stored")["spec"]["color"],
        "blue"
    );

    let (code, status) = api
        .post(&format!("{WIDGETS}?fieldValidation=Strict"), &w)
        .await;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field \"extra\""),
        "{status}"
    );

    let (code, status) = api
        .patch(
            &format!("{WIDGETS}/d"),
            "application/strategic-merge-patch+json",
            "{}",
        )
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
}

#[tokio::test]
async fn custom_resource_status_and_scale_subresources() {
    let (emu, api) = setup().await;
    let (_, created) = api.post(WIDGETS, &widget("s", 1)).await;
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 1});
    let (_, put) = api.put(&format!("{WIDGETS}/s"), &with_status).await;
    assert!(put.get("status").is_none(), "main resource ignores status");

    let (code, status) = api
        .patch(
            &format!("{WIDGETS}/s/status"),
            MERGE,
            r#"{"status":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(code, 422, "status writes are validated: {status}");
    assert_eq!(status["details"]["causes"][0]["field"], "status.replicas");
    let (code, s) = api
        .patch(
            &format!("{WIDGETS}/s/status"),
            MERGE,
            r#"{"spec":{"replicas":9},"status":{"replicas":1,"selector":"app=s"}}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            s["spec"]["replicas"].as_i64(),
            s["status"]["replicas"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(s["metadata"]["generation"], 1);

    let (_, scale) = api.get(&format!("{WIDGETS}/s/scale")).await;
    assert_eq!(scale["status"], json!({"replicas": 1, "selector": "app=s"}));
    let (code, _) = api
        .patch(
            &format!("{WIDGETS}/s/scale"),
            MERGE,
            r#"{"spec":{"replicas":3}}"#,
        )
        .await;
    assert_eq!(code, 200);
    let stored = emu
        .get_json("example.dev/v1/widgets", "default", "s")
        .expect("stored");
    assert_eq!(
        (
            stored["spec"]["replicas"].as_i64(),
            stored["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );

    let mut no_rv = stored.clone();
    no_rv["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let (code, status) = api.put(&format!("{WIDGETS}/s"), &no_rv).await;
    assert_eq!(
        code, 422,
        "custom resources need a resourceVersion on update: {status}"
    );
}

//! Server-side apply (`application/apply-patch+yaml`).

mod common;

use common::*;
use kube_emulator::Emulator;
use serde_json::json;

#[tokio::test]
async fn apply_creates_when_absent_and_records_managed_fields() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: main, image: busybox}]\n";
    let (code, created) = api
        .patch(&format!("{DEPLOY}/web?fieldManager=deployer"), APPLY, yaml)
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["replicas"], 2);
    assert_eq!(created["metadata"]["generation"], 1);
    let managed = &created["metadata"]["managedFields"][0];
    assert_eq!(managed["manager"], "deployer");
    assert_eq!(managed["operation"], "Apply");
    assert_eq!(managed["fieldsType"], "FieldsV1");
    assert_eq!(managed["fieldsV1"]["f:spec"]["f:replicas"], json!({}));

    let (code, again) = api
        .patch(&format!("{DEPLOY}/web?fieldManager=deployer"), APPLY, yaml)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        rv(&again),
        rv(&created),
        "re-applying the same config is a no-op"
    );
}

#[tokio::test]
async fn apply_without_field_manager_is_rejected_as_invalid() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let (code, status) = api
        .patch(
            &format!("{CM}/a"),
            APPLY,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .await;
    // kube-apiserver validates PatchOptions first: 422 Invalid, not 400.
    assert_eq!(code, 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");
    let (code, _) = api.patch(&format!("{CM}/a?force=true"), MERGE, "{}").await;
    assert_eq!(code, 422, "force is only for apply");
}

#[tokio::test]
async fn apply_conflicts_with_another_manager_unless_forced() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let one = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1', b: '1'}\n";
    assert_eq!(
        api.patch(&format!("{CM}/c?fieldManager=one"), APPLY, one)
            .await
            .0,
        201
    );
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '2'}\n";
    let (code, status) = api
        .patch(&format!("{CM}/c?fieldManager=two"), APPLY, two)
        .await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"one\": .data.a"
    );
    assert_eq!(status["details"]["causes"][0]["field"], ".data.a");
    let (code, forced) = api
        .patch(&format!("{CM}/c?fieldManager=two&force=true"), APPLY, two)
        .await;
    assert_eq!(code, 200);
    assert_eq!(forced["data"], json!({"a": "2", "b": "1"}));

    // A field the first manager stops applying is removed.
    let one_less = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {}\n";
    let (_, after) = api
        .patch(&format!("{CM}/c?fieldManager=one"), APPLY, one_less)
        .await;
    assert_eq!(after["data"], json!({"a": "2"}));
}

#[tokio::test]
async fn apply_to_status_subresource_changes_only_status() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    api.post(DEPLOY, &deployment("s", 1)).await;
    let cfg = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: s}\nspec: {replicas: 9}\nstatus: {replicas: 1}\n";
    let (code, d) = api
        .patch(&format!("{DEPLOY}/s/status?fieldManager=ctl"), APPLY, cfg)
        .await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["status"]["replicas"], 1);
    assert_eq!(d["spec"]["replicas"], 1);
    let entry = d["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "ctl"))
        .cloned()
        .expect("ctl entry");
    assert_eq!(entry["subresource"], "status");
}

/// kube-apiserver: an apply body may omit metadata.name (the URL names the
/// object), and a field an update removes is owned by no manager after it,
/// so a later apply of that field by another manager does not conflict.
/// kube-lease-manager's release-then-acquire depends on both.
#[tokio::test]
async fn apply_without_name_and_fields_removed_by_an_update_are_unowned() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    let lease = "/apis/coordination.k8s.io/v1/namespaces/default/leases/l";
    let (code, created) = api
        .patch(
            &format!("{lease}?fieldManager=a"),
            APPLY,
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nspec: {holderIdentity: a, leaseDurationSeconds: 3}\n",
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["name"], "l");
    // b renews (an Update that owns renewTime), then releases everything.
    let (code, _) = api
        .patch(
            &format!("{lease}?fieldManager=b"),
            STRATEGIC,
            r#"{"spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}"#,
        )
        .await;
    assert_eq!(code, 200);
    let (code, released) = api
        .patch(
            &format!("{lease}?fieldManager=b"),
            STRATEGIC,
            r#"{"spec": {"holderIdentity": null, "leaseDurationSeconds": null, "renewTime": null}}"#,
        )
        .await;
    assert_eq!(code, 200, "{released}");
    assert!(
        released["spec"].get("holderIdentity").is_none(),
        "{released}"
    );
    let (code, taken) = api
        .patch(
            &format!("{lease}?fieldManager=c"),
            APPLY,
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nspec: {holderIdentity: c, leaseDurationSeconds: 3, renewTime: \"2026-01-01T00:00:01.000000Z\"}\n",
        )
        .await;
    assert_eq!(code, 200, "{taken}");
    assert_eq!(taken["spec"]["holderIdentity"], "c");
}

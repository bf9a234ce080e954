//! The workload controller stand-ins (`Config::workload_controllers`):
//! Deployment → ReplicaSet → Pods and StatefulSet → Pods, with the real
//! ReplicaSet controller's choice of pods on scale-down. Each test is named
//! after the Kubernetes behaviour it pins.

mod common;

use common::*;
use kube_emulator::{Config, Emulator};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const STS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

async fn start(pods_pending: bool) -> (Emulator, Api) {
    let config = Config {
        workload_controllers: true,
        pods_pending,
        ..Config::default()
    };
    let emu = Emulator::start_with(config).await.expect("emulator starts");
    let api = Api::new(&emu);
    (emu, api)
}

/// Pods listed over HTTP by label selector, as the operator lists them.
async fn pods(api: &Api, selector: &str) -> Vec<Value> {
    let (code, list) = api.get(&format!("{PODS}?labelSelector={selector}")).await;
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn names(items: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    n.sort();
    n
}

async fn scale(api: &Api, path: &str, replicas: i64) {
    let body = format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#);
    let (code, out) = api.patch(&format!("{path}/scale"), MERGE, &body).await;
    assert_eq!(code, 200, "{out}");
}

async fn get(api: &Api, path: &str) -> Value {
    let (code, obj) = api.get(path).await;
    assert_eq!(code, 200, "{obj}");
    obj
}

async fn annotate(api: &Api, pod: &str, cost: &str) -> (u16, Value) {
    let body =
        json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}});
    api.patch(&format!("{PODS}/{pod}"), MERGE, &body.to_string())
        .await
}

#[tokio::test]
async fn a_deployment_gets_one_replicaset_named_by_pod_template_hash_and_pods_named_after_it() {
    let (_emu, api) = start(false).await;
    let (code, d) = api.post(DEPLOY, &deployment("web", 3)).await;
    assert_eq!(code, 201, "{d}");
    let (_, list) = api.get(RS).await;
    let sets = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 1, "{list}");
    let rs = &sets[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        (1..=10).contains(&hash.len()) && hash.chars().all(|c| "456789bcdf".contains(c)),
        "{hash}"
    );
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"],
        json!({"app": "web", "pod-template-hash": hash})
    );
    assert_eq!(rs["spec"]["replicas"], 3);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Deployment"), Some("web"))
    );
    assert_eq!(
        (owner["uid"].clone(), owner["controller"].clone()),
        (d["metadata"]["uid"].clone(), json!(true))
    );

    let items = pods(&api, "app=web").await;
    assert_eq!(items.len(), 3);
    for p in &items {
        let name = p["metadata"]["name"].as_str().unwrap();
        let suffix = name
            .strip_prefix(&format!("web-{hash}-"))
            .expect("named <replicaset>-<suffix>");
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| ALPHABET.contains(c)),
            "{name}"
        );
        assert_eq!(
            p["metadata"]["labels"],
            json!({"app": "web", "pod-template-hash": hash})
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].clone()),
            (Some("ReplicaSet"), rs["metadata"]["uid"].clone())
        );
        assert!(p["metadata"]["creationTimestamp"].is_string());
        assert_eq!(p["spec"]["nodeName"], "kube-emulator-node");
        assert_eq!(p["status"]["phase"], "Running");
        let ready = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned();
        assert_eq!(ready.map(|c| c["status"].clone()), Some(json!("True")));
    }
}

#[tokio::test]
async fn deployment_and_replicaset_status_count_replicas_ready_available_and_updated() {
    let (emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 3)).await;
    let d = get(&api, &format!("{DEPLOY}/web")).await;
    assert_eq!(
        d["status"],
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3})
    );
    let victim = names(&pods(&api, "app=web").await)[0].clone();
    assert!(emu.set_pod_ready("default", &victim, false));
    let d = get(&api, &format!("{DEPLOY}/web")).await;
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(d["status"]["unavailableReplicas"], 1);
    let (_, list) = api.get(RS).await;
    let rs_status = &list["items"][0]["status"];
    assert_eq!(rs_status["replicas"], 3);
    assert_eq!(rs_status["fullyLabeledReplicas"], 3);
    assert_eq!(rs_status["readyReplicas"], 2);
    assert_eq!(rs_status["observedGeneration"], 1);
}

#[tokio::test]
async fn scale_subresource_patch_creates_and_deletes_pods() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 1)).await;
    let path = format!("{DEPLOY}/web");
    scale(&api, &path, 5).await;
    assert_eq!(pods(&api, "app=web").await.len(), 5);
    scale(&api, &path, 2).await;
    assert_eq!(pods(&api, "app=web").await.len(), 2);
    let d = get(&api, &path).await;
    assert_eq!(
        (
            d["status"]["replicas"].clone(),
            d["status"]["observedGeneration"].clone()
        ),
        (json!(2), json!(3))
    );
    let s = get(&api, &format!("{path}/scale")).await;
    assert_eq!(
        (
            s["spec"]["replicas"].clone(),
            s["status"]["replicas"].clone()
        ),
        (json!(2), json!(2))
    );
    scale(&api, &path, 0).await;
    assert!(pods(&api, "app=web").await.is_empty());
    let d = get(&api, &path).await;
    assert_eq!(
        d["status"],
        json!({"observedGeneration": 4}),
        "zero counts are omitted"
    );
}

#[tokio::test]
async fn replicas_set_by_update_or_server_side_apply_are_followed_too() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 1)).await;
    let mut d = get(&api, &format!("{DEPLOY}/web")).await;
    d["spec"]["replicas"] = json!(4);
    let (code, out) = api.put(&format!("{DEPLOY}/web"), &d).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(pods(&api, "app=web").await.len(), 4);
    let applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":2}}"#;
    let (code, out) = api
        .patch(
            &format!("{DEPLOY}/web?fieldManager=t&force=true"),
            APPLY,
            applied,
        )
        .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(pods(&api, "app=web").await.len(), 2);
}

#[tokio::test]
async fn scale_down_deletes_the_pods_with_the_lowest_pod_deletion_cost() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 4)).await;
    let all = names(&pods(&api, "app=web").await);
    for (pod, cost) in all.iter().zip(["100", "-5", "7", "100"]) {
        let (code, out) = annotate(&api, pod, cost).await;
        assert_eq!(code, 200, "{out}");
    }
    scale(&api, &format!("{DEPLOY}/web"), 2).await;
    let left = names(&pods(&api, "app=web").await);
    assert_eq!(
        left,
        vec![all[0].clone(), all[3].clone()],
        "the busy (cost 100) pods survive"
    );
}

#[tokio::test]
async fn scale_down_deletes_not_ready_pods_before_ready_ones() {
    let (emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 3)).await;
    let all = names(&pods(&api, "app=web").await);
    assert!(emu.set_pod_ready("default", &all[1], false));
    let (code, _) = annotate(&api, &all[0], "-100").await;
    assert_eq!(code, 200);
    scale(&api, &format!("{DEPLOY}/web"), 2).await;
    let left = names(&pods(&api, "app=web").await);
    assert!(
        !left.contains(&all[1]),
        "readiness outranks deletion cost: {left:?}"
    );
    assert!(left.contains(&all[0]));
}

#[tokio::test]
async fn an_invalid_pod_deletion_cost_is_refused_as_the_apiserver_does() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 1)).await;
    let pod = names(&pods(&api, "app=web").await)[0].clone();
    let (code, status) = annotate(&api, &pod, "+5").await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        format!("Pod \"{pod}\" is invalid: metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"+5\": must be a 32bit integer")
    );
}

#[tokio::test]
async fn a_deleted_pod_is_seen_terminating_then_deleted_and_replaced() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 2)).await;
    let (_, list) = api.get(PODS).await;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = api
        .watch(&format!("{PODS}?watch=true&resourceVersion={from}"))
        .await;
    scale(&api, &format!("{DEPLOY}/web"), 1).await;
    let terminating = watch.next_change(secs(10)).await.expect("event");
    assert_eq!(terminating["type"], "MODIFIED");
    assert!(terminating["object"]["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        terminating["object"]["metadata"]["deletionGracePeriodSeconds"],
        30
    );
    let gone = watch.next_change(secs(10)).await.expect("event");
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(
        gone["object"]["metadata"]["name"],
        terminating["object"]["metadata"]["name"]
    );

    let survivor = names(&pods(&api, "app=web").await)[0].clone();
    let (code, _) = api.delete(&format!("{PODS}/{survivor}")).await;
    assert_eq!(code, 200);
    let now = names(&pods(&api, "app=web").await);
    assert_eq!(now.len(), 1, "the ReplicaSet replaced the deleted pod");
    assert_ne!(now[0], survivor);
}

#[tokio::test]
async fn a_new_pod_template_gets_a_new_replicaset_and_the_old_one_scales_to_zero() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 2)).await;
    let patch =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}}}"#;
    let (code, out) = api.patch(&format!("{DEPLOY}/web"), MERGE, patch).await;
    assert_eq!(code, 200, "{out}");
    let (_, list) = api.get(RS).await;
    let sets = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 2);
    let by_rev = |r: &str| {
        sets.iter()
            .find(|s| s["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == r)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_rev("1")["spec"]["replicas"], 0);
    assert_eq!(by_rev("2")["spec"]["replicas"], 2);
    let new_hash = by_rev("2")["metadata"]["labels"]["pod-template-hash"].clone();
    let items = pods(&api, "app=web").await;
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|p| p["metadata"]["labels"]["pod-template-hash"] == new_hash));
    let d = get(&api, &format!("{DEPLOY}/web")).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(d["status"]["updatedReplicas"], 2);
}

#[tokio::test]
async fn deleting_a_deployment_garbage_collects_its_replicasets_and_pods() {
    let (_emu, api) = start(false).await;
    api.post(DEPLOY, &deployment("web", 2)).await;
    let (code, _) = api.delete(&format!("{DEPLOY}/web")).await;
    assert_eq!(code, 200);
    let (_, list) = api.get(RS).await;
    assert_eq!(list["items"], json!([]));
    assert!(pods(&api, "app=web").await.is_empty());
}

fn statefulset(name: &str, replicas: i64, policy: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}
            }
        }
    })
}

#[tokio::test]
async fn statefulset_pods_are_named_by_ordinal_and_scale_down_removes_the_highest_first() {
    let (_emu, api) = start(false).await;
    let (code, out) = api.post(STS, &statefulset("db", 3, "OrderedReady")).await;
    assert_eq!(code, 201, "{out}");
    let items = pods(&api, "app=db").await;
    assert_eq!(names(&items), ["db-0", "db-1", "db-2"]);
    let p = items
        .iter()
        .find(|p| p["metadata"]["name"] == "db-1")
        .unwrap();
    assert_eq!(
        p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "db-1"
    );
    assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(
        (
            p["spec"]["hostname"].as_str(),
            p["spec"]["subdomain"].as_str()
        ),
        (Some("db-1"), Some("db"))
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    scale(&api, &format!("{STS}/db"), 1).await;
    assert_eq!(names(&pods(&api, "app=db").await), ["db-0"]);
    let s = get(&api, &format!("{STS}/db")).await;
    assert_eq!(
        (
            s["status"]["replicas"].clone(),
            s["status"]["readyReplicas"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(
        s["status"]["currentRevision"],
        p["metadata"]["labels"]["controller-revision-hash"]
    );
    scale(&api, &format!("{STS}/db"), 2).await;
    assert_eq!(names(&pods(&api, "app=db").await), ["db-0", "db-1"]);
}

#[tokio::test]
async fn ordered_ready_statefulsets_wait_for_each_pod_and_parallel_ones_do_not() {
    let (emu, api) = start(true).await;
    api.post(STS, &statefulset("db", 3, "OrderedReady")).await;
    let items = pods(&api, "app=db").await;
    assert_eq!(names(&items), ["db-0"]);
    assert_eq!(items[0]["status"]["phase"], "Pending");
    assert!(items[0]["spec"].get("nodeName").is_none());
    assert!(emu.start_pod("default", "db-0"));
    assert_eq!(names(&pods(&api, "app=db").await), ["db-0", "db-1"]);
    api.post(STS, &statefulset("fast", 3, "Parallel")).await;
    assert_eq!(pods(&api, "app=fast").await.len(), 3);
}

#[tokio::test]
async fn pending_pods_count_as_unavailable_and_unassigned_ones_are_deleted_first() {
    let (emu, api) = start(true).await;
    api.post(DEPLOY, &deployment("web", 2)).await;
    let all = names(&pods(&api, "app=web").await);
    let d = get(&api, &format!("{DEPLOY}/web")).await;
    assert_eq!(
        d["status"],
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2})
    );
    assert!(emu.start_pod("default", &all[1]));
    let (code, _) = annotate(&api, &all[1], "-100").await;
    assert_eq!(code, 200);
    scale(&api, &format!("{DEPLOY}/web"), 1).await;
    assert_eq!(
        names(&pods(&api, "app=web").await),
        [all[1].clone()],
        "the unscheduled pod went first"
    );
}

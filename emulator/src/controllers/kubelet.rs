//! Pods from a template, and what the scheduler and kubelet would then
//! report, standing in for both: each new pod is bound to one node and
//! reported Running and Ready at once (unless pods are kept Pending).

use serde_json::{json, Map, Value};

use crate::objects;

/// The single node every pod is bound to.
pub const NODE_NAME: &str = "kube-emulator-node";

/// `ownerReferences` entry of a controller (`controller: true`).
pub fn controller_ref(owner: &Value, kind: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A new pod as the controllers build it from `template`: its labels,
/// annotations and finalizers, its spec, the owner reference, and
/// `nodeName` unless pods stay unscheduled.
pub fn pod_from_template(
    template: &Value,
    owner_ref: Value,
    extra_labels: &Map<String, Value>,
    scheduled: bool,
) -> Value {
    let meta = &template["metadata"];
    let mut labels = meta["labels"].as_object().cloned().unwrap_or_default();
    labels.extend(extra_labels.clone());
    let mut metadata = json!({"labels": labels, "ownerReferences": [owner_ref]});
    for key in ["annotations", "finalizers"] {
        if let Some(v) = meta.get(key).filter(|v| !v.is_null()) {
            metadata[key] = v.clone();
        }
    }
    let mut spec = template["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    if scheduled {
        spec["nodeName"] = json!(NODE_NAME);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

fn condition(kind: &str, at: &str) -> Value {
    json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": at})
}

fn container_status(c: &Value, at: &str) -> Value {
    json!({
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": true,
        "started": true,
        "restartCount": 0,
        "state": {"running": {"startedAt": at}},
    })
}

/// The status a kubelet reports once every container runs and is ready.
pub fn running_status(pod: &Value) -> Value {
    let at = objects::now();
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|k| condition(k, &at))
    .collect();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| container_status(c, &at))
        .collect();
    json!({
        "phase": "Running",
        "conditions": conditions,
        "startTime": at,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    })
}

/// A pod that no scheduler has placed: Pending with no conditions, as
/// kube-apiserver + kube-controller-manager leave it without a scheduler.
pub fn pending_status() -> Value {
    json!({"phase": "Pending", "qosClass": "BestEffort"})
}

fn set_condition(conditions: &mut Vec<Value>, kind: &str, ready: bool, at: &str) {
    let status = if ready { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == status => {}
        Some(c) => {
            c["status"] = json!(status);
            c["lastTransitionTime"] = json!(at);
        }
        None => conditions.push(json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": at})),
    }
}

/// The pod's status with readiness flipped as a readiness probe would:
/// `Ready`/`ContainersReady` (a new transition time when they change) and
/// every container's `ready`.
pub fn with_readiness(pod: &Value, ready: bool) -> Value {
    let at = objects::now();
    let mut status = pod["status"].clone();
    let mut conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    set_condition(&mut conditions, "Ready", ready, &at);
    set_condition(&mut conditions, "ContainersReady", ready, &at);
    status["conditions"] = json!(conditions);
    if let Some(containers) = status["containerStatuses"].as_array_mut() {
        for c in containers {
            c["ready"] = json!(ready);
        }
    }
    status
}

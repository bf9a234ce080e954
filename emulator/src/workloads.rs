//! Optional stand-in for the Deployment and StatefulSet controllers
//! (`Config::workload_status`): after a write that changes a workload, its
//! status is set as if every desired replica were at once ready.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::resources::GroupResource;
use crate::store::{EventType, Store};

fn is_workload(gr: &GroupResource) -> bool {
    gr.group == "apps" && matches!(gr.resource.as_str(), "deployments" | "statefulsets")
}

/// The status a controller would converge to; zero counts are omitted
/// (`omitempty`), as the real controllers' status is serialized.
fn converged(obj: &Value) -> Value {
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let mut status = Map::new();
    if let Some(g) = obj["metadata"]["generation"].as_i64() {
        status.insert("observedGeneration".into(), json!(g));
    }
    if replicas > 0 {
        for key in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            status.insert(key.into(), json!(replicas));
        }
    }
    if obj["status"]["currentRevision"].is_string() {
        status.insert(
            "currentRevision".into(),
            obj["status"]["currentRevision"].clone(),
        );
    }
    Value::Object(status)
}

/// Writes the converged status of a workload just written, as a separate
/// revision (a controller's own update), when it differs.
pub fn settle(store: &mut Store, gr: &GroupResource, object: &Arc<Value>) {
    if !store.workload_status || store.controllers.enabled || !is_workload(gr) {
        return;
    }
    let status = converged(object);
    if object["status"] == status {
        return;
    }
    let mut next = (**object).clone();
    next["status"] = status;
    store.commit(gr, EventType::Modified, next);
}

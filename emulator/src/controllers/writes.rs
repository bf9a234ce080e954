//! The controllers' own writes, through the normal write path (defaults,
//! generation, managedFields, events) but without HTTP or the request log.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::objects::{self, FieldValidation, Sub, Target, WriteOpts};
use crate::resources::GroupResource;
use crate::store::{EventType, Store};

/// The field manager the real controllers write as.
const CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// The field manager of pod status writes (there is no kubelet).
pub const KUBELET: &str = "kubelet";

pub fn pods() -> GroupResource {
    GroupResource::new("", "pods")
}

pub fn replicasets() -> GroupResource {
    GroupResource::new("apps", "replicasets")
}

pub fn deployments() -> GroupResource {
    GroupResource::new("apps", "deployments")
}

pub fn statefulsets() -> GroupResource {
    GroupResource::new("apps", "statefulsets")
}

fn target(store: &Store, gr: &GroupResource, namespace: &str) -> Option<Target> {
    let ty = store.registry.find(&gr.group, "v1", &gr.resource)?;
    Some(Target {
        ty,
        version: "v1".into(),
        namespace: namespace.to_string(),
    })
}

fn opts(manager: &str) -> WriteOpts {
    WriteOpts {
        manager: manager.into(),
        dry_run: false,
        validation: FieldValidation::Ignore,
    }
}

/// Creates an object; a failure (e.g. the namespace is going away) is
/// logged and retried on the next sync, as a controller would.
pub fn create(store: &mut Store, gr: &GroupResource, ns: &str, body: Value) -> Option<Arc<Value>> {
    let t = target(store, gr, ns)?;
    match objects::create(store, &t, &opts(CONTROLLER_MANAGER), body) {
        Ok(w) => Some(w.object),
        Err(e) => {
            tracing::warn!(resource = %gr.resource, error = %e.message, "controller create failed");
            None
        }
    }
}

/// Replaces the main resource (spec, metadata) or, with `Sub::Status`,
/// the status of `obj` as given.
/// Unconditional (no resourceVersion precondition): the controllers run
/// under the store lock, so nothing can have changed in between.
pub fn replace(
    store: &mut Store,
    gr: &GroupResource,
    mut obj: Value,
    sub: Sub,
    manager: Option<&str>,
) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(t) = target(store, gr, &ns) else {
        return;
    };
    let manager = manager.unwrap_or(CONTROLLER_MANAGER);
    if let Err(e) = objects::update(store, &t, &opts(manager), &name, sub, obj) {
        tracing::warn!(resource = %gr.resource, %name, error = %e.message, "controller update failed");
    }
}

/// Deletes an object at once (one DELETED event), as the garbage
/// collector's delete of an object without finalizers does.
pub fn remove(store: &mut Store, gr: &GroupResource, obj: &Value) {
    store.commit(gr, EventType::Deleted, obj.clone());
}

/// A pod's graceful deletion without a kubelet: the API server marks it
/// Terminating (`deletionTimestamp`, `deletionGracePeriodSeconds` from the
/// pod's `terminationGracePeriodSeconds`, default 30), then — as the
/// kubelet would once its containers stop — it is removed with grace 0.
/// Both steps happen at once, so watchers see MODIFIED then DELETED.
pub fn terminate_pod(store: &mut Store, pod: &Value) {
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(30);
    let mut marked = pod.clone();
    marked["metadata"]["deletionTimestamp"] = json!(objects::now());
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    let marked = store.commit(&pods(), EventType::Modified, marked);
    let mut last = (*marked).clone();
    last["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    store.commit(&pods(), EventType::Deleted, last);
}

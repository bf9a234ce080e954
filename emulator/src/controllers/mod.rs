//! Optional stand-ins for kube-controller-manager's workload controllers
//! (`Config::workload_controllers`): Deployment → ReplicaSet → Pods and
//! StatefulSet → Pods, with a scheduler/kubelet stand-in that binds every
//! pod to one node and reports it Running and Ready (or leaves it Pending).
//!
//! They run synchronously after every write to a workload or pod, inside
//! the same store lock, until nothing changes: the write that scales a
//! Deployment returns with its pods already created or deleted.

mod deployment;
mod gc;
mod hash;
mod kubelet;
mod pod;
mod ranking;
#[cfg(test)]
mod ranking_test;
mod replicaset;
mod statefulset;
mod writes;

pub use kubelet::NODE_NAME;
pub use pod::deletion_cost_problem;

use crate::objects::Sub;
use crate::resources::GroupResource;
use crate::store::Store;

/// What the controllers do, fixed when the emulator starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Run the controllers at all.
    pub enabled: bool,
    /// New pods stay Pending and unscheduled (no node, no kubelet).
    pub pods_pending: bool,
}

/// Passes over a namespace before giving up on reaching a fixed point;
/// a scale-up settles in 2, so this only bounds a misbehaving loop.
const MAX_PASSES: usize = 8;

fn watched(gr: &GroupResource) -> bool {
    matches!(
        (gr.group.as_str(), gr.resource.as_str()),
        ("", "pods") | ("apps", "deployments" | "replicasets" | "statefulsets")
    )
}

/// Runs the controllers for `namespace` after a committed write to `gr`.
/// Their own writes come back here and are ignored (they are already
/// inside the loop that runs until nothing changes).
pub fn after_write(store: &mut Store, gr: &GroupResource, namespace: &str) {
    if !store.controllers.enabled || store.controllers_running || !watched(gr) {
        return;
    }
    store.controllers_running = true;
    for _ in 0..MAX_PASSES {
        let before = store.rv();
        sync_namespace(store, namespace);
        if store.rv() == before {
            break;
        }
    }
    store.controllers_running = false;
}

fn sync_namespace(store: &mut Store, ns: &str) {
    let settings = store.controllers;
    for d in store.list(&writes::deployments(), Some(ns)) {
        deployment::sync(store, &d);
    }
    for rs in store.list(&writes::replicasets(), Some(ns)) {
        replicaset::sync(store, &rs, &settings);
    }
    for sts in store.list(&writes::statefulsets(), Some(ns)) {
        statefulset::sync(store, &sts, &settings);
    }
    for d in store.list(&writes::deployments(), Some(ns)) {
        deployment::update_status(store, &d);
    }
    gc::collect(store, ns);
}

/// Marks a pod ready or not ready, as a kubelet's readiness probe would
/// (for tests); the controllers then update their status. False when the
/// pod does not exist.
pub fn set_pod_ready(store: &mut Store, ns: &str, name: &str, ready: bool) -> bool {
    let Some(current) = store.get(&writes::pods(), ns, name) else {
        return false;
    };
    let mut next = (*current).clone();
    next["status"] = kubelet::with_readiness(&current, ready);
    writes::replace(
        store,
        &writes::pods(),
        next,
        Sub::Status,
        Some(writes::KUBELET),
    );
    true
}

/// Schedules a Pending pod onto the node and reports it Running and Ready,
/// as a scheduler and kubelet would (for tests with `pods_pending`).
pub fn start_pod(store: &mut Store, ns: &str, name: &str) -> bool {
    let Some(current) = store.get(&writes::pods(), ns, name) else {
        return false;
    };
    let mut bound = (*current).clone();
    bound["spec"]["nodeName"] = serde_json::json!(NODE_NAME);
    writes::replace(
        store,
        &writes::pods(),
        bound,
        Sub::Main,
        Some("kube-scheduler"),
    );
    let Some(current) = store.get(&writes::pods(), ns, name) else {
        return false;
    };
    let mut next = (*current).clone();
    next["status"] = kubelet::running_status(&current);
    writes::replace(
        store,
        &writes::pods(),
        next,
        Sub::Status,
        Some(writes::KUBELET),
    );
    true
}

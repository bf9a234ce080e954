//! The garbage collector's part: once a Deployment, ReplicaSet or
//! StatefulSet is gone, the objects it controlled go too (background
//! cascading deletion, done at once).

use std::collections::HashSet;

use super::pod;
use super::writes::{self, deployments, pods, replicasets, statefulsets};
use crate::resources::GroupResource;
use crate::store::Store;

fn uids(store: &Store, gr: &GroupResource, ns: &str) -> HashSet<String> {
    store
        .list(gr, Some(ns))
        .iter()
        .map(|o| pod::uid(o).to_string())
        .collect()
}

/// Whether `obj`'s controller is of `kind` and no longer among `alive`.
fn orphaned(obj: &serde_json::Value, kind: &str, alive: &HashSet<String>) -> bool {
    pod::controller_uid(obj, kind).is_some_and(|uid| !alive.contains(uid))
}

pub fn collect(store: &mut Store, ns: &str) {
    let live_deployments = uids(store, &deployments(), ns);
    for rs in store.list(&replicasets(), Some(ns)) {
        if orphaned(&rs, "Deployment", &live_deployments) {
            writes::remove(store, &replicasets(), &rs);
        }
    }
    let live_sets = uids(store, &replicasets(), ns);
    let live_stateful = uids(store, &statefulsets(), ns);
    for p in store.list(&pods(), Some(ns)) {
        if orphaned(&p, "ReplicaSet", &live_sets) || orphaned(&p, "StatefulSet", &live_stateful) {
            writes::terminate_pod(store, &p);
        }
    }
}

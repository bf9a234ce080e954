//! The StatefulSet controller stand-in: pods `<set>-<ordinal>` for the
//! ordinals `[start, start + replicas)`, created lowest first (with
//! `OrderedReady`, only while every lower pod is Running and Ready),
//! removed highest first; status counts them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::hash::pod_template_hash;
use super::kubelet::{self, controller_ref};
use super::pod;
use super::replicaset::{set_count, start_pod};
use super::writes::{self, pods, statefulsets};
use super::Settings;
use crate::objects::Sub;
use crate::store::Store;

fn start_ordinal(sts: &Value) -> i64 {
    sts["spec"]["ordinals"]["start"]
        .as_i64()
        .unwrap_or(0)
        .max(0)
}

fn revision(sts: &Value) -> String {
    // The controller reports collisionCount 0 from its first status
    // write on, so the revision hash always mixes it in.
    let collisions = Some(sts["status"]["collisionCount"].as_u64().unwrap_or(0) as u32);
    format!(
        "{}-{}",
        pod::name(sts),
        pod_template_hash(&sts["spec"]["template"], collisions)
    )
}

/// Active pods the set controls, by ordinal (parsed from `<set>-<n>`).
fn owned_pods(store: &Store, sts: &Value) -> BTreeMap<i64, Arc<Value>> {
    let ns = sts["metadata"]["namespace"].as_str().unwrap_or_default();
    let prefix = format!("{}-", pod::name(sts));
    store
        .list(&pods(), Some(ns))
        .into_iter()
        .filter(|p| {
            pod::is_active(p) && pod::controller_uid(p, "StatefulSet") == Some(pod::uid(sts))
        })
        .filter_map(|p| {
            let ordinal = pod::name(&p).strip_prefix(&prefix)?.parse().ok()?;
            Some((ordinal, p))
        })
        .collect()
}

fn new_pod(sts: &Value, ordinal: i64, scheduled: bool) -> Value {
    let name = format!("{}-{ordinal}", pod::name(sts));
    let mut labels = Map::new();
    labels.insert("controller-revision-hash".into(), json!(revision(sts)));
    labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(name));
    labels.insert(
        "apps.kubernetes.io/pod-index".into(),
        json!(ordinal.to_string()),
    );
    let owner = controller_ref(sts, "StatefulSet");
    let mut body = kubelet::pod_from_template(&sts["spec"]["template"], owner, &labels, scheduled);
    body["metadata"]["name"] = json!(name);
    body["spec"]["hostname"] = json!(name);
    if let Some(service) = sts["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        body["spec"]["subdomain"] = json!(service);
    }
    body
}

fn healthy(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && pod::is_ready(p)
}

fn create_missing(store: &mut Store, sts: &Value, settings: &Settings) {
    let ordered = sts["spec"]["podManagementPolicy"].as_str() != Some("Parallel");
    let ns = sts["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let start = start_ordinal(sts);
    let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    for ordinal in start..start + want {
        let existing = owned_pods(store, sts);
        if existing.contains_key(&ordinal) {
            continue;
        }
        if ordered && !existing.range(..ordinal).all(|(_, p)| healthy(p)) {
            return;
        }
        start_pod(
            store,
            &ns,
            new_pod(sts, ordinal, !settings.pods_pending),
            settings,
        );
    }
}

/// Pods outside `[start, start + replicas)`, highest ordinal first.
fn remove_extra(store: &mut Store, sts: &Value) {
    let start = start_ordinal(sts);
    let end = start + sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let owned = owned_pods(store, sts);
    for (_, p) in owned
        .iter()
        .rev()
        .filter(|(o, _)| **o < start || **o >= end)
    {
        writes::terminate_pod(store, p);
    }
}

pub fn sync(store: &mut Store, sts: &Arc<Value>, settings: &Settings) {
    if sts["metadata"]["deletionTimestamp"].is_null() {
        remove_extra(store, sts);
        create_missing(store, sts, settings);
    }
    let ns = sts["metadata"]["namespace"].as_str().unwrap_or_default();
    if let Some(fresh) = store.get(&statefulsets(), ns, pod::name(sts)) {
        update_status(store, &fresh);
    }
}

fn update_status(store: &mut Store, sts: &Value) {
    let owned = owned_pods(store, sts);
    let ready = owned.values().filter(|p| pod::is_ready(p)).count();
    let rev = revision(sts);
    let mut status = sts["status"].as_object().cloned().unwrap_or_default();
    status.insert("replicas".into(), json!(owned.len()));
    set_count(&mut status, "readyReplicas", ready);
    set_count(&mut status, "currentReplicas", owned.len());
    set_count(&mut status, "updatedReplicas", owned.len());
    status.insert("availableReplicas".into(), json!(ready));
    status.insert("currentRevision".into(), json!(rev));
    status.insert("updateRevision".into(), json!(rev));
    status.entry("collisionCount").or_insert(json!(0));
    if let Some(g) = sts["metadata"]["generation"].as_i64() {
        status.insert("observedGeneration".into(), json!(g));
    }
    let status = Value::Object(status);
    if sts["status"] != status {
        let mut next = sts.clone();
        next["status"] = status;
        writes::replace(store, &statefulsets(), next, Sub::Status, None);
    }
}

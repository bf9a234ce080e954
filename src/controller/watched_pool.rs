//! A WorkerPool as the pool watch decodes it: the spec and the metadata a
//! poll reads, with the status left as JSON text until someone wants it.
//!
//! # Why
//! Every status the leader writes comes back through the watch. Decoded
//! as a `WorkerPool`, each echo built its managedFields (a third of the
//! object) and its whole status (history, conditions, messages) only for
//! both to be dropped: the leader keeps its own memory of the status
//! (`status_memory`) and the poll reads no managedFields. At 5,000 pools
//! that was a twentieth of the operator's CPU. Here managedFields are
//! skipped by the decoder (never allocated) and the status stays raw: it is
//! parsed only when it is kept (a standby, or a pool the leader has not
//! polled yet).
//!
//! # Untrusted status
//! A status that does not parse (written by an older operator, or by hand)
//! is treated as no status: the pool is still watched and polled, and its
//! decision's memory starts afresh, as for a new pool. Before, such an
//! object failed the whole watch event.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::warn;

use crate::api::{WorkerPool, WorkerPoolSpec, WorkerPoolStatus};

/// One WorkerPool from the watch; its status not yet parsed.
#[derive(Clone, Debug)]
pub struct WatchedPool {
    pool: WorkerPool,
    status: Option<Box<RawValue>>,
}

impl WatchedPool {
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// The pool without its status (for a holder that keeps none).
    pub fn without_status(self) -> WorkerPool {
        self.pool
    }

    /// The pool with its status parsed; a status that does not parse is
    /// left out (see "Untrusted status").
    pub fn with_status(self) -> WorkerPool {
        let WatchedPool { mut pool, status } = self;
        pool.status = status.and_then(|raw| parse_status(&pool, &raw));
        pool
    }
}

impl AsRef<WorkerPool> for WatchedPool {
    fn as_ref(&self) -> &WorkerPool {
        &self.pool
    }
}

/// So what takes watch events (the target index) takes a whole pool too.
impl AsRef<WorkerPool> for WorkerPool {
    fn as_ref(&self) -> &WorkerPool {
        self
    }
}

fn parse_status(pool: &WorkerPool, raw: &RawValue) -> Option<WorkerPoolStatus> {
    match serde_json::from_str(raw.get()) {
        Ok(status) => Some(status),
        Err(e) => {
            warn!(
                workerpool = pool.metadata.name.as_deref().unwrap_or_default(),
                namespace = pool.metadata.namespace.as_deref().unwrap_or_default(),
                error = %e,
                "status does not parse; treated as absent"
            );
            None
        }
    }
}

impl Resource for WatchedPool {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        WorkerPool::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        WorkerPool::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        WorkerPool::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        WorkerPool::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.pool.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.pool.metadata
    }
}

/// The object as it travels; `apiVersion` and `kind` are known already.
#[derive(Deserialize)]
struct Wire {
    metadata: Meta,
    spec: WorkerPoolSpec,
    #[serde(default)]
    status: Option<Box<RawValue>>,
}

/// The metadata a poll, the target index and Events read. What is not
/// named here (managedFields, labels, owner references, finalizers) is
/// skipped without being built.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    annotations: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for WatchedPool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Wire {
            metadata: m,
            mut spec,
            status,
        } = Wire::deserialize(d)?;
        // Decoded lists grow to four places; a pool has one trigger or two.
        spec.triggers.shrink_to_fit();
        spec.schedules.shrink_to_fit();
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            annotations: m.annotations,
            ..ObjectMeta::default()
        };
        let pool = WorkerPool {
            metadata,
            spec,
            status: None,
        };
        Ok(WatchedPool { pool, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(status: serde_json::Value) -> String {
        json!({
            "apiVersion": "workerpool.dev/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {
                "name": "orders", "namespace": "shop", "uid": "u1",
                "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"team": "a"},
                "annotations": {"workerpool.dev/paused": "true"},
                "managedFields": [{"manager": "x", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {
                "scaleTargetRef": {"name": "w"},
                "minReplicas": 0, "maxReplicas": 5,
                "triggers": [{"redis": {"url": "redis://127.0.0.1:6379", "list": "q"}, "targetPerReplica": 10}]
            },
            "status": status
        })
        .to_string()
    }

    #[test]
    fn the_metadata_a_poll_reads_is_kept_and_managed_fields_are_not() {
        let w: WatchedPool = serde_json::from_str(&object(json!({}))).unwrap();
        let m = &w.pool().metadata;
        assert_eq!(m.name.as_deref(), Some("orders"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        assert_eq!(m.uid.as_deref(), Some("u1"));
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        assert_eq!(m.generation, Some(2));
        assert!(m.creation_timestamp.is_some());
        assert_eq!(
            m.annotations
                .as_ref()
                .and_then(|a| a.get("workerpool.dev/paused")),
            Some(&"true".to_string())
        );
        assert!(m.managed_fields.is_none());
        assert!(m.labels.is_none());
        assert_eq!(w.pool().spec.max_replicas, 5);
    }

    #[test]
    fn the_status_is_parsed_only_when_asked_for() {
        let text = object(json!({"desiredReplicas": 3, "lastDecision": "ok"}));
        let w: WatchedPool = serde_json::from_str(&text).unwrap();
        assert!(w.pool().status.is_none(), "not parsed while watched");
        assert!(w.clone().without_status().status.is_none());
        let status = w.with_status().status.expect("parsed on request");
        assert_eq!(status.desired_replicas, Some(3));
    }

    #[test]
    fn a_status_that_does_not_parse_is_treated_as_absent() {
        let text = object(json!({"desiredReplicas": "three"}));
        let w: WatchedPool = serde_json::from_str(&text).expect("the pool still decodes");
        assert!(w.with_status().status.is_none());
    }

    #[test]
    fn a_watch_event_decodes_as_the_api_server_sends_it() {
        let line = format!(
            r#"{{"type":"MODIFIED","object":{}}}"#,
            object(json!({"desiredReplicas": 1}))
        );
        let ev: kube::core::WatchEvent<WatchedPool> = serde_json::from_str(&line).unwrap();
        let kube::core::WatchEvent::Modified(w) = ev else {
            panic!("not a MODIFIED event");
        };
        assert_eq!(
            w.with_status().status.and_then(|s| s.desired_replicas),
            Some(1)
        );
    }
}

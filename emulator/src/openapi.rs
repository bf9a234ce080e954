//! A minimal OpenAPI v3 discovery: enough for kubectl to see that the
//! server supports `fieldValidation` and so validate on the server side
//! (it looks for a PATCH operation with that query parameter and the
//! resource's `x-kubernetes-group-version-kind`), and the schema of every
//! custom resource version (from its CRD) so `kubectl explain` works for
//! custom resources. Built-in types publish no schema: kubectl computes
//! strategic merge patches from its compiled-in types. `/openapi/v2` is 404.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{json, Map, Value};

use crate::resources::{Registry, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group/version with the types in it.
fn group_versions(registry: &Registry) -> Vec<(String, String, Vec<&ResourceType>)> {
    let mut out: Vec<(String, String, Vec<&ResourceType>)> = Vec::new();
    for t in registry.all() {
        for v in &t.versions {
            match out
                .iter_mut()
                .find(|(g, ver, _)| *g == t.group && *ver == v.name)
            {
                Some((_, _, types)) => types.push(t),
                None => out.push((t.group.clone(), v.name.clone(), vec![t])),
            }
        }
    }
    out
}

fn doc_for(group: &str, version: &str, types: &[&ResourceType]) -> Value {
    let mut paths = Map::new();
    for t in types {
        let item = if t.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                gv_path(group, version),
                t.plural
            )
        } else {
            format!("/{}/{}/{{name}}", gv_path(group, version), t.plural)
        };
        paths.insert(
            item,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": t.kind},
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas(group, version, types)},
    })
}

/// The schema name the apiserver uses for a custom resource:
/// the group reversed, then version and kind (`dev.workerpool.v1alpha1.WorkerPool`).
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// Each custom resource's `openAPIV3Schema`, tagged with its GVK so
/// `kubectl explain` can find it.
fn schemas(group: &str, version: &str, types: &[&ResourceType]) -> Map<String, Value> {
    let mut out = Map::new();
    for t in types {
        let Some(schema) = t.version(version).and_then(|v| v.schema.as_ref()) else {
            continue;
        };
        let mut schema = schema.raw.clone();
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": t.kind}]),
            );
        }
        out.insert(schema_name(group, version, &t.kind), schema);
    }
    out
}

fn hash(doc: &Value) -> String {
    let mut h = DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// Answers `/openapi/v3` and `/openapi/v3/{api|apis/...}`; None is a 404.
pub fn serve(registry: &Registry, path: &str) -> Option<Value> {
    let rest = path.trim_start_matches('/').strip_prefix("openapi/v3")?;
    let rest = rest.trim_matches('/');
    let gvs = group_versions(registry);
    if rest.is_empty() {
        let mut paths = Map::new();
        for (g, v, types) in &gvs {
            let p = gv_path(g, v);
            let url = format!("/openapi/v3/{p}?hash={}", hash(&doc_for(g, v, types)));
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
        return Some(json!({"paths": paths}));
    }
    gvs.iter()
        .find(|(g, v, _)| gv_path(g, v) == rest)
        .map(|(g, v, types)| doc_for(g, v, types))
}

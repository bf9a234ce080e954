//! Reading a WorkerPool manifest from a file, for `simulate` and `check`.

use std::path::Path;

use crate::api::{validate, WorkerPool};
use crate::decision::Policy;

/// A manifest that could not be used, with a one-line reason naming the
/// file and the field or line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// Loads the (single) WorkerPool in a YAML file, which may hold other
/// documents too (a Deployment beside it, say), and validates it.
pub fn load(path: &Path) -> Result<(WorkerPool, Policy), ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError(format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| ManifestError(format!("{}: {}", path.display(), e.0)))
}

/// Parses and validates manifest text (see [`load`]).
pub fn parse(text: &str) -> Result<(WorkerPool, Policy), ManifestError> {
    let mut found = Vec::new();
    let docs = crate::yaml::documents(text);
    for (i, doc) in docs.iter().enumerate() {
        let value: serde_json::Value = crate::yaml::from_document(doc)
            .map_err(|e| ManifestError(format!("document {}: invalid YAML: {e}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind == "WorkerPool" {
            found.push((i, value));
        }
    }
    let (i, value) = match found.len() {
        0 => return Err(ManifestError("no document with kind: WorkerPool".into())),
        1 => found.remove(0),
        n => {
            return Err(ManifestError(format!(
                "{n} WorkerPool documents; give one per file"
            )))
        }
    };
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if api_version != "workerpool.dev/v1alpha1" {
        return Err(ManifestError(format!(
            "document {}: apiVersion must be workerpool.dev/v1alpha1, got {api_version:?}",
            i + 1
        )));
    }
    if let Some(map) = value.as_object() {
        for k in map.keys() {
            if !matches!(
                k.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                return Err(ManifestError(format!(
                    "document {}: unknown field `{k}`",
                    i + 1
                )));
            }
        }
    }
    // Deserialize the document again from the text (not from the Value) so
    // that errors carry the field path and line.
    let pool: WorkerPool = crate::yaml::from_document(&docs[i])
        .map_err(|e| ManifestError(format!("document {}: {e}", i + 1)))?;
    let policy =
        validate(&pool.spec).map_err(|e| ManifestError(format!("invalid WorkerPool: {e}")))?;
    Ok((pool, policy))
}

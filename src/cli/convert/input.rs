//! The input documents: ScaledObjects to convert, and the
//! (Cluster)TriggerAuthentications they may refer to.

use serde_json::Value;

use super::auth::AuthIndex;
use super::warnings::{ConvertError, Warnings};

const KEDA_API: &str = "keda.sh/v1alpha1";

/// One ScaledObject and where it was in the input.
#[derive(Debug)]
pub struct ScaledObjectDoc {
    pub doc: usize,
    pub value: Value,
}

/// Everything `convert` takes from its input.
#[derive(Debug, Default)]
pub struct Input {
    pub scaled_objects: Vec<ScaledObjectDoc>,
    pub auth: AuthIndex,
    /// Documents of other kinds (a Deployment beside the ScaledObject, say): skipped, and said so.
    pub skipped: Vec<String>,
}

/// Splits the text into documents and sorts them by kind.
pub fn read(text: &str) -> Result<Input, ConvertError> {
    let mut input = Input::default();
    for (i, doc) in crate::yaml::documents(text).iter().enumerate() {
        let n = i + 1;
        let value: Value = crate::yaml::from_document(doc).map_err(|e| ConvertError::Yaml {
            doc: n,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        // `kubectl get ... -o yaml` prints several objects as one `List`.
        match list_items(&value) {
            Some(items) => {
                for item in items {
                    classify(&mut input, n, item)?;
                }
            }
            None => classify(&mut input, n, value)?,
        }
    }
    if input.scaled_objects.is_empty() {
        return Err(ConvertError::NoScaledObject);
    }
    Ok(input)
}

fn list_items(value: &Value) -> Option<Vec<Value>> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    if !kind.ends_with("List") {
        return None;
    }
    value.get("items").and_then(Value::as_array).cloned()
}

fn classify(input: &mut Input, doc: usize, value: Value) -> Result<(), ConvertError> {
    let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api, kind) = (text("apiVersion").to_string(), text("kind").to_string());
    let what = describe(&value, &api, &kind);
    let keda = api.starts_with("keda.sh/") || api.starts_with("keda.k8s.io/");
    match kind.as_str() {
        "ScaledObject" | "TriggerAuthentication" | "ClusterTriggerAuthentication"
            if api != KEDA_API && keda =>
        {
            Err(ConvertError::NotScaledObject {
                doc,
                what,
                why: format!("apiVersion {api} is not supported; convert reads {KEDA_API} (KEDA 2.x)"),
            })
        }
        "ScaledObject" if api == KEDA_API => {
            input.scaled_objects.push(ScaledObjectDoc { doc, value });
            Ok(())
        }
        "TriggerAuthentication" | "ClusterTriggerAuthentication" if api == KEDA_API => {
            let w = Warnings::new(what);
            input.auth.add(&kind, value, &w)
        }
        "ScaledJob" => Err(ConvertError::NotScaledObject {
            doc,
            what,
            why: "not a ScaledObject: a ScaledJob starts a Job per batch of work; a WorkerPool scales long-running workers (a Deployment or StatefulSet)".into(),
        }),
        _ if keda || kind.is_empty() => Err(ConvertError::NotScaledObject {
            doc,
            what,
            why: "not a ScaledObject: convert reads keda.sh/v1alpha1 ScaledObjects (and the TriggerAuthentications they use)".into(),
        }),
        _ => {
            input.skipped.push(format!("document {doc}: {what}"));
            Ok(())
        }
    }
}

/// `ScaledObject shop/orders`, `apps/v1 Deployment web`, or `a document without kind`.
fn describe(value: &Value, api: &str, kind: &str) -> String {
    if kind.is_empty() {
        return "a document without apiVersion/kind".into();
    }
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let who = match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    };
    if api.starts_with("keda.sh/") {
        format!("{kind} {who}")
    } else {
        format!("{api} {kind} {who}")
    }
}

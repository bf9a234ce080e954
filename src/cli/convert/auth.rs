//! The TriggerAuthentication index: the (Cluster)TriggerAuthentications
//! given in the same input, by name, and what each parameter comes from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::warnings::{ConvertError, Warnings};

/// Where a TriggerAuthentication takes one parameter from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthValue {
    /// `secretTargetRef`: a key of a Secret, which a WorkerPool can name too.
    Secret { name: String, key: String },
    /// Anything convert cannot turn into a Secret reference (env, a
    /// ConfigMap, a vault), described for the warning.
    Elsewhere(String),
}

/// One (Cluster)TriggerAuthentication.
#[derive(Debug, Clone)]
pub struct AuthParams {
    /// `TriggerAuthentication shop/redis-auth` (for messages).
    pub label: String,
    /// A ClusterTriggerAuthentication reads Secrets from KEDA's own namespace.
    pub cluster: bool,
    pub params: BTreeMap<String, AuthValue>,
    /// Whole-object providers with no per-parameter mapping (podIdentity, ...).
    pub providers: Vec<String>,
}

/// TriggerAuthentications by (namespace, name); ClusterTriggerAuthentications by name.
#[derive(Debug, Default)]
pub struct AuthIndex {
    namespaced: BTreeMap<(String, String), AuthParams>,
    cluster: BTreeMap<String, AuthParams>,
}

impl AuthIndex {
    pub fn add(&mut self, kind: &str, value: Value, w: &Warnings) -> Result<(), ConvertError> {
        let meta = value.get("metadata");
        let text = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let name = text("name").ok_or_else(|| w.invalid("metadata.name", "is required"))?;
        let cluster = kind == "ClusterTriggerAuthentication";
        let mut params = AuthParams {
            label: w.object().to_string(),
            cluster,
            params: BTreeMap::new(),
            providers: Vec::new(),
        };
        read_spec(&mut params, value.get("spec"));
        if cluster {
            self.cluster.insert(name, params);
        } else {
            let ns = text("namespace").unwrap_or_default();
            self.namespaced.insert((ns, name), params);
        }
        Ok(())
    }

    /// The authentication a trigger's `authenticationRef` names, looked up
    /// in the ScaledObject's namespace (or by name alone when either side
    /// gives no namespace).
    pub fn find(&self, kind: &str, name: &str, namespace: Option<&str>) -> Option<AuthParams> {
        if kind == "ClusterTriggerAuthentication" {
            return self.cluster.get(name).cloned();
        }
        let ns = namespace.unwrap_or_default().to_string();
        if let Some(found) = self.namespaced.get(&(ns.clone(), name.to_string())) {
            return Some(found.clone());
        }
        let mut same_name = self
            .namespaced
            .iter()
            .filter(|((n, m), _)| m == name && (n.is_empty() || ns.is_empty()));
        match (same_name.next(), same_name.next()) {
            (Some((_, found)), None) => Some(found.clone()),
            _ => None,
        }
    }
}

fn read_spec(out: &mut AuthParams, spec: Option<&Value>) {
    let Some(Value::Object(spec)) = spec else {
        return;
    };
    for (key, value) in spec {
        match key.as_str() {
            "secretTargetRef" => each(value, |p, e| {
                let (name, key) = (field(e, "name"), field(e, "key"));
                out.params.insert(p, AuthValue::Secret { name, key });
            }),
            "env" => {
                each(value, |p, e| {
                    let why = format!("environment variable {} of the target's container (convert does not read env)", field(e, "name"));
                    out.params.insert(p, AuthValue::Elsewhere(why));
                })
            }
            "configMapTargetRef" => each(value, |p, e| {
                let why = format!(
                    "ConfigMap {} key {} (a WorkerPool reads Secrets only)",
                    field(e, "name"),
                    field(e, "key")
                );
                out.params.insert(p, AuthValue::Elsewhere(why));
            }),
            other @ ("hashiCorpVault" | "azureKeyVault" | "gcpSecretManager"
            | "awsSecretManager") => {
                each(value.get("secrets").unwrap_or(&Value::Null), |p, _| {
                    let why = format!("{other} (a WorkerPool reads Secrets only)");
                    out.params.insert(p, AuthValue::Elsewhere(why));
                });
            }
            "boundServiceAccountToken" => each(value, |p, e| {
                let why = format!(
                    "a token of ServiceAccount {} (a WorkerPool reads Secrets only)",
                    field(e, "serviceAccountName")
                );
                out.params.insert(p, AuthValue::Elsewhere(why));
            }),
            other => out.providers.push(other.to_string()),
        }
    }
}

/// Calls `f(parameter, entry)` for each `{parameter: ..., ...}` in a list.
fn each(list: &Value, mut f: impl FnMut(String, &Value)) {
    for entry in list.as_array().into_iter().flatten() {
        if let Some(p) = entry.get("parameter").and_then(Value::as_str) {
            f(p.to_string(), entry);
        }
    }
}

fn field(entry: &Value, key: &str) -> String {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

//! Admission of a WorkerPool as the API server does it for a CRD: prune
//! unknown fields, apply schema defaults, validate the OpenAPI v3 schema
//! (jsonschema), then the CEL rules (kube's CEL evaluator). Used by tests
//! that check manifests against the real, generated crds/workerpool.yaml.

use serde_json::{Map, Value};

pub struct CrdSchema {
    schema: Value,
    validator: jsonschema::Validator,
}

impl CrdSchema {
    /// The schema of crds/workerpool.yaml (what `kubectl apply` installs).
    pub fn workerpool() -> Self {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/workerpool.yaml"))
                .unwrap();
        let crd: Value = workerpool_operator::yaml::from_str(&text).unwrap();
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let validator = jsonschema::validator_for(&to_json_schema(&schema)).unwrap();
        CrdSchema { schema, validator }
    }

    /// Returns the object as stored (pruned, defaulted), or every error as
    /// `path: message` (path like `spec.triggers[0].name`).
    pub fn admit(&self, obj: &Value) -> Result<Value, Vec<String>> {
        let mut obj = obj.clone();
        if let (Some(o), Some(props)) = (obj.as_object_mut(), self.schema.get("properties")) {
            for (k, v) in o.iter_mut() {
                if let Some(s) = props.get(k) {
                    prune_and_default(s, v);
                }
            }
            o.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.get(k).is_some()
            });
        }
        let mut errors: Vec<String> = self
            .validator
            .iter_errors(&obj)
            .map(|e| {
                let path = dotted(e.instance_path().as_str());
                // The API server names the missing field itself: `spec.x: Required value`.
                let msg = e.to_string();
                match msg.strip_suffix(" is a required property") {
                    Some(prop) if e.schema_path().as_str().ends_with("/required") => {
                        format!(
                            "{}{}{}: Required value",
                            path,
                            if path.is_empty() { "" } else { "." },
                            prop.trim_matches('"')
                        )
                    }
                    _ => format!("{path}: {msg}"),
                }
            })
            .collect();
        if errors.is_empty() {
            if let Err(errs) = kube::core::cel::Validator::new().validate(&self.schema, &obj, None)
            {
                errors.extend(
                    errs.into_vec()
                        .into_iter()
                        .map(|e| format!("{}: {}", e.field_path, e.message)),
                );
            }
        }
        if errors.is_empty() {
            Ok(obj)
        } else {
            Err(errors)
        }
    }
}

/// `/spec/triggers/0/name` -> `spec.triggers[0].name`
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// OpenAPI v3 (Kubernetes flavour) to JSON Schema: `nullable` becomes a
/// null type; Kubernetes extensions and OpenAPI formats are dropped
/// (jsonschema does not know int32/int64/double; ranges carry the limits).
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                if k.starts_with("x-kubernetes-") || k == "format" || k == "nullable" {
                    continue;
                }
                if k == "properties" {
                    let props = val.as_object().map(|p| {
                        p.iter()
                            .map(|(pk, pv)| (pk.clone(), to_json_schema(pv)))
                            .collect()
                    });
                    out.insert(k.clone(), Value::Object(props.unwrap_or_default()));
                } else {
                    out.insert(k.clone(), to_json_schema(val));
                }
            }
            if m.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), serde_json::json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// Structural pruning and defaulting, as the API server does before validation.
fn prune_and_default(schema: &Value, v: &mut Value) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match v {
        Value::Object(o) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                o.retain(|k, _| props.contains_key(k));
                for (k, ps) in props {
                    if !o.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            o.insert(k.clone(), d.clone());
                        }
                    }
                }
                for (k, val) in o.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        prune_and_default(ps, val);
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for val in o.values_mut() {
                    prune_and_default(ap, val);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for it in items {
                    prune_and_default(is, it);
                }
            }
        }
        _ => {}
    }
}

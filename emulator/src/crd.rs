//! CustomResourceDefinition specifics: validation of the definition itself,
//! the status the apiextensions controller would set, and serving the
//! custom resource while the CRD exists.

use serde_json::{json, Value};

use crate::resources;
use crate::status::Cause;
use crate::store::Store;

fn required(causes: &mut Vec<Cause>, v: &Value, field: &str) {
    if v.as_str().is_none_or(str::is_empty) {
        causes.push(Cause::new("FieldValueRequired", field, "Required value"));
    }
}

/// Field errors of a CRD, for the checks the emulator relies on.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let spec = &crd["spec"];
    let mut causes = Vec::new();
    required(&mut causes, &spec["group"], "spec.group");
    required(&mut causes, &spec["names"]["plural"], "spec.names.plural");
    required(&mut causes, &spec["names"]["kind"], "spec.names.kind");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"] == Value::Bool(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.versions",
            format!("Invalid value: \"array\": must have exactly one version marked as storage version, found {storage}"),
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let expected = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or_default(),
        spec["group"].as_str().unwrap_or_default()
    );
    if causes.is_empty() && name != expected {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if causes.is_empty() {
        if let Err(e) = resources::from_crd(crd) {
            causes.push(Cause::new("FieldValueInvalid", "spec.versions", e));
        }
    }
    causes
}

/// The status the apiextensions controllers converge to: names accepted,
/// established, storage version recorded.
pub fn set_status(crd: &mut Value, now: &str) {
    let spec = &crd["spec"];
    let mut accepted = spec["names"].clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(accepted["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!(
            "{}List",
            accepted["kind"].as_str().unwrap_or_default()
        ));
    }
    let storage: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == Value::Bool(true))
        .map(|v| v["name"].clone())
        .collect();
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": storage,
    });
}

/// Serves the custom resource a stored CRD defines.
pub fn register(store: &mut Store, crd: &Value) {
    match resources::from_crd(crd) {
        Ok(t) => store.registry.insert(t),
        Err(e) => tracing::warn!("CRD not served: {e}"),
    }
}

/// Stops serving the custom resource and forgets its objects.
pub fn unregister(store: &mut Store, crd: &Value) {
    let gr = resources::GroupResource::new(
        crd["spec"]["group"].as_str().unwrap_or_default(),
        crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
    );
    store.drop_table(&gr);
    store.registry.remove(&gr);
}

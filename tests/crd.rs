//! The generated CRD: up to date in crds/, a valid structural schema, and
//! CEL rules that compile, fit the apiserver's cost budget and reject what
//! they should.

use kube::core::cel::{compile_schema, estimate_rule_cost, Validator};
use kube::CustomResourceExt;
use serde_json::{json, Value};
use workerpool_operator::api::{crd_yaml, WorkerPool};

fn schema() -> Value {
    let crd = serde_json::to_value(WorkerPool::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crds_file_matches_generated_crd() {
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/workerpool.yaml"))
            .unwrap();
    assert!(
        file == crd_yaml().unwrap(),
        "crds/workerpool.yaml is stale: run `cargo run -- crd > crds/workerpool.yaml`"
    );
}

/// Keywords apiextensions.k8s.io/v1 JSONSchemaProps accepts (structural subset).
const ALLOWED: &[&str] = &[
    "type",
    "format",
    "description",
    "title",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

fn walk(path: &str, node: &Value, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    for key in obj.keys() {
        if !ALLOWED.contains(&key.as_str()) {
            problems.push(format!(
                "{path}: keyword {key:?} is not allowed in a structural schema"
            ));
        }
    }
    let escape = obj.contains_key("x-kubernetes-int-or-string")
        || obj.contains_key("x-kubernetes-preserve-unknown-fields");
    match obj.get("type").and_then(Value::as_str) {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(t) => problems.push(format!("{path}: unknown type {t:?}")),
        None if escape => {}
        None => problems.push(format!(
            "{path}: no type (structural schemas need one on every node)"
        )),
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if obj.get("type").and_then(Value::as_str) == Some("array")
        && !obj.get("items").is_some_and(Value::is_object)
    {
        problems.push(format!("{path}: array without a single items schema"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(&format!("{path}.{k}"), v, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(&format!("{path}[]"), items, problems);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(&format!("{path}{{}}"), ap, problems);
    }
    if let Some(Value::Array(rules)) = obj.get("x-kubernetes-validations") {
        for r in rules {
            if !r.get("rule").is_some_and(Value::is_string) {
                problems.push(format!("{path}: validation without a rule"));
            }
        }
    }
}

#[test]
fn generated_schema_is_structural() {
    let mut problems = vec![];
    walk("", &schema(), &mut problems);
    assert!(
        problems.is_empty(),
        "not structural:\n{}",
        problems.join("\n")
    );
    let text = serde_json::to_string(&schema()).unwrap();
    for bad in [
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "\"not\"",
        "definitions",
        "$schema",
    ] {
        assert!(!text.contains(bad), "schema contains {bad}");
    }
}

#[test]
fn crd_has_short_name_status_subresource_and_printer_columns() {
    let crd = WorkerPool::crd();
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["wp".to_string()][..])
    );
    let v = &crd.spec.versions[0];
    assert!(v
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());
    let cols: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for want in [
        "Target", "Min", "Max", "Current", "Desired", "Active", "Age",
    ] {
        assert!(
            cols.contains(&want),
            "missing printer column {want}: {cols:?}"
        );
    }
}

fn rules_in(node: &Value, out: &mut Vec<String>) {
    if let Some(Value::Array(rules)) = node.get("x-kubernetes-validations") {
        out.extend(
            rules
                .iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_string)),
        );
    }
    for key in ["properties"] {
        if let Some(props) = node.get(key).and_then(Value::as_object) {
            props.values().for_each(|v| rules_in(v, out));
        }
    }
    if let Some(items) = node.get("items") {
        rules_in(items, out);
    }
}

#[test]
fn cel_rules_compile_within_cost_budget() {
    let s = schema();
    let compiled = compile_schema(&s);
    assert!(
        !compiled.has_errors(),
        "CEL compile errors: {:?}",
        compiled.compilation_errors()
    );
    let mut rules = vec![];
    rules_in(&s, &mut rules);
    assert!(rules.len() >= 5, "{rules:?}");
    let spec = compile_schema(&s["properties"]["spec"]);
    for r in rules
        .iter()
        .filter(|r| r.contains("maxReplicas") || r.contains("triggers"))
    {
        let warnings = estimate_rule_cost(r, &spec);
        assert!(warnings.is_empty(), "rule {r} cost warnings: {warnings:?}");
    }
}

fn pool(spec: Value) -> Value {
    json!({"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
}

fn good_spec() -> Value {
    json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
        "minReplicas": 0, "maxReplicas": 10, "pollingIntervalSeconds": 5, "cooldownSeconds": 300, "paused": false,
        "triggers": [
            {"name": "orders", "redis": {"url": "redis://r:6379", "list": "orders"}, "targetPerReplica": 20.0, "activationThreshold": 0.0},
            {"prometheus": {"url": "http://p:9090", "query": "sum(x)", "onEmpty": "Error"}, "targetPerReplica": 5.0, "activationThreshold": 0.0}
        ]
    })
}

fn cel_errors(obj: &Value) -> Vec<String> {
    match Validator::new().validate(&schema(), obj, None) {
        Ok(()) => vec![],
        Err(errs) => errs
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn cel_accepts_a_good_pool() {
    assert_eq!(cel_errors(&pool(good_spec())), Vec::<String>::new());
}

#[test]
fn cel_rejects_max_below_min() {
    let mut s = good_spec();
    s["minReplicas"] = json!(5);
    s["maxReplicas"] = json!(3);
    let e = cel_errors(&pool(s));
    assert!(
        e.iter()
            .any(|m| m.contains("maxReplicas must be >= max(1, minReplicas)")),
        "{e:?}"
    );
    let mut s = good_spec();
    s["minReplicas"] = json!(0);
    s["maxReplicas"] = json!(0);
    let e = cel_errors(&pool(s));
    assert!(e.iter().any(|m| m.contains("maxReplicas")), "{e:?}");
}

#[test]
fn cel_rejects_two_sources_and_two_measures() {
    let mut s = good_spec();
    s["triggers"][0]["prometheus"] = json!({"url": "http://p", "query": "x", "onEmpty": "Error"});
    let e = cel_errors(&pool(s));
    assert!(e.iter().any(|m| m.contains("exactly one source")), "{e:?}");
    let mut s = good_spec();
    s["triggers"][0]["redis"]["stream"] = json!({"name": "s", "group": "g", "measure": "Lag"});
    let e = cel_errors(&pool(s));
    assert!(
        e.iter()
            .any(|m| m.contains("exactly one of list, lists, celery, stream, sortedSet")),
        "{e:?}"
    );
    let mut s = good_spec();
    s["triggers"][0]["redis"] = json!({"url": "redis://r"});
    let e = cel_errors(&pool(s));
    assert!(e.iter().any(|m| m.contains("exactly one of list")), "{e:?}");
}

#[test]
fn cel_rejects_duplicate_trigger_names_and_zero_target() {
    let mut s = good_spec();
    s["triggers"][1]["name"] = json!("orders");
    let e = cel_errors(&pool(s));
    assert!(
        e.iter().any(|m| m.contains("trigger names must be unique")),
        "{e:?}"
    );
    let mut s = good_spec();
    s["triggers"][0]["targetPerReplica"] = json!(0.0);
    let e = cel_errors(&pool(s));
    assert!(
        e.iter().any(|m| m.contains("targetPerReplica must be > 0")),
        "{e:?}"
    );
}

#[test]
fn cel_requires_exactly_one_busy_signal() {
    let mut s = good_spec();
    s["scaleIn"] = json!({"busySignal": {"rq": {"trigger": "orders"}}, "keepBusy": true, "deletionCost": true});
    assert_eq!(cel_errors(&pool(s.clone())), Vec::<String>::new());
    for signal in [
        json!({}),
        json!({"rq": {"trigger": "orders"}, "sidekiq": {"trigger": "orders"}}),
    ] {
        s["scaleIn"]["busySignal"] = signal;
        let e = cel_errors(&pool(s.clone()));
        assert!(
            e.iter().any(|m| m.contains("exactly one busySignal")),
            "{e:?}"
        );
    }
}

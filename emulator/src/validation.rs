//! Custom resource validation against a CRD version's `openAPIV3Schema`:
//! OpenAPI keywords through the `jsonschema` crate, `x-kubernetes-validations`
//! CEL rules through kube-cel, errors worded like the apiserver's.

use serde_json::{Map, Value};

use kube::core::cel::{compile_schema, CompiledSchema, ErrorKind, RootContext, Validator};

use crate::status::Cause;

/// A compiled CRD version schema.
pub struct CrSchema {
    /// The `openAPIV3Schema` as written in the CRD (used for pruning/defaults).
    pub raw: Value,
    json: jsonschema::Validator,
    cel: Option<CompiledSchema>,
}

impl std::fmt::Debug for CrSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrSchema").finish_non_exhaustive()
    }
}

thread_local! {
    // kube-cel's Validator registers every extension function on creation.
    static CEL: Validator = Validator::new();
}

/// Rewrites the OpenAPI v3.0 dialect Kubernetes uses into JSON Schema
/// draft 4: `nullable` becomes a `null` type, `x-kubernetes-int-or-string`
/// becomes `anyOf [integer, string]`.
fn to_json_schema(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let converted = match k.as_str() {
            "properties" | "patternProperties" | "definitions" => Value::Object(
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(name, s)| (name.clone(), to_json_schema(s)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" | "not" if v.is_object() => to_json_schema(v),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                v.as_array()
                    .map(|a| a.iter().map(to_json_schema).collect())
                    .unwrap_or_default(),
            ),
            // Annotations and Kubernetes extensions the validator must not see.
            "x-kubernetes-validations" | "default" | "example" | "nullable" => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), converted);
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
        if let Some(Value::Array(options)) = out.get_mut("enum") {
            options.push(Value::Null);
        }
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        if !out.contains_key("anyOf") && !out.contains_key("oneOf") {
            out.insert(
                "anyOf".into(),
                serde_json::json!([{"type": "integer"}, {"type": "string"}]),
            );
        }
    }
    Value::Object(out)
}

fn has_cel_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => {
            m.contains_key("x-kubernetes-validations") || m.values().any(has_cel_rules)
        }
        Value::Array(a) => a.iter().any(has_cel_rules),
        _ => false,
    }
}

/// How the apiserver prints a value inside `Invalid value: ...`.
fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

fn field_path(location: &jsonschema::paths::Location) -> String {
    let mut out = String::new();
    for seg in location.segments() {
        match seg {
            jsonschema::paths::LocationSegment::Property(p) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&p);
            }
            jsonschema::paths::LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The value at a `spec.items[0].name`-style path.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

fn schema_cause(err: &jsonschema::ValidationError<'_>) -> Cause {
    use jsonschema::error::ValidationErrorKind as K;
    let path = field_path(err.instance_path());
    let inst = err.instance();
    let invalid = |detail: String| {
        Cause::new(
            "FieldValueInvalid",
            path.clone(),
            format!("Invalid value: {}: {path} in body {detail}", show(inst)),
        )
    };
    match err.kind() {
        K::Required { property } => {
            let prop = property.as_str().unwrap_or_default();
            let field = if path.is_empty() {
                prop.to_string()
            } else {
                format!("{path}.{prop}")
            };
            Cause::new("FieldValueRequired", field, "Required value")
        }
        K::Minimum { limit } => invalid(format!("should be greater than or equal to {limit}")),
        K::ExclusiveMinimum { limit } => invalid(format!("should be greater than {limit}")),
        K::Maximum { limit } => invalid(format!("should be less than or equal to {limit}")),
        K::ExclusiveMaximum { limit } => invalid(format!("should be less than {limit}")),
        K::MultipleOf { .. } => invalid(format!("{err}")),
        K::MinLength { limit } => invalid(format!("should be at least {limit} chars long")),
        K::MaxLength { limit } => Cause::new(
            "FieldValueTooLong",
            path.clone(),
            format!("Too long: may not be more than {limit} bytes"),
        ),
        K::MinItems { limit } => invalid(format!("should have at least {limit} items")),
        K::MaxItems { limit } => Cause::new(
            "FieldValueTooMany",
            path.clone(),
            format!(
                "Too many: {}: must have at most {limit} items",
                inst.as_array().map_or(0, Vec::len)
            ),
        ),
        K::MinProperties { limit } => invalid(format!("should have at least {limit} properties")),
        K::MaxProperties { limit } => invalid(format!("should have at most {limit} properties")),
        K::Pattern { pattern } => invalid(format!("should match '{pattern}'")),
        K::Format { format } => invalid(format!("must be of type {format}: {}", show(inst))),
        K::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(|o| o.to_string()).collect())
                .unwrap_or_default();
            Cause::new(
                "FieldValueNotSupported",
                path.clone(),
                format!(
                    "Unsupported value: {}: supported values: {}",
                    show(inst),
                    supported.join(", ")
                ),
            )
        }
        K::Type { kind } => {
            let expected = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            Cause::new(
                "FieldValueTypeInvalid",
                path.clone(),
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type {expected}: \"{}\"",
                    type_name(inst),
                    type_name(inst)
                ),
            )
        }
        _ => Cause::new(
            "FieldValueInvalid",
            path.clone(),
            format!("Invalid value: {}: {err}", show(inst)),
        ),
    }
}

fn cel_cause(err: &kube::core::cel::ValidationError, object: &Value) -> Cause {
    let path = err.field_path.trim_start_matches('.').to_string();
    let value = lookup(object, &path).unwrap_or(&Value::Null);
    let (reason, message) = match err.reason.as_deref() {
        Some("FieldValueRequired") => (
            "FieldValueRequired",
            format!("Required value: {}", err.message),
        ),
        Some("FieldValueForbidden") => {
            ("FieldValueForbidden", format!("Forbidden: {}", err.message))
        }
        Some("FieldValueDuplicate") => (
            "FieldValueDuplicate",
            format!("Duplicate value: {}: {}", show(value), err.message),
        ),
        _ => (
            "FieldValueInvalid",
            format!("Invalid value: \"{}\": {}", type_name(value), err.message),
        ),
    };
    Cause::new(reason, path, message)
}

impl CrSchema {
    /// Compiles a CRD version's `openAPIV3Schema`.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let json = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&to_json_schema(schema))
            .map_err(|e| e.to_string())?;
        let cel = has_cel_rules(schema).then(|| compile_schema(schema));
        if let Some(compiled) = &cel {
            if let Some(e) = compiled.compilation_errors().first() {
                return Err(format!("x-kubernetes-validations: {e}"));
            }
        }
        Ok(CrSchema {
            raw: schema.clone(),
            json,
            cel,
        })
    }

    /// Field errors of `object` (already pruned and defaulted); `old` is the
    /// stored object on update, for CEL transition rules.
    pub fn validate(&self, object: &Value, old: Option<&Value>, root: &RootContext) -> Vec<Cause> {
        let mut causes: Vec<Cause> = self
            .json
            .iter_errors(object)
            .map(|e| schema_cause(&e))
            .collect();
        // Like the apiserver's hasBlockingErr: these make CEL rules unsafe to run.
        let blocking = causes.iter().any(|c| {
            matches!(
                c.reason.as_str(),
                "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
                    | "FieldValueTypeInvalid"
            )
        });
        if blocking && self.cel.is_some() {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "<nil>",
                "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
            return causes;
        }
        if let Some(compiled) = &self.cel {
            let result =
                CEL.with(|v| v.validate_compiled_with_context(compiled, object, old, Some(root)));
            if let Err(errors) = result {
                for e in errors.iter() {
                    match e.kind {
                        // A rule kube-cel cannot evaluate is skipped, not failed.
                        ErrorKind::UnsupportedReference | ErrorKind::CompilationFailure => {
                            tracing::warn!(rule = %e.rule, "CEL rule not evaluated: {}", e.message);
                        }
                        _ => causes.push(cel_cause(e, object)),
                    }
                }
            }
        }
        causes
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn root() -> RootContext {
        RootContext {
            api_version: "example.dev/v1".into(),
            api_group: "example.dev".into(),
            kind: "Widget".into(),
        }
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "max": {"type": "integer"},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "note": {"type": "string", "nullable": true},
                        "port": {"x-kubernetes-int-or-string": true}
                    },
                    "x-kubernetes-validations": [{"rule": "!has(self.max) || self.max >= self.size", "message": "max must be >= size"}]
                }
            }
        })
    }

    #[test]
    fn minimum_violation_names_the_field() {
        let s = CrSchema::compile(&schema()).unwrap();
        let causes = s.validate(&json!({"spec": {"size": 0}}), None, &root());
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.size");
        assert_eq!(
            causes[0].message,
            "Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
    }

    #[test]
    fn required_nullable_enum_and_int_or_string() {
        let s = CrSchema::compile(&schema()).unwrap();
        let causes = s.validate(
            &json!({"spec": {"note": null, "port": "http", "mode": "c"}}),
            None,
            &root(),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"spec.size"), "{causes:?}");
        assert!(fields.contains(&"spec.mode"), "{causes:?}");
        assert!(
            fields.contains(&"<nil>"),
            "CEL skipped after blocking errors: {causes:?}"
        );
        assert_eq!(causes.len(), 3, "{causes:?}");
    }

    #[test]
    fn cel_rule_is_evaluated() {
        let s = CrSchema::compile(&schema()).unwrap();
        let causes = s.validate(&json!({"spec": {"size": 5, "max": 2}}), None, &root());
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"object\": max must be >= size"
        );
    }
}

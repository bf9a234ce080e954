//! `spec.triggers[i]`: the fields every KEDA trigger has (type, name,
//! authenticationRef, metricType, useCachedMetrics), and the hand-over to
//! the mapping of its type.

use super::Mapping;
use serde_json::Value;

use super::auth::AuthIndex;
use super::fields::{number, Object};
use super::redis_connection::Topology;
use super::source::Source;
use super::trigger::TriggerCtx;
use super::warnings::{ConvertError, Warnings};
use super::{prometheus, redis_lists, redis_streams};

/// The KEDA trigger types with a WorkerPool source.
pub const SUPPORTED: [&str; 7] = [
    "redis",
    "redis-sentinel",
    "redis-cluster",
    "redis-streams",
    "redis-sentinel-streams",
    "redis-cluster-streams",
    "prometheus",
];

/// One converted trigger.
pub fn convert(
    i: usize,
    value: Value,
    auth: &AuthIndex,
    namespace: Option<&str>,
    w: &mut Warnings,
) -> Result<Value, ConvertError> {
    let at = format!("spec.triggers[{i}]");
    let mut obj = Object::new(Some(value), &at, w)?;
    let kind = obj
        .take_str("type", w)?
        .ok_or_else(|| w.invalid(obj.path("type"), "is required"))?;
    if !SUPPORTED.contains(&kind.as_str()) {
        return Err(ConvertError::UnsupportedTrigger {
            object: w.object().to_string(),
            field: obj.path("type"),
            kind,
        });
    }
    let name = match obj.take_str("name", w)? {
        Some(n) => trigger_name(&n, &obj.path("name"), w),
        None => None,
    };
    metric_type(&mut obj, w)?;
    if obj.take_bool("useCachedMetrics", w)? == Some(true) {
        w.add(obj.path("useCachedMetrics"), "not needed: the operator reads each trigger once per poll and decides from that reading");
    }
    let auth = authentication(&mut obj, auth, namespace, w)?;
    let meta = obj.child("metadata", w)?;
    let mut t = TriggerCtx {
        at: at.clone(),
        meta,
        auth,
        namespace: namespace.unwrap_or("of the WorkerPool").to_string(),
        w: &mut *w,
    };
    let source = by_type(&mut t, &kind, &obj.path("type"))?;
    t.finish(&kind);
    obj.warn_leftovers(w, "not a field of a KEDA trigger; ignored");
    Ok(output(name, source))
}

fn by_type(t: &mut TriggerCtx<'_>, kind: &str, at: &str) -> Result<Source, ConvertError> {
    match kind {
        "redis" => redis_lists::convert(t, Topology::Standalone),
        "redis-sentinel" => redis_lists::convert(t, Topology::Sentinel),
        "redis-cluster" => redis_lists::convert(t, Topology::Cluster),
        "redis-streams" => redis_streams::convert(t, Topology::Standalone),
        "redis-sentinel-streams" => redis_streams::convert(t, Topology::Sentinel),
        "redis-cluster-streams" => redis_streams::convert(t, Topology::Cluster),
        "prometheus" => prometheus::convert(t),
        other => Err(ConvertError::UnsupportedTrigger {
            object: t.w.object().to_string(),
            field: at.to_string(),
            kind: other.to_string(),
        }),
    }
}

fn output(name: Option<String>, s: Source) -> Value {
    let mut m = Mapping::new();
    if let Some(n) = name {
        m.insert("name".into(), n.into());
    }
    m.insert(s.key.into(), Value::Object(s.body));
    m.insert("targetPerReplica".into(), number(s.target));
    m.insert("activationThreshold".into(), number(s.activation));
    Value::Object(m)
}

/// KEDA allows any trigger name; a WorkerPool's are DNS-label-like.
fn trigger_name(given: &str, at: &str, w: &mut Warnings) -> Option<String> {
    let lowered: String = given
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = lowered
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(63)
        .collect();
    let name = trimmed
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if name.is_empty() {
        w.add(
            at,
            format!("{given:?} has no letters or digits; the trigger gets the default name"),
        );
        return None;
    }
    if name != given {
        w.add(
            at,
            format!("{given:?} is not a valid WorkerPool trigger name; renamed to {name:?}"),
        );
    }
    Some(name)
}

fn metric_type(obj: &mut Object, w: &mut Warnings) -> Result<(), ConvertError> {
    match obj.take_str("metricType", w)?.as_deref() {
        None | Some("AverageValue") => Ok(()),
        Some("Value") => {
            w.add(obj.path("metricType"), "Value: the HPA scaled by value/target times the current replicas; a WorkerPool always divides the value by targetPerReplica (as AverageValue): check targetPerReplica");
            Ok(())
        }
        Some(other) => Err(w.invalid(
            obj.path("metricType"),
            format!("{other:?} is not valid for a KEDA scaler (AverageValue or Value)"),
        )),
    }
}

fn authentication(
    obj: &mut Object,
    index: &AuthIndex,
    namespace: Option<&str>,
    w: &mut Warnings,
) -> Result<Option<super::auth::AuthParams>, ConvertError> {
    if !obj.has("authenticationRef") {
        return Ok(None);
    }
    let mut r = obj.child("authenticationRef", w)?;
    let name = r
        .take_str("name", w)?
        .ok_or_else(|| w.invalid(r.path("name"), "is required"))?;
    let kind = r
        .take_str("kind", w)?
        .unwrap_or_else(|| "TriggerAuthentication".into());
    r.warn_leftovers(w, "not a field of authenticationRef; ignored");
    let found = index.find(&kind, &name, namespace);
    if found.is_none() {
        let msg = format!("{kind} {name} is not in the input, so its Secret references cannot be carried over: give it in the same input (e.g. kubectl get {} {name} -o yaml >> file)", kind.to_lowercase());
        w.add(r.path("name"), msg);
    }
    Ok(found)
}

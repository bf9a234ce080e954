//! One ScaledObject to one WorkerPool: the top-level fields (target,
//! replica bounds, polling, cooldown, idle replicas) and the assembly of
//! the parts the other files convert.

use super::Mapping;
use serde_json::Value;

use super::advanced;
use super::annotations::{self, Pause};
use super::auth::AuthIndex;
use super::fields::{mapping, Object};
use super::input::ScaledObjectDoc;
use super::triggers;
use super::warnings::{ConvertError, Warning, Warnings};
use crate::api::Mode;

/// KEDA's defaults for absent fields.
const KEDA_MIN_REPLICAS: i64 = 0;
const KEDA_MAX_REPLICAS: i64 = 100;
const KEDA_POLLING_INTERVAL: i64 = 30;
const KEDA_COOLDOWN: i64 = 300;

/// The WorkerPool for one ScaledObject, and the warnings met on the way.
pub fn convert(
    so: ScaledObjectDoc,
    auth: &AuthIndex,
    mode: Mode,
) -> Result<(Value, Vec<Warning>), ConvertError> {
    let mut w = Warnings::new(label(&so.value, so.doc));
    let mut root = Object::new(Some(so.value), "", &w)?;
    root.take("apiVersion");
    root.take("kind");
    if root.take("status").is_some() {
        w.add(
            "status",
            "state of the existing ScaledObject, not carried over",
        );
    }
    let meta = root.child("metadata", &w)?;
    let (metadata, pause) = annotations::metadata(meta, &mut w)?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut spec = root.child("spec", &w)?;
    let out = spec_of(&mut spec, auth, namespace.as_deref(), pause, mode, &mut w)?;
    spec.warn_leftovers(&mut w, "not a ScaledObject field KEDA documents; ignored");
    root.warn_leftovers(&mut w, "not a ScaledObject field; ignored");
    let pool = mapping([
        ("apiVersion", "workerpool.dev/v1alpha1".into()),
        ("kind", "WorkerPool".into()),
        ("metadata", Value::Object(metadata)),
        ("spec", Value::Object(out)),
    ]);
    Ok((pool, w.into_vec()))
}

/// `ScaledObject shop/orders` (for messages).
fn label(value: &Value, doc: usize) -> String {
    let meta = value.get("metadata");
    let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    match (get("namespace"), get("name")) {
        (Some(ns), Some(n)) => format!("ScaledObject {ns}/{n}"),
        (None, Some(n)) => format!("ScaledObject {n}"),
        _ => format!("ScaledObject in document {doc}"),
    }
}

fn spec_of(
    spec: &mut Object,
    auth: &AuthIndex,
    namespace: Option<&str>,
    pause: Pause,
    mode: Mode,
    w: &mut Warnings,
) -> Result<Mapping, ConvertError> {
    let mut out = Mapping::new();
    out.insert("mode".into(), mode.as_str().into());
    out.insert("scaleTargetRef".into(), scale_target(spec, w)?);
    let (min, max) = replica_bounds(spec, w)?;
    out.insert("minReplicas".into(), min.into());
    out.insert("maxReplicas".into(), max.into());
    let polling = seconds(spec, "pollingInterval", KEDA_POLLING_INTERVAL, 1..=3600, w)?;
    out.insert("pollingIntervalSeconds".into(), polling.into());
    let cooldown = seconds(spec, "cooldownPeriod", KEDA_COOLDOWN, 0..=86400, w)?;
    out.insert("cooldownSeconds".into(), cooldown.into());
    if let Some(s) = spec
        .take_i64("initialCooldownPeriod", w)?
        .filter(|s| *s != 0)
    {
        let msg = format!("{s} s: no equivalent (a WorkerPool may scale to zero as soon as its triggers have been inactive for cooldownSeconds); ignored");
        w.add(spec.path("initialCooldownPeriod"), msg);
    }
    if pause.paused {
        out.insert("paused".into(), true.into());
    }
    out.insert("triggers".into(), trigger_list(spec, auth, namespace, w)?);
    let mut behavior = advanced::advanced(spec, w)?;
    disable_directions(&mut behavior, pause);
    if !behavior.is_empty() {
        out.insert("behavior".into(), Value::Object(behavior));
    }
    if let Some(f) = advanced::fallback(spec, w)? {
        out.insert("fallback".into(), f);
    }
    Ok(out)
}

fn scale_target(spec: &mut Object, w: &mut Warnings) -> Result<Value, ConvertError> {
    if !spec.has("scaleTargetRef") {
        return Err(w.invalid("spec.scaleTargetRef", "is required"));
    }
    let mut t = spec.child("scaleTargetRef", w)?;
    let name = t
        .take_str("name", w)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| w.invalid(t.path("name"), "is required"))?;
    let api = t
        .take_str("apiVersion", w)?
        .unwrap_or_else(|| "apps/v1".into());
    let kind = t
        .take_str("kind", w)?
        .unwrap_or_else(|| "Deployment".into());
    if t.take("envSourceContainerName").is_some() {
        w.add(t.path("envSourceContainerName"), "no equivalent: convert does not read the target's environment (see the *FromEnv warnings, if any); ignored");
    }
    t.warn_leftovers(w, "not a field of scaleTargetRef; ignored");
    Ok(mapping([
        ("apiVersion", api.into()),
        ("kind", kind.into()),
        ("name", name.into()),
    ]))
}

/// minReplicaCount / maxReplicaCount / idleReplicaCount.
fn replica_bounds(spec: &mut Object, w: &mut Warnings) -> Result<(i64, i64), ConvertError> {
    let mut min = spec
        .take_i64("minReplicaCount", w)?
        .unwrap_or(KEDA_MIN_REPLICAS);
    let max = spec
        .take_i64("maxReplicaCount", w)?
        .unwrap_or(KEDA_MAX_REPLICAS);
    if !(0..=i64::from(i32::MAX)).contains(&min) {
        return Err(w.invalid(
            spec.path("minReplicaCount"),
            format!("must be >= 0, got {min}"),
        ));
    }
    if max < min.max(1) || max > i64::from(i32::MAX) {
        return Err(w.invalid(
            spec.path("maxReplicaCount"),
            format!(
                "must be >= max(1, minReplicaCount) = {}, got {max}",
                min.max(1)
            ),
        ));
    }
    if let Some(idle) = spec.take_i64("idleReplicaCount", w)? {
        let at = spec.path("idleReplicaCount");
        if idle != 0 {
            w.add(at, format!("{idle}: KEDA supports only 0 here; ignored"));
        } else if min > 0 {
            let msg = format!("0 with minReplicaCount {min}: carried over as minReplicas: 0 (scale to zero after cooldownSeconds of inactivity); while a trigger is active a WorkerPool's floor is 1, not {min}; if {min} are needed while active, set minReplicas: {min} (and give up scale-to-zero)");
            w.add(at, msg);
            min = 0;
        }
    }
    Ok((min, max))
}

fn seconds(
    spec: &mut Object,
    key: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    w: &mut Warnings,
) -> Result<i64, ConvertError> {
    let Some(s) = spec.take_i64(key, w)? else {
        return Ok(default);
    };
    if range.contains(&s) {
        return Ok(s);
    }
    let clamped = s.clamp(*range.start(), *range.end());
    w.add(
        spec.path(key),
        format!(
            "{s} is outside {}..{}; set to {clamped}",
            range.start(),
            range.end()
        ),
    );
    Ok(clamped)
}

fn trigger_list(
    spec: &mut Object,
    auth: &AuthIndex,
    namespace: Option<&str>,
    w: &mut Warnings,
) -> Result<Value, ConvertError> {
    let list = spec
        .take("triggers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if list.is_empty() || list.len() > 16 {
        return Err(w.invalid(
            "spec.triggers",
            format!("must have 1 to 16 triggers, got {}", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        out.push(triggers::convert(i, t, auth, namespace, w)?);
    }
    dedupe_names(&mut out, w);
    Ok(Value::Array(out))
}

/// Trigger names made valid may collide, with each other or with the
/// default name (`<type>-<index>`) of an unnamed trigger; a WorkerPool
/// needs them unique.
fn dedupe_names(triggers: &mut [Value], w: &mut Warnings) {
    let mut seen: std::collections::HashSet<String> = triggers
        .iter()
        .enumerate()
        .filter(|(_, t)| t.get("name").is_none())
        .map(|(i, t)| {
            let kind = if t.get("prometheus").is_some() {
                "prometheus"
            } else {
                "redis"
            };
            format!("{kind}-{i}")
        })
        .collect();
    for (i, t) in triggers.iter_mut().enumerate() {
        let Some(name) = t.get("name").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        if !seen.insert(name.clone()) {
            let unique = (i..)
                .map(|n| format!("{name}-{n}"))
                .find(|u| !seen.contains(u))
                .unwrap_or_default();
            w.add(format!("spec.triggers[{i}].name"), format!("{name:?} is taken by another trigger (an earlier name, or the default name <type>-<index> of an unnamed one); renamed to {unique:?}"));
            if let Some(m) = t.as_object_mut() {
                m.insert("name".into(), unique.clone().into());
            }
            seen.insert(unique);
        }
    }
}

/// `paused-scale-in` / `paused-scale-out`: that direction's selectPolicy is Disabled.
fn disable_directions(behavior: &mut Mapping, pause: Pause) {
    for (on, dir) in [(pause.scale_in, "scaleDown"), (pause.scale_out, "scaleUp")] {
        if !on {
            continue;
        }
        let rules = behavior
            .entry(dir)
            .or_insert_with(|| Value::Object(Mapping::new()));
        if let Some(m) = rules.as_object_mut() {
            m.insert("selectPolicy".into(), "Disabled".into());
        }
    }
}

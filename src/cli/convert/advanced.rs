//! `spec.advanced` (HPA behavior, scalingModifiers, restore) and
//! `spec.fallback` of a ScaledObject.

use super::Mapping;
use serde_json::Value;

use super::fields::{mapping, number, Object};
use super::warnings::{ConvertError, Warnings};

/// `advanced.horizontalPodAutoscalerConfig.behavior` as a WorkerPool
/// `behavior` (same meaning: the operator implements HPA's algorithm).
pub fn advanced(spec: &mut Object, w: &mut Warnings) -> Result<Mapping, ConvertError> {
    let mut advanced = spec.child("advanced", w)?;
    let mut hpa = advanced.child("horizontalPodAutoscalerConfig", w)?;
    if hpa.take("name").is_some() {
        w.add(
            hpa.path("name"),
            "no equivalent: a WorkerPool scales the target itself and creates no HPA; ignored",
        );
    }
    let mut behavior = hpa.child("behavior", w)?;
    let mut out = Mapping::new();
    let mut tolerances = Vec::new();
    for dir in ["scaleUp", "scaleDown"] {
        let mut rules = behavior.child(dir, w)?;
        if let Some(t) = rules.take_str("tolerance", w)? {
            let x = quantity(&t).ok_or_else(|| {
                w.invalid(rules.path("tolerance"), format!("not a quantity: {t:?}"))
            })?;
            tolerances.push((rules.path("tolerance"), x));
        }
        if let Some(r) = scaling_rules(&mut rules, w)? {
            out.insert(dir.into(), Value::Object(r));
        }
        rules.warn_leftovers(w, "not a field of HPA scaling rules; ignored");
    }
    if let Some(t) = tolerance(tolerances, w) {
        out.insert("tolerance".into(), number(t));
    }
    behavior.warn_leftovers(w, "not a field of HPA behavior; ignored");
    hpa.warn_leftovers(w, "not a field of horizontalPodAutoscalerConfig; ignored");
    scaling_modifiers(&mut advanced, w)?;
    if advanced.take_bool("restoreToOriginalReplicaCount", w)? == Some(true) {
        w.add(advanced.path("restoreToOriginalReplicaCount"), "no equivalent: deleting a WorkerPool leaves the target at its current replicas; scale it back by hand if needed");
    }
    advanced.warn_leftovers(w, "not a field of KEDA's advanced settings; ignored");
    Ok(out)
}

fn scaling_rules(rules: &mut Object, w: &Warnings) -> Result<Option<Mapping>, ConvertError> {
    let mut out = Mapping::new();
    if let Some(s) = rules.take_i64("stabilizationWindowSeconds", w)? {
        if !(0..=3600).contains(&s) {
            return Err(w.invalid(
                rules.path("stabilizationWindowSeconds"),
                format!("must be in 0..3600, got {s}"),
            ));
        }
        out.insert("stabilizationWindowSeconds".into(), s.into());
    }
    if let Some(p) = rules.take_str("selectPolicy", w)? {
        if !matches!(p.as_str(), "Max" | "Min" | "Disabled") {
            return Err(w.invalid(
                rules.path("selectPolicy"),
                format!("must be Max, Min or Disabled, got {p:?}"),
            ));
        }
        out.insert("selectPolicy".into(), p.into());
    }
    if let Some(list) = rules.take("policies") {
        let at = rules.path("policies");
        let items = list
            .as_array()
            .ok_or_else(|| w.invalid(&at, "must be a list"))?;
        let mut policies = Vec::new();
        for (j, item) in items.iter().enumerate() {
            policies.push(policy(item.clone(), &format!("{at}[{j}]"), w)?);
        }
        out.insert("policies".into(), Value::Array(policies));
    }
    Ok((!out.is_empty()).then_some(out))
}

fn policy(item: Value, at: &str, w: &Warnings) -> Result<Value, ConvertError> {
    let mut p = Object::new(Some(item), at, w)?;
    let kind = p.take_str("type", w)?.unwrap_or_default();
    if !matches!(kind.as_str(), "Pods" | "Percent") {
        return Err(w.invalid(
            p.path("type"),
            format!("must be Pods or Percent, got {kind:?}"),
        ));
    }
    let value = p.take_i64("value", w)?.unwrap_or(0);
    if value < 1 {
        return Err(w.invalid(p.path("value"), format!("must be >= 1, got {value}")));
    }
    let period = p.take_i64("periodSeconds", w)?.unwrap_or(0);
    if !(1..=1800).contains(&period) {
        return Err(w.invalid(
            p.path("periodSeconds"),
            format!("must be in 1..1800, got {period}"),
        ));
    }
    if let Some(extra) = p.leftovers().first() {
        return Err(w.invalid(extra, "not a field of an HPA scaling policy"));
    }
    Ok(mapping([
        ("type", kind.into()),
        ("value", value.into()),
        ("periodSeconds", period.into()),
    ]))
}

/// HPA's per-direction tolerance; a WorkerPool has one for both directions.
fn tolerance(found: Vec<(String, f64)>, w: &mut Warnings) -> Option<f64> {
    let smallest = found
        .iter()
        .map(|(_, x)| *x)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))?;
    let same = found.iter().all(|(_, x)| *x == smallest);
    if found.len() == 1 || !same {
        let (field, _) = &found[0];
        w.add(
            field.clone(),
            format!(
                "a WorkerPool has one tolerance for both directions: behavior.tolerance {smallest}"
            ),
        );
    }
    if !(0.0..1.0).contains(&smallest) {
        w.add(
            found[0].0.clone(),
            format!("tolerance {smallest} is outside [0, 1); the default 0.1 applies"),
        );
        return None;
    }
    Some(smallest)
}

/// A Kubernetes quantity as HPA tolerances use them: `0.05`, `50m`.
fn quantity(text: &str) -> Option<f64> {
    let t = text.trim();
    match t.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|x| x / 1000.0),
        None => t.parse::<f64>().ok(),
    }
    .filter(|x| x.is_finite())
}

fn scaling_modifiers(advanced: &mut Object, w: &mut Warnings) -> Result<(), ConvertError> {
    let mut m = advanced.child("scalingModifiers", w)?;
    if let Some(formula) = m.take_str("formula", w)? {
        let msg = format!("formula {formula:?} is not supported: a WorkerPool has no composite metric; each trigger proposes replicas from its own value and targetPerReplica, and the trigger proposing the most replicas wins (desired = max over triggers, as an HPA with several metrics); check each trigger's targetPerReplica");
        w.add(m.path("formula"), msg);
    }
    for (key, why) in [
        ("target", "the formula's target has no equivalent (each trigger keeps its own targetPerReplica); ignored"),
        ("activationTarget", "the formula's activation target has no equivalent (each trigger keeps its own activationThreshold); ignored"),
        ("metricType", "the formula's metric type has no equivalent; ignored"),
    ] {
        if m.take(key).is_some() {
            w.add(m.path(key), why);
        }
    }
    m.warn_leftovers(w, "not a field of scalingModifiers; ignored");
    Ok(())
}

/// `spec.fallback`: KEDA's behaviors mapped onto a WorkerPool's, which
/// never scales down on failed reads.
pub fn fallback(spec: &mut Object, w: &mut Warnings) -> Result<Option<Value>, ConvertError> {
    if !spec.has("fallback") {
        return Ok(None);
    }
    let mut f = spec.child("fallback", w)?;
    let threshold = f.take_i64("failureThreshold", w)?.unwrap_or(3);
    let replicas = f.take_i64("replicas", w)?;
    let behavior = f
        .take_str("behavior", w)?
        .unwrap_or_else(|| "static".into());
    let threshold = if (1..=1000).contains(&threshold) {
        threshold
    } else {
        let clamped = threshold.clamp(1, 1000);
        w.add(
            f.path("failureThreshold"),
            format!("{threshold} is outside 1..1000; set to {clamped}"),
        );
        clamped
    };
    let replicas = fallback_replicas(&f, &behavior, replicas, w)?;
    f.warn_leftovers(w, "not a field of KEDA's fallback; ignored");
    let mut out = Mapping::new();
    out.insert("failureThreshold".into(), threshold.into());
    if let Some(r) = replicas {
        out.insert("replicas".into(), r.into());
    }
    Ok(Some(Value::Object(out)))
}

fn fallback_replicas(
    f: &Object,
    behavior: &str,
    replicas: Option<i64>,
    w: &mut Warnings,
) -> Result<Option<i64>, ConvertError> {
    let at = f.path("behavior");
    let replicas = match replicas {
        Some(r) if !(0..=i64::from(i32::MAX)).contains(&r) => {
            return Err(w.invalid(f.path("replicas"), format!("must be >= 0, got {r}")))
        }
        r => r,
    };
    match behavior {
        "static" => {
            w.add(at, "static: KEDA ran exactly fallback.replicas, also below the current count; a WorkerPool never scales down on failed reads, so it runs max(current, replicas)");
            Ok(replicas)
        }
        "currentReplicasIfHigher" => Ok(replicas),
        "currentReplicas" => {
            if replicas.is_some() {
                w.add(f.path("replicas"), "not used with behavior currentReplicas (nor by KEDA): the pool holds its current count");
            }
            Ok(None)
        }
        "currentReplicasIfLower" => {
            w.add(at, "currentReplicasIfLower has no equivalent: a WorkerPool never scales down on failed reads; it holds the current count (fallback.replicas is not used)");
            Ok(None)
        }
        "scalingModifiers" => {
            w.add(at, "scalingModifiers has no equivalent (no composite metric); fallback.replicas is used instead");
            Ok(replicas)
        }
        other => Err(w.invalid(at, format!("unknown fallback behavior {other:?}"))),
    }
}

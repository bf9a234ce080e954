//! Re-validation of a spec into a [`Policy`], with one error style naming
//! the field. The CRD schema rejects most mistakes at `kubectl apply`; this
//! catches the rest (and everything, for `simulate`/`check`, which read
//! manifests from files) so no bad spec ever reaches the decision.

use std::collections::HashSet;

use super::spec::*;
use super::Schedule;
use crate::decision::{
    Cron, DrainPolicy, FallbackPolicy, Policy, RatePolicy, Rules, SelectPolicy, Throughput,
    TriggerPolicy, Window,
};

/// A spec mistake: the JSON path of the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The JSON path of the field, e.g. `spec.triggers[0].redis.url`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    /// The `Ready=False` reason this mistake deserves.
    pub fn reason(&self) -> &'static str {
        if self.field.starts_with("spec.schedules") {
            "InvalidSchedule"
        } else {
            "InvalidSpec"
        }
    }
}

pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// The default name of the trigger at `index`: `<type>-<index>`.
pub fn default_trigger_name(trigger: &Trigger, index: usize) -> String {
    let kind = if trigger.prometheus.is_some() {
        "prometheus"
    } else {
        "redis"
    };
    format!("{kind}-{index}")
}

/// Checks every rule the CRD schema cannot express and returns the defaulted policy.
pub fn validate(spec: &WorkerPoolSpec) -> Result<Policy, SpecError> {
    validate_target(spec)?;
    validate_counts(spec)?;
    let triggers = validate_triggers(spec)?;
    let behavior = spec.behavior.clone().unwrap_or_default();
    let scale_up = rules(
        behavior.scale_up.as_ref(),
        Rules::default_scale_up(),
        "spec.behavior.scaleUp",
    )?;
    let scale_down = rules(
        behavior.scale_down.as_ref(),
        Rules::default_scale_down(),
        "spec.behavior.scaleDown",
    )?;
    let tolerance = behavior.tolerance.unwrap_or(0.1);
    if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
        return Err(err(
            "spec.behavior.tolerance",
            format!("must be in [0, 1), got {tolerance}"),
        ));
    }
    let fallback = spec.fallback.as_ref().map(validate_fallback).transpose()?;
    let schedules = validate_schedules(spec)?;
    let scale_in = (spec.scale_in.as_ref())
        .map(|s| s.policy(&spec.triggers))
        .transpose()?;
    Ok(Policy {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        cooldown_ms: i64::from(spec.cooldown_seconds) * 1000,
        triggers,
        scale_up,
        scale_down,
        tolerance,
        fallback,
        schedules,
        scale_in,
    })
}

fn validate_target(spec: &WorkerPoolSpec) -> Result<(), SpecError> {
    let t = &spec.scale_target_ref;
    if t.name.trim().is_empty() {
        return Err(err("spec.scaleTargetRef.name", "must not be empty"));
    }
    if t.kind.trim().is_empty() {
        return Err(err("spec.scaleTargetRef.kind", "must not be empty"));
    }
    if t.api_version.trim().is_empty() {
        return Err(err("spec.scaleTargetRef.apiVersion", "must not be empty"));
    }
    Ok(())
}

/// Replica bounds, polling interval, cooldown.
fn validate_counts(spec: &WorkerPoolSpec) -> Result<(), SpecError> {
    if spec.min_replicas < 0 {
        return Err(err(
            "spec.minReplicas",
            format!("must be >= 0, got {}", spec.min_replicas),
        ));
    }
    if spec.max_replicas < spec.min_replicas.max(1) {
        return Err(err(
            "spec.maxReplicas",
            format!(
                "must be >= max(1, minReplicas) = {}, got {}",
                spec.min_replicas.max(1),
                spec.max_replicas
            ),
        ));
    }
    if !(1..=3600).contains(&spec.polling_interval_seconds) {
        return Err(err(
            "spec.pollingIntervalSeconds",
            format!("must be in 1..3600, got {}", spec.polling_interval_seconds),
        ));
    }
    if !(0..=86400).contains(&spec.cooldown_seconds) {
        return Err(err(
            "spec.cooldownSeconds",
            format!("must be in 0..86400, got {}", spec.cooldown_seconds),
        ));
    }
    Ok(())
}

fn validate_triggers(spec: &WorkerPoolSpec) -> Result<Vec<TriggerPolicy>, SpecError> {
    if spec.triggers.is_empty() || spec.triggers.len() > 16 {
        return Err(err(
            "spec.triggers",
            format!("must have 1 to 16 triggers, got {}", spec.triggers.len()),
        ));
    }
    let mut names = HashSet::new();
    let mut triggers = Vec::with_capacity(spec.triggers.len());
    for (i, trig) in spec.triggers.iter().enumerate() {
        let name = trigger_name(trig, i)?;
        if !names.insert(name.clone()) {
            return Err(err(
                format!("spec.triggers[{i}].name"),
                format!("duplicate trigger name {name:?}"),
            ));
        }
        triggers.push(validate_trigger(trig, i, name)?);
    }
    Ok(triggers)
}

/// The trigger's name as written, or the default for its source.
fn trigger_name(trig: &Trigger, i: usize) -> Result<String, SpecError> {
    match &trig.name {
        Some(n) => {
            validate_name(n).map_err(|m| err(format!("spec.triggers[{i}].name"), m))?;
            Ok(n.clone())
        }
        None => Ok(default_trigger_name(trig, i)),
    }
}

fn validate_trigger(trig: &Trigger, i: usize, name: String) -> Result<TriggerPolicy, SpecError> {
    let at = format!("spec.triggers[{i}]");
    match (&trig.redis, &trig.prometheus) {
        (Some(r), None) => validate_redis(r, &format!("{at}.redis"))?,
        (None, Some(p)) => validate_prometheus(p, &format!("{at}.prometheus"))?,
        _ => {
            return Err(err(
                at,
                "exactly one source (redis or prometheus) must be set",
            ))
        }
    }
    let (target_per_replica, drain) = sizing(trig, &at)?;
    if !trig.activation_threshold.is_finite() {
        return Err(err(
            format!("{at}.activationThreshold"),
            "must be a finite number",
        ));
    }
    Ok(TriggerPolicy {
        name,
        target_per_replica,
        activation_threshold: trig.activation_threshold,
        drain,
    })
}

fn validate_fallback(f: &Fallback) -> Result<FallbackPolicy, SpecError> {
    if !(1..=1000).contains(&f.failure_threshold) {
        return Err(err(
            "spec.fallback.failureThreshold",
            format!("must be in 1..1000, got {}", f.failure_threshold),
        ));
    }
    if let Some(r) = f.replicas {
        if r < 0 {
            return Err(err(
                "spec.fallback.replicas",
                format!("must be >= 0, got {r}"),
            ));
        }
    }
    Ok(FallbackPolicy {
        failure_threshold: f.failure_threshold as u32,
        replicas: f.replicas,
    })
}

/// How a trigger sizes the pool: exactly one of `targetPerReplica` and `drain`.
fn sizing(trig: &Trigger, at: &str) -> Result<(f64, Option<DrainPolicy>), SpecError> {
    match (trig.target_per_replica, &trig.drain) {
        (Some(t), None) if t.is_finite() && t > 0.0 => Ok((t, None)),
        (Some(t), None) => Err(err(
            format!("{at}.targetPerReplica"),
            format!("must be a number > 0, got {t}"),
        )),
        (None, Some(d)) => {
            let p = d.policy(&format!("{at}.drain"))?;
            let per_target = match p.throughput {
                Throughput::PerReplica(rate) => rate * p.seconds,
                Throughput::Measured => p.seconds,
            };
            Ok((per_target, Some(p)))
        }
        (Some(_), Some(_)) => Err(err(at, "set targetPerReplica or drain, not both")),
        (None, None) => Err(err(
            format!("{at}.targetPerReplica"),
            "required (or drain): how many items one replica should hold",
        )),
    }
}

/// The schedules, parsed: what the CRD's CEL rules say, and what they cannot
/// (the cron's grammar, whether the time zone exists).
fn validate_schedules(spec: &WorkerPoolSpec) -> Result<Vec<Window>, SpecError> {
    if spec.schedules.len() > 16 {
        return Err(err(
            "spec.schedules",
            format!(
                "must have at most 16 schedules, got {}",
                spec.schedules.len()
            ),
        ));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(spec.schedules.len());
    for (i, s) in spec.schedules.iter().enumerate() {
        let at = format!("spec.schedules[{i}]");
        validate_name(&s.name).map_err(|m| err(format!("{at}.name"), m))?;
        if !names.insert(s.name.as_str()) {
            return Err(err(
                format!("{at}.name"),
                format!("duplicate schedule name {:?}", s.name),
            ));
        }
        let cron = Cron::parse(&s.cron).map_err(|e| err(format!("{at}.cron"), e.to_string()))?;
        let zone = crate::decision::time_zone(&s.time_zone).ok_or_else(|| {
            err(
                format!("{at}.timeZone"),
                format!("unknown IANA time zone {:?}", truncate(&s.time_zone)),
            )
        })?;
        if !(60..=604_800).contains(&s.duration_seconds) {
            return Err(err(
                format!("{at}.durationSeconds"),
                format!("must be in 60..604800 (a week), got {}", s.duration_seconds),
            ));
        }
        check_window_bounds(spec, s, &at)?;
        out.push(Window {
            name: s.name.clone(),
            cron,
            zone_name: s.time_zone.clone(),
            zone,
            duration_ms: i64::from(s.duration_seconds) * 1000,
            min_replicas: s.min_replicas,
            max_replicas: s.max_replicas,
        });
    }
    Ok(out)
}

fn check_window_bounds(spec: &WorkerPoolSpec, s: &Schedule, at: &str) -> Result<(), SpecError> {
    if let Some(min) = s.min_replicas.filter(|m| *m < 0) {
        return Err(err(
            format!("{at}.minReplicas"),
            format!("must be >= 0, got {min}"),
        ));
    }
    if let Some(max) = s.max_replicas.filter(|m| *m < 1) {
        return Err(err(
            format!("{at}.maxReplicas"),
            format!("must be >= 1, got {max}"),
        ));
    }
    let ceiling = s.max_replicas.unwrap_or(spec.max_replicas);
    if let Some(min) = s.min_replicas.filter(|m| *m > ceiling) {
        let whose = if s.max_replicas.is_some() {
            "this schedule's maxReplicas"
        } else {
            "spec.maxReplicas"
        };
        return Err(err(
            format!("{at}.minReplicas"),
            format!("{min} is above {whose} {ceiling}"),
        ));
    }
    Ok(())
}

fn validate_name(n: &str) -> Result<(), String> {
    let ok_chars = n
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let ok_ends = n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if n.is_empty() || n.len() > 63 || !ok_chars || !ok_ends {
        return Err(format!(
            "must be 1-63 lowercase letters, digits, '-', '_' or '.', starting and ending alphanumeric, got {:?}",
            truncate(n)
        ));
    }
    Ok(())
}

/// A user's value quoted in an error, kept short.
fn truncate(s: &str) -> String {
    crate::text::truncate(s, 43)
}

fn validate_redis(r: &RedisTrigger, at: &str) -> Result<(), SpecError> {
    validate_redis_where(r, at)?;
    validate_redis_measure(r, at)
}

/// Exactly one of `url`, `sentinel`, `cluster`, each well formed.
fn validate_redis_where(r: &RedisTrigger, at: &str) -> Result<(), SpecError> {
    match (&r.url, &r.sentinel, &r.cluster) {
        (Some(url), None, None) => validate_redis_url(r, url, at),
        (None, Some(s), None) => {
            validate_addresses(&s.addresses, &format!("{at}.sentinel.addresses"))?;
            if s.master_name.is_empty() {
                return Err(err(
                    format!("{at}.sentinel.masterName"),
                    "must not be empty",
                ));
            }
            if s.db < 0 {
                return Err(err(format!("{at}.sentinel.db"), "must not be negative"));
            }
            Ok(())
        }
        (None, None, Some(c)) => {
            validate_addresses(&c.addresses, &format!("{at}.cluster.addresses"))
        }
        _ => Err(err(at, "exactly one of url, sentinel, cluster must be set")),
    }
}

fn validate_addresses(addresses: &[String], at: &str) -> Result<(), SpecError> {
    if addresses.is_empty() || addresses.len() > 16 {
        return Err(err(at, "must name 1 to 16 host:port addresses"));
    }
    for (j, a) in addresses.iter().enumerate() {
        super::topology::parse_address(a).map_err(|m| err(format!("{at}[{j}]"), m))?;
    }
    Ok(())
}

fn validate_redis_url(r: &RedisTrigger, raw: &str, at: &str) -> Result<(), SpecError> {
    let url = url::Url::parse(raw).map_err(|e| {
        err(
            format!("{at}.url"),
            format!("invalid URL {:?}: {e}", truncate(raw)),
        )
    })?;
    match url.scheme() {
        "redis" | "rediss" => {}
        s => {
            return Err(err(
                format!("{at}.url"),
                format!("scheme must be redis:// or rediss://, got {s}://"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err(format!("{at}.url"), "must name a host"));
    }
    if !url.path().is_empty()
        && url.path() != "/"
        && url.path().trim_start_matches('/').parse::<u32>().is_err()
    {
        return Err(err(
            format!("{at}.url"),
            format!("database must be a number, got {:?}", url.path()),
        ));
    }
    if r.tls.is_some() && url.scheme() != "rediss" {
        return Err(err(
            format!("{at}.tls"),
            "is set but the URL is redis:// (use rediss:// for TLS)",
        ));
    }
    Ok(())
}

fn validate_redis_measure(r: &RedisTrigger, at: &str) -> Result<(), SpecError> {
    let measures = [
        r.list.is_some(),
        r.lists.is_some(),
        r.celery.is_some(),
        r.stream.is_some(),
        r.sorted_set.is_some(),
        r.rq.is_some(),
        r.arq.is_some(),
        r.huey.is_some(),
        r.dramatiq.is_some(),
        r.sidekiq.is_some(),
        r.bullmq.is_some(),
    ];
    if measures.iter().filter(|m| **m).count() != 1 {
        return Err(err(
            at,
            "exactly one of list, lists, celery, stream, sortedSet, rq, arq, huey, dramatiq, sidekiq, bullmq must be set",
        ));
    }
    let nonempty = |v: &str, f: &str| {
        if v.is_empty() {
            Err(err(format!("{at}.{f}"), "must not be empty"))
        } else {
            Ok(())
        }
    };
    if let Some(l) = &r.list {
        nonempty(l, "list")?;
    }
    if let Some(ls) = &r.lists {
        if ls.is_empty() || ls.len() > 64 {
            return Err(err(format!("{at}.lists"), "must name 1 to 64 lists"));
        }
        for (j, l) in ls.iter().enumerate() {
            nonempty(l, &format!("lists[{j}]"))?;
        }
    }
    if let Some(c) = &r.celery {
        nonempty(&c.queue, "celery.queue")?;
    }
    if let Some(s) = &r.stream {
        nonempty(&s.name, "stream.name")?;
        if s.measure != StreamMeasureKind::Length && s.group.as_deref().is_none_or(str::is_empty) {
            return Err(err(
                format!("{at}.stream.group"),
                format!("is required for measure {:?}", s.measure),
            ));
        }
    }
    if let Some(z) = &r.sorted_set {
        nonempty(&z.name, "sortedSet.name")?;
    }
    super::dramatiq::validate_dramatiq(r, at)?;
    super::sidekiq::validate_sidekiq(r, at)?;
    super::bullmq::validate_bullmq(r, at)?;
    super::frameworks::validate_frameworks(r, at)
}

pub(super) fn validate_prometheus(p: &PrometheusTrigger, at: &str) -> Result<(), SpecError> {
    let url = url::Url::parse(&p.url).map_err(|e| {
        err(
            format!("{at}.url"),
            format!("invalid URL {:?}: {e}", truncate(&p.url)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(
            format!("{at}.url"),
            format!(
                "scheme must be http:// or https://, got {}://",
                url.scheme()
            ),
        ));
    }
    if p.query.trim().is_empty() {
        return Err(err(format!("{at}.query"), "must not be empty"));
    }
    if p.bearer_token_secret_ref.is_some() && p.basic_auth_secret_ref.is_some() {
        return Err(err(
            at,
            "set bearerTokenSecretRef or basicAuthSecretRef, not both",
        ));
    }
    for (k, v) in p.headers.iter().flatten() {
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
        if !name_ok {
            return Err(err(
                format!("{at}.headers"),
                format!("invalid header name {:?}", truncate(k)),
            ));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(
                format!("{at}.headers.{k}"),
                "header value must not contain CR, LF or NUL",
            ));
        }
    }
    Ok(())
}

fn rules(r: Option<&ScalingRules>, default: Rules, at: &str) -> Result<Rules, SpecError> {
    let Some(r) = r else { return Ok(default) };
    let window = r
        .stabilization_window_seconds
        .map_or(default.stabilization_window_ms, |w| i64::from(w) * 1000);
    if let Some(w) = r.stabilization_window_seconds {
        if !(0..=3600).contains(&w) {
            return Err(err(
                format!("{at}.stabilizationWindowSeconds"),
                format!("must be in 0..3600, got {w}"),
            ));
        }
    }
    let select_policy = r.select_policy.unwrap_or(SelectPolicy::Max);
    let policies = match &r.policies {
        None => default.policies,
        Some(ps) => {
            if ps.is_empty() && select_policy != SelectPolicy::Disabled {
                return Err(err(
                    format!("{at}.policies"),
                    "must have at least one policy unless selectPolicy is Disabled",
                ));
            }
            let mut out = Vec::with_capacity(ps.len());
            for (j, p) in ps.iter().enumerate() {
                if p.value < 1 {
                    return Err(err(
                        format!("{at}.policies[{j}].value"),
                        format!("must be >= 1, got {}", p.value),
                    ));
                }
                if !(1..=1800).contains(&p.period_seconds) {
                    return Err(err(
                        format!("{at}.policies[{j}].periodSeconds"),
                        format!("must be in 1..1800, got {}", p.period_seconds),
                    ));
                }
                out.push(RatePolicy {
                    kind: p.type_,
                    value: p.value,
                    period_ms: i64::from(p.period_seconds) * 1000,
                });
            }
            out
        }
    };
    Ok(Rules {
        stabilization_window_ms: window,
        select_policy,
        policies,
    })
}

//! `workerpool-operator check -f pool.yaml`: validate a manifest, read each
//! trigger once from the live Redis/Prometheus, and print the decision the
//! operator would make and why. No cluster needed.
//!
//! Secrets the triggers name come from `--secret name/key=value` flags
//! (`name/key=@path` reads the value from a file, e.g. a CA bundle). The
//! decision is the operator's first poll of a pool: no history, current
//! replicas `--current` (default minReplicas).
//!
//! Exit status: 0 when every trigger was read, 1 when any failed (stderr
//! says which and why), 2 for an invalid manifest or usage.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures::future::{join_all, BoxFuture, FutureExt};

use crate::api::WorkerPool;
use crate::decision::{
    decide, decide_with_busy, states_at, Busy, DrainEstimate, DrainPolicy, History, Policy,
    Reading, Throughput, TriggerPolicy, Window,
};
use crate::sources::policy::EndpointPolicy;
use crate::sources::{read_timeout, Measurement, MetricSource, SourceError, Sources};

/// How `check` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// Exactly one JSON object on stdout.
    Json,
}

/// One `--secret name/key=value` flag.
#[derive(Clone)]
pub struct SecretFlag {
    pub name: String,
    pub key: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SecretFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFlag({}/{}=<redacted>)", self.name, self.key)
    }
}

/// Parses `name/key=value` or `name/key=@path` (clap value parser).
pub fn parse_secret_flag(s: &str) -> Result<SecretFlag, String> {
    let (reference, value) = s
        .split_once('=')
        .ok_or_else(|| "expected name/key=value (or name/key=@file)".to_string())?;
    let (name, key) = reference
        .split_once('/')
        .ok_or_else(|| format!("expected name/key before '=', got {reference:?}"))?;
    if name.is_empty() || key.is_empty() {
        return Err(format!(
            "secret name and key must not be empty, got {reference:?}"
        ));
    }
    let value = match value.strip_prefix('@') {
        Some(path) => {
            without_final_newline(std::fs::read(path).map_err(|e| format!("{path}: {e}"))?)
        }
        None => value.as_bytes().to_vec(),
    };
    Ok(SecretFlag {
        name: name.to_string(),
        key: key.to_string(),
        value,
    })
}

/// A file's bytes without one final newline (`\n` or `\r\n`): `echo pw > f`
/// writes one, and a password never ends in one. Only one is removed, as
/// kubectl's `--from-env-file` trims a line; a value that really ends in
/// newlines keeps the others.
fn without_final_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    bytes
}

/// What one trigger gave.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerReport {
    pub name: String,
    /// What was read where (None when the source could not be built).
    pub source: Option<String>,
    pub value: Option<f64>,
    pub proposed_replicas: Option<i32>,
    pub active: bool,
    pub error: Option<String>,
    /// Drain triggers: the estimate of this read.
    pub drain: Option<DrainEstimate>,
}

/// The whole result of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub pool: String,
    pub triggers: Vec<TriggerReport>,
    pub current: i32,
    pub desired: i32,
    pub explanation: String,
    /// Each schedule's window at the time of the check, or why it could not be computed.
    pub schedules: Result<Vec<ScheduleReport>, String>,
    /// The busy signal of `spec.scaleIn` (None without it).
    pub scale_in: Option<ScaleInReport>,
}

/// What the busy signal said when `check` read it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleInReport {
    /// What was read where (None when the signal could not be built).
    pub source: Option<String>,
    /// The busy pods' names, sorted; or why the signal could not be read.
    pub busy_pods: Result<Vec<String>, String>,
}

impl ScaleInReport {
    fn json(&self) -> serde_json::Value {
        match &self.busy_pods {
            Ok(pods) => serde_json::json!({ "busyPods": pods }),
            Err(e) => serde_json::json!({ "error": e }),
        }
    }

    fn text(&self) -> String {
        let mut s = String::from("busy signal");
        if let Some(src) = &self.source {
            s.push_str(&format!(": {src}"));
        }
        match &self.busy_pods {
            Ok(p) if p.is_empty() => s.push_str("\n  busy pods: none\n"),
            Ok(p) => s.push_str(&format!("\n  busy pods ({}): {}\n", p.len(), p.join(", "))),
            Err(e) => s.push_str(&format!("\n  error: {e}\n")),
        }
        s
    }

    /// The busy signal as the decision takes it.
    fn busy(&self) -> Busy {
        match &self.busy_pods {
            Ok(p) => Busy::Pods(i32::try_from(p.len()).unwrap_or(i32::MAX)),
            Err(e) => Busy::Failed(e.clone()),
        }
    }
}

/// Reads the busy signal of `spec.scaleIn` once (None without it). No
/// cluster here: the busy pods are every worker the signal reports.
async fn read_busy(
    pool: &WorkerPool,
    sources: &Sources,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
    namespace: &str,
) -> Option<ScaleInReport> {
    let timeout = read_timeout(pool.spec.polling_interval_seconds);
    let built = sources.build_busy_in(namespace, &pool.spec, secrets, timeout);
    let source = match built {
        Ok(None) => return None,
        Ok(Some(s)) => s,
        Err(e) => {
            return Some(ScaleInReport {
                source: None,
                busy_pods: Err(e.to_string()),
            })
        }
    };
    Some(ScaleInReport {
        source: Some(source.describe()),
        busy_pods: source
            .read()
            .await
            .map(|b| b.names())
            .map_err(|e| e.to_string()),
    })
}

/// One schedule's window when `check` ran; times in the schedule's zone, RFC 3339.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleReport {
    pub name: String,
    /// When the open window closes; None when it is closed.
    pub closes_at: Option<String>,
    pub next_opening: Option<String>,
}

/// The schedules' windows at `now_ms`, with times on their own wall clocks.
fn schedule_reports(windows: &[Window], now_ms: i64) -> Result<Vec<ScheduleReport>, String> {
    let fmt = |t: Option<jiff::Timestamp>, zone: &jiff::tz::TimeZone| {
        t.map(|t| {
            t.to_zoned(zone.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
    };
    let states = states_at(windows, now_ms)?;
    Ok(states
        .into_iter()
        .zip(windows)
        .map(|(st, w)| ScheduleReport {
            name: st.name,
            closes_at: fmt(st.closes_at, &w.zone),
            next_opening: fmt(st.next_opening, &w.zone),
        })
        .collect())
}

impl ScheduleReport {
    fn text(&self) -> String {
        let state = match &self.closes_at {
            Some(t) => format!("open until {t}"),
            None => "closed".to_string(),
        };
        let next = self
            .next_opening
            .as_deref()
            .unwrap_or("none within 8 years");
        format!("schedule {}: {state}; next opening {next}\n", self.name)
    }
}

impl Report {
    /// Every trigger was read.
    pub fn ok(&self) -> bool {
        self.triggers.iter().all(|t| t.error.is_none())
            && (self.scale_in.as_ref()).is_none_or(|s| s.busy_pods.is_ok())
    }

    /// The report as the one JSON object `--output json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = self.base_json();
        if let (Some(s), Some(o)) = (&self.scale_in, out.as_object_mut()) {
            o.insert("scaleIn".into(), s.json());
        }
        out
    }

    fn base_json(&self) -> serde_json::Value {
        serde_json::json!({
            "triggers": self.triggers.iter().map(|t| serde_json::json!({
                "name": t.name,
                "value": t.value,
                "proposedReplicas": t.proposed_replicas,
                "active": t.active,
                "error": t.error,
                "arrivalRate": t.drain.and_then(|d| d.arrival_rate),
                "estimatedDrainSeconds": t.drain.and_then(|d| d.drain_seconds),
                "throughput": t.drain.and_then(|d| d.measured),
            })).collect::<Vec<_>>(),
            "decision": {
                "current": self.current,
                "desired": self.desired,
                "explanation": self.explanation,
            },
            "schedules": match &self.schedules {
                Ok(list) => serde_json::json!(list.iter().map(|w| serde_json::json!({
                    "name": w.name,
                    "open": w.closes_at.is_some(),
                    "closesAt": w.closes_at,
                    "nextOpening": w.next_opening,
                })).collect::<Vec<_>>()),
                Err(e) => serde_json::json!({"error": e}),
            },
        })
    }

    /// The report as text lines.
    pub fn to_text(&self, policy: &Policy) -> String {
        let mut s = format!("WorkerPool {}\n", self.pool);
        for (t, p) in self.triggers.iter().zip(&policy.triggers) {
            s.push_str(&format!("trigger {}", t.name));
            if let Some(src) = &t.source {
                s.push_str(&format!(": {src}"));
            }
            s.push('\n');
            match (&t.error, t.value, t.proposed_replicas) {
                (Some(e), _, _) => s.push_str(&format!("  error: {e}\n")),
                (None, Some(v), Some(n)) => {
                    s.push_str(&format!(
                        "  value {v}: proposes {n} replicas {}; {}\n",
                        sizing_text(p, t.drain.as_ref()),
                        if t.active {
                            format!("active (> {})", p.activation_threshold)
                        } else {
                            format!("inactive (<= {})", p.activation_threshold)
                        }
                    ));
                    if let (Some(d), Some(est)) = (&p.drain, &t.drain) {
                        s.push_str(&drain_lines(d, est));
                    }
                }
                _ => s.push_str("  not read\n"),
            }
        }
        match &self.schedules {
            Ok(list) => list.iter().for_each(|w| s.push_str(&w.text())),
            Err(e) => s.push_str(&format!("schedules: {e}\n")),
        }
        if let Some(b) = &self.scale_in {
            s.push_str(&b.text());
        }
        s.push_str(&format!(
            "decision: {} -> {}\n  {}\n",
            self.current, self.desired, self.explanation
        ));
        s
    }
}

/// How a trigger sizes the pool, for the text report.
fn sizing_text(p: &TriggerPolicy, est: Option<&DrainEstimate>) -> String {
    match (&p.drain, est.and_then(|e| e.per_replica)) {
        (None, _) => format!("at {}/replica", p.target_per_replica),
        (Some(d), Some(rate)) => format!(
            "to drain within {}s at {}/s per replica",
            d.seconds,
            crate::api::rate_text(rate)
        ),
        (Some(d), None) => format!("to drain within {}s (no per-replica rate yet)", d.seconds),
    }
}

/// The drain estimate of one read: one read has no arrival rate yet (the
/// operator estimates it over `rateWindowSeconds` of polls).
fn drain_lines(d: &DrainPolicy, est: &DrainEstimate) -> String {
    let mut s = String::new();
    if let (Throughput::Measured, Some(m)) = (d.throughput, est.measured) {
        s.push_str(&format!(
            "  throughput: {}/s measured\n",
            crate::api::rate_text(m)
        ));
    }
    let arrivals = est.arrival_rate.map_or_else(
        || {
            format!(
                "unknown after one read (estimated over {}s of polls)",
                d.rate_window_ms / 1000
            )
        },
        |r| format!("{}/s", crate::api::rate_text(r)),
    );
    let drains = est.drain_seconds.map_or_else(
        || "unknown or never at the current replicas".to_string(),
        |t| format!("{}s at the current replicas", crate::api::whole_seconds(t)),
    );
    s.push_str(&format!(
        "  arrival rate: {arrivals}; estimated drain: {drains}\n"
    ));
    s
}

/// Builds every trigger's source, reads them all once (concurrently), and
/// decides. `current` defaults to minReplicas.
pub async fn check(
    pool: &WorkerPool,
    policy: &Policy,
    sources: &Sources,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
    current: Option<i32>,
    now_ms: i64,
) -> Report {
    let timeout = read_timeout(pool.spec.polling_interval_seconds);
    // The endpoint policy's SameNamespace rule needs a namespace: the
    // manifest's, else the one kubectl would use.
    let namespace = pool.metadata.namespace.as_deref().unwrap_or("default");
    let built: Vec<Result<Arc<dyn MetricSource>, SourceError>> = pool
        .spec
        .triggers
        .iter()
        .map(|t| sources.build_in(namespace, t, secrets, timeout))
        .collect();
    let reads: Vec<BoxFuture<'_, Measurement>> = built
        .iter()
        .map(|b| match b {
            Ok(src) => src.measure(),
            Err(e) => futures::future::ready(Measurement {
                value: Err(e.clone()),
                throughput: None,
            })
            .boxed(),
        })
        .collect();
    let (measured, scale_in) = futures::join!(
        join_all(reads),
        read_busy(pool, sources, secrets, namespace)
    );
    let readings: Vec<Reading> = (measured.iter())
        .map(|m| Reading::measured(&m.value, m.throughput))
        .collect();
    let current = current.unwrap_or(policy.min_replicas).max(0);
    let mut d = decide(policy, now_ms, current, &readings, &History::default());
    if let (Some(b), true) = (&scale_in, d.wants_busy_signal(policy)) {
        let h = History::default();
        d = decide_with_busy(policy, now_ms, current, &readings, &h, &b.busy());
    }
    let triggers = d
        .triggers
        .iter()
        .zip(&built)
        .map(|(t, b)| TriggerReport {
            name: t.name.clone(),
            source: b.as_ref().ok().map(|s| s.describe()),
            value: t.value,
            proposed_replicas: t.proposed,
            active: t.active,
            error: t.error.clone(),
            drain: t.drain,
        })
        .collect();
    let meta = &pool.metadata;
    let pool_name = match (&meta.namespace, &meta.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => "(unnamed)".into(),
    };
    Report {
        pool: pool_name,
        triggers,
        current: d.current,
        desired: d.desired,
        explanation: d.explanation,
        schedules: schedule_reports(&policy.schedules, now_ms),
        scale_in,
    }
}

/// The whole command: prints the report and returns the exit status.
pub fn run(
    file: &Path,
    secret_flags: &[SecretFlag],
    current: Option<i32>,
    format: Format,
    endpoints: EndpointPolicy,
) -> u8 {
    let (pool, policy) = match super::manifest::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            if format == Format::Json {
                // Scripts read stdout as one JSON object, whatever happened.
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            return 2;
        }
    };
    let secrets: BTreeMap<(String, String), Vec<u8>> = secret_flags
        .iter()
        .map(|s| ((s.name.clone(), s.key.clone()), s.value.clone()))
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting tokio: {e}");
            return 2;
        }
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let sources = Sources::with_policy(endpoints);
    let report = runtime.block_on(check(&pool, &policy, &sources, &secrets, current, now_ms));
    let out = match format {
        Format::Json => format!("{}\n", report.to_json()),
        Format::Text => report.to_text(&policy),
    };
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    if lock
        .write_all(out.as_bytes())
        .and_then(|()| lock.flush())
        .is_err()
    {
        return 2;
    }
    let failed: Vec<&TriggerReport> = report
        .triggers
        .iter()
        .filter(|t| t.error.is_some())
        .collect();
    for t in &failed {
        eprintln!(
            "error: trigger {} failed: {}",
            t.name,
            t.error.as_deref().unwrap_or_default()
        );
    }
    if let Some(Err(e)) = report.scale_in.as_ref().map(|s| &s.busy_pods) {
        eprintln!("error: busy signal failed: {e}");
    }
    if report.ok() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_triggers_report_their_estimate_in_text_and_json() {
        let text = "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {name: p, namespace: shop}
spec:
  scaleTargetRef: {name: w}
  maxReplicas: 10
  triggers:
    - name: payments
      redis: {url: 'redis://127.0.0.1:1/0', list: q}
      drain: {seconds: 60, throughputPerReplica: 2.5}
";
        let (_, policy) = crate::cli::manifest::parse(text).unwrap();
        let p = policy.triggers[0].drain.unwrap();
        let drain = Some(crate::decision::estimate_drain(&p, None, 0, 120.0, 2, None));
        let report = Report {
            pool: "shop/p".into(),
            triggers: vec![TriggerReport {
                name: "payments".into(),
                source: None,
                value: Some(120.0),
                proposed_replicas: Some(4),
                active: true,
                error: None,
                drain,
            }],
            schedules: Ok(Vec::new()),
            scale_in: None,
            current: 2,
            desired: 4,
            explanation: String::new(),
        };
        let json = report.to_json();
        let t = &json["triggers"][0];
        assert!(
            t["arrivalRate"].is_null() && t["estimatedDrainSeconds"].is_null(),
            "{json}"
        );
        let out = report.to_text(&policy);
        assert!(
            out.contains("to drain within 60s at 2.5/s per replica"),
            "{out}"
        );
        assert!(
            out.contains("arrival rate: unknown after one read (estimated over 60s of polls)"),
            "{out}"
        );
    }

    #[test]
    fn the_busy_signal_is_listed_in_text_and_json() {
        let (_, policy) = crate::cli::manifest::parse(
            "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {name: p}
spec:
  scaleTargetRef: {name: w}
  maxReplicas: 10
  triggers: [{name: q, redis: {url: 'redis://127.0.0.1:1/0', list: q}, targetPerReplica: 1}]
  scaleIn: {busySignal: {rq: {trigger: q}}}
",
        )
        .unwrap();
        let mut report = Report {
            pool: "p".into(),
            triggers: Vec::new(),
            schedules: Ok(Vec::new()),
            scale_in: Some(ScaleInReport {
                source: Some("RQ workers on redis://127.0.0.1:1/0".into()),
                busy_pods: Ok(vec!["w-a".into(), "w-b".into()]),
            }),
            current: 2,
            desired: 2,
            explanation: String::new(),
        };
        let text = report.to_text(&policy);
        assert!(
            text.contains(
                "busy signal: RQ workers on redis://127.0.0.1:1/0\n  busy pods (2): w-a, w-b\n"
            ),
            "{text}"
        );
        assert_eq!(
            report.to_json()["scaleIn"],
            serde_json::json!({"busyPods": ["w-a", "w-b"]})
        );
        report.scale_in = Some(ScaleInReport {
            source: None,
            busy_pods: Err("refused".into()),
        });
        assert_eq!(
            report.to_json()["scaleIn"],
            serde_json::json!({"error": "refused"})
        );
        assert!(!report.ok());
        assert!(report.to_text(&policy).contains("  error: refused\n"));
    }

    #[test]
    fn a_secret_file_loses_one_final_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        for (written, read) in [
            (&b"pw\n"[..], &b"pw"[..]),
            (b"pw\r\n", b"pw"),
            (b"pw\n\n", b"pw\n"),
            (b"pw", b"pw"),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, written).unwrap();
            let f = parse_secret_flag(&format!("s/k=@{}", path.display())).unwrap();
            assert_eq!(f.value, read, "{written:?}");
        }
    }

    #[test]
    fn secret_flags() {
        let f = parse_secret_flag("redis-auth/password=a=b/c").unwrap();
        assert_eq!(
            (f.name.as_str(), f.key.as_str()),
            ("redis-auth", "password")
        );
        assert_eq!(f.value, b"a=b/c");
        assert!(!format!("{f:?}").contains("a=b/c"));
        assert!(parse_secret_flag("nokey=x").is_err());
        assert!(parse_secret_flag("a/b").is_err());
        assert!(parse_secret_flag("/b=x").is_err());
        assert!(parse_secret_flag("a/b=@/nonexistent/file").is_err());
    }

    #[tokio::test]
    async fn prints_open_windows_and_next_openings() {
        // A port nothing listens on: the read fails fast, the schedules still print.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let yaml = format!(
            r#"apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {{name: p, namespace: shop}}
spec:
  scaleTargetRef: {{name: w}}
  maxReplicas: 20
  triggers:
    - {{name: q, redis: {{url: "redis://127.0.0.1:{port}/0", list: q}}, targetPerReplica: 10}}
  schedules:
    - {{name: business-hours, cron: "0 8 * * 1-5", durationSeconds: 36000, timeZone: Europe/Berlin, minReplicas: 5}}
    - {{name: weekend, cron: "0 0 * * 6", durationSeconds: 172800, minReplicas: 2}}
"#
        );
        let (pool, policy) = crate::cli::manifest::parse(&yaml).unwrap();
        // Monday 2026-11-30, 09:30 in Berlin.
        let now = jiff::Timestamp::from_second(1_796_027_400).unwrap();
        let r = check(
            &pool,
            &policy,
            &Sources::new(),
            &BTreeMap::new(),
            Some(1),
            now.as_millisecond(),
        )
        .await;
        let text = r.to_text(&policy);
        assert!(
            text.contains("schedule business-hours: open until 2026-11-30T18:00:00+01:00; next opening 2026-12-01T08:00:00+01:00"),
            "{text}"
        );
        assert!(
            text.contains("schedule weekend: closed; next opening 2026-12-05T00:00:00+00:00"),
            "{text}"
        );
        assert_eq!(r.desired, 5, "{}", r.explanation);
        let json = r.to_json();
        assert_eq!(json["schedules"][0]["open"], true);
        assert_eq!(
            json["schedules"][1]["nextOpening"],
            "2026-12-05T00:00:00+00:00"
        );
    }
}

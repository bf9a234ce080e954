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
use crate::decision::{decide, states_at, History, Policy, Reading, Window};
use crate::sources::{read_timeout, MetricSource, SourceError, Sources};

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
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        None => value.as_bytes().to_vec(),
    };
    Ok(SecretFlag {
        name: name.to_string(),
        key: key.to_string(),
        value,
    })
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
    }

    /// The report as the one JSON object `--output json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "triggers": self.triggers.iter().map(|t| serde_json::json!({
                "name": t.name,
                "value": t.value,
                "proposedReplicas": t.proposed_replicas,
                "active": t.active,
                "error": t.error,
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
                (None, Some(v), Some(n)) => s.push_str(&format!(
                    "  value {v}: proposes {n} replicas at {}/replica; {}\n",
                    p.target_per_replica,
                    if t.active {
                        format!("active (> {})", p.activation_threshold)
                    } else {
                        format!("inactive (<= {})", p.activation_threshold)
                    }
                )),
                _ => s.push_str("  not read\n"),
            }
        }
        match &self.schedules {
            Ok(list) => list.iter().for_each(|w| s.push_str(&w.text())),
            Err(e) => s.push_str(&format!("schedules: {e}\n")),
        }
        s.push_str(&format!(
            "decision: {} -> {}\n  {}\n",
            self.current, self.desired, self.explanation
        ));
        s
    }
}

/// Builds every trigger's source, reads them all once (concurrently), and
/// decides. `current` defaults to minReplicas.
pub async fn check(
    pool: &WorkerPool,
    policy: &Policy,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
    current: Option<i32>,
    now_ms: i64,
) -> Report {
    let sources = Sources::new();
    let timeout = read_timeout(pool.spec.polling_interval_seconds);
    let built: Vec<Result<Arc<dyn MetricSource>, SourceError>> = pool
        .spec
        .triggers
        .iter()
        .map(|t| sources.build(t, secrets, timeout))
        .collect();
    let reads: Vec<BoxFuture<'_, Result<f64, SourceError>>> = built
        .iter()
        .map(|b| match b {
            Ok(src) => src.read().boxed(),
            Err(e) => futures::future::ready(Err(e.clone())).boxed(),
        })
        .collect();
    let results = join_all(reads).await;
    let readings: Vec<Reading> = results.iter().map(Reading::of).collect();
    let current = current.unwrap_or(policy.min_replicas).max(0);
    let d = decide(policy, now_ms, current, &readings, &History::default());
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
    }
}

/// The whole command: prints the report and returns the exit status.
pub fn run(file: &Path, secret_flags: &[SecretFlag], current: Option<i32>, format: Format) -> u8 {
    let (pool, policy) = match super::manifest::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
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
    let now_ms = chrono::Utc::now().timestamp_millis();
    let report = runtime.block_on(check(&pool, &policy, &secrets, current, now_ms));
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
    if failed.is_empty() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Metric sources: one module per source behind one
//! trait, [`MetricSource`], as KEDA's `pkg/scalers/` does.
//!
//! A source is built once per spec generation by [`Sources::build`] (cheap,
//! synchronous, no I/O) and read every poll. Connections live in
//! [`Sources`], shared by every source that names the same server, so the
//! number of connections and round trips grows with the number of servers,
//! not the number of WorkerPools.
//!
//! Adding a source: a new file implementing a `build` function with the
//! [`Builder`] signature, and one line in [`REGISTRY`].
//!
//! Secrets: values read through [`SecretLookup`] are kept only inside the
//! built source (to authenticate); no error, `Debug` output or
//! [`MetricSource::describe`] text contains them.

mod busy;
pub mod policy;
mod prometheus;
mod redis;
pub use redis::SlotHold;
mod throughput;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{SecretKeyRef, Trigger};
pub use busy::{
    BusyFuture, BusyPods, BusySource, CeleryBusy, CeleryInspect, InspectFuture, MAX_WORKERS,
};
use policy::EndpointPolicy;
pub use redis::celery_inspect::{
    pod_hostname, runs_in_pod, worker_host, BusyWorkers, CeleryInspector, InspectError, WorkerLoad,
    DEFAULT_INSPECT_WAIT,
};

/// What [`MetricSource::read`] returns.
pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<f64, SourceError>> + Send + 'a>>;

/// What [`MetricSource::measure`] returns.
pub type MeasureFuture<'a> = Pin<Box<dyn Future<Output = Measurement> + Send + 'a>>;

/// One poll's read of a trigger: its value, and for a drain trigger with
/// `throughputFrom` the measured completions per second (then a failed
/// throughput read makes `value` an error).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub value: Result<f64, SourceError>,
    pub throughput: Option<f64>,
}

impl Measurement {
    fn failed(e: SourceError) -> Self {
        Measurement {
            value: Err(e),
            throughput: None,
        }
    }
}

/// A trigger's metric source, built once per spec generation, read every poll.
pub trait MetricSource: Send + Sync + std::fmt::Debug {
    /// Reads the current value once, within the timeout the source was built with.
    fn read(&self) -> ReadFuture<'_>;
    /// Reads everything the decision needs from this trigger once: the
    /// value, plus the throughput for a drain trigger that measures it.
    fn measure(&self) -> MeasureFuture<'_> {
        Box::pin(async move {
            Measurement {
                value: self.read().await,
                throughput: None,
            }
        })
    }
    /// What is read where, e.g. `LLEN orders on redis://10.0.0.1:6379/0`.
    /// Never contains a secret (URLs are shown without credentials).
    fn describe(&self) -> String;
    /// Something the user should know about the last read although it
    /// succeeded, e.g. that it had to use a method that loads the server
    /// (one line, never a Secret's value). `None` when all is well.
    fn warning(&self) -> Option<String> {
        None
    }
}

/// Why a read (or building a source) failed. `Display` is one line that
/// names what was read where, and never contains a Secret's value: it ends
/// up in status, Events and logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the read timeout.
    #[error("{target}: no answer within {}", fmt_duration(*.after))]
    Timeout { target: String, after: Duration },
    /// The server could not be reached, or dropped the connection (includes TLS failures).
    #[error("{0}")]
    Connection(String),
    /// What the trigger names does not exist (a stream, a consumer group).
    #[error("{0}")]
    NotFound(String),
    /// The server answered, but not with one usable number: a Prometheus
    /// error, NaN/Inf, several series, an empty result, a key of the wrong type.
    #[error("{0}")]
    BadResult(String),
    /// The server refused the credentials or the command (wrong password, ACL).
    #[error("{0}")]
    Auth(String),
    /// A Secret (or one of its keys) the trigger names is missing.
    #[error("secret {name:?} key {key:?}: {reason}")]
    SecretMissing {
        name: String,
        key: String,
        reason: String,
    },
    /// The trigger cannot be built: an unusable URL, CA bundle, header.
    #[error("{0}")]
    Config(String),
    /// The endpoint policy refuses the host (no connection was made).
    #[error("{0}")]
    NotAllowed(String),
}

impl SourceError {
    /// Every value [`SourceError::metric_label`] can return.
    pub const METRIC_LABELS: [&'static str; 8] = [
        "timeout",
        "connection",
        "not_found",
        "bad_result",
        "auth",
        "secret_missing",
        "config",
        "not_allowed",
    ];

    /// The `reason` label of `workerpool_trigger_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Timeout { .. } => "timeout",
            SourceError::Connection(_) => "connection",
            SourceError::NotFound(_) => "not_found",
            SourceError::BadResult(_) => "bad_result",
            SourceError::Auth(_) => "auth",
            SourceError::SecretMissing { .. } => "secret_missing",
            SourceError::Config(_) => "config",
            SourceError::NotAllowed(_) => "not_allowed",
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Resolves Secret references to their bytes. The controller supplies one
/// backed by its Secret cache (in the pool's namespace); `check` one backed
/// by `--secret` flags.
pub trait SecretLookup: Send + Sync {
    fn get(&self, namespace_free_ref: &SecretKeyRef) -> Result<Vec<u8>, SourceError>;
}

/// `(secret name, key) -> value`: handy for tests and `check`.
impl SecretLookup for BTreeMap<(String, String), Vec<u8>> {
    fn get(&self, r: &SecretKeyRef) -> Result<Vec<u8>, SourceError> {
        if let Some(v) = BTreeMap::get(self, &(r.name.clone(), r.key.clone())) {
            return Ok(v.clone());
        }
        let known_secret = self.keys().any(|(name, _)| name == &r.name);
        Err(SourceError::SecretMissing {
            name: r.name.clone(),
            key: r.key.clone(),
            reason: if known_secret {
                "key not found in secret".into()
            } else {
                "secret not found".into()
            },
        })
    }
}

/// Longest a read may take when the polling interval allows it.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The read timeout for a pool: `min(2 s, polling interval)`, so a slow
/// server never makes polls pile up behind each other.
pub fn read_timeout(polling_interval_seconds: i32) -> Duration {
    let interval = Duration::from_secs(u64::try_from(polling_interval_seconds.max(1)).unwrap_or(1));
    interval.min(DEFAULT_READ_TIMEOUT)
}

/// Shared state of every source: one connection per Redis endpoint, one
/// HTTP client (with its keep-alive pool). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct Sources {
    inner: Arc<Shared>,
}

struct Shared {
    redis: redis::Endpoints,
    http: prometheus::HttpClient,
    policy: EndpointPolicy,
}

impl Default for Sources {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("redis_endpoints", &self.redis_endpoints())
            .finish()
    }
}

/// Builds the source of a trigger, or `None` when the trigger is not of
/// this kind.
type Builder = fn(
    &Sources,
    &Trigger,
    &dyn SecretLookup,
    Duration,
) -> Option<Result<Arc<dyn MetricSource>, SourceError>>;

/// Every kind of source. [`Sources::build`] uses the first that takes the trigger.
const REGISTRY: &[Builder] = &[redis::build, prometheus::build];

impl Sources {
    /// Sources under the open endpoint policy (`Any` + the built-in deny list).
    pub fn new() -> Self {
        Self::with_policy(EndpointPolicy::open())
    }

    /// Sources whose every connection `policy` allows first.
    pub fn with_policy(policy: EndpointPolicy) -> Self {
        install_crypto_provider();
        Sources {
            inner: Arc::new(Shared {
                redis: redis::Endpoints::default(),
                http: prometheus::HttpClient::new(policy.clone()),
                policy,
            }),
        }
    }

    /// [`Sources::build`] for a pool of `namespace`: the hosts the trigger
    /// names are checked against the endpoint policy first.
    pub fn build_in(
        &self,
        namespace: &str,
        trigger: &Trigger,
        secrets: &dyn SecretLookup,
        timeout: Duration,
    ) -> Result<Arc<dyn MetricSource>, SourceError> {
        for (field, host) in policy::written_hosts(trigger)? {
            self.inner.policy.check_written(namespace, field, &host)?;
        }
        self.build(trigger, secrets, timeout)
    }

    /// Builds the source for a trigger. Synchronous and cheap: connections
    /// are made lazily on first read and re-made by themselves after a drop.
    /// Secrets are looked up now; a rotated Secret needs a rebuild (the
    /// controller rebuilds when a named Secret's resourceVersion changes).
    pub fn build(
        &self,
        trigger: &Trigger,
        secrets: &dyn SecretLookup,
        timeout: Duration,
    ) -> Result<Arc<dyn MetricSource>, SourceError> {
        let backlog = REGISTRY
            .iter()
            .find_map(|build| build(self, trigger, secrets, timeout))
            .unwrap_or_else(|| {
                Err(SourceError::Config(
                    "the trigger sets no source (redis or prometheus)".into(),
                ))
            })?;
        throughput::wrap(self, trigger, backlog, secrets, timeout)
    }

    /// Asks the Celery workers on the broker of `trigger` (a Redis trigger
    /// of a pool in `namespace`) which are busy; see [`CeleryInspector`].
    /// Shares the trigger's connection; hosts are checked against the
    /// endpoint policy as for [`Sources::build_in`]. `timeout` bounds each
    /// request to Redis. No I/O until the first call.
    pub fn celery_inspector(
        &self,
        namespace: &str,
        trigger: &Trigger,
        secrets: &dyn SecretLookup,
        timeout: Duration,
    ) -> Result<CeleryInspector, SourceError> {
        for (field, host) in policy::written_hosts(trigger)? {
            self.inner.policy.check_written(namespace, field, &host)?;
        }
        redis::celery_inspector(self, trigger, secrets, timeout)
    }

    /// Holds every Redis endpoint's batch of reads until the hold is
    /// dropped, then sends it at once: the poll engine holds them while it
    /// starts one slot's polls, so each endpoint gets one pipeline per slot.
    pub fn hold_batches(&self) -> SlotHold {
        self.inner.redis.hold_batches()
    }

    /// Number of distinct Redis endpoints with a live or pending connection
    /// (endpoints whose sources were all dropped are forgotten, with their connection).
    pub fn redis_endpoints(&self) -> usize {
        self.inner.redis.live()
    }

    /// Requests sent to Redis by every source built from this `Sources`
    /// since it was made, over every endpoint (dropped ones included): one
    /// per pipeline, however many reads it batches, or per lone command
    /// (a script load, an `HSCAN` page, the lookup that explains a wrong
    /// type). Connection set-up (`HELLO`/`AUTH`/`SELECT`) is not counted.
    /// The difference over a polling interval is the round trips per tick.
    pub fn redis_round_trips(&self) -> u64 {
        self.inner.redis.round_trips()
    }

    /// [`Sources::redis_round_trips`] of each live endpoint so far, keyed by
    /// server as `redis[s]://host:port/db` (never with credentials;
    /// endpoints differing only in credentials or TLS settings are summed).
    pub fn redis_round_trips_by_server(&self) -> BTreeMap<String, u64> {
        self.inner.redis.round_trips_by_server()
    }
}

/// rustls needs a process-wide crypto provider when more than one is
/// linked (dependencies disagree): without one, the first TLS connection
/// would panic. `main` installs ring too; this covers library users and
/// tests. A provider someone installed first is kept.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Reads a Secret's value as UTF-8 text (passwords, user names, tokens).
fn secret_text(secrets: &dyn SecretLookup, r: &SecretKeyRef) -> Result<String, SourceError> {
    let bytes = secrets.get(r)?;
    String::from_utf8(bytes).map_err(|_| SourceError::SecretMissing {
        name: r.name.clone(),
        key: r.key.clone(),
        reason: "value is not UTF-8 text".into(),
    })
}

/// Replaces every secret value in a text (an error message from a server
/// or a library) with `<redacted>`: servers and proxies sometimes echo what
/// they were sent. Values shorter than 4 bytes are left alone, as
/// redacting them would garble every message.
#[derive(Clone, Default)]
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first, so a secret containing another is redacted whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// A password, and the `Authorization: Basic` value carrying it (a
    /// server or proxy may echo the header back in an error body).
    fn add_basic_auth(&mut self, username: &str, password: &str) {
        use base64::Engine as _;
        self.add(password);
        let header =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.add(&header);
    }

    /// One line, with every known secret replaced.
    fn clean(&self, text: &str) -> String {
        let mut s = one_line(text);
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "<redacted>");
            }
        }
        s
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

pub(crate) use crate::text::{one_line, truncate};

/// Runs a read with the source's timeout.
async fn with_timeout<T, F>(target: &str, after: Duration, read: F) -> Result<T, SourceError>
where
    F: Future<Output = Result<T, SourceError>>,
{
    match tokio::time::timeout(after, read).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Timeout {
            target: target.to_string(),
            after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_timeout_is_at_most_two_seconds_and_the_interval() {
        assert_eq!(read_timeout(1), Duration::from_secs(1));
        assert_eq!(read_timeout(5), Duration::from_secs(2));
        assert_eq!(read_timeout(0), Duration::from_secs(1));
        assert_eq!(read_timeout(-3), Duration::from_secs(1));
    }

    #[test]
    fn map_lookup_names_secret_and_key() {
        let mut m = BTreeMap::new();
        m.insert(
            ("auth".to_string(), "password".to_string()),
            b"s3cret".to_vec(),
        );
        let ok = SecretLookup::get(
            &m,
            &SecretKeyRef {
                name: "auth".into(),
                key: "password".into(),
            },
        );
        assert_eq!(ok.unwrap(), b"s3cret");
        let e = SecretLookup::get(
            &m,
            &SecretKeyRef {
                name: "auth".into(),
                key: "user".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.metric_label(), "secret_missing");
        assert_eq!(
            e.to_string(),
            "secret \"auth\" key \"user\": key not found in secret"
        );
        let e = SecretLookup::get(
            &m,
            &SecretKeyRef {
                name: "other".into(),
                key: "user".into(),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("secret not found"), "{e}");
    }

    #[test]
    fn redactor_hides_secrets_and_joins_lines() {
        let mut r = Redactor::default();
        r.add("hunter22");
        r.add("abc");
        assert_eq!(
            r.clean("bad token hunter22\n  try again (abc)"),
            "bad token <redacted> try again (abc)"
        );
        assert!(!format!("{r:?}").contains("hunter22"));
    }

    #[test]
    fn timeout_display_is_one_line() {
        let e = SourceError::Timeout {
            target: "LLEN q on redis://h:6379/0".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "LLEN q on redis://h:6379/0: no answer within 1500ms"
        );
        assert_eq!(e.metric_label(), "timeout");
    }
}

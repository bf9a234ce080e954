//! Redis queue depth (DESIGN.md 3.1, 3.3): `list`, `lists`, `stream`,
//! `sortedSet`; `celery` is in [`super::celery`] and uses the same endpoints.
//!
//! # One connection per endpoint
//! An endpoint is everything that makes a connection different: the URL
//! (scheme, host, port, db), user, password and TLS settings. Every source
//! naming the same endpoint shares one multiplexed connection, so concurrent
//! reads from many pools are pipelined over it: round trips per tick scale
//! with the number of Redis servers, not the number of pools.
//!
//! The connection is made on the first read (building a source does no
//! I/O), shared by concurrent first readers, and made again after it is
//! lost. A read that finds its connection dead (reset, closed by the server
//! or a proxy's idle timeout) reconnects and retries once within its
//! timeout: reads are idempotent, and a failed poll is costly (it blocks
//! scale-down and raises an Event). A read that times out drops the
//! connection too, since a half-open TCP connection would otherwise time
//! out every read until the kernel gives up on it; concurrent timeouts
//! cause one reconnect, not one each. No lock is held across an await.
//!
//! Endpoints are held weakly: when the last source naming one is dropped
//! (pool deleted, spec or Secret changed), its connection closes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, Value};
use futures::future::{BoxFuture, FutureExt, Shared};

use super::{secret_text, MetricSource, ReadFuture, Redactor, SecretLookup, SourceError, Sources};
use crate::api::{RedisTrigger, StreamMeasureKind, Trigger};

/// The registry's entry point: builds a Redis source when `trigger.redis` is set.
pub(super) fn build(
    sources: &Sources,
    trigger: &Trigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Option<Result<Arc<dyn MetricSource>, SourceError>> {
    let r = trigger.redis.as_ref()?;
    Some(build_redis(sources, r, secrets, timeout))
}

fn build_redis(
    sources: &Sources,
    r: &RedisTrigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn MetricSource>, SourceError> {
    let endpoint = sources.inner.redis.get(r, secrets)?;
    if let Some(c) = &r.celery {
        return Ok(Arc::new(super::celery::CelerySource::new(
            endpoint,
            c.queue.clone(),
            c.include_in_flight,
            timeout,
        )));
    }
    let measure = if let Some(l) = &r.list {
        Measure::List(l.clone())
    } else if let Some(ls) = &r.lists {
        if ls.is_empty() {
            return Err(SourceError::Config("redis.lists names no list".into()));
        }
        Measure::Lists(ls.clone())
    } else if let Some(s) = &r.stream {
        match (s.measure, &s.group) {
            (StreamMeasureKind::Length, _) => Measure::StreamLength(s.name.clone()),
            (kind, Some(g)) if !g.is_empty() => Measure::StreamGroup {
                stream: s.name.clone(),
                group: g.clone(),
                kind,
            },
            (kind, _) => {
                return Err(SourceError::Config(format!(
                    "redis.stream.group is required for measure {kind:?}"
                )))
            }
        }
    } else if let Some(z) = &r.sorted_set {
        Measure::SortedSet {
            key: z.name.clone(),
            due_only: z.due_only,
        }
    } else {
        return Err(SourceError::Config(
            "redis sets none of list, lists, celery, stream, sortedSet".into(),
        ));
    };
    Ok(Arc::new(RedisSource {
        what: describe(&measure, endpoint.display()),
        endpoint,
        measure,
        timeout,
    }))
}

/// Every Redis endpoint in use, by what distinguishes its connection.
#[derive(Default)]
pub(super) struct Endpoints {
    map: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
}

impl Endpoints {
    /// The endpoint for a trigger's connection settings: the existing one
    /// if any source still holds it, else a new (not yet connected) one.
    fn get(
        &self,
        r: &RedisTrigger,
        secrets: &dyn SecretLookup,
    ) -> Result<Arc<Endpoint>, SourceError> {
        let settings = Settings::resolve(r, secrets)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = map.get(&settings.key).and_then(Weak::upgrade) {
            return Ok(ep);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let key = settings.key.clone();
        let ep = Arc::new(Endpoint::new(settings)?);
        map.insert(key, Arc::downgrade(&ep));
        Ok(ep)
    }

    pub(super) fn live(&self) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.len()
    }
}

/// What makes two connections different. Holds the password (it must: two
/// passwords are two connections) but never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct EndpointKey {
    /// `redis[s]://host:port/db`, without credentials.
    display: String,
    /// The URL's query (e.g. `protocol=resp3`), which changes the connection.
    query: String,
    username: Option<String>,
    password: Option<String>,
    insecure: bool,
    ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointKey")
            .field("display", &self.display)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("insecure", &self.insecure)
            .field("ca", &self.ca.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A trigger's connection settings with its Secrets resolved.
struct Settings {
    key: EndpointKey,
    /// The URL handed to the redis crate: credentials removed (they are set
    /// separately), `#insecure` added for insecureSkipVerify.
    url: String,
}

impl Settings {
    fn resolve(r: &RedisTrigger, secrets: &dyn SecretLookup) -> Result<Settings, SourceError> {
        let mut url = url::Url::parse(&r.url)
            .map_err(|e| SourceError::Config(format!("redis.url is not a valid URL ({e})")))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            s => {
                return Err(SourceError::Config(format!(
                    "redis.url scheme must be redis:// or rediss://, got {s}://"
                )))
            }
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err(SourceError::Config("redis.url names no host".into())),
        };
        let port = url.port().unwrap_or(6379);
        let db_text = url.path().trim_start_matches('/');
        let db: i64 = if db_text.is_empty() {
            0
        } else {
            db_text.parse().map_err(|_| {
                SourceError::Config(format!(
                    "redis.url database must be a number, got {:?}",
                    super::truncate(db_text, 20)
                ))
            })?
        };
        // Credentials in the URL itself, decoded as the redis crate decodes them.
        let (url_user, url_password) = {
            let info = r.url.as_str().into_connection_info().map_err(|e| {
                SourceError::Config(format!("redis.url is not usable ({})", e.category()))
            })?;
            let s = info.redis_settings();
            (
                s.username().map(str::to_string),
                s.password().map(str::to_string),
            )
        };
        let username = match &r.username_secret_ref {
            Some(s) => Some(secret_text(secrets, s)?),
            None => url_user.filter(|u| !u.is_empty()),
        };
        let password = match &r.password_secret_ref {
            Some(s) => Some(secret_text(secrets, s)?),
            None => url_password.filter(|p| !p.is_empty()),
        };
        let tls_settings = r.tls.clone().unwrap_or_default();
        if !tls && r.tls.is_some() {
            return Err(SourceError::Config(
                "redis.tls is set but the URL is redis:// (use rediss:// for TLS)".into(),
            ));
        }
        let ca = match &tls_settings.ca_secret_ref {
            Some(s) => {
                let pem = secrets.get(s)?;
                check_ca_pem(&pem, &s.name, &s.key)?;
                Some(pem)
            }
            None => None,
        };
        let insecure = tls && tls_settings.insecure_skip_verify;

        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(insecure.then_some("insecure"));
        // host_str keeps an IPv6 address in brackets, as a URL needs.
        let display = format!("{}://{}:{}/{}", url.scheme(), host, port, db);
        Ok(Settings {
            key: EndpointKey {
                display,
                query: url.query().unwrap_or_default().to_string(),
                username,
                password,
                insecure,
                ca,
            },
            url: url.to_string(),
        })
    }
}

/// A CA bundle must hold at least one PEM certificate; anything else would
/// only show up later as "unknown issuer" on every read.
fn check_ca_pem(pem: &[u8], name: &str, key: &str) -> Result<(), SourceError> {
    let mut reader = std::io::BufReader::new(pem);
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        if cert.is_err() {
            return Err(SourceError::Config(format!(
                "redis.tls.caSecretRef (secret {name:?} key {key:?}) is not a valid PEM certificate bundle"
            )));
        }
        count += 1;
    }
    if count == 0 {
        return Err(SourceError::Config(format!(
            "redis.tls.caSecretRef (secret {name:?} key {key:?}) holds no PEM certificate"
        )));
    }
    Ok(())
}

/// One Redis endpoint and its (lazily made) shared connection.
pub(super) struct Endpoint {
    display: String,
    client: Client,
    slot: Mutex<Slot>,
    next_id: AtomicU64,
    redact: Redactor,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, SourceError>>>;

enum Slot {
    Idle,
    Connecting(u64, Connecting),
    Ready(u64, MultiplexedConnection),
}

/// A connection handed to one read: `id` names it for [`Endpoint::drop_connection`];
/// `reused` says it was made before this read (so a dead one is worth one retry).
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) conn: MultiplexedConnection,
    pub(super) reused: bool,
}

/// How long making a connection may take, whatever the read timeout: a
/// connect attempt is shared by every reader and outlives a timed-out one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    fn new(settings: Settings) -> Result<Endpoint, SourceError> {
        let k = &settings.key;
        let mut info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| SourceError::Config(format!("{}: {}", k.display, e.category())))?;
        let mut rs = info.redis_settings().clone();
        if let Some(u) = &k.username {
            rs = rs.set_username(u);
        }
        if let Some(p) = &k.password {
            rs = rs.set_password(p);
        }
        info = info.set_redis_settings(rs);
        let client = match &k.ca {
            Some(pem) if !k.insecure => Client::build_with_tls(
                info,
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => Client::open(info),
        }
        .map_err(|e| {
            SourceError::Config(format!(
                "{}: cannot set up the client ({})",
                k.display,
                e.category()
            ))
        })?;
        let mut redact = Redactor::default();
        for s in [&k.password, &k.username].into_iter().flatten() {
            redact.add(s);
        }
        Ok(Endpoint {
            display: k.display.clone(),
            client,
            slot: Mutex::new(Slot::Idle),
            next_id: AtomicU64::new(1),
            redact,
        })
    }

    pub(super) fn display(&self) -> &str {
        &self.display
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared connection, made first if there is none. Concurrent
    /// callers share one connect attempt.
    pub(super) async fn connection(&self) -> Result<Conn, SourceError> {
        let (id, connecting) = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Ready(id, c) => {
                    return Ok(Conn {
                        id: *id,
                        conn: c.clone(),
                        reused: true,
                    })
                }
                Slot::Connecting(id, f) => (*id, f.clone()),
                Slot::Idle => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let f = self.connect();
                    *slot = Slot::Connecting(id, f.clone());
                    (id, f)
                }
            }
        };
        let result = connecting.await;
        let mut slot = self.slot();
        if matches!(&*slot, Slot::Connecting(current, _) if *current == id) {
            *slot = match &result {
                Ok(c) => Slot::Ready(id, c.clone()),
                // The next read tries again (a poll later: natural backoff).
                Err(_) => Slot::Idle,
            };
        }
        result.map(|conn| Conn {
            id,
            conn,
            reused: false,
        })
    }

    /// Starts a connect attempt on its own task, so it completes even if
    /// the read that started it times out.
    fn connect(&self) -> Connecting {
        let client = self.client.clone();
        let redact = self.redact.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Each read has its own timeout; the connection must not add another.
            .set_response_timeout(None);
        let task = tokio::spawn(async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| connect_error(&redact, &e))
        });
        async move {
            task.await.unwrap_or_else(|_| {
                Err(SourceError::Connection(
                    "connect task ended unexpectedly".into(),
                ))
            })
        }
        .boxed()
        .shared()
    }

    /// Forgets connection `id` (if it is still the current one), so the next
    /// read makes a new one.
    pub(super) fn drop_connection(&self, id: u64) {
        let mut slot = self.slot();
        if matches!(&*slot, Slot::Ready(current, _) if *current == id) {
            *slot = Slot::Idle;
        }
    }

    /// Runs `op` on the shared connection within `timeout`, reconnecting and
    /// retrying once when a reused connection turns out dead. `what` is the
    /// source's description, for errors.
    pub(super) async fn run<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        op: F,
    ) -> Result<T, SourceError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, OpError>>,
    {
        let used = AtomicU64::new(0);
        let attempt = async {
            for _ in 0..2 {
                let c = self.connection().await.map_err(|e| in_context(what, e))?;
                used.store(c.id, Ordering::Relaxed);
                match op(c.conn).await {
                    Ok(v) => return Ok(v),
                    Err(OpError::Redis(e)) if connection_lost(&e) => {
                        self.drop_connection(c.id);
                        if !c.reused {
                            return Err(self.redis_error(what, &e));
                        }
                    }
                    Err(OpError::Redis(e)) => return Err(self.redis_error(what, &e)),
                    Err(OpError::Source(e)) => return Err(e),
                }
            }
            Err(SourceError::Connection(format!(
                "{what}: connection lost twice in a row"
            )))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => {
                let id = used.load(Ordering::Relaxed);
                if id != 0 {
                    self.drop_connection(id);
                }
                Err(SourceError::Timeout {
                    target: what.to_string(),
                    after: timeout,
                })
            }
        }
    }

    /// Maps a command's error to a [`SourceError`], one line, secrets removed.
    pub(super) fn redis_error(&self, what: &str, e: &RedisError) -> SourceError {
        let text = self.redact.clean(&e.to_string());
        if is_auth_error(e) {
            SourceError::Auth(format!("{what}: {text}"))
        } else if connection_lost(e) || e.is_timeout() || e.is_connection_refusal() {
            SourceError::Connection(format!("{what}: {text}"))
        } else {
            SourceError::BadResult(format!("{what}: {text}"))
        }
    }
}

/// A connect failure is shared by every source on the endpoint, so it
/// names the endpoint; each reader puts what it was reading in front.
fn in_context(what: &str, e: SourceError) -> SourceError {
    match e {
        SourceError::Connection(m) => SourceError::Connection(format!("{what}: {m}")),
        SourceError::Auth(m) => SourceError::Auth(format!("{what}: {m}")),
        other => other,
    }
}

fn connect_error(redact: &Redactor, e: &RedisError) -> SourceError {
    let text = redact.clean(&e.to_string());
    if is_auth_error(e) {
        SourceError::Auth(format!("authentication failed: {text}"))
    } else {
        SourceError::Connection(format!("cannot connect: {text}"))
    }
}

fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ::redis::ErrorKind::AuthenticationFailed
        || ["WRONGPASS", "NOAUTH", "NOPERM"]
            .iter()
            .any(|c| has_code(e, c))
}

/// Whether the server answered with error `code` (e.g. `WRONGTYPE`), for a
/// single command or any command of a pipeline: the redis crate gives a
/// pipeline's error no `code()` unless its first failure is of a kind it
/// knows (`WRONGTYPE` is not one), so the codes are looked for inside it.
pub(super) fn has_code(e: &RedisError, code: &str) -> bool {
    e.code() == Some(code)
        || e.clone()
            .into_server_errors()
            .is_some_and(|items| items.iter().any(|(_, s)| s.code() == code))
}

/// The connection itself is gone (as opposed to a command error).
fn connection_lost(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// What a read operation can fail with: a Redis error (mapped and maybe
/// retried by [`Endpoint::run`]) or an already-explained error.
pub(super) enum OpError {
    Redis(RedisError),
    Source(SourceError),
}

impl From<RedisError> for OpError {
    fn from(e: RedisError) -> Self {
        OpError::Redis(e)
    }
}

/// A key in a description or error: control characters escaped.
pub(super) fn key_text(k: &str) -> String {
    k.escape_debug().to_string()
}

/// What a Redis source reads.
#[derive(Debug, Clone)]
enum Measure {
    List(String),
    Lists(Vec<String>),
    StreamGroup {
        stream: String,
        group: String,
        kind: StreamMeasureKind,
    },
    StreamLength(String),
    SortedSet {
        key: String,
        due_only: bool,
    },
}

/// A `list`, `lists`, `stream` or `sortedSet` trigger.
#[derive(Debug)]
struct RedisSource {
    endpoint: Arc<Endpoint>,
    measure: Measure,
    timeout: Duration,
    /// [`describe`]'s text, made once: errors need it, and formatting it on
    /// every read was a tenth of the cost of a read (examples/redis_read_bench.rs).
    what: String,
}

impl MetricSource for RedisSource {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let what = self.what.as_str();
            self.endpoint
                .run(what, self.timeout, |conn| self.read_once(conn, what))
                .await
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// What a source reads where, e.g. `LLEN orders on redis://h:6379/0`.
fn describe(measure: &Measure, on: &str) -> String {
    match measure {
        Measure::List(k) => format!("LLEN {} on {on}", key_text(k)),
        Measure::Lists(ks) => format!(
            "sum of LLEN {} on {on}",
            ks.iter()
                .map(|k| key_text(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Measure::StreamGroup {
            stream,
            group,
            kind,
        } => format!(
            "{} of group {} on stream {} on {on}",
            match kind {
                StreamMeasureKind::Lag => "lag",
                StreamMeasureKind::Pending => "pending",
                StreamMeasureKind::Length => "length",
            },
            key_text(group),
            key_text(stream)
        ),
        Measure::StreamLength(k) => format!("XLEN {} on {on}", key_text(k)),
        Measure::SortedSet { key, due_only } => {
            if *due_only {
                format!("ZCOUNT {} -inf now on {on}", key_text(key))
            } else {
                format!("ZCARD {} on {on}", key_text(key))
            }
        }
    }
}

impl RedisSource {
    async fn read_once(&self, mut conn: MultiplexedConnection, what: &str) -> Result<f64, OpError> {
        match &self.measure {
            Measure::List(k) => {
                let n: Result<i64, RedisError> =
                    ::redis::cmd("LLEN").arg(k).query_async(&mut conn).await;
                Ok(checked(n, &mut conn, what, &[k], "list").await? as f64)
            }
            Measure::Lists(ks) => {
                let mut pipe = ::redis::pipe();
                for k in ks {
                    pipe.cmd("LLEN").arg(k);
                }
                let n: Result<Vec<i64>, RedisError> = pipe.query_async(&mut conn).await;
                let keys: Vec<&String> = ks.iter().collect();
                let v = checked(n, &mut conn, what, &keys, "list").await?;
                Ok(v.iter().sum::<i64>() as f64)
            }
            Measure::SortedSet { key, due_only } => {
                let n: Result<i64, RedisError> = if *due_only {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    ::redis::cmd("ZCOUNT")
                        .arg(key)
                        .arg("-inf")
                        .arg(format!("{now:.3}"))
                        .query_async(&mut conn)
                        .await
                } else {
                    ::redis::cmd("ZCARD").arg(key).query_async(&mut conn).await
                };
                Ok(checked(n, &mut conn, what, &[key], "zset").await? as f64)
            }
            Measure::StreamLength(k) => {
                let r: Result<(String, i64), RedisError> = ::redis::pipe()
                    .cmd("TYPE")
                    .arg(k)
                    .cmd("XLEN")
                    .arg(k)
                    .query_async(&mut conn)
                    .await;
                let (kind, len) = checked(r, &mut conn, what, &[k], "stream").await?;
                if kind == "none" {
                    return Err(OpError::Source(SourceError::NotFound(format!(
                        "{what}: stream {} does not exist",
                        key_text(k)
                    ))));
                }
                Ok(len as f64)
            }
            Measure::StreamGroup {
                stream,
                group,
                kind,
            } => {
                let r: Result<Value, RedisError> = ::redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(stream)
                    .query_async(&mut conn)
                    .await;
                let groups = match r {
                    Err(e) if e.detail().is_some_and(|d| d.contains("no such key")) => {
                        return Err(OpError::Source(SourceError::NotFound(format!(
                            "{what}: stream {} does not exist",
                            key_text(stream)
                        ))))
                    }
                    other => checked(other, &mut conn, what, &[stream], "stream").await?,
                };
                group_value(&groups, group, *kind)
                    .map_err(|e| OpError::Source(e.in_context(what, stream, group)))
            }
        }
    }
}

/// Passes a reply through, turning WRONGTYPE into an error that says what
/// the key holds instead (one more round trip, on the error path only).
async fn checked<T>(
    r: Result<T, RedisError>,
    conn: &mut MultiplexedConnection,
    what: &str,
    keys: &[&String],
    expected: &str,
) -> Result<T, OpError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if has_code(&e, "WRONGTYPE") => {
            let mut pipe = ::redis::pipe();
            for k in keys {
                pipe.cmd("TYPE").arg(k.as_str());
            }
            let types: Vec<String> = pipe.query_async(conn).await.unwrap_or_default();
            let wrong: Vec<String> = keys
                .iter()
                .zip(&types)
                .filter(|(_, t)| t.as_str() != expected && t.as_str() != "none")
                .map(|(k, t)| format!("{} is a {t}", key_text(k)))
                .collect();
            let detail = if wrong.is_empty() {
                format!("a key is not a {expected}")
            } else {
                format!("{}, not a {expected}", wrong.join(", "))
            };
            Err(OpError::Source(SourceError::BadResult(format!(
                "{what}: wrong type: {detail}"
            ))))
        }
        Err(e) => Err(OpError::Redis(e)),
    }
}

/// Why a group's number could not be taken from `XINFO GROUPS`.
enum GroupError {
    NoGroup(Vec<String>),
    NilLag,
    NoLagField,
    Malformed(String),
}

impl GroupError {
    fn in_context(self, what: &str, stream: &str, group: &str) -> SourceError {
        match self {
            GroupError::NoGroup(names) => SourceError::NotFound(format!(
                "{what}: stream {} has no consumer group {}{}",
                key_text(stream),
                key_text(group),
                if names.is_empty() {
                    " (it has none)".to_string()
                } else {
                    format!(
                        " (it has: {})",
                        super::truncate(
                            &names.iter().map(|n| key_text(n)).collect::<Vec<_>>().join(", "),
                            200
                        )
                    )
                }
            )),
            GroupError::NilLag => SourceError::BadResult(format!(
                "{what}: Redis reports no lag for group {} (it cannot compute it, e.g. after \
                 XDEL/XTRIM past the group's position or XGROUP SETID); use measure Pending or Length",
                key_text(group)
            )),
            GroupError::NoLagField => SourceError::BadResult(format!(
                "{what}: XINFO GROUPS has no lag field: measure Lag needs Redis >= 7 \
                 (use Pending or Length on older servers)"
            )),
            GroupError::Malformed(m) => {
                SourceError::BadResult(format!("{what}: unexpected XINFO GROUPS reply: {m}"))
            }
        }
    }
}

/// Picks the group's number from an `XINFO GROUPS` reply (RESP2 flat
/// key/value arrays, or RESP3 maps).
fn group_value(reply: &Value, group: &str, kind: StreamMeasureKind) -> Result<f64, GroupError> {
    let Value::Array(groups) = reply else {
        return Err(GroupError::Malformed("not an array".into()));
    };
    let mut names = Vec::new();
    for g in groups {
        let fields =
            fields_of(g).ok_or_else(|| GroupError::Malformed("group is not a map".into()))?;
        let name = fields
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| text_of(v))
            .unwrap_or_default();
        if name != group {
            names.push(name);
            continue;
        }
        let field = match kind {
            StreamMeasureKind::Lag => "lag",
            StreamMeasureKind::Pending => "pending",
            StreamMeasureKind::Length => "length",
        };
        return match fields.iter().find(|(k, _)| k == field).map(|(_, v)| *v) {
            None if kind == StreamMeasureKind::Lag => Err(GroupError::NoLagField),
            None => Err(GroupError::Malformed(format!("no {field} field"))),
            Some(Value::Nil) if kind == StreamMeasureKind::Lag => Err(GroupError::NilLag),
            Some(Value::Int(n)) => Ok(*n as f64),
            Some(v) => text_of(v)
                .and_then(|t| t.parse::<i64>().ok())
                .map(|n| n as f64)
                .ok_or_else(|| GroupError::Malformed(format!("{field} is not a number"))),
        };
    }
    Err(GroupError::NoGroup(names))
}

fn fields_of(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    out.push((text_of(k)?, v));
                }
            }
            Some(out)
        }
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| text_of(k).map(|k| (k, v)))
            .collect(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RedisTls, SecretKeyRef};
    use std::collections::BTreeMap;

    fn trigger(url: &str) -> RedisTrigger {
        RedisTrigger {
            url: url.into(),
            password_secret_ref: None,
            username_secret_ref: None,
            tls: None,
            list: Some("q".into()),
            lists: None,
            celery: None,
            stream: None,
            sorted_set: None,
        }
    }

    #[test]
    fn url_credentials_never_reach_the_display_and_secrets_override_them() {
        let mut t = trigger("redis://olduser:oldpass@example.com:7000/3");
        let s = Settings::resolve(&t, &BTreeMap::new()).unwrap();
        assert_eq!(s.key.display, "redis://example.com:7000/3");
        assert_eq!(s.key.username.as_deref(), Some("olduser"));
        assert_eq!(s.key.password.as_deref(), Some("oldpass"));
        assert!(!s.url.contains("oldpass"), "{}", s.url);
        assert!(!format!("{:?}", s.key).contains("oldpass"));

        t.password_secret_ref = Some(SecretKeyRef {
            name: "auth".into(),
            key: "password".into(),
        });
        let mut secrets = BTreeMap::new();
        secrets.insert(
            ("auth".to_string(), "password".to_string()),
            b"newpass".to_vec(),
        );
        let s = Settings::resolve(&t, &secrets).unwrap();
        assert_eq!(s.key.password.as_deref(), Some("newpass"));
        assert_eq!(s.key.username.as_deref(), Some("olduser"));
    }

    #[test]
    fn defaults_and_tls_settings() {
        let s = Settings::resolve(&trigger("redis://h"), &BTreeMap::new()).unwrap();
        assert_eq!(s.key.display, "redis://h:6379/0");
        let mut t = trigger("rediss://h:6380/1");
        t.tls = Some(RedisTls {
            insecure_skip_verify: true,
            ca_secret_ref: None,
        });
        let s = Settings::resolve(&t, &BTreeMap::new()).unwrap();
        assert!(s.key.insecure);
        assert!(s.url.ends_with("#insecure"), "{}", s.url);
        let mut t = trigger("redis://h");
        t.tls = Some(RedisTls::default());
        assert!(Settings::resolve(&t, &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_ca_that_is_not_pem_is_a_config_error() {
        let mut t = trigger("rediss://h");
        t.tls = Some(RedisTls {
            insecure_skip_verify: false,
            ca_secret_ref: Some(SecretKeyRef {
                name: "ca".into(),
                key: "ca.crt".into(),
            }),
        });
        let mut secrets = BTreeMap::new();
        secrets.insert(
            ("ca".to_string(), "ca.crt".to_string()),
            b"not a cert".to_vec(),
        );
        let e = Settings::resolve(&t, &secrets).err().unwrap();
        assert_eq!(e.metric_label(), "config");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }

    fn group(fields: &[(&str, Value)]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| [Value::BulkString(k.as_bytes().to_vec()), v.clone()])
                .collect(),
        )
    }

    #[test]
    fn group_value_reads_lag_pending_and_reports_nil_lag() {
        let reply = Value::Array(vec![
            group(&[
                ("name", Value::BulkString(b"a".to_vec())),
                ("pending", Value::Int(2)),
                ("lag", Value::Int(5)),
            ]),
            group(&[
                ("name", Value::BulkString(b"b".to_vec())),
                ("pending", Value::Int(1)),
                ("lag", Value::Nil),
            ]),
        ]);
        assert_eq!(
            group_value(&reply, "a", StreamMeasureKind::Lag).ok(),
            Some(5.0)
        );
        assert_eq!(
            group_value(&reply, "a", StreamMeasureKind::Pending).ok(),
            Some(2.0)
        );
        assert!(matches!(
            group_value(&reply, "b", StreamMeasureKind::Lag),
            Err(GroupError::NilLag)
        ));
        match group_value(&reply, "c", StreamMeasureKind::Lag) {
            Err(GroupError::NoGroup(names)) => assert_eq!(names, ["a", "b"]),
            _ => panic!("expected NoGroup"),
        }
    }
}

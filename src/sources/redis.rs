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
//!
//! # One pipeline per batch of reads
//! Sharing the connection is not enough by itself: redis-rs carries each
//! command separately (its own oneshot and reply routing), which cost more
//! than Redis did at 5,000 pools. So reads are batched explicitly: every
//! read's commands go through the endpoint's batcher
//! ([`super::redis_batch`]), which sends the reads queued together as one
//! pipeline and hands each read its own replies (a command the server
//! refuses fails only its read). What cannot share a pipeline goes on the
//! connection directly: loading the Celery script after `NOSCRIPT`, the
//! `HSCAN` fallback, and the `TYPE` lookups that explain a `WRONGTYPE`.
//! Every request either way is counted ([`Endpoint::round_trips`]).
//!
//! The read timeout is a deadline every wait of a read honours: the
//! batcher answers a read by its deadline, and connecting or a direct
//! request runs [`within`] it. (One `tokio::time::timeout` around the whole
//! read did the same with a timer per read, a tenth of a read's cost.)

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, RedisError,
    RedisFuture, Value,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::redis_batch::{Batcher, Commands, Replies, RoundTrips, Unanswered};
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
        commands: commands(&measure),
        endpoint,
        measure,
        timeout,
    }))
}

/// Every Redis endpoint in use, by what distinguishes its connection.
#[derive(Default)]
pub(super) struct Endpoints {
    map: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
    /// Requests sent by every endpoint there has been (see [`RoundTrips`]).
    round_trips: Arc<AtomicU64>,
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
        let ep = Arc::new(Endpoint::new(settings, self.round_trips.clone())?);
        map.insert(key, Arc::downgrade(&ep));
        Ok(ep)
    }

    pub(super) fn live(&self) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.len()
    }

    /// Requests sent to Redis by every endpoint since these were made.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Requests sent so far by each live endpoint, by server (`redis[s]://host:port/db`;
    /// endpoints that differ only in credentials or TLS settings are summed).
    pub(super) fn round_trips_by_server(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for ep in map.values().filter_map(Weak::upgrade) {
            *out.entry(ep.display.clone()).or_insert(0) += ep.round_trips();
        }
        out
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
    /// Sends the reads queued together as one pipeline.
    batcher: Batcher,
    trips: Arc<RoundTrips>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

/// The connection is shared as an `Arc`: handing it to a read is one
/// reference count, not the several a `MultiplexedConnection` clone takes.
type SharedConnection = Arc<MultiplexedConnection>;

type Connecting = Shared<BoxFuture<'static, Result<SharedConnection, SourceError>>>;

enum Slot {
    Idle,
    Connecting(u64, Connecting),
    Ready(u64, SharedConnection),
}

/// A connection handed to one read: `id` names it for [`Endpoint::drop_connection`];
/// `reused` says it was made before this read (so a dead one is worth one retry);
/// `deadline` is when the read stops waiting, which every wait of the read
/// must honour (see [`Endpoint::run`]).
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) conn: SharedConnection,
    pub(super) reused: bool,
    pub(super) deadline: Instant,
}

/// How long making a connection may take, whatever the read timeout: a
/// connect attempt is shared by every reader and outlives a timed-out one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    fn new(settings: Settings, all_round_trips: Arc<AtomicU64>) -> Result<Endpoint, SourceError> {
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
        let trips = Arc::new(RoundTrips::new(all_round_trips));
        Ok(Endpoint {
            display: k.display.clone(),
            client,
            slot: Mutex::new(Slot::Idle),
            next_id: AtomicU64::new(1),
            redact,
            batcher: Batcher::new(trips.clone()),
            trips,
        })
    }

    pub(super) fn display(&self) -> &str {
        &self.display
    }

    /// Requests this endpoint's sources have sent: one per pipeline (a
    /// batch of reads) or lone command.
    pub(super) fn round_trips(&self) -> u64 {
        self.trips.get()
    }

    /// Sends one command in the endpoint's next pipeline on `conn` and
    /// returns its reply, by the read's deadline: the server's refusal of
    /// this command is an `OpError::Redis` exactly as if the command had
    /// been sent alone.
    pub(super) async fn query_one<T: FromRedisValue>(
        &self,
        conn: Conn,
        cmd: &Commands,
    ) -> Result<T, OpError> {
        match self
            .batcher
            .query(conn.id, conn.conn, cmd.clone(), conn.deadline)
            .await
        {
            Ok(Replies::One(v)) => reply(v).map_err(OpError::Redis),
            Ok(Replies::Group(_)) => Err(OpError::Redis(wrong_shape())),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends commands together in the endpoint's next pipeline on `conn` and
    /// returns their replies by the read's deadline, a refused command as
    /// its `Value::ServerError` (see [`replies`]). An `Err` is the
    /// connection's, or the deadline's.
    pub(super) async fn query_group(
        &self,
        conn: Conn,
        cmds: &Commands,
    ) -> Result<Vec<Value>, OpError> {
        match self
            .batcher
            .query(conn.id, conn.conn, cmds.clone(), conn.deadline)
            .await
        {
            Ok(Replies::Group(v)) => Ok(v),
            Ok(Replies::One(v)) => Ok(vec![v]),
            Err(e) => Err(e.into()),
        }
    }

    /// The connection itself, for what cannot share a batch's pipeline
    /// (cursors, script loading, lookups on an error path); counted too.
    /// What is sent on it must be bounded by the read's deadline
    /// ([`within`]): only the batcher answers by the deadline by itself.
    pub(super) fn direct(&self, conn: Conn) -> Counted<'_> {
        Counted {
            conn: MultiplexedConnection::clone(&conn.conn),
            trips: &self.trips,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared connection, made first if there is none, for a read
    /// (`what`) that waits until `deadline`. Concurrent callers share one
    /// connect attempt; a failure names what was read.
    pub(super) async fn connection(&self, what: &str, deadline: Instant) -> Result<Conn, OpError> {
        if let Some(c) = self.ready(deadline) {
            return Ok(c);
        }
        // Boxed: the future of every read would otherwise carry the connect
        // path's state, and outgrow the allocator's fast path.
        match tokio::time::timeout_at(deadline, Box::pin(self.connect_shared(deadline))).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(OpError::Source(in_context(what, e))),
            Err(_) => Err(OpError::TimedOut),
        }
    }

    /// The shared connection if it is up.
    fn ready(&self, deadline: Instant) -> Option<Conn> {
        match &*self.slot() {
            Slot::Ready(id, c) => Some(Conn {
                id: *id,
                conn: c.clone(),
                reused: true,
                deadline,
            }),
            _ => None,
        }
    }

    /// [`Endpoint::connection`] when it is not up: joins the connect
    /// attempt under way, or starts one.
    async fn connect_shared(&self, deadline: Instant) -> Result<Conn, SourceError> {
        let (id, connecting) = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Ready(id, c) => {
                    return Ok(Conn {
                        id: *id,
                        conn: c.clone(),
                        reused: true,
                        deadline,
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
            deadline,
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
                .map(Arc::new)
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
    ///
    /// There is no timer around `op`: every wait in it is bounded by the
    /// deadline it is handed in [`Conn`] (the batcher answers by then, and
    /// anything else runs [`within`] it), which saves a timer per read.
    pub(super) async fn run<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        op: F,
    ) -> Result<T, SourceError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, OpError>>,
    {
        let deadline = Instant::now() + timeout;
        let timed_out = || SourceError::Timeout {
            target: what.to_string(),
            after: timeout,
        };
        for _ in 0..2 {
            let c = match self.connection(what, deadline).await {
                Ok(c) => c,
                Err(OpError::TimedOut) => return Err(timed_out()),
                Err(OpError::Source(e)) => return Err(e),
                Err(OpError::Redis(e)) => return Err(self.redis_error(what, &e)),
            };
            let (id, reused) = (c.id, c.reused);
            match op(c).await {
                Ok(v) => return Ok(v),
                Err(OpError::TimedOut) => {
                    // A half-open connection would time out every read until
                    // the kernel gives up on it: make a new one.
                    self.drop_connection(id);
                    return Err(timed_out());
                }
                Err(OpError::Redis(e)) if connection_lost(&e) => {
                    self.drop_connection(id);
                    if !reused {
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

/// One command's reply from a batch as `T`; the server's refusal of the
/// command becomes the error the command alone would have given.
pub(super) fn reply<T: FromRedisValue>(v: Value) -> Result<T, RedisError> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(::redis::from_redis_value(v)?),
    }
}

/// A group's replies as `T`s, or the first command's refusal.
pub(super) fn replies<T: FromRedisValue>(vs: Vec<Value>) -> Result<Vec<T>, RedisError> {
    vs.into_iter().map(reply).collect()
}

/// A batch answered one command with a group or the reverse (a bug).
fn wrong_shape() -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::UnexpectedReturnType,
        "batched reply of the wrong shape",
    ))
}

/// The shared connection, used directly (not through the batcher), counting
/// each request it sends in its endpoint's [`RoundTrips`].
pub(super) struct Counted<'a> {
    conn: MultiplexedConnection,
    trips: &'a RoundTrips,
}

impl ConnectionLike for Counted<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.trips.add();
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.trips.add();
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// What a read operation can fail with: a Redis error (mapped and maybe
/// retried by [`Endpoint::run`]), an already-explained error, or the
/// read's deadline passing.
pub(super) enum OpError {
    Redis(RedisError),
    Source(SourceError),
    TimedOut,
}

impl From<Unanswered> for OpError {
    fn from(e: Unanswered) -> Self {
        match e {
            Unanswered::Redis(e) => OpError::Redis(e),
            Unanswered::TimedOut => OpError::TimedOut,
        }
    }
}

/// Runs a request sent on the connection directly within the read's
/// deadline.
pub(super) async fn within<T, F>(deadline: Instant, request: F) -> Result<T, OpError>
where
    F: Future<Output = Result<T, OpError>>,
{
    tokio::time::timeout_at(deadline, request)
        .await
        .unwrap_or(Err(OpError::TimedOut))
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
    /// What every read sends, built once ([`commands`]).
    commands: Commands,
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

/// The commands a measure's reads send, together in a batch's pipeline.
/// A `dueOnly` sorted set's `ZCOUNT` names the time of the read, so it is
/// built per read instead (its `ZCARD` here goes unused).
fn commands(measure: &Measure) -> Commands {
    fn cmd(name: &str, args: &[&str]) -> Cmd {
        let mut c = ::redis::cmd(name);
        for a in args {
            c.arg(*a);
        }
        c
    }
    match measure {
        Measure::List(k) => Arc::new([cmd("LLEN", &[k])]),
        Measure::Lists(ks) => ks.iter().map(|k| cmd("LLEN", &[k])).collect(),
        Measure::SortedSet { key, .. } => Arc::new([cmd("ZCARD", &[key])]),
        Measure::StreamLength(k) => Arc::new([cmd("TYPE", &[k]), cmd("XLEN", &[k])]),
        Measure::StreamGroup { stream, .. } => Arc::new([cmd("XINFO", &["GROUPS", stream])]),
    }
}

impl RedisSource {
    async fn read_once(&self, conn: Conn, what: &str) -> Result<f64, OpError> {
        let ep = &*self.endpoint;
        let deadline = conn.deadline;
        let check = |keys, expected| Check {
            ep,
            what,
            keys,
            expected,
            deadline,
        };
        match &self.measure {
            Measure::List(k) => {
                let n: Result<i64, OpError> = ep.query_one(conn, &self.commands).await;
                Ok(check(&[k], "list").reply(n).await? as f64)
            }
            Measure::Lists(ks) => {
                let n = ep.query_group(conn, &self.commands).await?;
                let v = replies::<i64>(n).map_err(OpError::Redis);
                let keys: Vec<&String> = ks.iter().collect();
                let v = check(&keys, "list").reply(v).await?;
                Ok(v.iter().sum::<i64>() as f64)
            }
            Measure::SortedSet { key, due_only } => {
                let n: Result<i64, OpError> = if *due_only {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    let mut c = ::redis::cmd("ZCOUNT");
                    c.arg(key).arg("-inf").arg(format!("{now:.3}"));
                    ep.query_one(conn, &Arc::from([c])).await
                } else {
                    ep.query_one(conn, &self.commands).await
                };
                Ok(check(&[key], "zset").reply(n).await? as f64)
            }
            Measure::StreamLength(k) => {
                let v = ep.query_group(conn, &self.commands).await?;
                let r = match <[Value; 2]>::try_from(v) {
                    Ok([kind, len]) => {
                        reply::<String>(kind).and_then(|kind| Ok((kind, reply::<i64>(len)?)))
                    }
                    Err(_) => Err(wrong_shape()),
                };
                let (kind, len) = check(&[k], "stream")
                    .reply(r.map_err(OpError::Redis))
                    .await?;
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
                let r: Result<Value, OpError> = ep.query_one(conn, &self.commands).await;
                let groups = match r {
                    Err(OpError::Redis(e))
                        if e.detail().is_some_and(|d| d.contains("no such key")) =>
                    {
                        return Err(OpError::Source(SourceError::NotFound(format!(
                            "{what}: stream {} does not exist",
                            key_text(stream)
                        ))))
                    }
                    other => check(&[stream], "stream").reply(other).await?,
                };
                group_value(&groups, group, *kind)
                    .map_err(|e| OpError::Source(e.in_context(what, stream, group)))
            }
        }
    }
}

/// Turns a `WRONGTYPE` reply into an error that says what the keys hold
/// instead: one more round trip, on the error path only, on the connection
/// directly (errors are rare, and need not wait for a batch).
struct Check<'a> {
    ep: &'a Endpoint,
    what: &'a str,
    keys: &'a [&'a String],
    /// The type the keys should have, as `TYPE` names it.
    expected: &'a str,
    /// The read's.
    deadline: Instant,
}

impl Check<'_> {
    /// Passes a reply through, or explains a `WRONGTYPE`.
    async fn reply<T>(&self, r: Result<T, OpError>) -> Result<T, OpError> {
        match r {
            Err(OpError::Redis(e)) if has_code(&e, "WRONGTYPE") => {
                // Boxed, so that the future of every read does not carry it.
                Err(Box::pin(self.wrong_type()).await)
            }
            other => other,
        }
    }

    async fn wrong_type(&self) -> OpError {
        let (ep, what, expected) = (self.ep, self.what, self.expected);
        let mut pipe = ::redis::pipe();
        for k in self.keys {
            pipe.cmd("TYPE").arg(k.as_str());
        }
        let lookup = within(self.deadline, async {
            let c = ep.connection(what, self.deadline).await?;
            let types: Result<Vec<String>, RedisError> = pipe.query_async(&mut ep.direct(c)).await;
            Ok(types.unwrap_or_default())
        });
        let types = match lookup.await {
            Ok(types) => types,
            Err(e) => return e,
        };
        let wrong: Vec<String> = self
            .keys
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
        OpError::Source(SourceError::BadResult(format!(
            "{what}: wrong type: {detail}"
        )))
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

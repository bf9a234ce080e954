//! One Redis endpoint: its lazily made shared connection, reconnects, the
//! read deadline, and the mapping of Redis errors to [`SourceError`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, RedisError,
    RedisFuture, Value,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::batch::{Batcher, Commands, Replies, RoundTrips};
use super::errors::*;
use super::settings::ConnectionSettings;
use crate::sources::policy::EndpointPolicy;
use crate::sources::{Redactor, SourceError};

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
    /// Checked against every address the host resolves to, before connecting.
    policy: EndpointPolicy,
    host: String,
    port: u16,
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
    pub(super) fn new(
        settings: ConnectionSettings,
        all_round_trips: Arc<AtomicU64>,
        policy: EndpointPolicy,
    ) -> Result<Endpoint, SourceError> {
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
            policy,
            host: settings.host.clone(),
            port: settings.port,
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
        let (policy, host, port, display) = (
            self.policy.clone(),
            self.host.clone(),
            self.port,
            self.display.clone(),
        );
        let task = tokio::spawn(async move {
            check_resolved(&policy, &display, &host, port).await?;
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

/// The endpoint policy's check of every address `host` resolves to, made
/// before each connection (names are resolved again by the connect itself;
/// a name whose answer changes in between is the one gap, and the reason
/// the policy also matches names).
async fn check_resolved(
    policy: &EndpointPolicy,
    what: &str,
    host: &str,
    port: u16,
) -> Result<(), SourceError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(()); // an address as written was checked when the source was built
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SourceError::Connection(format!("{what}: cannot resolve {host}: {e}")))?;
    for a in addrs {
        policy.check_address(what, host, a.ip())?;
    }
    Ok(())
}

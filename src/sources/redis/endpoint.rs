//! One Redis endpoint: a plain server, a master behind Sentinel or a
//! Cluster, behind one interface for the measures: its shared
//! connection(s), reconnects and retries, the read deadline, and the
//! mapping of Redis errors to [`SourceError`].

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, FromRedisValue, RedisError, RedisFuture, Value};
use tokio::time::Instant;

use super::batch::{Commands, Replies, RoundTrips, SlotGate};
use super::cluster::Cluster;
use super::dial::Target;
use super::errors::*;
use super::node::{Connector, Node, NodeConn};
use super::sentinel::SentinelResolver;
use super::settings::{ConnectionSettings, Topology};
use super::wire::WireConnection;
use crate::sources::policy::EndpointPolicy;
use crate::sources::{Redactor, SourceError};

/// One Redis endpoint and its (lazily made) shared connection(s).
pub(super) struct Endpoint {
    display: String,
    /// The database the connection selects (0 on a cluster).
    db: i64,
    place: Place,
    redact: Redactor,
    trips: Arc<RoundTrips>,
}

/// Where an endpoint's reads go.
enum Place {
    /// One server: named by the URL, or the master the sentinels name.
    Single(Node),
    Cluster(Box<Cluster>),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

/// What one read runs on, until `deadline`, which every wait of the read
/// must honour (see [`Endpoint::run`]).
pub(super) struct Conn {
    link: Link,
    pub(super) deadline: Instant,
}

enum Link {
    /// The single server's shared connection.
    Node(NodeConn),
    /// A cluster: each command finds its node when it is sent.
    Cluster,
}

impl Endpoint {
    pub(super) fn new(
        settings: ConnectionSettings,
        all_round_trips: Arc<AtomicU64>,
        gate: Arc<SlotGate>,
        policy: EndpointPolicy,
    ) -> Result<Endpoint, SourceError> {
        let ConnectionSettings {
            key,
            topology,
            mut node,
        } = settings;
        node.policy = policy;
        let mut redact = Redactor::default();
        let secrets = [
            &key.password,
            &key.username,
            &key.sentinel_password,
            &key.sentinel_username,
        ];
        for s in secrets.into_iter().flatten() {
            redact.add(s);
        }
        let trips = Arc::new(RoundTrips::new(all_round_trips, gate));
        let display = key.display;
        let db = node.db;
        let place = match topology {
            Topology::Url(url) => {
                let target = Target::from_url(&url, &node, &display)?;
                Place::Single(Node::new(
                    Connector::Fixed(Box::new(target), node.policy.clone()),
                    redact.clone(),
                    trips.clone(),
                ))
            }
            Topology::Sentinel(sentinels) => {
                let resolver = SentinelResolver::new(sentinels, node, redact.clone());
                let connector = Connector::Sentinel(Arc::new(resolver));
                Place::Single(Node::new(connector, redact.clone(), trips.clone()))
            }
            Topology::Cluster(seeds) => Place::Cluster(Box::new(Cluster::new(
                seeds,
                node,
                display.clone(),
                redact.clone(),
                trips.clone(),
            ))),
        };
        Ok(Endpoint {
            display,
            db,
            place,
            redact,
            trips,
        })
    }

    pub(super) fn display(&self) -> &str {
        &self.display
    }

    /// The database the connection selects: kombu names its pub/sub
    /// channels after it.
    pub(super) fn db(&self) -> i64 {
        self.db
    }

    /// Whether keys are spread over a Redis Cluster's nodes.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.place, Place::Cluster(_))
    }

    /// Requests this endpoint's sources have sent: one per pipeline (a
    /// batch of reads) or lone command, per node.
    pub(super) fn round_trips(&self) -> u64 {
        self.trips.get()
    }

    /// The replies to `cmds` on `conn`, by the read's deadline.
    async fn replies(&self, conn: Conn, cmds: &Commands) -> Result<Replies, OpError> {
        match (&self.place, conn.link) {
            (Place::Single(node), Link::Node(c)) => {
                Ok(node.query(c, cmds.clone(), conn.deadline).await?)
            }
            (Place::Cluster(cluster), _) => {
                // Boxed: every read's future would otherwise be this big.
                let mut v = Box::pin(cluster.query(cmds, conn.deadline)).await?;
                Ok(match (v.len(), v.pop()) {
                    (1, Some(one)) => Replies::One(one),
                    (_, Some(last)) => {
                        v.push(last);
                        Replies::Group(v)
                    }
                    (_, None) => Replies::Group(v),
                })
            }
            (Place::Single(_), Link::Cluster) => Err(OpError::Redis(wrong_shape())),
        }
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
        match self.replies(conn, cmd).await? {
            Replies::One(v) => reply(v).map_err(OpError::Redis),
            Replies::Group(_) => Err(OpError::Redis(wrong_shape())),
        }
    }

    /// Sends commands together in the endpoint's next pipeline on `conn`
    /// (on a cluster: one per node) and returns their replies by the read's
    /// deadline, a refused command as its `Value::ServerError` (see
    /// [`replies`]). An `Err` is the connection's, or the deadline's.
    pub(super) async fn query_group(
        &self,
        conn: Conn,
        cmds: &Commands,
    ) -> Result<Vec<Value>, OpError> {
        match self.replies(conn, cmds).await? {
            Replies::Group(v) => Ok(v),
            Replies::One(v) => Ok(vec![v]),
        }
    }

    /// The connection itself, for what cannot share a batch's pipeline
    /// (cursors, script loading, lookups on an error path); counted too.
    /// What is sent on it must be bounded by the read's deadline
    /// ([`within`]): only the batcher answers by the deadline by itself.
    /// On a cluster, each command goes to the master of its slot.
    /// Loads `script` (after a NOSCRIPT: the server lost it, or never had
    /// it) and runs `evalsha` again, within `deadline`.
    pub(super) async fn load_and_run<T: FromRedisValue>(
        &self,
        what: &str,
        script: &::redis::Script,
        evalsha: &Commands,
        deadline: Instant,
    ) -> Result<T, OpError> {
        super::errors::within(deadline, async {
            let c = self.connection(what, deadline).await?;
            script
                .load_async(&mut self.direct(c))
                .await
                .map_err(OpError::Redis)
        })
        .await?;
        let c = self.connection(what, deadline).await?;
        self.query_one(c, evalsha).await
    }

    pub(super) fn direct(&self, conn: Conn) -> Counted<'_> {
        let to = match (&self.place, conn.link) {
            (Place::Single(_), Link::Node(c)) => Direct::Node(WireConnection {
                wire: c.conn,
                db: self.db,
            }),
            (Place::Cluster(cluster), _) => Direct::Cluster(cluster),
            (Place::Single(_), Link::Cluster) => Direct::Mismatch,
        };
        Counted {
            to,
            deadline: conn.deadline,
            trips: &self.trips,
        }
    }

    /// The shared connection, made first if there is none, for a read
    /// (`what`) that waits until `deadline`. Concurrent callers share one
    /// connect attempt; a failure names what was read. On a cluster, nodes
    /// are connected as commands reach them.
    pub(super) async fn connection(&self, what: &str, deadline: Instant) -> Result<Conn, OpError> {
        let link = match &self.place {
            Place::Single(node) => Link::Node(node.connection(what, deadline).await?),
            Place::Cluster(_) => Link::Cluster,
        };
        Ok(Conn { link, deadline })
    }

    /// The connection if it is up (on a cluster, always: nodes are
    /// connected as commands reach them).
    fn ready(&self, deadline: Instant) -> Option<Conn> {
        let link = match &self.place {
            Place::Single(node) => Link::Node(node.ready()?),
            Place::Cluster(_) => Link::Cluster,
        };
        Some(Conn { link, deadline })
    }

    /// Forgets the single server's connection `id` (if it is still the
    /// current one), so the next read makes a new one.
    fn drop_connection(&self, id: u64) {
        if let Place::Single(node) = &self.place {
            node.drop_connection(id);
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
            // Most reads find the connection up: no connect future for them.
            let c = match self.ready(deadline) {
                Some(c) => Ok(c),
                None => self.connection(what, deadline).await,
            };
            let c = match c {
                Ok(c) => c,
                Err(OpError::TimedOut) => return Err(timed_out()),
                Err(OpError::Source(e)) => return Err(e),
                Err(OpError::Redis(e)) => return Err(self.redis_error(what, &e)),
            };
            // A cluster's node connections are dropped where they fail:
            // the retry is the same as for a reused connection.
            let (id, reused) = match &c.link {
                Link::Node(n) => (n.id, n.reused),
                Link::Cluster => (0, true),
            };
            match op(c).await {
                Ok(v) => return Ok(v),
                Err(OpError::TimedOut) => {
                    // A half-open connection would time out every read until
                    // the kernel gives up on it: make a new one.
                    self.drop_connection(id);
                    return Err(timed_out());
                }
                Err(OpError::Redis(e)) if connection_lost(&e) || not_the_master(&e) => {
                    // Behind Sentinel, the next connection asks the sentinels again.
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
        let text = self.redact.clean(&error_text(e));
        if is_auth_error(e) {
            SourceError::Auth(format!("{what}: {text}"))
        } else if connection_lost(e) || e.is_timeout() || e.is_connection_refusal() {
            SourceError::Connection(format!("{what}: {text}"))
        } else {
            SourceError::BadResult(format!("{what}: {text}"))
        }
    }
}

/// The server no longer is (or not yet is) a master that can serve the
/// read: demoted by a failover (`READONLY`), or loading its data after a
/// restart (`LOADING`). The connection is dropped so the next one finds
/// the master anew.
fn not_the_master(e: &RedisError) -> bool {
    has_code(e, "READONLY") || has_code(e, "LOADING")
}

/// The shared connection, used directly (not through the batcher), counting
/// each request it sends in its endpoint's [`RoundTrips`]; on a cluster,
/// each command is routed to its slot's master.
pub(super) struct Counted<'a> {
    to: Direct<'a>,
    deadline: Instant,
    trips: &'a RoundTrips,
}

enum Direct<'a> {
    Node(WireConnection),
    Cluster(&'a Cluster),
    /// A cluster read's [`Conn`] handed to a single server's endpoint (a bug).
    Mismatch,
}

impl Counted<'_> {
    /// Sends `cmds` through the cluster's routing, a failure as a `RedisError`
    /// for the redis crate's interface.
    async fn on_cluster(
        cluster: &Cluster,
        cmds: Commands,
        deadline: Instant,
    ) -> ::redis::RedisResult<Vec<Value>> {
        match cluster.query(&cmds, deadline).await {
            Ok(v) => Ok(v),
            Err(OpError::Redis(e)) => Err(e),
            Err(OpError::TimedOut) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "cluster request timed out",
            ))),
            Err(OpError::Source(e)) => Err(RedisError::from((
                ::redis::ErrorKind::Client,
                "cluster request failed",
                e.to_string(),
            ))),
        }
    }
}

impl ConnectionLike for Counted<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.to {
            Direct::Node(conn) => {
                self.trips.add();
                conn.req_packed_command(cmd)
            }
            Direct::Cluster(cluster) => {
                let (cluster, deadline) = (*cluster, self.deadline);
                Box::pin(async move {
                    let mut v =
                        Self::on_cluster(cluster, Commands::from([cmd.clone()]), deadline).await?;
                    let one = v.pop().unwrap_or(Value::Nil);
                    match one {
                        Value::ServerError(e) => Err(e.into()),
                        v => Ok(v),
                    }
                })
            }
            Direct::Mismatch => Box::pin(async { Err(wrong_shape()) }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        // On a cluster, the nodes' batchers count what they send.
        match &mut self.to {
            Direct::Node(conn) => {
                self.trips.add();
                conn.req_packed_commands(pipeline, offset, count)
            }
            Direct::Cluster(cluster) => {
                let (cluster, deadline) = (*cluster, self.deadline);
                let cmds: Commands = pipeline.cmd_iter().cloned().collect();
                Box::pin(async move {
                    let v = Self::on_cluster(cluster, cmds, deadline).await?;
                    Ok(v.into_iter().skip(offset).take(count).collect())
                })
            }
            Direct::Mismatch => Box::pin(async { Err(wrong_shape()) }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.to {
            Direct::Node(conn) => conn.get_db(),
            _ => 0,
        }
    }
}

//! One Redis server's lazily made shared connection and its batcher: the
//! plain server of a URL, the master behind Sentinel, or one cluster node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::batch::{Batcher, Commands, Replies, RoundTrips, Unanswered};
use super::dial::{dial, Target};
use super::errors::*;
use super::sentinel::SentinelResolver;
use crate::sources::policy::EndpointPolicy;
use crate::sources::{Redactor, SourceError};

/// The connection, shared by every read on the node.
pub(super) type SharedConnection = Arc<super::wire::Wire>;

type Connecting = Shared<BoxFuture<'static, Result<SharedConnection, SourceError>>>;

enum Slot {
    Idle,
    Connecting(u64, Connecting),
    Ready(u64, SharedConnection),
}

/// How a node's connection is made.
pub(super) enum Connector {
    /// A server at a known address; every address its name resolves to is
    /// checked against the endpoint policy before each connection.
    Fixed(Box<Target>, EndpointPolicy),
    /// Whatever master the sentinels name at connect time.
    Sentinel(Arc<SentinelResolver>),
}

/// How long making a connection may take, whatever the read timeout: a
/// connect attempt is shared by every reader and outlives a timed-out one.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection handed out by [`Node::connection`]: `id` names it for
/// [`Node::drop_connection`]; `reused` says it was made before this read.
pub(super) struct NodeConn {
    pub(super) id: u64,
    pub(super) conn: SharedConnection,
    pub(super) reused: bool,
}

/// One server and its (lazily made) shared connection.
pub(super) struct Node {
    connector: Arc<Connector>,
    slot: Mutex<Slot>,
    next_id: AtomicU64,
    redact: Redactor,
    /// Sends the reads queued together as one pipeline.
    batcher: Batcher,
}

impl Node {
    pub(super) fn new(connector: Connector, redact: Redactor, trips: Arc<RoundTrips>) -> Node {
        Node {
            connector: Arc::new(connector),
            slot: Mutex::new(Slot::Idle),
            next_id: AtomicU64::new(1),
            redact,
            batcher: Batcher::new(trips),
        }
    }

    /// Queues `commands` for this node's next pipeline on `conn` (see
    /// [`super::batch::Batcher::query`]), answered by `deadline`. Takes the
    /// connection handed to the read: the request carries it without
    /// another count on the shared connection's reference.
    pub(super) fn query(
        &self,
        conn: NodeConn,
        commands: Commands,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Replies, Unanswered>> {
        self.batcher.query(conn.id, conn.conn, commands, deadline)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared connection, made first if there is none. Concurrent
    /// callers share one connect attempt; `what` names the read in errors.
    pub(super) async fn connection(
        &self,
        what: &str,
        deadline: Instant,
    ) -> Result<NodeConn, OpError> {
        if let Some(c) = self.ready() {
            return Ok(c);
        }
        // Boxed: the future of every read would otherwise carry the connect
        // path's state, and outgrow the allocator's fast path.
        match tokio::time::timeout_at(deadline, Box::pin(self.connect_shared())).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(OpError::Source(in_context(what, e))),
            Err(_) => Err(OpError::TimedOut),
        }
    }

    /// The shared connection if it is up.
    pub(super) fn ready(&self) -> Option<NodeConn> {
        match &*self.slot() {
            Slot::Ready(id, c) => Some(NodeConn {
                id: *id,
                conn: c.clone(),
                reused: true,
            }),
            _ => None,
        }
    }

    /// [`Node::connection`] when it is not up: joins the connect attempt
    /// under way, or starts one.
    async fn connect_shared(&self) -> Result<NodeConn, SourceError> {
        let (id, connecting) = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Ready(id, c) => {
                    return Ok(NodeConn {
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
        result.map(|conn| NodeConn {
            id,
            conn,
            reused: false,
        })
    }

    /// Starts a connect attempt on its own task, so it completes even if
    /// the read that started it times out.
    fn connect(&self) -> Connecting {
        let connector = self.connector.clone();
        let redact = self.redact.clone();
        let task = tokio::spawn(async move {
            match &*connector {
                Connector::Fixed(target, policy) => {
                    check_resolved(policy, &target.host, target.port).await?;
                    dial(target)
                        .await
                        .map(Arc::new)
                        .map_err(|e| connect_error(&redact, &e))
                }
                Connector::Sentinel(resolver) => resolver.connect_master().await,
            }
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
    /// read makes a new one (behind Sentinel: asks the sentinels again).
    pub(super) fn drop_connection(&self, id: u64) {
        let mut slot = self.slot();
        if matches!(&*slot, Slot::Ready(current, _) if *current == id) {
            *slot = Slot::Idle;
        }
    }
}

/// The endpoint policy's check of every address a server's name resolves
/// to, made before each connection (the connect resolves the name again;
/// a name whose answer changes in between is the one gap, and the reason
/// the policy also matches names).
async fn check_resolved(policy: &EndpointPolicy, host: &str, port: u16) -> Result<(), SourceError> {
    let what = format!("{host}:{port}");
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return Ok(()); // an address as written or handed back was checked already
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SourceError::Connection(format!("cannot resolve {what}: {e}")))?;
    for a in addrs {
        policy.check_address(&what, host, a.ip())?;
    }
    Ok(())
}

//! Redis Cluster: each command goes to the master of its key's hash slot.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked of a known master or a
//! seed, on the first read and again on the read after one that was sent
//! elsewhere (`MOVED`), lost a node's connection, or found a slot without
//! a master. A read's commands are split by node; each node has its own
//! shared connection and batcher ([`Node`]), so the reads of one poll slot
//! leave as one pipeline per node. The replies are put back in order, so a
//! multi-key measure sums across masters as it does on one server; if any
//! node fails, the whole read fails (a partial sum would read as less work).
//!
//! `MOVED` is followed to the node it names (and the map refreshed before
//! the next read); `ASK` (a key caught mid-migration) is followed with
//! `ASKING` just before the command, in the same pipeline of the target's
//! connection. Both addresses pass [`check_discovered`] first.
//!
//! A command whose keys are in different slots cannot be served by one
//! node and fails with an error that says so (Celery's in-flight script
//! reads `unacked` and the queue's lists together; it is refused up front).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ::redis::{Cmd, RedisError, Value};
use futures::future::join_all;
use tokio::time::Instant;

use super::batch::{Commands, Replies, RoundTrips, Unanswered};
use super::dial::Target;
use super::errors::{connection_lost, has_code, OpError};
use super::node::{Connector, Node};
use super::settings::{check_discovered, NodeSettings};
use super::slots::{command_slot, redirect, Address, Redirect, SlotMap};
use super::wire::WireConnection;
use crate::sources::{Redactor, SourceError};

/// Most redirections one command follows before the read fails.
const MAX_REDIRECTS: usize = 5;

/// A cluster's slot map and a connection per node.
pub(super) struct Cluster {
    seeds: Vec<Address>,
    node: NodeSettings,
    display: String,
    redact: Redactor,
    trips: Arc<RoundTrips>,
    /// The map and its generation (bumped on every refresh).
    map: Mutex<(u64, Arc<SlotMap>)>,
    /// Set when the map may be wrong: the next read refreshes it first.
    stale: AtomicBool,
    /// One refresh at a time; readers that waited use its result.
    refreshing: tokio::sync::Mutex<()>,
    nodes: Mutex<HashMap<Address, Arc<Node>>>,
}

impl Cluster {
    pub(super) fn new(
        seeds: Vec<Address>,
        node: NodeSettings,
        display: String,
        redact: Redactor,
        trips: Arc<RoundTrips>,
    ) -> Cluster {
        Cluster {
            seeds,
            node,
            display,
            redact,
            trips,
            map: Mutex::new((0, Arc::new(SlotMap::default()))),
            stale: AtomicBool::new(true),
            refreshing: tokio::sync::Mutex::new(()),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn current(&self) -> (u64, Arc<SlotMap>) {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        (m.0, m.1.clone())
    }

    /// The node at `addr`, made (not connected) on first use.
    fn node_at(&self, addr: &Address) -> Result<Arc<Node>, SourceError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.get(addr) {
            return Ok(n.clone());
        }
        let target = Target::at(&self.node, &addr.0, addr.1);
        let n = Arc::new(Node::new(
            Connector::Fixed(Box::new(target), self.node.policy.clone()),
            self.redact.clone(),
            self.trips.clone(),
        ));
        nodes.insert(addr.clone(), n.clone());
        Ok(n)
    }

    /// The slot map to route a read with, refreshed first if it may be wrong.
    async fn map_for_read(&self, deadline: Instant) -> Result<Arc<SlotMap>, OpError> {
        let (generation, map) = self.current();
        if !map.is_empty() && !self.stale.load(Ordering::Relaxed) {
            return Ok(map);
        }
        Box::pin(self.refresh(generation, deadline)).await?;
        Ok(self.current().1)
    }

    /// Asks the known masters, then the seeds, for the slot map, unless a
    /// refresh after generation `seen` has happened meanwhile.
    async fn refresh(&self, seen: u64, deadline: Instant) -> Result<(), OpError> {
        let _one = tokio::time::timeout_at(deadline, self.refreshing.lock())
            .await
            .map_err(|_| OpError::TimedOut)?;
        let (generation, map) = self.current();
        if generation != seen && !map.is_empty() {
            return Ok(());
        }
        let mut candidates: Vec<Address> = map.masters.clone();
        candidates.extend(
            self.seeds
                .iter()
                .filter(|s| !map.masters.contains(s))
                .cloned(),
        );
        let mut last = None;
        for addr in &candidates {
            match self.ask_slots(addr, deadline).await {
                Ok(new) => {
                    *self.map.lock().unwrap_or_else(|e| e.into_inner()) =
                        (generation + 1, Arc::new(new));
                    self.stale.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                // A seed that is no cluster node is a mistake in the spec: say so.
                Err(e @ OpError::Source(SourceError::Config(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            OpError::Source(SourceError::Config(
                "redis.cluster.addresses names no node".into(),
            ))
        }))
    }

    /// One node's `CLUSTER SLOTS`, its masters checked.
    async fn ask_slots(&self, addr: &Address, deadline: Instant) -> Result<SlotMap, OpError> {
        let node = self.node_at(addr).map_err(OpError::Source)?;
        let c = node.connection(&self.display, deadline).await?;
        let mut conn = WireConnection {
            wire: c.conn,
            db: 0,
        };
        self.trips.add();
        let mut slots = ::redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let asked = slots.query_async::<Value>(&mut conn);
        let reply = match tokio::time::timeout_at(deadline, asked).await {
            Err(_) => return Err(OpError::TimedOut),
            Ok(Err(e)) if is_not_a_cluster(&e) => {
                return Err(OpError::Source(SourceError::Config(format!(
                    "redis.cluster.addresses: {}:{} is not a cluster node (cluster support disabled: a standalone server belongs in redis.url)",
                    addr.0, addr.1
                ))))
            }
            Ok(Err(e)) => {
                if connection_lost(&e) {
                    node.drop_connection(c.id);
                }
                return Err(OpError::Redis(e));
            }
            Ok(Ok(v)) => v,
        };
        let map = SlotMap::from_cluster_slots(&reply, &addr.0).map_err(|m| {
            OpError::Source(SourceError::BadResult(format!("{}: {m}", self.display)))
        })?;
        for (host, port) in &map.masters {
            check_discovered(&self.node.policy, host, *port).map_err(OpError::Source)?;
        }
        Ok(map)
    }

    /// Sends `cmds`, each to the master of its slot (one batched request per
    /// node, all at once), and returns their replies in order, redirections
    /// followed. Any node's failure fails the whole read.
    pub(super) async fn query(
        &self,
        cmds: &Commands,
        deadline: Instant,
    ) -> Result<Vec<Value>, OpError> {
        let map = self.map_for_read(deadline).await?;
        let mut by_node: Vec<(Address, Vec<usize>)> = vec![];
        for (i, cmd) in cmds.iter().enumerate() {
            let addr = self.route(&map, cmd)?;
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, idx)) => idx.push(i),
                None => by_node.push((addr, vec![i])),
            }
        }
        let single = by_node.len() == 1;
        let sends = by_node.iter().map(|(addr, idx)| {
            // Most reads name one key, or keys on one node: no copy then.
            let subset: Commands = if single {
                cmds.clone()
            } else {
                idx.iter().map(|i| cmds[*i].clone()).collect()
            };
            self.send_to(addr, subset, deadline)
        });
        let mut values = vec![Value::Nil; cmds.len()];
        for ((_, idx), replies) in by_node.iter().zip(join_all(sends).await) {
            for (i, v) in idx.iter().zip(replies?) {
                values[*i] = v;
            }
        }
        for (cmd, v) in cmds.iter().zip(values.iter_mut()) {
            if matches!(v, Value::ServerError(_)) {
                let first = std::mem::replace(v, Value::Nil);
                *v = Box::pin(self.follow(cmd, first, deadline)).await?;
            }
        }
        Ok(values)
    }

    /// The master of a command's slot.
    fn route(&self, map: &SlotMap, cmd: &Cmd) -> Result<Address, OpError> {
        let slot = command_slot(cmd).map_err(|_| {
            OpError::Source(SourceError::Config(format!(
                "{}: a command names keys in different hash slots, which no single cluster node holds \
                 (use a {{hash tag}} to keep them together)",
                self.display
            )))
        })?;
        let master = match slot {
            Some(s) => map.master_of(s),
            None => map.masters.first(),
        };
        master.cloned().ok_or_else(|| {
            self.stale.store(true, Ordering::Relaxed);
            OpError::Source(SourceError::Connection(format!(
                "{}: hash slot {} is served by no master (cluster down or resharding)",
                self.display,
                slot.unwrap_or(0)
            )))
        })
    }

    /// One node's batched request; a lost connection marks the map stale,
    /// since the node may have failed over.
    async fn send_to(
        &self,
        addr: &Address,
        cmds: Commands,
        deadline: Instant,
    ) -> Result<Vec<Value>, OpError> {
        let node = self.node_at(addr).map_err(OpError::Source)?;
        let c = node
            .connection(&self.display, deadline)
            .await
            .inspect_err(|_| {
                self.stale.store(true, Ordering::Relaxed);
            })?;
        let id = c.id;
        match node.query(c, cmds, deadline).await {
            Ok(Replies::One(v)) => Ok(vec![v]),
            Ok(Replies::Group(v)) => Ok(v),
            Err(Unanswered::Redis(e)) => {
                if connection_lost(&e) {
                    node.drop_connection(id);
                    self.stale.store(true, Ordering::Relaxed);
                }
                Err(OpError::Redis(e))
            }
            Err(Unanswered::TimedOut) => {
                node.drop_connection(id);
                Err(OpError::TimedOut)
            }
        }
    }

    /// Follows `MOVED`/`ASK` replies for one command; any other reply is its answer.
    async fn follow(&self, cmd: &Cmd, first: Value, deadline: Instant) -> Result<Value, OpError> {
        let mut v = first;
        for _ in 0..MAX_REDIRECTS {
            let target = match &v {
                Value::ServerError(e) => redirect(e.code(), e.details()),
                _ => None,
            };
            let Some(target) = target else {
                return Ok(v);
            };
            v = match target {
                Redirect::Moved(addr) => {
                    self.stale.store(true, Ordering::Relaxed);
                    check_discovered(&self.node.policy, &addr.0, addr.1)
                        .map_err(OpError::Source)?;
                    let mut r = self
                        .send_to(&addr, Commands::from([cmd.clone()]), deadline)
                        .await?;
                    r.pop().unwrap_or(Value::Nil)
                }
                Redirect::Ask(addr) => {
                    check_discovered(&self.node.policy, &addr.0, addr.1)
                        .map_err(OpError::Source)?;
                    let asking = Commands::from([::redis::cmd("ASKING"), cmd.clone()]);
                    let mut r = self.send_to(&addr, asking, deadline).await?;
                    r.pop().unwrap_or(Value::Nil)
                }
            };
        }
        Err(OpError::Source(SourceError::BadResult(format!(
            "{}: redirected more than {MAX_REDIRECTS} times",
            self.display
        ))))
    }
}

/// The answer of a server that is not in cluster mode to `CLUSTER SLOTS`.
fn is_not_a_cluster(e: &RedisError) -> bool {
    has_code(e, "ERR") && e.to_string().contains("cluster support disabled")
}

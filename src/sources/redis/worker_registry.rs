//! What the Redis busy signals share: a framework keeps a set of its live
//! workers (RQ's `rq:workers`, Sidekiq's `processes`) and a record per
//! worker with its host name and whether it is working. A read is two
//! round trips: `SMEMBERS` of the set, then one pipeline of every worker's
//! record (on a cluster, one per node: the records live in many slots).
//!
//! A member whose record is gone (expired: the worker died without
//! unregistering) is skipped, as the frameworks' own APIs skip it.

use std::sync::Arc;
use std::time::Duration;

use ::redis::{Cmd, Value};

use super::batch::Commands;
use super::endpoint::{Conn, Endpoint};
use super::errors::{reply, OpError};
use crate::sources::{BusyFuture, BusyPods, BusySource, SourceError, MAX_WORKERS};

/// One worker's record: its host name and busy tasks (0: idle), or None
/// when the record is gone; or what is wrong with it.
pub(super) type Parsed = Result<Option<(String, u32)>, String>;

/// How one framework's worker registry is read.
#[derive(Debug)]
pub(super) struct Registry {
    /// What is read, for descriptions (`RQ workers of queue "reports"`).
    pub what: String,
    /// The set of live workers.
    pub set: String,
    /// The commands that read one member's record.
    pub record: fn(&str) -> Vec<Cmd>,
    /// One member's replies → its host name and busy tasks (0: idle), or
    /// None when the record is gone.
    pub parse: fn(&[Value]) -> Parsed,
}

/// A Redis busy signal.
#[derive(Debug)]
pub(super) struct RegistrySource {
    endpoint: Arc<Endpoint>,
    registry: Registry,
    timeout: Duration,
    what: String,
}

impl RegistrySource {
    pub(super) fn new(endpoint: Arc<Endpoint>, registry: Registry, timeout: Duration) -> Self {
        let what = format!("{} on {}", registry.what, endpoint.display());
        RegistrySource {
            endpoint,
            registry,
            timeout,
            what,
        }
    }

    async fn read_once(&self, conn: Conn) -> Result<BusyPods, OpError> {
        let deadline = conn.deadline;
        let smembers = Commands::from([::redis::cmd("SMEMBERS").arg(&self.registry.set).clone()]);
        let members: Vec<String> = self.endpoint.query_one(conn, &smembers).await?;
        if members.len() > MAX_WORKERS {
            return Err(self.bad(format!(
                "{} workers registered, more than {MAX_WORKERS}",
                members.len()
            )));
        }
        if members.is_empty() {
            return Ok(BusyPods::default());
        }
        let per = (self.registry.record)("").len();
        let cmds: Commands = members
            .iter()
            .flat_map(|m| (self.registry.record)(m))
            .collect();
        let conn = self.endpoint.connection(&self.what, deadline).await?;
        let values = self.endpoint.query_group(conn, &cmds).await?;
        let mut busy = BusyPods::default();
        for chunk in values.chunks(per) {
            let chunk = refused(chunk)?;
            let parsed = (self.registry.parse)(&chunk).map_err(|m| self.bad(m))?;
            if let Some((host, tasks)) = parsed {
                busy.add(&host, tasks);
            }
        }
        Ok(busy)
    }

    fn bad(&self, message: String) -> OpError {
        OpError::Source(SourceError::BadResult(format!("{}: {message}", self.what)))
    }
}

/// The replies of one record, or the first refusal as the read's error.
fn refused(chunk: &[Value]) -> Result<Vec<Value>, OpError> {
    chunk
        .iter()
        .map(|v| match v {
            Value::ServerError(_) => reply::<Value>(v.clone()).map_err(OpError::Redis),
            v => Ok(v.clone()),
        })
        .collect()
}

impl BusySource for RegistrySource {
    fn read(&self) -> BusyFuture<'_> {
        Box::pin(async move {
            self.endpoint
                .run(&self.what, self.timeout, |conn| self.read_once(conn))
                .await
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// A reply as text (None for nil), for record fields.
pub(super) fn text(v: &Value) -> Option<String> {
    ::redis::from_redis_value::<Option<String>>(v.clone())
        .ok()
        .flatten()
}

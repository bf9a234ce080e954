//! Redis Sentinel: which server is the master right now.
//!
//! The master is asked for on every connect: the sentinels are tried in
//! the order the trigger lists them, and the first that names the master
//! (`SENTINEL GET-MASTER-ADDR-BY-NAME`) wins. The server it names must then
//! say it is a master (`ROLE`), as the Sentinel client guidelines ask: a
//! sentinel that has not yet seen a failover names the old master, which
//! may already be a replica.
//!
//! When the master changes, the connection to it ends one of three ways,
//! and each makes the next read connect (so ask the sentinels) again:
//! the old master dies (connection lost); the sentinels demote it, which
//! closes its clients' connections (Sentinel sends it `CLIENT KILL TYPE
//! normal`); or it answers `-READONLY` or `-LOADING`
//! ([`super::endpoint::Endpoint::run`] drops the connection on those).
//! So a failed poll re-asks the sentinels; no subscription to
//! `+switch-master` is kept (one more connection per sentinel per
//! endpoint, for a notice that the closed connection already gives).
//! A read during a failover fails (no number, so no scale-down); the
//! first read after the sentinels agree connects to the new master.

use std::time::Duration;

use ::redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, Value};

use super::dial::{dial, Target};
use super::errors::connect_error;
use super::settings::{check_discovered, NodeSettings, SentinelSettings};
use super::wire::{Wire, WireConnection};
use crate::sources::{Redactor, SourceError};

/// How long one sentinel may take to connect and answer before the next is
/// asked: a dead sentinel must not use up the whole connect budget.
const PER_SENTINEL: Duration = Duration::from_secs(2);

/// Finds the master through the sentinels and connects to it.
pub(super) struct SentinelResolver {
    sentinels: SentinelSettings,
    /// How to talk to the master (and, for TLS, to the sentinels).
    node: NodeSettings,
    redact: Redactor,
}

/// What asking every sentinel gave, when none named the master.
#[derive(Default)]
struct Failures {
    /// Sentinels that answered but do not know the master name.
    unknown_name: Vec<String>,
    /// The last error of a sentinel that could not be asked.
    last_error: Option<SourceError>,
}

impl SentinelResolver {
    pub(super) fn new(sentinels: SentinelSettings, node: NodeSettings, redact: Redactor) -> Self {
        SentinelResolver {
            sentinels,
            node,
            redact,
        }
    }

    /// The master's address, from the first sentinel that names it.
    pub(super) async fn master_address(&self) -> Result<(String, u16), SourceError> {
        let mut failures = Failures::default();
        for (host, port) in &self.sentinels.addresses {
            let asked = tokio::time::timeout(PER_SENTINEL, self.ask(host, *port)).await;
            match asked {
                Ok(Ok(Some(addr))) => return Ok(addr),
                Ok(Ok(None)) => failures.unknown_name.push(format!("{host}:{port}")),
                Ok(Err(e)) => failures.last_error = Some(e),
                Err(_) => {
                    failures.last_error = Some(SourceError::Connection(format!(
                        "sentinel {host}:{port}: no answer within {PER_SENTINEL:?}"
                    )))
                }
            }
        }
        Err(self.explain(failures))
    }

    fn explain(&self, f: Failures) -> SourceError {
        let name = crate::sources::truncate(&self.sentinels.master_name, 64);
        if !f.unknown_name.is_empty() {
            return SourceError::Config(format!(
                "redis.sentinel.masterName: sentinel(s) {} know no master named {name:?}",
                f.unknown_name.join(", ")
            ));
        }
        match f.last_error {
            Some(SourceError::Auth(m)) => {
                SourceError::Auth(format!("redis.sentinel (sentinel credentials): {m}"))
            }
            Some(e) => SourceError::Connection(format!(
                "redis.sentinel.addresses: no sentinel reachable ({e})"
            )),
            None => SourceError::Config("redis.sentinel.addresses names no sentinel".into()),
        }
    }

    /// One sentinel's answer: the master's address, or `None` if it does not
    /// know the name.
    async fn ask(&self, host: &str, port: u16) -> Result<Option<(String, u16)>, SourceError> {
        let sentinel_auth = NodeSettings {
            db: 0,
            username: self.sentinels.username.clone(),
            password: self.sentinels.password.clone(),
            ..self.node.clone()
        };
        // Sentinels have no databases; with db 0 the client sends no SELECT.
        let url = sentinel_auth.url(host, port);
        let client = client_for(&url, &sentinel_auth, &format!("sentinel {host}:{port}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(PER_SENTINEL))
            .set_response_timeout(Some(PER_SENTINEL));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.sentinel_error(host, port, &e))?;
        let reply: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.sentinels.master_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.sentinel_error(host, port, &e))?;
        Ok(reply)
    }

    fn sentinel_error(&self, host: &str, port: u16, e: &RedisError) -> SourceError {
        match connect_error(&self.redact, e) {
            SourceError::Auth(m) => SourceError::Auth(format!("sentinel {host}:{port}: {m}")),
            SourceError::Connection(m) => {
                SourceError::Connection(format!("sentinel {host}:{port}: {m}"))
            }
            other => other,
        }
    }

    /// Connects to the master the sentinels name, once it says it is one.
    pub(super) async fn connect_master(&self) -> Result<std::sync::Arc<Wire>, SourceError> {
        let (host, port) = self.master_address().await?;
        check_discovered(&self.node.policy, &host, port)?;
        let wire =
            dial(&Target::at(&self.node, &host, port))
                .await
                .map_err(|e| match connect_error(&self.redact, &e) {
                    SourceError::Connection(m) => {
                        SourceError::Connection(format!("master {host}:{port}: {m}"))
                    }
                    other => other,
                })?;
        let mut conn = WireConnection {
            wire: std::sync::Arc::new(wire),
            db: self.node.db,
        };
        let role =
            tokio::time::timeout(PER_SENTINEL, ::redis::cmd("ROLE").query_async(&mut conn)).await;
        match role {
            Ok(Ok(Value::Array(items))) if is_master(items.first()) => Ok(conn.wire),
            Ok(Err(e)) => Err(connect_error(&self.redact, &e)),
            Err(_) => Err(SourceError::Connection(format!(
                "master {host}:{port}: no answer to ROLE"
            ))),
            Ok(Ok(_)) => Err(SourceError::Connection(format!(
                "the sentinels name {host}:{port} as master {:?}, but it is not a master \
                 (failover under way)",
                crate::sources::truncate(&self.sentinels.master_name, 64)
            ))),
        }
    }
}

fn is_master(first: Option<&Value>) -> bool {
    matches!(first, Some(Value::BulkString(b)) if b == b"master")
        || matches!(first, Some(Value::SimpleString(s)) if s == "master")
}

/// A redis-rs client for a sentinel at `url`, with `node`'s credentials
/// and CA bundle (a sentinel is asked one question per connect: the
/// shared pipelined connection is for data nodes).
fn client_for(url: &str, node: &NodeSettings, display: &str) -> Result<Client, SourceError> {
    let mut info = url
        .into_connection_info()
        .map_err(|e| SourceError::Config(format!("{display}: {}", e.category())))?;
    let mut rs = info.redis_settings().clone();
    if let Some(u) = &node.username {
        rs = rs.set_username(u);
    }
    if let Some(p) = &node.password {
        rs = rs.set_password(p);
    }
    info = info.set_redis_settings(rs);
    match &node.ca {
        Some(pem) if !node.insecure => Client::build_with_tls(
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
            "{display}: cannot set up the client ({})",
            e.category()
        ))
    })
}

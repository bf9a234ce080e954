//! Making a [`Wire`] to one server: TCP (and TLS over it when asked), then
//! `AUTH` and `SELECT` as redis-rs would send them, within one deadline.
//! Failures are `RedisError`s shaped as redis-rs's (an I/O error, or an
//! authentication failure), so [`super::errors::connect_error`] words them.

use ::redis::{ErrorKind, IntoConnectionInfo, RedisError, Value};
use tokio::net::TcpStream;

use super::node::CONNECT_TIMEOUT;
use super::settings::NodeSettings;
use super::tls::{connect_tls, TlsSettings};
use super::wire::{Stream, Wire};
use crate::sources::SourceError;

/// Where and how to connect: one server, with the trigger's credentials.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    tls: Option<TlsSettings>,
    username: Option<String>,
    password: Option<String>,
    pub(super) db: i64,
}

impl Target {
    /// The server at `host:port`, with `node`'s credentials, TLS and database.
    pub(super) fn at(node: &NodeSettings, host: &str, port: u16) -> Target {
        Target {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            tls: node.tls.then(|| TlsSettings {
                ca: node.ca.clone(),
                insecure: node.insecure,
            }),
            username: node.username.clone(),
            password: node.password.clone(),
            db: node.db,
        }
    }

    /// The server a trigger's URL names (read as redis-rs reads it).
    pub(super) fn from_url(
        url: &str,
        node: &NodeSettings,
        display: &str,
    ) -> Result<Target, SourceError> {
        let info = url
            .into_connection_info()
            .map_err(|e| SourceError::Config(format!("{display}: {}", e.category())))?;
        match info.addr() {
            ::redis::ConnectionAddr::Tcp(host, port)
            | ::redis::ConnectionAddr::TcpTls { host, port, .. } => {
                Ok(Target::at(node, host, *port))
            }
            _ => Err(SourceError::Config(format!(
                "{display}: only TCP addresses are supported"
            ))),
        }
    }
}

/// Connects to `target` and authenticates, within [`CONNECT_TIMEOUT`].
pub(super) async fn dial(target: &Target) -> Result<Wire, RedisError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_and_set_up(target)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}

async fn connect_and_set_up(target: &Target) -> Result<Wire, RedisError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match &target.tls {
        Some(tls) => Box::new(connect_tls(tcp, &target.host, tls).await?),
        None => Box::new(tcp),
    };
    let wire = Wire::start(stream);
    if let Some(password) = &target.password {
        authenticate(&wire, target.username.as_deref(), password).await?;
    }
    if target.db != 0 {
        let mut select = ::redis::cmd("SELECT");
        select.arg(target.db);
        only_reply(&wire, &select).await?;
    }
    Ok(wire)
}

/// `AUTH [user] password`; a server older than ACLs (Redis 5) refuses the
/// two-argument form, and is asked again with the password alone.
async fn authenticate(wire: &Wire, user: Option<&str>, password: &str) -> Result<(), RedisError> {
    let auth = |user: Option<&str>| {
        let mut c = ::redis::cmd("AUTH");
        if let Some(u) = user {
            c.arg(u);
        }
        c.arg(password);
        c
    };
    match only_reply(wire, &auth(user)).await {
        Ok(_) => Ok(()),
        Err(e) if user.is_some() && is_old_auth(&e) => only_reply(wire, &auth(None))
            .await
            .map(|_| ())
            .map_err(refused),
        Err(e) => Err(refused(e)),
    }
}

fn is_old_auth(e: &RedisError) -> bool {
    e.detail()
        .is_some_and(|d| d.contains("wrong number of arguments for 'auth' command"))
}

/// The server refused the credentials: reported as redis-rs reports it.
fn refused(e: RedisError) -> RedisError {
    if e.is_io_error() {
        return e;
    }
    RedisError::from((
        ErrorKind::AuthenticationFailed,
        "Password authentication failed",
    ))
}

/// The one reply to `cmd`; the server's refusal is an `Err`.
async fn only_reply(wire: &Wire, cmd: &::redis::Cmd) -> Result<Value, RedisError> {
    let mut values = wire.send(cmd.get_packed_command(), 1).await?;
    match values.pop() {
        Some(Value::ServerError(e)) => Err(e.into()),
        Some(v) => Ok(v),
        None => Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "no reply to a command",
        ))),
    }
}

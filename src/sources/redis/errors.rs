//! Redis replies and failures: how a command's error is classified
//! (auth, connection lost, refused), and a batch reply decoded.

use std::future::Future;

use ::redis::{FromRedisValue, RedisError, Value};
use tokio::time::Instant;

use super::batch::Unanswered;
use crate::sources::{Redactor, SourceError};

/// A connect failure is shared by every source on the endpoint, so it
/// names the endpoint; each reader puts what it was reading in front.
pub(super) fn in_context(what: &str, e: SourceError) -> SourceError {
    match e {
        SourceError::Connection(m) => SourceError::Connection(format!("{what}: {m}")),
        SourceError::Auth(m) => SourceError::Auth(format!("{what}: {m}")),
        other => other,
    }
}

/// Error codes Redis (and Sentinel, Cluster, modules' usual ones) send:
/// the only part of an error reply ever shown.
const KNOWN_CODES: &[&str] = &[
    "ERR",
    "WRONGTYPE",
    "NOPERM",
    "NOAUTH",
    "WRONGPASS",
    "NOSCRIPT",
    "READONLY",
    "LOADING",
    "BUSY",
    "BUSYKEY",
    "MOVED",
    "ASK",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "CROSSSLOT",
    "MASTERDOWN",
    "EXECABORT",
    "NOREPLICAS",
    "OOM",
    "MISCONF",
    "NOPROTO",
    "NOGROUP",
    "BUSYGROUP",
    "UNBLOCKED",
];

/// What a Redis error says, without a byte of the server's reply text: a
/// reply is reduced to its error code (one of [`KNOWN_CODES`], else
/// "an unknown error code"); an I/O failure is our own system's message;
/// anything else is the client library's category.
pub(super) fn error_text(e: &RedisError) -> String {
    let mut codes: Vec<&str> = Vec::new();
    if let Some(c) = e.code() {
        codes.push(c);
    }
    let items = e.clone().into_server_errors().unwrap_or_default();
    codes.extend(items.iter().map(|(_, s)| s.code()));
    if let Some(code) = codes.first() {
        let shown = KNOWN_CODES.iter().find(|k| *k == code).copied();
        return match shown {
            Some(code) => format!("the server replied {code}"),
            None => "the server replied with an unknown error code".to_string(),
        };
    }
    if e.is_io_error() {
        // The operating system's words about our own socket.
        return e.to_string();
    }
    e.category().to_string()
}

pub(super) fn connect_error(redact: &Redactor, e: &RedisError) -> SourceError {
    let text = redact.clean(&error_text(e));
    if is_auth_error(e) {
        SourceError::Auth(format!("authentication failed: {text}"))
    } else {
        SourceError::Connection(format!("cannot connect: {text}"))
    }
}

pub(super) fn is_auth_error(e: &RedisError) -> bool {
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
pub(super) fn connection_lost(e: &RedisError) -> bool {
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
pub(super) fn wrong_shape() -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::UnexpectedReturnType,
        "batched reply of the wrong shape",
    ))
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

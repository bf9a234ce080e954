//! Our own pipelined connection to one Redis server: the bytes of a batch
//! of reads go out in one write, and the replies come back as values.
//!
//! # Why not redis-rs's multiplexed connection
//! A batch of 1,000 reads through it cost a `Cmd` clone per command into a
//! `Pipeline`, the pipeline's packing, a combine-based parser per reply and
//! redis-rs's bookkeeping per pipeline: about half of the read path's CPU
//! (`perf` of examples/redis_read_bench.rs). Here a batch appends each
//! command's RESP bytes to one buffer, and the replies that are most of a
//! batch (integers, bulk strings, nil) are read in place; every other reply
//! (errors, arrays, simple strings) is framed here and handed to redis-rs's
//! own parser, so it is the same `Value` redis-rs would have made.
//!
//! # Shape
//! [`Wire`] is a handle; the socket belongs to a task that writes what the
//! handles send, in order, and answers each request with its replies in the
//! order they come back (Redis answers a connection's commands in order).
//! The task ends when the last handle is dropped (nobody can wait for an
//! answer any more: a request's sender holds a handle until it is
//! answered) or the connection fails; a failure answers every request in
//! flight with that error, and later requests with a lost connection.
//! The connection speaks RESP2 (no `HELLO`), as redis-rs does by default.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ::redis::{ErrorKind, RedisError, Value};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Deepest nesting of arrays accepted in a reply.
const MAX_DEPTH: usize = 100;

/// The read buffer's size. A buffer that grew past [`KEEP_AT_MOST`] for a
/// large reply is given back once it is empty again (what is written is
/// the requests' own bytes, dropped once written).
const READ_BUFFER: usize = 64 * 1024;
const KEEP_AT_MOST: usize = 1024 * 1024;

/// A byte stream to a server: TCP, or TLS over TCP.
pub(super) trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

type Answer = Result<Vec<Value>, RedisError>;

/// Commands already in RESP, and how many replies they get.
struct Request {
    bytes: Vec<u8>,
    replies: usize,
    answer: oneshot::Sender<Answer>,
}

/// A request written, waiting for its replies.
struct InFlight {
    values: Vec<Value>,
    replies: usize,
    answer: oneshot::Sender<Answer>,
}

/// A handle on one connection (see the module's docs).
#[derive(Debug)]
pub(super) struct Wire {
    requests: mpsc::UnboundedSender<Request>,
}

impl Wire {
    /// Hands `stream` (connected, authenticated) to a task of its own.
    pub(super) fn start(stream: Box<dyn Stream>) -> Wire {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(stream, queue));
        Wire { requests }
    }

    /// Sends `bytes` (`replies` commands in RESP) and returns their replies
    /// in order; a command the server refused is its `Value::ServerError`.
    /// An `Err` is the connection's, the same for every request in flight.
    pub(super) async fn send(&self, bytes: Vec<u8>, replies: usize) -> Answer {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            bytes,
            replies,
            answer,
        };
        if self.requests.send(request).is_err() {
            return Err(lost("the connection has closed"));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(lost("the connection has closed")))
    }
}

/// A lost connection, as redis-rs reports one (an I/O error).
fn lost(why: &str) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_string()).into()
}

fn protocol_error(what: &str) -> RedisError {
    RedisError::from((ErrorKind::Parse, "bad reply from the server", what.into()))
}

/// The connection's task: writes requests, reads replies, until the last
/// handle is gone or the connection fails.
async fn drive(stream: Box<dyn Stream>, queue: mpsc::UnboundedReceiver<Request>) {
    let (reader, writer) = tokio::io::split(stream);
    let in_flight = Mutex::new(VecDeque::new());
    let failed = tokio::select! {
        r = write_requests(writer, queue, &in_flight) => r.err(),
        e = read_replies(reader, &in_flight) => Some(e),
    };
    let waiting = std::mem::take(&mut *in_flight.lock().unwrap_or_else(|e| e.into_inner()));
    let e = failed.unwrap_or_else(|| lost("the connection has closed"));
    for w in waiting {
        let _ = w.answer.send(Err(e.clone()));
    }
}

/// Writes every request as it comes (those queued together in one write),
/// after noting what it waits for. Ends when the last handle is dropped.
async fn write_requests(
    mut writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    mut queue: mpsc::UnboundedReceiver<Request>,
    in_flight: &Mutex<VecDeque<InFlight>>,
) -> Result<(), RedisError> {
    while let Some(first) = queue.recv().await {
        // The first request's bytes, with those queued behind it appended.
        let mut out = Vec::new();
        let mut next = Some(first);
        {
            let mut waiting = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(r) = next.take() {
                if out.is_empty() {
                    out = r.bytes;
                } else {
                    out.extend_from_slice(&r.bytes);
                }
                waiting.push_back(InFlight {
                    values: Vec::with_capacity(r.replies),
                    replies: r.replies,
                    answer: r.answer,
                });
                next = queue.try_recv().ok();
            }
        }
        writer.write_all(&out).await?;
    }
    Ok(())
}

/// Reads replies and hands them to the requests in the order they were
/// written, until the connection fails (its error is returned).
async fn read_replies(
    mut reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    in_flight: &Mutex<VecDeque<InFlight>>,
) -> RedisError {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    loop {
        if buf.is_empty() && buf.capacity() > KEEP_AT_MOST {
            buf = BytesMut::with_capacity(READ_BUFFER);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) => return lost("the server closed the connection"),
            Ok(_) => {}
            Err(e) => return e.into(),
        }
        let mut waiting = in_flight.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (value, used) = match parse_reply(&buf) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(e) => return e,
            };
            buf.advance(used);
            let Some(front) = waiting.front_mut() else {
                return protocol_error("a reply nobody asked for");
            };
            front.values.push(value);
            if front.values.len() == front.replies {
                if let Some(done) = waiting.pop_front() {
                    let _ = done.answer.send(Ok(done.values));
                }
            }
        }
    }
}

/// The first reply in `buf` and its length in bytes, or `None` if it has
/// not all arrived yet.
pub(super) fn parse_reply(buf: &[u8]) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(line) = line_end(buf)? else {
        return Ok(None);
    };
    match buf[0] {
        b':' => Ok(Some((Value::Int(number(&buf[1..line])?), line + 2))),
        b'$' => {
            let Some(len) = frame_len(buf, 0)? else {
                return Ok(None);
            };
            if len == line + 2 {
                return Ok(Some((Value::Nil, len)));
            }
            let data = buf[line + 2..len - 2].to_vec();
            Ok(Some((Value::BulkString(data), len)))
        }
        _ => {
            let Some(len) = frame_len(buf, 0)? else {
                return Ok(None);
            };
            Ok(Some((::redis::parse_redis_value(&buf[..len])?, len)))
        }
    }
}

/// Where the first line of `buf` ends (its `\r`), if it has arrived; a
/// line must hold a type byte and end in CRLF.
fn line_end(buf: &[u8]) -> Result<Option<usize>, RedisError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if lf < 2 || buf[lf - 1] != b'\r' {
        return Err(protocol_error("a line that does not end in CRLF"));
    }
    Ok(Some(lf - 1))
}

/// A reply's decimal length or integer.
fn number(text: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| protocol_error("a length or integer that is not a number"))
}

/// The length of the first whole reply in `buf` (nested arrays included),
/// or `None` if it has not all arrived yet.
fn frame_len(buf: &[u8], depth: usize) -> Result<Option<usize>, RedisError> {
    if depth > MAX_DEPTH {
        return Err(protocol_error("arrays nested too deep"));
    }
    let Some(line) = line_end(buf)? else {
        return Ok(None);
    };
    let after = line + 2;
    match buf[0] {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let Ok(n) = usize::try_from(number(&buf[1..line])?) else {
                return Ok(Some(after)); // $-1: nil
            };
            let end = after
                .checked_add(n)
                .and_then(|e| e.checked_add(2))
                .ok_or_else(|| protocol_error("a bulk string too long"))?;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(protocol_error("a bulk string that does not end in CRLF"));
            }
            Ok(Some(end))
        }
        b'*' => {
            let Ok(n) = usize::try_from(number(&buf[1..line])?) else {
                return Ok(Some(after)); // *-1: nil
            };
            let mut at = after;
            for _ in 0..n {
                match frame_len(&buf[at..], depth + 1)? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(protocol_error("a reply type RESP2 does not have")),
    }
}

/// A [`Wire`] as a redis-rs connection, for what is not batched (scripts,
/// cursors, lookups on an error path): `Script` and `Pipeline` run on it.
pub(super) struct WireConnection {
    pub(super) wire: Arc<Wire>,
    pub(super) db: i64,
}

impl ::redis::aio::ConnectionLike for WireConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a ::redis::Cmd,
    ) -> ::redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut values = self.wire.send(cmd.get_packed_command(), 1).await?;
            values
                .pop()
                .ok_or_else(|| protocol_error("no reply to a command"))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> ::redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut values = self
                .wire
                .send(pipeline.get_packed_pipeline(), offset + count)
                .await?;
            Ok(values.split_off(offset.min(values.len())))
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Value {
        match parse_reply(bytes) {
            Ok(Some((v, used))) => {
                assert_eq!(used, bytes.len(), "{bytes:?}");
                v
            }
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn replies_are_the_values_redis_rs_makes_of_them() {
        let replies: &[&[u8]] = &[
            b":42\r\n",
            b":-7\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"+OK\r\n",
            b"+master\r\n",
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            b"-NOSCRIPT No matching script\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n:1\r\n$3\r\nabc\r\n*2\r\n+x\r\n-ERR no\r\n",
        ];
        for r in replies {
            assert_eq!(whole(r), ::redis::parse_redis_value(r).unwrap(), "{r:?}");
        }
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest() {
        let reply = b"*3\r\n:1\r\n$3\r\nabc\r\n*2\r\n+x\r\n-ERR no\r\n";
        for cut in 0..reply.len() {
            assert!(
                matches!(parse_reply(&reply[..cut]), Ok(None)),
                "cut at {cut}"
            );
        }
        let mut two = reply.to_vec();
        two.extend_from_slice(b":5\r\n");
        let (_, used) = parse_reply(&two).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(parse_reply(&two[used..]).unwrap().unwrap().0, Value::Int(5));
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// A wire to a fake server, and the server's end.
    fn fake_server() -> (Wire, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(4096);
        (Wire::start(Box::new(client)), server)
    }

    async fn expect_request(server: &mut tokio::io::DuplexStream, bytes: &[u8]) {
        let mut got = vec![0u8; bytes.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, bytes);
    }

    #[tokio::test]
    async fn pipelined_requests_get_their_own_replies_however_the_bytes_arrive() {
        let (wire, mut server) = fake_server();
        let wire = Arc::new(wire);
        let (w1, w2) = (wire.clone(), wire.clone());
        let first = tokio::spawn(async move { w1.send(PING.repeat(2), 2).await });
        expect_request(&mut server, &PING.repeat(2)).await;
        let second = tokio::spawn(async move { w2.send(PING.to_vec(), 1).await });
        expect_request(&mut server, PING).await;
        for b in b":1\r\n$2\r\nok\r\n-ERR no\r\n" {
            server.write_all(&[*b]).await.unwrap();
        }
        let first = first.await.unwrap().unwrap();
        assert_eq!(
            first[..],
            [Value::Int(1), Value::BulkString(b"ok".to_vec())]
        );
        let second = second.await.unwrap().unwrap();
        assert!(matches!(&second[..], [Value::ServerError(e)] if e.code() == "ERR"));
    }

    #[tokio::test]
    async fn a_garbled_reply_fails_the_request_and_the_connection_is_gone() {
        let (wire, mut server) = fake_server();
        let wire = Arc::new(wire);
        let w = wire.clone();
        let asked = tokio::spawn(async move { w.send(PING.to_vec(), 1).await });
        expect_request(&mut server, PING).await;
        server.write_all(b"?what\r\n").await.unwrap();
        let e = asked.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Parse, "{e}");
        let again = wire.send(PING.to_vec(), 1).await.unwrap_err();
        assert!(again.is_io_error(), "{again}");
    }

    #[tokio::test]
    async fn a_closed_connection_fails_every_request_in_flight_as_lost() {
        let (wire, mut server) = fake_server();
        let wire = Arc::new(wire);
        let w = wire.clone();
        let asked = tokio::spawn(async move { w.send(PING.repeat(3), 3).await });
        expect_request(&mut server, &PING.repeat(3)).await;
        server.write_all(b":1\r\n").await.unwrap();
        drop(server);
        let e = asked.await.unwrap().unwrap_err();
        assert!(e.is_io_error(), "{e}");
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b":12x\r\n",
            b"$abc\r\n",
            b"$3\r\nabcde\r\n",
            b"?what\r\n",
            b"\n",
            b"*1\n:1\r\n",
            b"$18446744073709551615\r\n",
        ];
        for b in bad {
            assert!(parse_reply(b).is_err(), "{b:?}: {:?}", parse_reply(b));
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse_reply(deep.as_bytes()).is_err());
    }
}

//! One in-flight index per Redis endpoint, shared by every Celery source on
//! it: which delivery tag of kombu's `unacked` hash is routed to which queue.
//!
//! # Why
//! Counting a queue's in-flight messages means knowing the routing key of
//! every entry of `unacked`, whose values are whole messages (often a KiB
//! or more). Reading them on every poll of every pool (a Lua script over
//! `HVALS`) cost Redis 29 ms per read with 10,000 in flight, and 68 % of
//! its core with 20 pools polling each second, while Redis served nobody
//! else. A delivery tag's routing key never changes, though: kombu writes
//! the value once when a worker takes the message and deletes it when the
//! message is acknowledged or restored. So the index reads the *tags* each
//! refresh and a *value* only once, the first time its tag is seen.
//!
//! # kombu's layout (kombu/transport/redis.py, 5.7.0)
//! * `QoS.append` writes `ZADD unacked_index {tag: time()}` and
//!   `HSET unacked tag [message, exchange, routing_key]` in one
//!   transactional pipeline (`MULTI`/`EXEC`): a tag enters both at once.
//! * `QoS.ack` and `reject` remove it from both in one transaction
//!   (`_remove_from_indices`); `restore_by_tag` (visibility timeout, worker
//!   shutdown) does the same under `WATCH unacked`, re-queueing the message.
//! * `Channel._restore` deletes the hash field only, so a tag can stay in
//!   `unacked_index` with no value until `restore_visible` (under the
//!   `unacked_mutex` lock, after `visibility_timeout`) drops it. The index
//!   keeps a tag whose value it found missing as *absent*: counted nowhere,
//!   asked for again on every refresh (a nil `HMGET` field costs next to
//!   nothing).
//!
//! So the hash's fields are a subset of the sorted set's members, and the
//! index reads the members (`ZRANGE` by rank, cheap: no values), fetches the
//! values of members it has not seen (`HMGET`) and forgets members that are
//! gone. Reading a tag's value is how a tag is known to be in the hash.
//!
//! # Exact at each refresh, while workers take and acknowledge
//! Nothing is read atomically, so each race was thought through:
//! * Taken after the scan of the index: not counted this refresh (the message
//!   was still on its list, or between `BRPOP` and `QoS.append`, where kombu
//!   itself shows it nowhere); counted by the next.
//! * Acknowledged between the scan and `HMGET`: its field is nil, so it is
//!   absent (not counted), and the next scan no longer has it.
//! * Acknowledged after `HMGET`: counted; it was in flight at the scan.
//! * The scan itself is several `ZRANGE`s of at most [`CHUNK`] members (a
//!   long one would hold Redis for milliseconds at 100,000 in flight) sent
//!   in one pipeline. Members removed from lower ranks between two of them
//!   shift the rest down, which could skip a member; so consecutive chunks
//!   overlap by [`OVERLAP`] ranks, and a full chunk must share a member
//!   with the next. If not, the set moved more than the overlap in
//!   between and the scan is taken again (a few times, then a failed read:
//!   never a guess).
//!
//! Each refresh therefore counts the messages in flight when their part of
//! the index was read, within the milliseconds a scan lasts: the old script
//! was exact at the one moment it ran, this is exact up to what workers did
//! during those milliseconds. Nothing accumulates: every refresh takes
//! membership from its scan, so no missed event can leave a stale count.
//!
//! One limit: a tag's value is read once, so a value deleted *alone* while
//! its tag stays in the index is still counted until the tag leaves it.
//! Only `Channel._restore` does that, and kombu's Redis `QoS` overrides
//! every path to it (`reject`, `restore_unacked`) with `restore_by_tag`,
//! which removes both.
//!
//! # Cost
//! Per refresh: one pipelined round trip with `ZCARD`, `HLEN` and the chunked
//! `ZRANGE`s (Redis's work is proportional to the tags, about 40 bytes
//! each, not to the messages), plus one with `HMGET`s for new tags only
//! (proportional to the rate at which workers take messages). A refresh
//! serves every Celery source on the endpoint polled within [`SLOT`], so
//! 20 pools polling each second refresh once a second, not 20 times.
//!
//! # When the layout cannot be read (ACL)
//! If the server refuses what the index needs (`NOPERM` for `ZRANGE`,
//! `ZCARD`, `HLEN` or `HMGET`, or for the key `unacked_index`), [`Lookup::Denied`]
//! tells the source why; it then counts the old way and says so in a
//! warning. The index asks again after [`RETRY_DENIED`], in case the ACL
//! was fixed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ::redis::Cmd;
use tokio::time::Instant;

use super::batch::Commands;
use super::endpoint::Endpoint;
use super::errors::{error_text, has_code, replies, OpError};
use crate::sources::SourceError;

/// kombu's `Channel.unacked_key`.
pub(super) const UNACKED_KEY: &str = "unacked";
/// kombu's `Channel.unacked_index_key`.
pub(super) const UNACKED_INDEX_KEY: &str = "unacked_index";

/// Most members one `ZRANGE` returns: about 0.2 ms of Redis's time
/// (examples/redis_read_bench.rs `--celery`), which serves nobody else
/// meanwhile.
const CHUNK: usize = 1_000;
/// Ranks each `ZRANGE` re-reads of the one before it (see the module doc).
const OVERLAP: usize = 100;
/// Most fields one `HMGET` asks for (about 100 KiB of 1-KiB messages).
const FIELDS_PER_HMGET: usize = 100;
/// Most values fetched per round trip (about 5 MiB of 1-KiB messages).
const VALUES_PER_TRIP: usize = 5_000;
/// Scans of a set that keeps moving more than [`OVERLAP`] between chunks
/// before the read fails.
const SCAN_ATTEMPTS: usize = 3;
/// Reads within this of a refresh's start share it: the width of the
/// controller's poll slots, so the pools polled in one slot refresh once.
pub(super) const SLOT: Duration = Duration::from_millis(100);
/// How long a refusal (ACL) is believed before the index asks again.
const RETRY_DENIED: Duration = Duration::from_secs(60);

/// The in-flight indexes of every endpoint with a Celery source, keyed by
/// the endpoint's address in memory: an index holds its endpoint, so while
/// the index lives the key cannot name another endpoint.
#[derive(Default)]
pub(super) struct Indexes {
    map: Mutex<HashMap<usize, Weak<InFlightIndex>>>,
}

impl Indexes {
    /// The endpoint's index: the existing one if a source still holds it.
    pub(super) fn of(&self, endpoint: &Arc<Endpoint>) -> Arc<InFlightIndex> {
        let key = Arc::as_ptr(endpoint) as usize;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = map.get(&key).and_then(Weak::upgrade) {
            return index;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let index = Arc::new(InFlightIndex::new(endpoint.clone()));
        map.insert(key, Arc::downgrade(&index));
        index
    }
}

/// What [`InFlightIndex::count`] found.
pub(super) enum Lookup {
    /// Messages in `unacked` routed to the queue.
    Count(i64),
    /// The server refuses what the index needs; the text says what.
    Denied(String),
}

/// One endpoint's delivery tag -> routing key index.
#[derive(Debug)]
pub(super) struct InFlightIndex {
    endpoint: Arc<Endpoint>,
    /// Held across a refresh: sources polled meanwhile wait for it and
    /// use its result instead of refreshing again.
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every member of `unacked_index` at the last refresh: the routing key
    /// of its message (an index into `routes`), `None` while the hash has no
    /// value for it, [`UNROUTED`] when the value names no routing key.
    tags: HashMap<Box<[u8]>, Option<u32>>,
    /// Routing keys as kombu's JSON writes them (quoted, escaped).
    routes: Vec<Box<[u8]>>,
    route_ids: HashMap<Box<[u8]>, u32>,
    /// In-flight messages per routing key (by position in `routes`).
    counts: Vec<i64>,
    /// `ZCARD` at the last refresh: how many chunks to ask for next time.
    size: usize,
    /// When the last good refresh started.
    refreshed: Option<Instant>,
    /// Since when, and why, the server refuses the index's commands.
    denied: Option<(Instant, String)>,
}

/// The replies of a scan's `ZRANGE`s, in rank order.
type Chunks = Vec<Vec<Vec<u8>>>;

/// A value whose last element is not a JSON string.
const UNROUTED: u32 = u32::MAX;

impl InFlightIndex {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        InFlightIndex {
            endpoint,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// In-flight messages routed to `route` (a routing key as kombu's JSON
    /// writes it, quotes included), as of a refresh started no earlier than
    /// [`SLOT`] before `asked`, by `deadline`. `what` names the reader.
    pub(super) async fn count(
        &self,
        route: &[u8],
        asked: Instant,
        deadline: Instant,
        what: &str,
    ) -> Result<Lookup, OpError> {
        let mut st = match tokio::time::timeout_at(deadline, self.state.lock()).await {
            Ok(st) => st,
            Err(_) => return Err(OpError::TimedOut),
        };
        if let Some((since, why)) = &st.denied {
            if since.elapsed() < RETRY_DENIED {
                return Ok(Lookup::Denied(why.clone()));
            }
        }
        let fresh = st.refreshed.is_some_and(|t| t + SLOT >= asked);
        if !fresh {
            let started = Instant::now();
            match self.refresh(&mut st, deadline, what).await {
                Ok(()) => {
                    st.refreshed = Some(started);
                    st.denied = None;
                }
                Err(OpError::Redis(e)) if has_code(&e, "NOPERM") => {
                    let why = format!(
                        "the server refuses what the in-flight index reads \
                         (ZCARD/ZRANGE {UNACKED_INDEX_KEY}, HLEN/HMGET {UNACKED_KEY}): {}",
                        error_text(&e)
                    );
                    st.denied = Some((Instant::now(), why.clone()));
                    return Ok(Lookup::Denied(why));
                }
                Err(e) => return Err(e),
            }
        }
        let n = st
            .route_ids
            .get(route)
            .and_then(|id| st.counts.get(*id as usize))
            .copied()
            .unwrap_or(0);
        Ok(Lookup::Count(n))
    }

    /// Scans the index, fetches the routing keys of tags not seen before
    /// (or still without a value), and rebuilds the counts.
    async fn refresh(&self, st: &mut State, deadline: Instant, what: &str) -> Result<(), OpError> {
        let mut scan = None;
        for _ in 0..SCAN_ATTEMPTS {
            scan = self.scan(st.size, deadline, what).await?;
            if scan.is_some() {
                break;
            }
        }
        let Some((size, chunks)) = scan else {
            return Err(OpError::Source(SourceError::BadResult(format!(
                "{what}: {UNACKED_INDEX_KEY} changed by more than {OVERLAP} entries between \
                 two reads, {SCAN_ATTEMPTS} times in a row"
            ))));
        };
        // Borrowed from the replies: a tag already known costs no allocation.
        let members: HashSet<&[u8]> = chunks.iter().flatten().map(Vec::as_slice).collect();
        let unknown: Vec<&[u8]> = members
            .iter()
            .copied()
            .filter(|t| !matches!(st.tags.get(*t), Some(Some(_))))
            .collect();
        // Kept as each part arrives: a first refresh of 100,000 tags that
        // runs out of time resumes where it stopped, instead of starting over.
        for part in unknown.chunks(VALUES_PER_TRIP) {
            let values = self.values(part, deadline, what).await?;
            for (tag, value) in part.iter().zip(values) {
                let route = value.map(|v| st.route_of(&v));
                st.tags.insert((*tag).into(), route);
            }
        }
        st.tags.retain(|tag, _| members.contains(&**tag));
        st.size = size;
        st.recount();
        Ok(())
    }

    /// One scan of `unacked_index`: its `ZCARD` and every member (in chunks
    /// that overlap, so some twice), or `None` when two chunks did not
    /// overlap (the set moved too much between).
    async fn scan(
        &self,
        size_before: usize,
        deadline: Instant,
        what: &str,
    ) -> Result<Option<(usize, Chunks)>, OpError> {
        let mut chunks: Chunks = Vec::new();
        let mut size = size_before;
        loop {
            let first = chunks.len();
            let wanted = chunks_for(size + CHUNK / 2).max(first + 1);
            // HLEN: O(1), and fails with WRONGTYPE when `unacked` is not
            // a hash, which the scan of the index alone would not notice.
            let mut cmds = vec![zcard(), hlen()];
            cmds.extend((first..wanted).map(chunk_range));
            let cmds: Commands = cmds.into();
            let conn = self.endpoint.connection(what, deadline).await?;
            let mut answer = self.endpoint.query_group(conn, &cmds).await?;
            let card: i64 = replies::<i64>(answer.drain(..2).collect())?
                .first()
                .copied()
                .unwrap_or(0);
            size = usize::try_from(card).unwrap_or(0);
            chunks.extend(replies::<Vec<Vec<u8>>>(answer)?);
            if !last_is_full(&chunks) {
                break;
            }
        }
        if !chunks_overlap(&chunks) {
            return Ok(None);
        }
        Ok(Some((size, chunks)))
    }

    /// The values of `tags` in `unacked` (`None`: no such field), by `HMGET`s
    /// of at most [`FIELDS_PER_HMGET`] fields, in one pipeline.
    async fn values(
        &self,
        tags: &[&[u8]],
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<Option<Vec<u8>>>, OpError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let cmds: Vec<Cmd> = tags
            .chunks(FIELDS_PER_HMGET)
            .map(|part| {
                let mut c = ::redis::cmd("HMGET");
                c.arg(UNACKED_KEY).arg(part);
                c
            })
            .collect();
        let cmds: Commands = cmds.into();
        let conn = self.endpoint.connection(what, deadline).await?;
        let answer = self.endpoint.query_group(conn, &cmds).await?;
        let parts = replies::<Vec<Option<Vec<u8>>>>(answer)?;
        Ok(parts.into_iter().flatten().collect())
    }
}

impl State {
    /// The routing key of a value, interned.
    fn route_of(&mut self, value: &[u8]) -> u32 {
        let Some(lit) = routing_key_literal(value) else {
            return UNROUTED;
        };
        if let Some(id) = self.route_ids.get(lit) {
            return *id;
        }
        let id = u32::try_from(self.routes.len()).unwrap_or(UNROUTED);
        self.routes.push(lit.into());
        self.route_ids.insert(lit.into(), id);
        id
    }

    fn recount(&mut self) {
        self.counts.clear();
        self.counts.resize(self.routes.len(), 0);
        for route in self.tags.values().flatten() {
            if let Some(n) = self.counts.get_mut(*route as usize) {
                *n += 1;
            }
        }
    }
}

fn hlen() -> Cmd {
    let mut c = ::redis::cmd("HLEN");
    c.arg(UNACKED_KEY);
    c
}

fn zcard() -> Cmd {
    let mut c = ::redis::cmd("ZCARD");
    c.arg(UNACKED_INDEX_KEY);
    c
}

/// How many chunks cover `n` ranks.
fn chunks_for(n: usize) -> usize {
    n.div_ceil(CHUNK).max(1)
}

/// `ZRANGE` of chunk `i`: ranks `i*CHUNK - OVERLAP ..= (i+1)*CHUNK - 1`.
fn chunk_range(i: usize) -> Cmd {
    let start = (i * CHUNK).saturating_sub(OVERLAP);
    let stop = (i + 1) * CHUNK - 1;
    let mut c = ::redis::cmd("ZRANGE");
    c.arg(UNACKED_INDEX_KEY).arg(start).arg(stop);
    c
}

/// How many members chunk `i` holds when the set extends past it.
fn full_len(i: usize) -> usize {
    (i + 1) * CHUNK - (i * CHUNK).saturating_sub(OVERLAP)
}

fn last_is_full(chunks: &[Vec<Vec<u8>>]) -> bool {
    chunks
        .last()
        .is_some_and(|c| c.len() >= full_len(chunks.len() - 1))
}

/// Every full chunk shares a member with the next one: nothing between
/// them was skipped by members moving down (see the module doc).
fn chunks_overlap(chunks: &[Vec<Vec<u8>>]) -> bool {
    chunks.windows(2).enumerate().all(|(i, pair)| {
        if pair[0].len() < full_len(i) {
            return true;
        }
        let tail: HashSet<&[u8]> = pair[0]
            .iter()
            .rev()
            .take(OVERLAP)
            .map(Vec::as_slice)
            .collect();
        pair[1]
            .iter()
            .take(OVERLAP + 1)
            .any(|t| tail.contains(t.as_slice()))
    })
}

/// The last element of kombu's JSON `[message, exchange, routing_key]` as
/// written (quotes and escapes included): the text from the closing `"]`
/// back to the opening quote (the first `"` not escaped by an odd run of
/// backslashes), which must follow a `,` (and spaces). `None` when the
/// value does not end that way.
pub(super) fn routing_key_literal(value: &[u8]) -> Option<&[u8]> {
    let end = value.len().checked_sub(1)?;
    if value.get(end) != Some(&b']') || end == 0 || value[end - 1] != b'"' {
        return None;
    }
    let close = end - 1;
    let mut i = close;
    let open = loop {
        i = i.checked_sub(1)?;
        if value[i] == b'"' {
            let slashes = value[..i].iter().rev().take_while(|b| **b == b'\\').count();
            if slashes % 2 == 0 {
                break i;
            }
        }
    };
    let before = value[..open].iter().rev().find(|b| **b != b' ');
    (before == Some(&b',')).then(|| &value[open..=close])
}

/// A reply to a group whose commands are all of one kind, for tests.
#[cfg(test)]
fn bulk(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_is_the_last_json_string() {
        let lit = |v: &str| routing_key_literal(v.as_bytes()).map(|b| b.to_vec());
        assert_eq!(
            lit(r#"[{"body": "x"}, "", "q1"]"#),
            Some(b"\"q1\"".to_vec())
        );
        assert_eq!(lit(r#"[{"body": "x"},"","q1"]"#), Some(b"\"q1\"".to_vec()));
        assert_eq!(
            lit(r#"[{"body": "x"}, "", "a, \"q1"]"#),
            Some(br#""a, \"q1""#.to_vec())
        );
        assert_eq!(
            lit(r#"[{"b": "x"}, "", "a\\"]"#),
            Some(br#""a\\""#.to_vec())
        );
        assert_eq!(lit(r#"[{"body": "x"}, "", 5]"#), None);
        assert_eq!(lit(r#"""]"#), None);
        assert_eq!(lit("\"]"), None);
        assert_eq!(lit(""), None);
    }

    #[test]
    fn chunks_cover_every_rank_with_overlap() {
        assert_eq!(chunks_for(0), 1);
        assert_eq!(chunks_for(CHUNK), 1);
        assert_eq!(chunks_for(CHUNK + 1), 2);
        assert_eq!(full_len(0), CHUNK);
        assert_eq!(full_len(1), CHUNK + OVERLAP);
    }

    #[test]
    fn a_full_chunk_must_share_a_member_with_the_next() {
        let names = |r: std::ops::Range<usize>| -> Vec<Vec<u8>> {
            r.map(|i| format!("t{i}").into_bytes()).collect()
        };
        let first = names(0..CHUNK);
        // The next chunk as it should be: overlapping the last ranks.
        let ok = names(CHUNK - OVERLAP..CHUNK + 10);
        assert!(chunks_overlap(&[first.clone(), ok]));
        // Everything below moved down by more than the overlap.
        let moved = names(CHUNK + OVERLAP..CHUNK + OVERLAP + 10);
        assert!(!chunks_overlap(&[first.clone(), moved]));
        // A short chunk ends the set: nothing to compare.
        assert!(chunks_overlap(&[bulk(&["a"]), bulk(&["z"])]));
        assert!(!last_is_full(&[bulk(&["a"])]));
        assert!(last_is_full(&[first]));
    }
}

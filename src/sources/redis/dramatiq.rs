//! Dramatiq queues on its Redis broker, on Dramatiq 2.2's key layout
//! (dramatiq 2.2.1 from PyPI; checked against the real Dramatiq by
//! tests/sources_dramatiq.rs on every run).
//!
//! Where Dramatiq defines what this reads:
//! * `dramatiq/brokers/redis/dispatch.lua`, the broker's one script (its
//!   header lists the keys): a queue `Q` under namespace `N` is the list
//!   `N:Q` of message ids (`enqueue` pushes on the right, `fetch` pops on
//!   the left) and the hash `N:Q.msgs` of id -> encoded message. `fetch`
//!   moves each id it pops into the fetching worker's ack set
//!   `N:__acks__.<worker id>.Q`, leaving the message in `.msgs`; `ack`
//!   removes it from both, `nack` moves it to the dead letters (the sorted
//!   set `N:Q.XQ` and its `.XQ.msgs` hash), `requeue` and the maintenance
//!   of dead workers push it back on the list.
//! * `dramatiq/brokers/redis.py` `RedisBroker.enqueue` and
//!   `dramatiq/common.py` `dq_name`: a message sent with a delay goes to
//!   the delay queue `Q.DQ` (the same pair of keys, `N:Q.DQ` and
//!   `N:Q.DQ.msgs`) with `options.eta` in unix milliseconds.
//! * `dramatiq/worker.py` `ConsumerThread.handle_delayed_messages`: a
//!   worker fetches delayed messages into memory (its ack set of `Q.DQ`)
//!   and, once their eta passes, enqueues them on `Q` and acks them; with
//!   no worker running, due messages stay in the delay queue.
//! * `dramatiq/middleware/retries.py` `Retries.after_process_message`: a
//!   failed message to retry is sent again to the delay queue with its
//!   `options.retries` counted up.
//! * `dramatiq/encoder.py`: messages are JSON (the default `JSONEncoder`).
//!
//! Counted: Waiting = `LLEN N:Q`; InFlight = `HLEN N:Q.msgs - LLEN N:Q`,
//! the messages fetched and not acknowledged (prefetched or running), which
//! is the sum of every worker's ack set of `Q` without looking them up (a
//! dead worker's messages count until Dramatiq's maintenance puts them back
//! on the list); Scheduled / Retrying = messages of `N:Q.DQ.msgs` whose
//! eta has passed, without / with `options.retries`. Plain `list` on `N:Q`
//! misses every fetched message (a worker prefetches twice its threads) and
//! every due delayed one.
//!
//! Cost per poll: Waiting and InFlight are `LLEN` and `HLEN`, O(1).
//! Scheduled and Retrying decode every delayed message (`HVALS` of the
//! delay queue's hash, future ones too, since Dramatiq keeps no index by
//! eta), measured at about 4 µs per message of 270 bytes (10,000: 39 ms,
//! during which Redis serves nobody else); above 10,000 delayed
//! messages the read fails and says so rather than stall the server.

use super::framework::{Layout, MAX_DUE_LOOKUPS};

/// KEYS: the queue list, its messages hash, the delay queue's messages
/// hash. ARGV[2]: [`MAX_DUE_LOOKUPS`].
const BODY: &str = r"
typed(KEYS[1], 'list')
typed(KEYS[2], 'hash')
typed(KEYS[3], 'hash')
local waiting, inflight, scheduled, retrying = 0, 0, 0, 0
local queued = redis.call('LLEN', KEYS[1])
if want('W') then waiting = queued end
if want('I') then inflight = math.max(0, redis.call('HLEN', KEYS[2]) - queued) end
if want('S') or want('R') then
  local delayed = redis.call('HLEN', KEYS[3])
  if delayed > tonumber(ARGV[2]) then
    error({err = 'TOOMANY Dramatiq delay queue ' .. KEYS[3] .. ' holds ' .. delayed ..
      ' messages, more than ' .. ARGV[2] .. ' to decode one by one: include Waiting and InFlight only'})
  end
  local t = now() * 1000
  for _, data in ipairs(redis.call('HVALS', KEYS[3])) do
    local ok, m = pcall(cjson.decode, data)
    if not ok or type(m) ~= 'table' or type(m.options) ~= 'table' then
      error({err = 'UNREADABLE a message in ' .. KEYS[3] .. ' is not a JSON Dramatiq message ' ..
        '(is the broker set to another encoder?)'})
    end
    local eta = tonumber(m.options.eta)
    if eta and eta <= t then
      local tries = tonumber(m.options.retries)
      if tries and tries > 0 then retrying = retrying + 1 else scheduled = scheduled + 1 end
    end
  end
end
return {waiting, inflight, scheduled, retrying, false}
";

/// The layout of Dramatiq queue `queue` under the broker namespace `namespace`.
pub(super) fn layout(namespace: &str, queue: &str) -> Layout {
    Layout {
        framework: "Dramatiq",
        queue_text: format!("queue {queue:?} (namespace {namespace:?})"),
        body: BODY,
        keys: vec![
            format!("{namespace}:{queue}"),
            format!("{namespace}:{queue}.msgs"),
            format!("{namespace}:{queue}.DQ.msgs"),
        ],
        args: vec![MAX_DUE_LOOKUPS.to_string()],
        // Never called: the CRD and validation allow Dramatiq Count only.
        parse_time: |_| None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_brokers_namespace() {
        assert_eq!(
            layout("app", "emails").keys,
            ["app:emails", "app:emails.msgs", "app:emails.DQ.msgs"]
        );
    }
}

//! Node BullMQ queues, on BullMQ 6.7's key layout (bullmq 6.7.0 from npm;
//! checked against the real BullMQ by tests/sources_bullmq.rs on every run).
//!
//! Where BullMQ defines what this reads (paths in BullMQ's repository):
//! * `src/classes/queue-keys.ts`: queue `Q` under prefix `P` (default
//!   `bull`; BullMQ refuses a `:` in `Q`) keeps its jobs in `P:Q:wait`,
//!   `P:Q:prioritized`, `P:Q:active`, `P:Q:delayed`, `P:Q:paused`,
//!   `P:Q:failed`, `P:Q:completed`, `P:Q:waiting-children`, with the queue's
//!   settings in the hash `P:Q:meta`; a job is the hash `P:Q:<id>`.
//! * `src/commands/includes/storeJob.lua`: the job hash's `timestamp` is
//!   when it was added, in unix milliseconds (the producer's clock).
//! * `src/commands/addStandardJob-9.lua`, `addPrioritizedJob-9.lua`: a job
//!   is pushed on the left of `wait` (`lifo` on the right), or added to the
//!   sorted set `prioritized` (score: priority, then arrival).
//! * `src/commands/includes/fetchNextJob.lua` (`moveToActive-11.lua`): a
//!   worker first promotes due delayed jobs, then moves the right end of
//!   `wait` to `active` (`RPOPLPUSH`), or else the lowest `prioritized`
//!   member; so the next job to run is `wait`'s right end, then
//!   `prioritized`'s first. A job stays in `active` until it ends; a dead
//!   worker's job goes back to `wait` at the next stalled-job check.
//! * `src/commands/includes/getDelayedScore.lua`, `promoteDelayedJobs.lua`:
//!   `delayed` is scored `due_ms * 0x1000 + counter`, and a job is due (a
//!   worker promotes it) once `score < (now_ms + 1) * 0x1000`. Only a worker
//!   fetching a job promotes: with no worker running, due jobs stay there.
//! * `src/classes/job.ts` `moveToFailed`, `src/commands/moveToDelayed-11.lua`:
//!   a failed job with attempts left and a backoff goes to `delayed` after
//!   the job hash's attempt count `atm` is raised; without a backoff it goes
//!   straight back to `wait` (`retryJob-11.lua`); out of attempts, to `failed`.
//! * `src/commands/pause-7.lua`: `Queue.pause()` sets `paused` in `meta`,
//!   and workers then take no job (`includes/getQueueMetadata.lua`); its
//!   jobs stay where they are (BullMQ 5 moved `wait` to `paused` instead).
//! * `src/commands/getCounts-1.lua` (`Queue.getJobCounts`): the lengths of
//!   those keys, less a wait-list marker BullMQ before 5 kept at the right
//!   end (an id starting `0:`, never a job's).
//!
//! Counted: Waiting = `wait` (less a legacy marker) + `prioritized`;
//! InFlight = `active`; Scheduled = due `delayed` jobs whose `atm` is 0
//! (delayed at add or by the job itself); Retrying = due `delayed` jobs with
//! `atm` > 0 (failed, waiting out their backoff). A paused queue has no
//! work now: only InFlight counts (its jobs run to the end), and
//! OldestAgeSeconds is 0. Not counted: future delayed jobs, `failed`,
//! `completed`, and parents in `waiting-children` (they run when their
//! children are done). Plain `LLEN P:Q:wait` misses prioritized and active
//! jobs, and due delayed jobs and retries, which wait for a worker to
//! promote them: a pool scaled to zero would never wake.
//!
//! Cost per poll: Waiting, InFlight, and Scheduled with Retrying together
//! are `LLEN`/`ZCARD`/`ZCOUNT` (O(1), O(log n)). Scheduled or Retrying
//! alone reads `atm` of each due delayed job (O(due)), refused above 10,000
//! due jobs as arq's split is. OldestAgeSeconds reads at most 20 job
//! hashes (ids of deleted jobs are skipped).

use super::framework::{Layout, MAX_DUE_LOOKUPS};

/// KEYS: wait, prioritized, active, delayed, meta. ARGV[2]: the job hash
/// prefix `P:Q:`; ARGV[3]: [`MAX_DUE_LOOKUPS`].
const BODY: &str = r"
typed(KEYS[1], 'list')
typed(KEYS[2], 'zset')
typed(KEYS[3], 'list')
typed(KEYS[4], 'zset')
typed(KEYS[5], 'hash')
local inflight = 0
if want('I') then inflight = redis.call('LLEN', KEYS[3]) end
if redis.call('HEXISTS', KEYS[5], 'paused') == 1 then return {0, inflight, 0, 0, false} end
local waiting, scheduled, retrying, head = 0, 0, 0, false
if want('W') then
  waiting = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  local last = redis.call('LINDEX', KEYS[1], -1)
  if last and string.sub(last, 1, 2) == '0:' then waiting = waiting - 1 end
end
local due = string.format('%.0f', (math.floor(now() * 1000) + 1) * 4096 - 1)
if want('S') and want('R') then
  scheduled = redis.call('ZCOUNT', KEYS[4], '-inf', due)
elseif want('S') or want('R') then
  local n = redis.call('ZCOUNT', KEYS[4], '-inf', due)
  if n > tonumber(ARGV[3]) then
    error({err = 'TOOMANY BullMQ queue ' .. KEYS[4] .. ' has ' .. n .. ' due delayed jobs, more than ' ..
      ARGV[3] .. ' to look up one by one: include Scheduled and Retrying together (one ZCOUNT)'})
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', due)) do
    if (tonumber(redis.call('HGET', ARGV[2] .. id, 'atm')) or 0) > 0 then retrying = retrying + 1
    else scheduled = scheduled + 1 end
  end
end
if want('A') then
  local ids = redis.call('LRANGE', KEYS[1], -10, -1)
  for i = #ids, 1, -1 do
    head = redis.call('HGET', ARGV[2] .. ids[i], 'timestamp')
    if head then break end
  end
  if not head then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, 9)) do
      head = redis.call('HGET', ARGV[2] .. id, 'timestamp')
      if head then break end
    end
  end
end
return {waiting, inflight, scheduled, retrying, head}
";

/// The layout of BullMQ queue `queue` under key prefix `prefix`.
pub(super) fn layout(prefix: &str, queue: &str) -> Layout {
    let key = |k: &str| format!("{prefix}:{queue}:{k}");
    Layout {
        framework: "BullMQ",
        queue_text: format!("queue {queue:?} (prefix {prefix:?})"),
        body: BODY,
        keys: vec![
            key("wait"),
            key("prioritized"),
            key("active"),
            key("delayed"),
            key("meta"),
        ],
        args: vec![key(""), MAX_DUE_LOOKUPS.to_string()],
        parse_time,
    }
}

/// A job's `timestamp`: unix milliseconds, as `Date.now()` gives them.
fn parse_time(s: &str) -> Option<f64> {
    let ms: f64 = s.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then_some(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bullmq_timestamps() {
        assert_eq!(parse_time("1795000000250"), Some(1795000000.25));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("-5"), None);
    }

    #[test]
    fn keys_follow_prefix_and_queue() {
        let l = layout("{bull}", "emails");
        assert_eq!(l.keys[0], "{bull}:emails:wait");
        assert_eq!(l.keys[4], "{bull}:emails:meta");
        assert_eq!(l.args[0], "{bull}:emails:");
    }
}

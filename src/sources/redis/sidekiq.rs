//! Sidekiq queues, on Sidekiq 6.4's key layout, which 7.x and 8.x keep but
//! for the name of a process's busy-thread hash and the unit of
//! `enqueued_at` (both read here; ruby-sidekiq 6.4.1 from
//! Debian; checked against the real Sidekiq by tests/sources_sidekiq.rs on
//! every run).
//!
//! Where Sidekiq defines what this reads:
//! * `lib/sidekiq/client.rb` `atomic_push`: a job is JSON with its `queue`
//!   field; an immediate job gets `enqueued_at` (unix seconds, a float;
//!   Sidekiq 8 writes milliseconds) and is pushed on the left of the list
//!   `queue:<queue>`; a job with `at` goes to the sorted set `schedule`,
//!   shared by every queue, scored by its due time.
//! * `lib/sidekiq/fetch.rb` `BasicFetch#retrieve_work`: workers `BRPOP`
//!   the list, so its right end is the next job; `api.rb` `Queue#size` is
//!   its `LLEN` and `Queue#latency` is now minus `enqueued_at` of that job.
//! * `lib/sidekiq/job_retry.rb` `attempt_retry`: a failed job to retry goes
//!   to the shared sorted set `retry` scored by its retry time, its `queue`
//!   field naming the queue it goes back to (`retry_queue` if set); jobs
//!   out of retries go to `dead`, never counted.
//! * `lib/sidekiq/scheduled.rb` `Enq#enqueue_jobs`: each server process
//!   polls `schedule` and `retry` and pushes due jobs to their queue.
//! * `lib/sidekiq/launcher.rb` heartbeat (every 5 s): a live process is a
//!   member of the set `processes` whose hash `<identity>` exists (it
//!   expires 60 s after the last beat); its running jobs are the hash
//!   `<identity>:workers` (6.x; `<identity>:work` in 7.x) of thread id ->
//!   JSON with the job's `queue`, as `api.rb` `WorkSet#each` reads them.
//!
//! Counted: Waiting = `LLEN queue:<queue>`; InFlight = entries for this
//! queue in the busy-thread hashes of live processes (as of their last
//! heartbeat, as Sidekiq's own `WorkSet`); Scheduled / Retrying = due
//! entries of `schedule` / `retry` whose `queue` is this queue. Plain
//! `list` on `queue:<queue>` misses running jobs, and due scheduled jobs
//! and retries until a server process's poller moves them (none does while
//! the pool is scaled to zero).
//!
//! Cost per poll: Waiting is `LLEN`, O(1). InFlight reads `processes` and
//! each live process's busy threads: O(processes + busy threads).
//! Scheduled and Retrying read every due entry of the shared set (all
//! queues'): an entry whose raw JSON does not contain the queue's name is
//! skipped (about 0.7 µs), the others are decoded (about 4 µs for a job of
//! 170 bytes: 10,000 take 36 ms, during which Redis serves nobody else);
//! above 10,000 due entries the read fails and says so rather than stall
//! the server.
//! OldestAgeSeconds decodes one job, the next to run, and reads its
//! `enqueued_at` (else `created_at`, as Sidekiq's latency does).

use super::framework::{Layout, MAX_DUE_LOOKUPS};

/// KEYS: the queue, `schedule`, `retry`, `processes`. ARGV[2]: the queue's
/// name; ARGV[3]: [`MAX_DUE_LOOKUPS`]; ARGV[4]: [`raw_name`] or empty.
const BODY: &str = r"
typed(KEYS[1], 'list')
typed(KEYS[2], 'zset')
typed(KEYS[3], 'zset')
typed(KEYS[4], 'set')
local function job(json, key)
  local ok, j = pcall(cjson.decode, json)
  if not ok or type(j) ~= 'table' then
    error({err = 'UNREADABLE an entry of ' .. key .. ' is not a JSON Sidekiq job'})
  end
  return j
end
-- A job whose raw JSON lacks the queue's name (ARGV[4], when JSON writes
-- it as is) is another queue's: no need to decode it.
local function ours(json, key)
  if ARGV[4] ~= '' and not string.find(json, ARGV[4], 1, true) then return false end
  return job(json, key).queue == ARGV[2]
end
local function due_here(key)
  local t = now()
  local due = redis.call('ZCOUNT', key, '-inf', t)
  if due > tonumber(ARGV[3]) then
    error({err = 'TOOMANY Sidekiq set ' .. key .. ' has ' .. due .. ' due jobs, more than ' ..
      ARGV[3] .. ' to decode one by one: leave Scheduled and Retrying out of include'})
  end
  local n = 0
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', t)) do
    if ours(e, key) then n = n + 1 end
  end
  return n
end
local waiting, inflight, scheduled, retrying, head = 0, 0, 0, 0, false
if want('W') then waiting = redis.call('LLEN', KEYS[1]) end
if want('S') then scheduled = due_here(KEYS[2]) end
if want('R') then retrying = due_here(KEYS[3]) end
if want('I') then
  for _, p in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    if redis.call('EXISTS', p) == 1 then
      for _, k in ipairs({p .. ':workers', p .. ':work'}) do
        if typed(k, 'hash') then
          for _, w in ipairs(redis.call('HVALS', k)) do
            if ours(w, k) then inflight = inflight + 1 end
          end
        end
      end
    end
  end
end
if want('A') then
  local e = redis.call('LINDEX', KEYS[1], -1)
  if e then
    local j = job(e, KEYS[1])
    local at = tonumber(j.enqueued_at) or tonumber(j.created_at)
    if at then head = string.format('%.6f', at) end
  end
end
return {waiting, inflight, scheduled, retrying, head}
";

/// The layout of Sidekiq queue `queue`.
pub(super) fn layout(queue: &str) -> Layout {
    Layout {
        framework: "Sidekiq",
        queue_text: format!("queue {queue:?}"),
        body: BODY,
        keys: vec![
            format!("queue:{queue}"),
            "schedule".into(),
            "retry".into(),
            "processes".into(),
        ],
        args: vec![
            queue.to_string(),
            MAX_DUE_LOOKUPS.to_string(),
            raw_name(queue).unwrap_or_default(),
        ],
        parse_time,
    }
}

/// The queue's name as it stands in a job's raw JSON, when every JSON
/// writer leaves it as is (printable ASCII but for `"`, `\` and `/`, which
/// some escape): then a job without it is certainly another queue's.
fn raw_name(queue: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/');
    queue.chars().all(plain).then(|| queue.to_string())
}

/// Sidekiq's `enqueued_at`: unix seconds as a float (Sidekiq 6 and 7), or
/// integer milliseconds (Sidekiq 8), told apart by size.
fn parse_time(s: &str) -> Option<f64> {
    let t: f64 = s.parse().ok()?;
    if !t.is_finite() || t < 0.0 {
        return None;
    }
    Some(if t > 1e11 { t / 1000.0 } else { t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seconds_and_milliseconds() {
        assert_eq!(parse_time("1795000000.250000"), Some(1795000000.25));
        assert_eq!(parse_time("1795000000250.000000"), Some(1795000000.25));
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn names_json_may_escape_are_not_prefiltered() {
        assert_eq!(raw_name("mailers-2.low").as_deref(), Some("mailers-2.low"));
        assert_eq!(raw_name("a/b"), None);
        assert_eq!(raw_name("é"), None);
    }
}

//! Python RQ queues, on RQ 3.0's key layout (rq 3.0.0 from PyPI; checked
//! against the real RQ by tests/sources_frameworks.rs on every run).
//!
//! Where RQ defines what this reads:
//! * `rq/queue.py` (`Queue.redis_queue_namespace_prefix`, `Queue.count`):
//!   a queue `Q` is the list `rq:queue:Q` of job ids, pushed on the right
//!   (`at_front` on the left) and taken from the left, so its head is the
//!   next job to run; `Queue.count` is its `LLEN`.
//! * `rq/intermediate_queue.py` and `Queue.dequeue_any`: a worker that
//!   listens to this queue alone moves the id it takes (`BLMOVE`) to the
//!   list `rq:queue:Q:intermediate`, and removes it there as the job starts
//!   (`Worker.prepare_job_execution`); a worker that dies in between leaves
//!   it there until the intermediate queue's clean-up (after a minute). A
//!   worker on several queues pops with `BLPOP` instead, so its job is in
//!   no key until it starts (an instant).
//! * `rq/registry.py` `StartedJobRegistry` (`rq:wip:Q`): a sorted set of
//!   `<job id>:<execution id>` scored by the heartbeat's expiry; entries
//!   whose expiry passed are a dead worker's, which its `cleanup` (run by
//!   `count`) retries or fails, so only unexpired ones are in flight.
//! * `ScheduledJobRegistry` (`rq:scheduled:Q`): job ids scored by the unix
//!   time they are due (`enqueue_at`/`enqueue_in`, and retries that wait an
//!   interval, `Retry(interval=...)`); the scheduler moves due ones to the
//!   queue. Retries without an interval go straight back to the queue.
//! * `rq/job.py`: a job's hash `rq:job:<id>` has `enqueued_at` in
//!   `%Y-%m-%dT%H:%M:%S.%fZ` (UTC, `utils.utcformat`).
//!
//! Counted: Waiting = `LLEN` of the queue; InFlight = the distinct job ids
//! of the intermediate list and of the unexpired started entries (a job in
//! both counts once); Scheduled = due entries of the scheduled registry.
//! Plain `LLEN rq:queue:Q` misses every job a worker has taken.
//!
//! Cost per poll: `O(1)` for Waiting and Scheduled (`LLEN`, `ZCOUNT`);
//! InFlight reads the intermediate list and the live started entries, which
//! are as many as the queue's busy workers (each works one job at a time),
//! plus ids a crashed worker left in the intermediate list for at most a
//! minute. OldestAgeSeconds looks at most 10 job hashes (ids whose job
//! was deleted are skipped, as RQ skips them).

use super::framework::Layout;

/// KEYS: the queue, its intermediate list, the started and scheduled
/// registries. ARGV[2]: the job hash prefix.
const BODY: &str = r"
typed(KEYS[1], 'list')
typed(KEYS[2], 'list')
typed(KEYS[3], 'zset')
typed(KEYS[4], 'zset')
local t = now()
local waiting, inflight, scheduled, head = 0, 0, 0, false
if want('W') then waiting = redis.call('LLEN', KEYS[1]) end
if want('I') then
  local seen = {}
  for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if not seen[id] then seen[id] = true; inflight = inflight + 1 end
  end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. t, '+inf')) do
    local id = string.match(m, '^(.*):[^:]*$') or m
    if not seen[id] then seen[id] = true; inflight = inflight + 1 end
  end
end
if want('S') then scheduled = redis.call('ZCOUNT', KEYS[4], '-inf', t) end
if want('A') then
  for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, 9)) do
    local at = redis.call('HGET', ARGV[2] .. id, 'enqueued_at')
    if at then head = at; break end
  end
end
return {waiting, inflight, scheduled, 0, head}
";

/// The layout of RQ queue `queue`.
pub(super) fn layout(queue: &str) -> Layout {
    Layout {
        framework: "RQ",
        queue_text: format!("queue {:?}", queue),
        body: BODY,
        keys: vec![
            format!("rq:queue:{queue}"),
            format!("rq:queue:{queue}:intermediate"),
            format!("rq:wip:{queue}"),
            format!("rq:scheduled:{queue}"),
        ],
        args: vec!["rq:job:".into()],
        parse_time,
    }
}

/// RQ's `utcformat`: `2026-11-26T12:00:00.123456Z`, UTC.
fn parse_time(s: &str) -> Option<f64> {
    let t = jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S%.fZ", s).ok()?;
    let t = t.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(t.as_microsecond() as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rq_timestamps() {
        // python -c 'from rq.utils import utcformat; from datetime import datetime, timezone;
        //   print(utcformat(datetime.fromtimestamp(1795000000.25, timezone.utc)))'
        assert_eq!(
            parse_time("2026-11-18T11:06:40.250000Z"),
            Some(1795000000.25)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}

//! arq queues, on arq 0.28's key layout (arq 0.28.0 from PyPI; checked
//! against the real arq by tests/sources_frameworks.rs on every run).
//!
//! Where arq defines what this reads:
//! * `arq/constants.py`: `default_queue_name = 'arq:queue'`, the prefixes
//!   `arq:job:`, `arq:in-progress:`, `arq:retry:`.
//! * `arq/connections.py` `ArqRedis.enqueue_job`: a job is its id in the
//!   queue's sorted set, scored by when it is due in unix milliseconds (the
//!   enqueue time, or `_defer_until`/`_defer_by`), and its pickled
//!   definition in `arq:job:<id>`.
//! * `arq/worker.py`: a worker takes due ids in score order and marks the
//!   one it starts with the key `arq:in-progress:<id>` (`start_jobs`); the id
//!   stays in the sorted set while the job runs. `run_job` counts the tries
//!   in `arq:retry:<id>`; a try that raises `Retry` adds its delay to the
//!   score (`finish_job`), so the job is due again later and its retry key
//!   stays; a job that ends is removed with both keys.
//! * `arq/jobs.py` `Job.status`: in progress if the in-progress key exists,
//!   else queued when its score has passed, else deferred.
//!
//! Counted, among the due ids (score ≤ now): InFlight = with an in-progress
//! key; Retrying = without one, with a retry key (tried before); Waiting =
//! the rest. A deferred job that has come due is Waiting, exactly like an
//! immediate one (arq keeps nothing that tells them apart), so `Scheduled`
//! is rejected. Plain `ZCARD` counts future retries and deferred jobs;
//! `LLEN` fails (it is not a list).
//!
//! Cost per poll: all three kinds together (the default) are one `ZCOUNT`
//! (O(log n)). Any other include looks up two keys per due job inside one
//! script, measured at about 3.5 µs per due job (10,000 due jobs: 34 ms,
//! during which Redis serves nobody else), so above 10,000 due jobs the
//! read fails and says so rather than stall the server.

use super::framework::{Layout, MAX_DUE_LOOKUPS};

/// KEYS: the queue's sorted set. ARGV[2], ARGV[3]: the in-progress and
/// retry key prefixes; ARGV[4]: [`MAX_DUE_LOOKUPS`].
const BODY: &str = r"
typed(KEYS[1], 'zset')
local t = string.format('%d', math.floor(now() * 1000))
local waiting, inflight, retrying = 0, 0, 0
if want('W') and want('I') and want('R') then
  waiting = redis.call('ZCOUNT', KEYS[1], '-inf', t)
elseif want('W') or want('I') or want('R') then
  local due = redis.call('ZCOUNT', KEYS[1], '-inf', t)
  if due > tonumber(ARGV[4]) then
    error({err = 'TOOMANY arq queue ' .. KEYS[1] .. ' has ' .. due .. ' due jobs, more than ' ..
      ARGV[4] .. ' to look up one by one: include Waiting, InFlight and Retrying together (one ZCOUNT)'})
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t)) do
    if redis.call('EXISTS', ARGV[2] .. id) == 1 then inflight = inflight + 1
    elseif redis.call('EXISTS', ARGV[3] .. id) == 1 then retrying = retrying + 1
    else waiting = waiting + 1 end
  end
end
return {waiting, inflight, 0, retrying, false}
";

/// The layout of the arq queue whose sorted set is `queue_name`.
pub(super) fn layout(queue_name: &str) -> Layout {
    Layout {
        framework: "arq",
        queue_text: format!("queue {queue_name:?}"),
        body: BODY,
        keys: vec![queue_name.to_string()],
        args: vec![
            "arq:in-progress:".into(),
            "arq:retry:".into(),
            MAX_DUE_LOOKUPS.to_string(),
        ],
        // Never called: the CRD and validation allow arq Count only.
        parse_time: |_| None,
    }
}

//! Huey queues on its Redis storage, on Huey 3.5's key layout (huey 3.5.4
//! from PyPI; checked against the real Huey by tests/sources_frameworks.rs
//! on every run).
//!
//! Where Huey defines what this reads, `huey/storage.py`:
//! * `RedisStorage.__init__`: the name is cleaned to `[A-Za-z0-9_]`
//!   (`clean_name`), the queue is `huey.redis.<name>` and the schedule
//!   `huey.schedule.<name>`.
//! * `RedisStorage.enqueue`/`dequeue`/`queue_size`: the queue is a list
//!   (`LPUSH`, the consumer `BRPOP`s); with `PriorityRedisHuey`
//!   (`RedisPriorityQueue`) the same key is a sorted set (`ZADD`,
//!   `BZPOPMIN`, `ZCARD`).
//! * `add_to_schedule`/`read_schedule`/`schedule_size`: tasks with an `eta`
//!   or `delay`, and retries waiting out `retry_delay` (`Huey._execute`),
//!   are members of the sorted set scored by their due time
//!   (`convert_ts`: Huey's UTC time read by `time.mktime`, so unix time
//!   when the consumer runs with TZ=UTC, as containers do); the consumer's
//!   scheduler moves due ones to the queue every `scheduler_interval`.
//!
//! Counted: Waiting = the queue's length; Scheduled = due members of the
//! schedule. A task a worker has taken is in no key (Huey keeps no record
//! of running tasks), so InFlight is rejected, and Retrying too (retries
//! wait in the schedule: they are Scheduled). Plain `list` on the queue
//! misses due scheduled tasks and retries, and fails on a priority queue.
//!
//! Cost per poll: `LLEN` or `ZCARD`, and `ZCOUNT`: O(1) and O(log n).

use super::framework::Layout;

/// KEYS: the queue (list, or sorted set with priorities), the schedule.
const BODY: &str = r"
local qt = redis.call('TYPE', KEYS[1]).ok
if qt ~= 'none' and qt ~= 'list' and qt ~= 'zset' then
  error({err = 'WRONGTYPE key ' .. KEYS[1] .. ' holds a ' .. qt .. ', not a list (or a zset, with priorities)'})
end
typed(KEYS[2], 'zset')
local waiting, scheduled = 0, 0
if want('W') then
  if qt == 'list' then waiting = redis.call('LLEN', KEYS[1])
  elseif qt == 'zset' then waiting = redis.call('ZCARD', KEYS[1]) end
end
if want('S') then scheduled = redis.call('ZCOUNT', KEYS[2], '-inf', now()) end
return {waiting, 0, scheduled, 0, false}
";

/// The layout of the Huey instance named `name`.
pub(super) fn layout(name: &str) -> Layout {
    let name = clean_name(name);
    Layout {
        framework: "Huey",
        queue_text: format!("{name:?}"),
        body: BODY,
        keys: vec![
            format!("huey.redis.{name}"),
            format!("huey.schedule.{name}"),
        ],
        args: vec![],
        // Never called: the CRD and validation allow Huey Count only.
        parse_time: |_| None,
    }
}

/// Huey's `RedisStorage.clean_name`: only `[A-Za-z0-9_]` is kept.
fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_as_huey_does() {
        assert_eq!(clean_name("my-app.v2_é"), "myappv2_");
        assert_eq!(layout("my-app").keys[0], "huey.redis.myapp");
    }
}

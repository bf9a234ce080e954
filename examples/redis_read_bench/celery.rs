//! `--celery`: what counting Celery's in-flight work costs the broker.
//!
//! Fills a Redis of the bench's own with kombu's layout (four queues, each
//! with a few queued messages; `--in-flight` messages of about
//! `--message-bytes` in the `unacked` hash, JSON `[message, exchange,
//! routing_key]` as kombu writes it, their tags in the `unacked_index`
//! sorted set), then polls `--pools` Celery sources (queue = pool % 4,
//! in-flight included) together once a second for `--seconds`, as one
//! poll slot of that many WorkerPools would. With `--churn N` a worker
//! stand-in takes and acknowledges N messages a second meanwhile (kombu's
//! MULTI'd ZADD+HSET and ZREM+HDEL). With `--deny-index` the sources log in
//! as an ACL user that may not run `ZRANGE`, so they count the way they did
//! before the shared index (a Lua script over `HVALS` per read).
//!
//! Prints Redis's time on the operator's commands (`INFO commandstats`,
//! the commands the Celery source sends; the stand-in's are left out) per
//! second of polling, as a share of one core, and the longest single such
//! command (`SLOWLOG`, every command logged).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, Sources};

/// What the Celery source may send (lower case, as `INFO commandstats` names them).
const OPERATOR_COMMANDS: [&str; 9] = [
    "llen", "zcard", "hlen", "zrange", "hmget", "evalsha", "eval", "hscan", "script",
];
const QUEUES: usize = 4;
const QUEUED_PER_QUEUE: usize = 25;

pub struct Options {
    pub pools: usize,
    pub in_flight: usize,
    pub message_bytes: usize,
    pub seconds: u64,
    pub churn: u64,
    pub deny_index: bool,
}

pub async fn run(url: &str, o: &Options) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = patient_connection(&client).await?;
    let held = fill(&mut conn, o).await?;
    let source_url = if o.deny_index {
        redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER",
                    "bench-no-index",
                    "on",
                    ">bench-pw",
                    "~*",
                    "+@all",
                    "-zrange",
                ][..],
            )
            .query_async::<()>(&mut conn)
            .await?;
        url.replacen("redis://", "redis://bench-no-index:bench-pw@", 1)
    } else {
        url.to_string()
    };
    let sources = Sources::new();
    // The operator's default read timeout; the old method needs longer
    // (its reads take tens of ms each inside Redis, one after another).
    let timeout = Duration::from_secs(if o.deny_index { 10 } else { 2 });
    let pools: Vec<(usize, Arc<dyn MetricSource>)> = (0..o.pools)
        .map(|i| {
            let t: Trigger = serde_json::from_value(json!({
                "redis": {"url": source_url, "celery": {"queue": queue(i % QUEUES), "includeInFlight": true}},
                "targetPerReplica": 1.0,
            }))?;
            Ok((i % QUEUES, sources.build(&t, &BTreeMap::new(), timeout)?))
        })
        .collect::<anyhow::Result<_>>()?;
    // The first polls fill the index (every value read once; a refresh cut
    // short by its deadline keeps what it fetched); not measured.
    let warm_until = Instant::now() + Duration::from_secs(120);
    while let Err(e) = poll(&pools, o.churn == 0, &held).await {
        if Instant::now() > warm_until {
            return Err(e.context("no poll succeeded within 120 s"));
        }
    }
    redis::cmd("CONFIG")
        .arg(
            &[
                "SET",
                "slowlog-log-slower-than",
                "0",
                "slowlog-max-len",
                "100000",
            ][..],
        )
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = (o.churn > 0).then(|| {
        tokio::spawn(churn_loop(
            client.clone(),
            o.churn,
            o.message_bytes,
            stop.clone(),
        ))
    });
    let started = Instant::now();
    let mut worst_read = Duration::ZERO;
    for tick in 1..=o.seconds {
        let t0 = Instant::now();
        poll(&pools, churn.is_none(), &held).await?;
        worst_read = worst_read.max(t0.elapsed());
        tokio::time::sleep_until((started + Duration::from_secs(tick)).into()).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(c) = churn {
        c.await??;
    }
    let usec = operator_usec(&mut conn).await?;
    let ((longest, longest_cmd), over_1ms, logged) = longest_command(&mut conn).await?;
    println!(
        "celery: {} pools, {} in flight of ~{} B, {} taken+acked/s, {}polling 1/s for {:.0} s",
        o.pools,
        o.in_flight,
        o.message_bytes,
        o.churn,
        if o.deny_index {
            "index denied (script), "
        } else {
            ""
        },
        elapsed.as_secs_f64()
    );
    for (cmd, (calls, us)) in &usec {
        println!("  {cmd:<8} {calls:>8} calls {:>10.1} ms", *us as f64 / 1e3);
    }
    let total: u64 = usec.values().map(|(_, us)| us).sum();
    println!(
        "celery: Redis time on the operator's commands: {:.2} ms/s = {:.2} % of one core; longest command {} us ({}), {} of {} over 1 ms; slowest poll {:.1} ms",
        total as f64 / 1e3 / elapsed.as_secs_f64(),
        total as f64 / 1e4 / elapsed.as_secs_f64(),
        longest,
        longest_cmd,
        over_1ms,
        logged,
        worst_read.as_secs_f64() * 1e3
    );
    Ok(())
}

/// A connection that waits for slow answers (a busy machine, big pipelines).
async fn patient_connection(client: &redis::Client) -> anyhow::Result<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

fn queue(i: usize) -> String {
    format!("celery-bench-{i}")
}

/// One poll slot: every pool reads at once. Without churn every value must
/// be exact: the queued messages plus the queue's share of `held`.
async fn poll(
    pools: &[(usize, Arc<dyn MetricSource>)],
    check: bool,
    held: &[usize; QUEUES],
) -> anyhow::Result<()> {
    let values = futures::future::join_all(pools.iter().map(|(_, s)| s.read())).await;
    for ((q, s), v) in pools.iter().zip(values) {
        let v = v.with_context(|| s.describe())?;
        let want = (QUEUED_PER_QUEUE + held[*q]) as f64;
        if check && v != want {
            bail!("{}: read {v}, want {want}", s.describe());
        }
    }
    Ok(())
}

/// kombu's value for a delivery tag: `[message, exchange, routing_key]`
/// as Python's `json.dumps` writes it, about `bytes` long.
fn message(tag: &str, routing_key: &str, bytes: usize) -> String {
    let body = "x".repeat(bytes.saturating_sub(300));
    let m = json!({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"id": tag, "task": "tasks.work", "lang": "py"},
        "properties": {"delivery_tag": tag, "priority": 0, "delivery_mode": 2},
    });
    let v = serde_json::to_string(&json!([m, "", routing_key])).unwrap_or_default();
    v.replace("\",\"", "\", \"").replace("\":", "\": ")
}

/// Writes the queued lists and `in_flight` unacked messages; returns how
/// many are held per queue.
async fn fill(conn: &mut MultiplexedConnection, o: &Options) -> anyhow::Result<[usize; QUEUES]> {
    redis::cmd("FLUSHDB").query_async::<()>(conn).await?;
    let mut held = [0usize; QUEUES];
    let mut pipe = redis::pipe();
    for q in 0..QUEUES {
        for _ in 0..QUEUED_PER_QUEUE {
            pipe.cmd("LPUSH")
                .arg(queue(q))
                .arg(message("queued", &queue(q), 600))
                .ignore();
        }
    }
    for i in 0..o.in_flight {
        let q = i % QUEUES;
        held[q] += 1;
        let tag = format!("{:032x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15);
        pipe.cmd("ZADD")
            .arg("unacked_index")
            .arg(1.7e9 + i as f64 / 1e3)
            .arg(&tag)
            .ignore();
        pipe.cmd("HSET")
            .arg("unacked")
            .arg(&tag)
            .arg(message(&tag, &queue(q), o.message_bytes))
            .ignore();
        if pipe.len() >= 2_000 {
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
        }
    }
    pipe.query_async::<()>(conn).await?;
    Ok(held)
}

/// A worker stand-in: takes and acknowledges `per_second` messages a
/// second as kombu does, keeping the in-flight total steady.
async fn churn_loop(
    client: redis::Client,
    per_second: u64,
    bytes: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut conn = patient_connection(&client).await?;
    let mut n: u64 = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let tag = format!("churn-{n:016x}");
        let q = queue((n % QUEUES as u64) as usize);
        redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg("unacked_index")
            .arg(1.8e9 + n as f64)
            .arg(&tag)
            .cmd("HSET")
            .arg("unacked")
            .arg(&tag)
            .arg(message(&tag, &q, bytes))
            .query_async::<()>(&mut conn)
            .await?;
        if n > 1 {
            let old = format!("churn-{:016x}", n - 1);
            redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg("unacked_index")
                .arg(&old)
                .cmd("HDEL")
                .arg("unacked")
                .arg(&old)
                .query_async::<()>(&mut conn)
                .await?;
        }
        let due = start + Duration::from_secs_f64(n as f64 / per_second as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    Ok(())
}

/// `INFO commandstats` of the operator's commands: name -> (calls, usec).
async fn operator_usec(
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        if !OPERATOR_COMMANDS.contains(&name) {
            continue;
        }
        let field = |k: &str| {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(k))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_string(), (field("calls="), field("usec=")));
    }
    Ok(out)
}

/// The operator's commands in the slow log (every command is logged): the
/// longest (microseconds and name), how many took over 1 ms, and how many
/// there were. On a busy machine a command descheduled mid-way shows as long.
async fn longest_command(
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<((u64, String), usize, usize)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100_000)
        .query_async(conn)
        .await?;
    let mut best = (0u64, String::new());
    let (mut over_1ms, mut all) = (0, 0);
    for e in entries {
        let redis::Value::Array(fields) = e else {
            continue;
        };
        let (Some(redis::Value::Int(us)), Some(redis::Value::Array(argv))) =
            (fields.get(2), fields.get(3))
        else {
            continue;
        };
        let name = match argv.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_lowercase(),
            _ => continue,
        };
        let us = u64::try_from(*us).unwrap_or(0);
        if !OPERATOR_COMMANDS.contains(&name.as_str()) {
            continue;
        }
        all += 1;
        over_1ms += usize::from(us > 1_000);
        if us > best.0 {
            best = (us, name);
        }
    }
    Ok((best, over_1ms, all))
}

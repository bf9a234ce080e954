//! The Redis side: K `redis-server`s on free ports (or REDIS_URL), setting
//! queue depths, and the server counters that show round trips.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;

use crate::layouts::DepthKind;

/// Sets each KEYS[i] to ARGV[i] items in one command, so the driver's own
/// traffic is one known read per batch on the server: a list, or (when the
/// last ARGV is `zset`) a sorted set of members due long ago (arq's layout).
const SET_DEPTHS: &str = r#"
local zset = ARGV[#KEYS + 1] == 'zset'
for i, k in ipairs(KEYS) do
  redis.call('DEL', k)
  local n = tonumber(ARGV[i])
  if n > 0 then
    local t = {}
    for j = 1, n do
      if zset then t[2 * j - 1] = 1000; t[2 * j] = 'x' .. j else t[j] = 'x' end
    end
    if zset then redis.call('ZADD', k, unpack(t)) else redis.call('RPUSH', k, unpack(t)) end
  end
end
return #KEYS
"#;

/// Pools per EVAL: keeps each command well under Redis' 16 KiB read buffer.
const CHUNK: usize = 200;

pub struct Fleet {
    urls: Vec<String>,
    servers: Vec<Child>,
}

/// Server counters, summed over endpoints.
#[derive(Clone, Default, Debug)]
pub struct ServerStats {
    /// `total_reads_processed`: read events on client sockets.
    pub reads: u64,
    /// `reads` of each endpoint, in `Fleet::urls` order.
    pub reads_by_endpoint: Vec<u64>,
    /// `cmdstat_llen` calls.
    pub llen_calls: u64,
    /// `cmdstat_evalsha` calls (the framework measures' scripts).
    pub evalsha_calls: u64,
}

impl ServerStats {
    pub fn delta(a: &ServerStats, b: &ServerStats) -> ServerStats {
        ServerStats {
            reads: b.reads.saturating_sub(a.reads),
            reads_by_endpoint: b
                .reads_by_endpoint
                .iter()
                .zip(&a.reads_by_endpoint)
                .map(|(b, a)| b.saturating_sub(*a))
                .collect(),
            llen_calls: b.llen_calls.saturating_sub(a.llen_calls),
            evalsha_calls: b.evalsha_calls.saturating_sub(a.evalsha_calls),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Fleet {
    pub fn start(k: usize, dir: &Path) -> anyhow::Result<Fleet> {
        if let Ok(urls) = std::env::var("REDIS_URL") {
            let urls: Vec<String> = urls
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            anyhow::ensure!(!urls.is_empty(), "REDIS_URL is empty");
            eprintln!("scale_bench: using REDIS_URL ({} endpoints)", urls.len());
            return Ok(Fleet {
                urls,
                servers: Vec::new(),
            });
        }
        let mut fleet = Fleet {
            urls: Vec::new(),
            servers: Vec::new(),
        };
        for i in 0..k.max(1) {
            let port = free_port()?;
            let d = dir.join(format!("redis-{i}"));
            std::fs::create_dir_all(&d)?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(&d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("redis-server (apt-get install redis-server)")?;
            fleet.servers.push(child);
            let url = format!("redis://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let up = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok();
                if up {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "redis-server on {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            fleet.urls.push(url);
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub async fn connect(&self) -> anyhow::Result<Vec<MultiplexedConnection>> {
        let mut out = Vec::new();
        for u in &self.urls {
            // No response timeout: a slow answer under load is data, not an error.
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(10)))
                .set_response_timeout(None);
            out.push(
                redis::Client::open(u.as_str())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Sets the depths of `(pool, depth)`; returns commands sent per endpoint.
    pub async fn set_depths(
        &self,
        conns: &mut [MultiplexedConnection],
        sets: &[(usize, u64)],
        keys: &[String],
        kind: DepthKind,
        endpoint_of: impl Fn(usize) -> usize,
    ) -> anyhow::Result<Vec<u64>> {
        let mut per: Vec<Vec<(usize, u64)>> = vec![Vec::new(); conns.len()];
        for &(i, d) in sets {
            per[endpoint_of(i)].push((i, d));
        }
        let mut sent = vec![0u64; conns.len()];
        for (e, items) in per.iter().enumerate() {
            for chunk in items.chunks(CHUNK) {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(SET_DEPTHS).arg(chunk.len());
                for (i, _) in chunk {
                    cmd.arg(&keys[*i]);
                }
                for (_, d) in chunk {
                    cmd.arg(*d);
                }
                cmd.arg(if kind == DepthKind::DueZset {
                    "zset"
                } else {
                    "list"
                });
                let _: i64 = cmd.query_async(&mut conns[e]).await?;
                sent[e] += 1;
            }
        }
        Ok(sent)
    }

    /// One `INFO stats commandstats` per endpoint, summed.
    pub async fn stats(&self, conns: &mut [MultiplexedConnection]) -> anyhow::Result<ServerStats> {
        let mut s = ServerStats::default();
        for c in conns.iter_mut() {
            let text: String = redis::cmd("INFO")
                .arg("stats")
                .arg("commandstats")
                .query_async(c)
                .await?;
            let mut reads = 0;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("total_reads_processed:") {
                    reads = v.trim().parse::<u64>().unwrap_or(0);
                }
                let calls = |v: &str| {
                    v.split(',')
                        .next()
                        .and_then(|x| x.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if let Some(v) = line.strip_prefix("cmdstat_llen:calls=") {
                    s.llen_calls += calls(v);
                }
                if let Some(v) = line.strip_prefix("cmdstat_evalsha:calls=") {
                    s.evalsha_calls += calls(v);
                }
            }
            s.reads += reads;
            s.reads_by_endpoint.push(reads);
        }
        Ok(s)
    }

    /// Deletes the bench's keys (matters with REDIS_URL).
    pub async fn cleanup(
        &self,
        conns: &mut [MultiplexedConnection],
        keys: &[String],
        endpoint_of: impl Fn(usize) -> usize,
    ) {
        let mut per: Vec<Vec<&String>> = vec![Vec::new(); conns.len()];
        for (i, k) in keys.iter().enumerate() {
            per[endpoint_of(i)].push(k);
        }
        for (e, ks) in per.iter().enumerate() {
            for chunk in ks.chunks(1000) {
                let _: Result<i64, _> = redis::cmd("DEL")
                    .arg(chunk)
                    .query_async(&mut conns[e])
                    .await;
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

//! `redis_read_bench --cluster N`: the same reads on a Redis Cluster.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, Sources};

use super::{ms, process_cpu, read_round, start_redis_with, summary, Args, OwnRedis};

/// Starts `masters` cluster-enabled servers and joins them into a cluster.
fn start_cluster(masters: usize) -> anyhow::Result<(Vec<u16>, Vec<OwnRedis>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut ports = vec![];
    let mut own = vec![];
    for _ in 0..masters {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.path().join(format!("nodes-{port}.conf"));
        let extra = [
            "--cluster-enabled".to_string(),
            "yes".into(),
            "--cluster-config-file".into(),
            conf.display().to_string(),
        ];
        let (_, r) = start_redis_with(port, &extra)?;
        ports.push(port);
        own.push(r);
    }
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("redis-cli not found")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in &ports {
        loop {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}"))?.get_connection()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c)?;
            if info.contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                bail!("cluster not ok within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok((ports, own, dir))
}

/// Fills list `i` with `i % 10` items on whichever node serves it,
/// following the node's own `MOVED` answer.
fn fill(ports: &[u16], names: &[String]) -> anyhow::Result<()> {
    let mut conns = ports
        .iter()
        .map(|p| redis::Client::open(format!("redis://127.0.0.1:{p}"))?.get_connection())
        .collect::<Result<Vec<_>, _>>()?;
    let slots: Vec<i64> = {
        let mut pipe = redis::pipe();
        for k in names {
            pipe.cmd("CLUSTER").arg("KEYSLOT").arg(k);
        }
        pipe.query(&mut conns[0])?
    };
    let owners = slot_owners(&mut conns[0], ports)?;
    let mut pipes: Vec<redis::Pipeline> = ports.iter().map(|_| redis::pipe()).collect();
    for (i, (k, slot)) in names.iter().zip(slots).enumerate() {
        let node = owners[usize::try_from(slot)?];
        pipes[node].cmd("DEL").arg(k).ignore();
        for _ in 0..i % 10 {
            pipes[node].cmd("RPUSH").arg(k).arg("x").ignore();
        }
    }
    for (pipe, conn) in pipes.iter().zip(conns.iter_mut()) {
        pipe.query::<()>(conn)?;
    }
    Ok(())
}

/// Per slot, the index (in `ports`) of its master.
fn slot_owners(conn: &mut redis::Connection, ports: &[u16]) -> anyhow::Result<Vec<usize>> {
    let ranges: Vec<(usize, usize, (String, u16))> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
        raw.into_iter()
            .map(|r| {
                let (a, b, node): (usize, usize, Vec<redis::Value>) = redis::from_redis_value(r)?;
                let addr = redis::from_redis_value(redis::Value::Array(node[..2].to_vec()))?;
                Ok((a, b, addr))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut owners = vec![0; 16384];
    for (a, b, (_, port)) in ranges {
        let i = ports
            .iter()
            .position(|p| *p == port)
            .context("unknown node")?;
        owners[a..=b].iter_mut().for_each(|o| *o = i);
    }
    Ok(owners)
}

/// redis-benchmark in cluster mode: `keys` LLENs per round, pipelined per
/// node (one client per master), keys spread over every node by its `{tag}`.
fn redis_benchmark_cluster(
    port: u16,
    masters: usize,
    keys: usize,
    rounds: usize,
) -> anyhow::Result<Duration> {
    let depth = keys.div_ceil(masters);
    let out = Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &masters.to_string(), "-P", &depth.to_string()])
        .args([
            "-n",
            &(keys * rounds).to_string(),
            "-r",
            &keys.to_string(),
            "--csv",
        ])
        .args(["LLEN", "bench:{tag}:__rand_int__"])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: f64 = text
        .lines()
        .filter(|l| l.starts_with("\"LLEN"))
        .find_map(|l| l.split(',').nth(1))
        .map(|v| v.trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "no LLEN rate in redis-benchmark output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(Duration::from_secs_f64(keys as f64 / rps))
}

pub async fn run(args: &Args, masters: usize) -> anyhow::Result<()> {
    let (ports, _own, _dir) = start_cluster(masters)?;
    let prefix = format!("bench:{}", std::process::id());
    let names: Vec<String> = (0..args.keys)
        .map(|i| format!("{prefix}:{i:012}"))
        .collect();
    fill(&ports, &names)?;
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let sources = Sources::new();
    let triggers: Vec<Arc<dyn MetricSource>> = names
        .iter()
        .map(|k| {
            let t: Trigger = serde_json::from_value(json!({
                "redis": {"cluster": {"addresses": addresses}, "list": k},
                "targetPerReplica": 1.0,
            }))?;
            Ok(sources.build(&t, &BTreeMap::new(), Duration::from_secs(10))?)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut ours = vec![];
    let (mut trips_before, mut cpu_before) = (0, None);
    for round in 0..=args.rounds {
        if round == 1 {
            trips_before = sources.redis_round_trips();
            cpu_before = process_cpu();
        }
        let t0 = Instant::now();
        let values = read_round(&triggers).await;
        let took = t0.elapsed();
        for (i, v) in values.into_iter().enumerate() {
            let v = v.with_context(|| format!("round {round}, {}", names[i]))?;
            if v != (i % 10) as f64 {
                bail!("round {round}: {} read {v}, want {}", names[i], i % 10);
            }
        }
        if round > 0 {
            ours.push(took);
        }
    }
    let trips = sources.redis_round_trips() - trips_before;
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b) / u32::try_from(args.rounds).unwrap_or(u32::MAX));
    let floor = redis_benchmark_cluster(ports[0], masters, args.keys, args.rounds)?;
    let (median, mean) = summary(&ours);
    println!(
        "ours:  {} sources on a {masters}-master cluster: {} per {} reads (median of {} rounds; mean {})",
        args.keys, ms(median), args.keys, args.rounds, ms(mean)
    );
    println!(
        "ours:  {:.1} requests (pipelines) per round, {} CPU per round",
        trips as f64 / args.rounds as f64,
        cpu.map_or_else(|| "?".to_string(), ms)
    );
    println!(
        "floor: redis-benchmark --cluster -c {masters} -P {} LLEN: {} per {} reads",
        args.keys.div_ceil(masters),
        ms(floor),
        args.keys
    );
    println!(
        "ratio: ours/floor = {:.2}",
        median.as_secs_f64() / floor.as_secs_f64()
    );
    Ok(())
}

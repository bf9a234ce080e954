//! The counters read at each edge of the measured window.

use std::time::Instant;

use redis::aio::MultiplexedConnection;

use super::measure::{self, Rss, Scrape};
use super::operator::OperatorProcess;
use super::redis_fleet::{Fleet, ServerStats};

pub struct Snapshot {
    /// The operator's CPU seconds, and when they were read.
    pub operator_cpu: f64,
    pub operator_cpu_at: Instant,
    pub metrics: Scrape,
    pub redis: ServerStats,
    /// This process's CPU seconds (the driver and the emulator).
    pub driver_cpu: f64,
    pub machine: (u64, u64),
    pub rss: Rss,
}

impl Snapshot {
    /// Just before the window; the operator's CPU read last, closest to it.
    pub async fn before(
        op: &OperatorProcess,
        fleet: &Fleet,
        conns: &mut [MultiplexedConnection],
    ) -> anyhow::Result<Snapshot> {
        let driver_cpu = measure::proc_cpu_seconds(std::process::id())?;
        let machine = measure::machine_cpu();
        let rss = measure::proc_rss_kib(op.pid())?;
        let redis = fleet.stats(conns).await?;
        let metrics = op.scrape().await?;
        Ok(Snapshot {
            operator_cpu: measure::proc_cpu_seconds(op.pid())?,
            operator_cpu_at: Instant::now(),
            metrics,
            redis,
            driver_cpu,
            machine,
            rss,
        })
    }

    /// Just after the window; the operator's CPU read first.
    pub async fn after(
        op: &OperatorProcess,
        fleet: &Fleet,
        conns: &mut [MultiplexedConnection],
    ) -> anyhow::Result<Snapshot> {
        let operator_cpu = measure::proc_cpu_seconds(op.pid())?;
        let operator_cpu_at = Instant::now();
        let metrics = op.scrape().await?;
        let redis = fleet.stats(conns).await?;
        Ok(Snapshot {
            operator_cpu,
            operator_cpu_at,
            metrics,
            redis,
            driver_cpu: measure::proc_cpu_seconds(std::process::id())?,
            machine: measure::machine_cpu(),
            rss: measure::proc_rss_kib(op.pid())?,
        })
    }
}

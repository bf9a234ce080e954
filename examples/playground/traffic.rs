//! The work: bursts of Celery-shaped messages pushed onto Celery's default
//! queue (kombu's Redis transport keeps a queue as a list), and a consumer
//! that plays the workers: it pops `replicas × per-replica rate` messages
//! per second, reading replicas from the Deployment the operator scales.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use redis::aio::MultiplexedConnection;
use serde_json::json;

use crate::stack::Stack;
use crate::view::Row;
use crate::Args;

/// Celery's default queue name.
pub const QUEUE: &str = "celery";
/// The first burst comes a moment after start, so the table shows the idle pool first.
const FIRST_BURST: Duration = Duration::from_secs(3);

pub struct Traffic<'a> {
    redis: MultiplexedConnection,
    args: Args,
    bursts: u64,
    /// Fractional messages the consumer may take on the next step.
    budget: f64,
    last: Duration,
    emu: &'a kube_emulator::Emulator,
}

impl<'a> Traffic<'a> {
    pub async fn new(args: &Args, stack: &'a Stack) -> anyhow::Result<Traffic<'a>> {
        let client = redis::Client::open(stack.redis_url.as_str())?;
        Ok(Traffic {
            redis: client.get_multiplexed_async_connection().await?,
            args: args.clone(),
            bursts: 0,
            budget: 0.0,
            last: Duration::ZERO,
            emu: &stack.emu,
        })
    }

    /// The Deployment's `spec.replicas`: what the operator asked for.
    fn replicas(&self) -> i64 {
        self.emu
            .get_json("apps/v1/deployments", &self.args.namespace, "worker")
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .unwrap_or(0)
    }

    fn burst_due(&self, elapsed: Duration) -> bool {
        let due = |n: u64| FIRST_BURST + Duration::from_secs(self.args.repeat_secs * n);
        match self.bursts {
            0 => elapsed >= FIRST_BURST,
            n if self.args.repeat_secs > 0 => elapsed >= due(n),
            _ => false,
        }
    }

    /// One step: a burst when due, then the consumer's share since the last step.
    pub async fn step(&mut self, elapsed: Duration) -> anyhow::Result<()> {
        if self.burst_due(elapsed) {
            self.bursts += 1;
            self.push_burst().await?;
        }
        let dt = (elapsed - self.last).as_secs_f64();
        self.last = elapsed;
        self.budget += self.replicas() as f64 * self.args.per_replica_rate * dt;
        let take = self.budget.floor() as usize;
        if take > 0 {
            self.budget -= take as f64;
            let _: Option<Vec<String>> = redis::cmd("RPOP")
                .arg(QUEUE)
                .arg(take)
                .query_async(&mut self.redis)
                .await
                .context("consumer RPOP")?;
        }
        Ok(())
    }

    async fn push_burst(&mut self) -> anyhow::Result<()> {
        let messages: Vec<String> = (0..self.args.burst)
            .map(|i| message(self.bursts, i))
            .collect();
        for chunk in messages.chunks(500) {
            let _: i64 = redis::cmd("LPUSH")
                .arg(QUEUE)
                .arg(chunk)
                .query_async(&mut self.redis)
                .await
                .context("load generator LPUSH")?;
        }
        Ok(())
    }

    /// What the table shows now.
    pub async fn snapshot(&mut self, elapsed: Duration) -> anyhow::Result<Row> {
        let depth: i64 = redis::cmd("LLEN")
            .arg(QUEUE)
            .query_async(&mut self.redis)
            .await?;
        let pool = self.emu.get_json(
            "workerpool.dev/v1alpha1/workerpools",
            &self.args.namespace,
            "worker",
        );
        let status = pool.map(|p| p["status"].clone()).unwrap_or_default();
        Ok(Row {
            seconds: elapsed.as_secs(),
            depth,
            desired: status["desiredReplicas"].as_i64(),
            current: self.replicas(),
            decision: status["lastDecision"].as_str().unwrap_or("").to_string(),
        })
    }
}

/// A task message as Celery (protocol 2) leaves it in the Redis list.
fn message(burst: u64, i: usize) -> String {
    let body = json!([[burst, i], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]);
    let body = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    let id = format!("playground-{burst}-{i}");
    json!({
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "shop.process_order", "id": id, "root_id": id, "retries": 0},
        "properties": {
            "correlation_id": id, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": QUEUE}, "delivery_tag": id,
        },
    })
    .to_string()
}

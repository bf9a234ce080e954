//! The operator's own metrics, exposed on `/metrics`
//! in the Prometheus text format. One registry, owned by the Context.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;

use axum::body::Bytes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub namespace: String,
    pub workerpool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub namespace: String,
    pub workerpool: String,
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub namespace: String,
    pub workerpool: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub namespace: String,
    pub workerpool: String,
    pub trigger: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub namespace: String,
    pub workerpool: String,
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `redis[s]://host:port/db`, never with credentials.
    pub server: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric the operator exports. Names are listed in README and used by
/// the chart's Grafana dashboard.
pub struct Metrics {
    /// Each family with a series per pool in a registry of its own, the
    /// operator's own metrics in the last: a scrape encodes them one at a
    /// time (see [`Metrics::encode_part`]).
    registries: Vec<Registry>,
    pub desired_replicas: Family<PoolLabels, Gauge>,
    pub shadow_desired_replicas: Family<PoolLabels, Gauge>,
    pub current_replicas: Family<PoolLabels, Gauge>,
    pub trigger_value: Family<TriggerLabels, Gauge<f64, AtomicU64>>,
    pub trigger_arrival_rate: Family<TriggerLabels, Gauge<f64, AtomicU64>>,
    pub trigger_drain_seconds: Family<TriggerLabels, Gauge<f64, AtomicU64>>,
    pub trigger_errors: Family<ErrorLabels, Counter>,
    pub scales: Family<ScaleLabels, Counter>,
    pub schedule_active: Family<ScheduleLabels, Gauge>,
    pub redis_round_trips: Family<ServerLabels, Counter>,
    pub status_writes: Counter,
    pub events_dropped: Counter,
    pub polls: Counter,
    pub reconcile_duration: Histogram,
    pub poll_lag: Histogram,
    pub is_leader: Gauge,
    pub pools: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            desired_replicas: Family::default(),
            shadow_desired_replicas: Family::default(),
            current_replicas: Family::default(),
            trigger_value: Family::default(),
            trigger_arrival_rate: Family::default(),
            trigger_drain_seconds: Family::default(),
            trigger_errors: Family::default(),
            scales: Family::default(),
            schedule_active: Family::default(),
            redis_round_trips: Family::default(),
            status_writes: Counter::default(),
            events_dropped: Counter::default(),
            polls: Counter::default(),
            reconcile_duration: latency_histogram(),
            poll_lag: latency_histogram(),
            is_leader: Gauge::default(),
            pools: Gauge::default(),
            registries: Vec::new(),
        };
        let mut per_pool = PerPool::default();
        m.register_pool_metrics(&mut per_pool);
        m.register_trigger_metrics(&mut per_pool);
        let mut registries = per_pool.0;
        let mut engine = Registry::default();
        m.register_engine_metrics(&mut engine);
        registries.push(engine);
        Metrics { registries, ..m }
    }

    /// Per pool: replicas wanted and seen.
    fn register_pool_metrics(&self, registry: &mut PerPool) {
        registry.register(
            "workerpool_desired_replicas",
            "Replicas the last decision wanted",
            self.desired_replicas.clone(),
        );
        registry.register(
            "workerpool_shadow_desired_replicas",
            "Shadow pools: replicas the last decision would set (nothing is written)",
            self.shadow_desired_replicas.clone(),
        );
        registry.register(
            "workerpool_current_replicas",
            "Replicas of the scale target when last polled",
            self.current_replicas.clone(),
        );
    }

    /// Per trigger: values, drain estimates, read errors; then per pool:
    /// scales and open schedule windows.
    fn register_trigger_metrics(&self, registry: &mut PerPool) {
        registry.register(
            "workerpool_trigger_value",
            "Last value read from a trigger",
            self.trigger_value.clone(),
        );
        registry.register(
            "workerpool_trigger_arrival_rate",
            "Drain triggers: items per second arriving, over drain.rateWindowSeconds",
            self.trigger_arrival_rate.clone(),
        );
        registry.register(
            "workerpool_trigger_drain_seconds",
            "Drain triggers: seconds to clear the backlog at the current replicas (absent when it does not shrink)",
            self.trigger_drain_seconds.clone(),
        );
        // prometheus-client appends _total to counters.
        registry.register(
            "workerpool_trigger_errors",
            "Failed trigger reads, by reason",
            self.trigger_errors.clone(),
        );
        registry.register(
            "workerpool_scale",
            "Scales of a target, by direction (up, down)",
            self.scales.clone(),
        );
        registry.register(
            "workerpool_schedule_active",
            "1 while the schedule's window is open, else 0",
            self.schedule_active.clone(),
        );
    }

    /// The operator itself: polls, lag, writes, leadership.
    fn register_engine_metrics(&self, registry: &mut Registry) {
        registry.register(
            "workerpool_status_writes",
            "WorkerPool status writes",
            self.status_writes.clone(),
        );
        registry.register(
            "workerpool_events_dropped",
            "Events not sent because too many were already waiting for the API server",
            self.events_dropped.clone(),
        );
        registry.register(
            "workerpool_polls",
            "Completed polls (trigger reads plus decision)",
            self.polls.clone(),
        );
        registry.register(
            "workerpool_reconcile_duration_seconds",
            "Time spent in one reconcile",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "workerpool_poll_lag_seconds",
            "Delay between when a poll was due and when its triggers were read",
            self.poll_lag.clone(),
        );
        registry.register(
            "workerpool_redis_round_trips",
            "Requests sent to a Redis server by the triggers' reads: one per pipeline, however many reads it carries",
            self.redis_round_trips.clone(),
        );
        registry.register(
            "workerpool_is_leader",
            "1 when this instance holds the leader lease",
            self.is_leader.clone(),
        );
        registry.register(
            "workerpool_pools",
            "WorkerPools this instance is polling",
            self.pools.clone(),
        );
    }

    /// Adds what each server's round-trip total grew by since `seen` (the
    /// totals of the last call, updated here). A total that went down is an
    /// endpoint that was dropped and built again: all of it is new.
    pub fn record_round_trips(
        &self,
        totals: &std::collections::BTreeMap<String, u64>,
        seen: &mut std::collections::BTreeMap<String, u64>,
    ) {
        for (server, &total) in totals {
            let before = seen.insert(server.clone(), total).unwrap_or(0);
            let grew = if total >= before {
                total - before
            } else {
                total
            };
            if grew > 0 {
                let labels = ServerLabels {
                    server: server.clone(),
                };
                self.redis_round_trips.get_or_create(&labels).inc_by(grew);
            }
        }
    }

    /// A drain trigger's estimate; a series whose value is unknown (no rate
    /// yet, a backlog that does not shrink) is removed rather than kept stale.
    pub fn record_drain(
        &self,
        labels: &TriggerLabels,
        est: Option<&crate::decision::DrainEstimate>,
    ) {
        let gauges = [
            (&self.trigger_arrival_rate, est.and_then(|e| e.arrival_rate)),
            (
                &self.trigger_drain_seconds,
                est.and_then(|e| e.drain_seconds),
            ),
        ];
        for (family, value) in gauges {
            match value {
                Some(v) => {
                    family.get_or_create(labels).set(v);
                }
                None => {
                    family.remove(labels);
                }
            }
        }
    }

    /// Part `i` of the Prometheus text exposition format, in chunks of
    /// about 64 KiB: one family with a series per pool, the operator's own
    /// metrics, then the closing `# EOF`; None past the end. At 20,000
    /// pools the whole text is ~5 MB: a scrape sends it part by part, so
    /// it never holds more than one family's text (~1.5 MB) — a String of
    /// the whole, grown by doubling, held up to twice the whole.
    pub fn encode_part(&self, i: usize) -> Option<Vec<Bytes>> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = Chunks::default();
        // Writing into memory cannot fail.
        let _ = match self.registries.get(i) {
            Some(registry) => encode_registry(&mut out, registry),
            None if i == self.registries.len() => encode_eof(&mut out),
            None => return None,
        };
        Some(out.finish())
    }

    /// The whole text at once (tests and tools).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        for chunk in (0..).map_while(|i| self.encode_part(i)).flatten() {
            // Every chunk is whole UTF-8 text (see `Chunks`).
            text.push_str(std::str::from_utf8(&chunk).unwrap_or_default());
        }
        text
    }

    /// Forgets a deleted pool's series (gauges and counters, as
    /// kube-state-metrics does for deleted objects) so /metrics does not
    /// grow forever as pools come and go.
    pub fn forget_pool(&self, namespace: &str, workerpool: &str, triggers: &[String]) {
        let pool = PoolLabels {
            namespace: namespace.into(),
            workerpool: workerpool.into(),
        };
        self.desired_replicas.remove(&pool);
        self.shadow_desired_replicas.remove(&pool);
        self.current_replicas.remove(&pool);
        for direction in ["up", "down"] {
            self.scales.remove(&ScaleLabels {
                namespace: namespace.into(),
                workerpool: workerpool.into(),
                direction,
            });
        }
        for t in triggers {
            let labels = TriggerLabels {
                namespace: namespace.into(),
                workerpool: workerpool.into(),
                trigger: t.clone(),
            };
            self.trigger_value.remove(&labels);
            self.record_drain(&labels, None);
            for reason in crate::sources::SourceError::METRIC_LABELS {
                self.trigger_errors.remove(&ErrorLabels {
                    namespace: namespace.into(),
                    workerpool: workerpool.into(),
                    trigger: t.clone(),
                    reason,
                });
            }
        }
    }

    /// Forgets a deleted pool's schedule series (see [`Self::forget_pool`]).
    pub fn forget_schedules(&self, namespace: &str, workerpool: &str, schedules: &[String]) {
        for s in schedules {
            self.schedule_active.remove(&ScheduleLabels {
                namespace: namespace.into(),
                workerpool: workerpool.into(),
                schedule: s.clone(),
            });
        }
    }
}

/// Registers each family in a registry of its own.
#[derive(Default)]
struct PerPool(Vec<Registry>);

impl PerPool {
    fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = Registry::default();
        registry.register(name, help, metric);
        self.0.push(registry);
    }
}

/// Text written in chunks of about `CHUNK` bytes: a piece written never
/// straddles two, so every chunk is whole UTF-8 text.
#[derive(Default)]
struct Chunks {
    done: Vec<Bytes>,
    current: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Chunks {
    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(Bytes::from(self.current));
        }
        self.done
    }
}

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.current.len() + s.len() > CHUNK && !self.current.is_empty() {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            self.done.push(Bytes::from(full));
        }
        self.current.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_add_what_each_server_total_grew_by() {
        let m = Metrics::new();
        let mut seen = std::collections::BTreeMap::new();
        let totals =
            |n: u64| std::collections::BTreeMap::from([("redis://r:6379/0".to_string(), n)]);
        m.record_round_trips(&totals(5), &mut seen);
        m.record_round_trips(&totals(12), &mut seen);
        // Dropped and built again: its new total is all new.
        m.record_round_trips(&totals(3), &mut seen);
        let labels = ServerLabels {
            server: "redis://r:6379/0".into(),
        };
        assert_eq!(m.redis_round_trips.get_or_create(&labels).get(), 15);
    }

    #[test]
    fn drain_gauges_are_set_and_removed_when_unknown() {
        use crate::decision::{DrainPolicy, DrainTrack, Throughput};
        let m = Metrics::new();
        let labels = TriggerLabels {
            namespace: "shop".into(),
            workerpool: "payments".into(),
            trigger: "payments".into(),
        };
        let p = DrainPolicy {
            seconds: 60.0,
            throughput: Throughput::PerReplica(2.5),
            rate_window_ms: 60_000,
        };
        let mut track = DrainTrack::default();
        let first = crate::decision::estimate_drain(&p, None, 0, 300.0, 8, None);
        track.record(&p, &first);
        let est = crate::decision::estimate_drain(&p, Some(&track), 10_000, 200.0, 8, None);
        m.record_drain(&labels, Some(&est));
        let text = m.encode();
        let (rate, drain) = (
            payments_series("workerpool_trigger_arrival_rate"),
            payments_series("workerpool_trigger_drain_seconds"),
        );
        assert!(text.contains(&format!("{rate} 10.0")), "{text}");
        assert!(text.contains(&drain), "{text}");
        m.record_drain(&labels, Some(&first));
        let text = m.encode();
        assert!(!text.contains(&rate), "{text}");
        assert!(!text.contains(&drain), "{text}");
    }

    /// The series of `family` for the payments trigger, as exposed.
    fn payments_series(family: &str) -> String {
        format!("{family}{{namespace=\"shop\",workerpool=\"payments\",trigger=\"payments\"}}")
    }

    #[test]
    fn the_text_comes_in_parts_of_small_chunks_and_ends_once_with_eof() {
        let m = Metrics::new();
        for i in 0..3000 {
            let p = PoolLabels {
                namespace: "shop".into(),
                workerpool: format!("pool-{i}-é"),
            };
            m.desired_replicas.get_or_create(&p).set(i);
            m.current_replicas.get_or_create(&p).set(i);
        }
        let parts: Vec<Vec<Bytes>> = (0..).map_while(|i| m.encode_part(i)).collect();
        assert!(parts.len() > 2, "{} part(s)", parts.len());
        assert!(
            parts[0].len() > 1,
            "a family of 3,000 series is several chunks"
        );
        let mut text = String::new();
        for chunk in parts.iter().flatten() {
            assert!(
                chunk.len() <= CHUNK + 1024,
                "a chunk of {} bytes",
                chunk.len()
            );
            text.push_str(std::str::from_utf8(chunk).expect("whole UTF-8 text"));
        }
        assert_eq!(text, m.encode());
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        for family in ["workerpool_desired_replicas", "workerpool_polls"] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(text.contains(
            "workerpool_current_replicas{namespace=\"shop\",workerpool=\"pool-2999-é\"} 2999"
        ));
    }

    #[test]
    fn a_forgotten_pool_leaves_no_series_behind() {
        let m = Metrics::new();
        for (pool, trigger) in [("gone", "orders"), ("kept", "orders")] {
            let p = PoolLabels {
                namespace: "shop".into(),
                workerpool: pool.into(),
            };
            m.desired_replicas.get_or_create(&p).set(3);
            m.current_replicas.get_or_create(&p).set(2);
            m.trigger_value
                .get_or_create(&TriggerLabels {
                    namespace: "shop".into(),
                    workerpool: pool.into(),
                    trigger: trigger.into(),
                })
                .set(7.0);
            m.trigger_errors
                .get_or_create(&ErrorLabels {
                    namespace: "shop".into(),
                    workerpool: pool.into(),
                    trigger: trigger.into(),
                    reason: "timeout",
                })
                .inc();
            m.scales
                .get_or_create(&ScaleLabels {
                    namespace: "shop".into(),
                    workerpool: pool.into(),
                    direction: "down",
                })
                .inc();
        }
        m.forget_pool("shop", "gone", &["orders".into()]);
        let text = m.encode();
        assert!(!text.contains("workerpool=\"gone\""), "{text}");
        assert_eq!(text.matches("workerpool=\"kept\"").count(), 5, "{text}");
    }

    #[test]
    fn schedule_series_are_exported_and_forgotten() {
        let m = Metrics::new();
        for (pool, open) in [("gone", 1), ("kept", 0)] {
            m.schedule_active
                .get_or_create(&ScheduleLabels {
                    namespace: "shop".into(),
                    workerpool: pool.into(),
                    schedule: "business-hours".into(),
                })
                .set(open);
        }
        let text = m.encode();
        assert!(text.contains(
            r#"workerpool_schedule_active{namespace="shop",workerpool="gone",schedule="business-hours"} 1"#
        ), "{text}");
        m.forget_schedules("shop", "gone", &["business-hours".into()]);
        let text = m.encode();
        assert!(!text.contains("workerpool=\"gone\""), "{text}");
        assert!(text.contains(
            r#"workerpool_schedule_active{namespace="shop",workerpool="kept",schedule="business-hours"} 0"#
        ), "{text}");
    }
}

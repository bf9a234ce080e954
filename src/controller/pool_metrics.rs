//! One pool's metric handles, looked up once and kept between polls.
//!
//! Looking a labelled gauge up costs two label strings, a hash and a
//! lock per family per poll; at thousands of polls a second that was a
//! sizeable share of a poll's CPU. The handles share their value with the
//! registry, so setting a kept handle is one atomic store. They are made
//! again when what they are keyed by changes (the trigger names, shadow or
//! not); a deleted pool's series are removed from the registry
//! (`Metrics::forget_pool`), and its handles go with its entry.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;

use crate::decision::{Decision, Window};
use crate::runtime::metrics::{Metrics, PoolLabels, ScheduleLabels, TriggerLabels};

type FloatGauge = Gauge<f64, AtomicU64>;

/// The gauges one poll sets.
pub struct PoolGauges {
    shadow: bool,
    desired: Gauge,
    current: Gauge,
    namespace: String,
    name: String,
    /// Per trigger, in the order of the decision's triggers: its name and
    /// its value's gauge, made at its first value (a trigger never read
    /// has no value series, rather than a 0).
    triggers: Vec<(String, Option<FloatGauge>)>,
    /// Per schedule: its name and whether it is open.
    schedules: Vec<(String, Gauge)>,
}

impl PoolGauges {
    /// Handles for a pool of `namespace`/`name` with `triggers` and
    /// `windows`; `shadow` pools report `shadow_desired_replicas` instead
    /// of `desired_replicas` (the other series is removed).
    pub fn new(
        m: &Metrics,
        namespace: &str,
        name: &str,
        shadow: bool,
        triggers: &[String],
        windows: &[Window],
    ) -> Self {
        let pool = PoolLabels {
            namespace: namespace.into(),
            workerpool: name.into(),
        };
        let (desired, other) = if shadow {
            (&m.shadow_desired_replicas, &m.desired_replicas)
        } else {
            (&m.desired_replicas, &m.shadow_desired_replicas)
        };
        other.remove(&pool);
        for t in triggers {
            // A drain estimate left from an older spec goes (see `record`).
            m.record_drain(&trigger_labels(namespace, name, t), None);
        }
        let schedule = |w: &Window| ScheduleLabels {
            namespace: namespace.into(),
            workerpool: name.into(),
            schedule: w.name.clone(),
        };
        PoolGauges {
            shadow,
            desired: desired.get_or_create(&pool).clone(),
            current: m.current_replicas.get_or_create(&pool).clone(),
            namespace: namespace.into(),
            name: name.into(),
            triggers: triggers.iter().map(|t| (t.clone(), None)).collect(),
            schedules: (windows.iter())
                .map(|w| {
                    (
                        w.name.clone(),
                        m.schedule_active.get_or_create(&schedule(w)).clone(),
                    )
                })
                .collect(),
        }
    }

    /// Whether these handles still fit the pool's triggers and mode.
    pub fn fits(&self, shadow: bool, d: &Decision, windows: &[Window]) -> bool {
        self.shadow == shadow
            && self.triggers.len() == d.triggers.len()
            && (self.triggers.iter().zip(&d.triggers)).all(|((n, _), t)| *n == t.name)
            && self.schedules.len() == windows.len()
            && (self.schedules.iter().zip(windows)).all(|((n, _), w)| *n == w.name)
    }

    /// Sets every gauge from one poll.
    pub fn record(&mut self, m: &Metrics, d: &Decision, current: i32) {
        self.desired.set(i64::from(d.desired));
        self.current.set(i64::from(current));
        for ((name, gauge), t) in self.triggers.iter_mut().zip(&d.triggers) {
            let Some(v) = t.value else { continue };
            let labels = || trigger_labels(&self.namespace, &self.name, name);
            gauge
                .get_or_insert_with(|| m.trigger_value.get_or_create(&labels()).clone())
                .set(v);
            if t.drain.is_some() {
                m.record_drain(&labels(), t.drain.as_ref());
            }
        }
        for (name, gauge) in &self.schedules {
            gauge.set(i64::from(d.bounds.open.contains(name)));
        }
    }
}

fn trigger_labels(namespace: &str, name: &str, trigger: &str) -> TriggerLabels {
    TriggerLabels {
        namespace: namespace.into(),
        workerpool: name.into(),
        trigger: trigger.into(),
    }
}

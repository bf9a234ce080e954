//! What each trigger mapping produces: one WorkerPool source and its numbers.

use super::Mapping;

/// A converted trigger's source (`redis` or `prometheus`) and thresholds.
#[derive(Debug)]
pub struct Source {
    /// `redis` or `prometheus`: the key of the source in the WorkerPool trigger.
    pub key: &'static str,
    pub body: Mapping,
    /// KEDA's target value per replica (listLength, threshold, ...).
    pub target: f64,
    /// KEDA's activation value (activationListLength, activationThreshold, ...).
    pub activation: f64,
}

//! A Prometheus busy signal: an instant query returning a vector with a
//! `pod` label, each sample the busy work of that pod (e.g.
//! `sum by (pod) (celery_worker_tasks_active)`). A sample above 0 makes its
//! pod busy, with `ceil(value)` busy tasks.

use std::sync::Arc;
use std::time::Duration;

use super::{BusyFuture, BusyPods, BusySource, MAX_WORKERS};
use crate::api::{OnEmpty, PrometheusTrigger};
use crate::sources::prometheus::{sample_value, PrometheusSource, QueryData};
use crate::sources::{with_timeout, MetricSource, SecretLookup, SourceError, Sources};

/// The label that names a sample's pod.
const POD_LABEL: &str = "pod";

/// Builds the busy signal of `spec.scaleIn.busySignal.prometheus`.
pub(super) fn build(
    sources: &Sources,
    p: &PrometheusTrigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn BusySource>, SourceError> {
    let query = PrometheusSource::new(sources, p, secrets, timeout)?;
    Ok(Arc::new(PodVector { query }))
}

#[derive(Debug)]
struct PodVector {
    query: PrometheusSource,
}

impl BusySource for PodVector {
    fn read(&self) -> BusyFuture<'_> {
        Box::pin(async move {
            let what = self.describe();
            let q = &self.query;
            with_timeout(&what, q.timeout, async {
                let data = q.query_data(&what).await?;
                busy_pods(&data, q.on_empty)
                    .map_err(|m| SourceError::BadResult(format!("{what}: {m}")))
            })
            .await
        })
    }

    fn describe(&self) -> String {
        format!("busy pods by {}", self.query.describe())
    }
}

/// The busy pods of a per-pod vector, or what is wrong with the result.
fn busy_pods(data: &QueryData, on_empty: OnEmpty) -> Result<BusyPods, String> {
    if data.result_type != "vector" {
        return Err(format!(
            "the query returned a {}, not a vector with a `{POD_LABEL}` label; \
             e.g. sum by ({POD_LABEL}) (...)",
            data.result_type
        ));
    }
    let samples = (data.result.as_array()).ok_or("vector result is not a list")?;
    if samples.is_empty() && on_empty == OnEmpty::Error {
        return Err(
            "the query returned no data (an empty vector); this is usually a \
                    broken query or scrape (set onEmpty: Zero if empty means no pod is busy)"
                .into(),
        );
    }
    if samples.len() > MAX_WORKERS {
        return Err(format!(
            "the query returned {} series, more than {MAX_WORKERS}",
            samples.len()
        ));
    }
    let mut busy = BusyPods::default();
    for s in samples {
        // Label values are the server's bytes: never quoted in errors.
        let pod = s["metric"][POD_LABEL].as_str().ok_or_else(|| {
            format!("a series has no `{POD_LABEL}` label; aggregate by it, e.g. sum by ({POD_LABEL}) (...)")
        })?;
        let value = sample_value(&s["value"])?;
        if value > 0.0 {
            busy.add(pod, value.ceil().min(f64::from(u32::MAX)) as u32);
        }
    }
    Ok(busy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(samples: serde_json::Value) -> QueryData {
        QueryData {
            result_type: "vector".into(),
            result: samples,
        }
    }

    #[test]
    fn samples_above_zero_are_busy_pods() {
        let data = vector(json!([
            {"metric": {"pod": "w-a"}, "value": [1, "2"]},
            {"metric": {"pod": "w-b"}, "value": [1, "0"]},
            {"metric": {"pod": "w-c"}, "value": [1, "0.5"]},
        ]));
        let b = busy_pods(&data, OnEmpty::Error).unwrap();
        assert_eq!(b.names(), vec!["w-a", "w-c"]);
        assert_eq!((b.tasks("w-a"), b.tasks("w-c")), (2, 1));
    }

    #[test]
    fn empty_unlabelled_and_scalar_results_are_errors() {
        let empty = vector(json!([]));
        assert!(busy_pods(&empty, OnEmpty::Error)
            .unwrap_err()
            .contains("onEmpty: Zero"));
        assert!(busy_pods(&empty, OnEmpty::Zero).unwrap().is_empty());
        let unlabelled = vector(json!([{"metric": {}, "value": [1, "1"]}]));
        let e = busy_pods(&unlabelled, OnEmpty::Error).unwrap_err();
        assert!(e.contains("sum by (pod)"), "{e}");
        let nan = vector(json!([{"metric": {"pod": "a"}, "value": [1, "NaN"]}]));
        assert!(busy_pods(&nan, OnEmpty::Error).is_err());
        let scalar = QueryData {
            result_type: "scalar".into(),
            result: json!([1, "1"]),
        };
        assert!(busy_pods(&scalar, OnEmpty::Error)
            .unwrap_err()
            .contains("not a vector"));
    }
}

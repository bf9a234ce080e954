//! A drain trigger's second read: `drain.throughputFrom.prometheus`, the
//! pool's measured completions per second, read next to the backlog on
//! every poll through the ordinary Prometheus source.
//!
//! Both reads are one trigger: if either fails the trigger's read has
//! failed (so the decision never scales down on it), and the error names
//! `drain.throughputFrom` when it was the throughput.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join;

use super::{prometheus, MeasureFuture, Measurement, MetricSource, ReadFuture, SecretLookup};
use super::{SourceError, Sources};
use crate::api::Trigger;

/// The backlog source and the throughput source of one drain trigger.
#[derive(Debug)]
pub(super) struct WithThroughput {
    backlog: Arc<dyn MetricSource>,
    throughput: Arc<dyn MetricSource>,
}

/// Wraps `backlog` with the trigger's `throughputFrom` read, if it has one.
pub(super) fn wrap(
    sources: &Sources,
    trigger: &Trigger,
    backlog: Arc<dyn MetricSource>,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn MetricSource>, SourceError> {
    let Some(from) = trigger
        .drain
        .as_ref()
        .and_then(|d| d.throughput_from.as_ref())
    else {
        return Ok(backlog);
    };
    let throughput =
        prometheus::build_query(sources, &from.prometheus, secrets, timeout).map_err(named)?;
    Ok(Arc::new(WithThroughput {
        backlog,
        throughput,
    }))
}

impl MetricSource for WithThroughput {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move { self.measure().await.value })
    }

    fn warning(&self) -> Option<String> {
        self.backlog.warning()
    }

    fn measure(&self) -> MeasureFuture<'_> {
        Box::pin(async move {
            let (value, throughput) = join(self.backlog.read(), self.throughput.read()).await;
            match (value, throughput) {
                (Err(e), _) => Measurement::failed(e),
                (Ok(_), Err(e)) => Measurement::failed(named(e)),
                (Ok(v), Ok(t)) => Measurement {
                    value: Ok(v),
                    throughput: Some(t),
                },
            }
        })
    }

    fn describe(&self) -> String {
        format!(
            "{}; throughput: {}",
            self.backlog.describe(),
            self.throughput.describe()
        )
    }
}

/// The same error, saying it was the throughput read.
fn named(e: SourceError) -> SourceError {
    let prefix = |s: String| format!("drain.throughputFrom: {s}");
    match e {
        SourceError::Timeout { target, after } => SourceError::Timeout {
            target: prefix(target),
            after,
        },
        SourceError::Connection(s) => SourceError::Connection(prefix(s)),
        SourceError::NotFound(s) => SourceError::NotFound(prefix(s)),
        SourceError::BadResult(s) => SourceError::BadResult(prefix(s)),
        SourceError::Auth(s) => SourceError::Auth(prefix(s)),
        SourceError::Config(s) => SourceError::Config(prefix(s)),
        SourceError::NotAllowed(s) => SourceError::NotAllowed(prefix(s)),
        e @ SourceError::SecretMissing { .. } => e,
    }
}

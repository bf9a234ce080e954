//! The Celery busy signal: an inspect reader answers, per worker node name
//! (`celery@<host>`, or `<name>@<host>` with `-n`), how many tasks the
//! worker holds (`active` plus `reserved`); the adapter keys them by host,
//! which [`BusyPods::among`] matches to pod names. The reader is
//! [`CeleryInspector`] (Celery's remote-control broadcast over the broker).

use std::future::Future;
use std::pin::Pin;

use super::{BusyFuture, BusyPods, BusySource};
use crate::sources::SourceError;
use crate::sources::{worker_host, CeleryInspector, InspectError, DEFAULT_INSPECT_WAIT};

/// What [`CeleryInspect::tasks_by_worker`] returns: (node name, tasks held).
pub type InspectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<(String, u32)>, SourceError>> + Send + 'a>>;

/// One round of Celery's `inspect active` + `inspect reserved` broadcast.
pub trait CeleryInspect: Send + Sync + std::fmt::Debug {
    /// Every worker that replied, with the tasks it holds.
    fn tasks_by_worker(&self) -> InspectFuture<'_>;
    /// What is asked where (never a secret).
    fn describe(&self) -> String;
}

/// A Celery inspect reader as a busy signal.
#[derive(Debug)]
pub struct CeleryBusy<I>(pub I);

impl<I: CeleryInspect> BusySource for CeleryBusy<I> {
    fn read(&self) -> BusyFuture<'_> {
        Box::pin(async move {
            let mut busy = BusyPods::default();
            for (node, tasks) in self.0.tasks_by_worker().await? {
                busy.add(worker_host(&node), tasks);
            }
            Ok(busy)
        })
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

impl CeleryInspect for CeleryInspector {
    /// One `active` + `reserved` broadcast, waiting Celery's default 1 s at
    /// most. A worker that answered in part or with an error counts as busy
    /// (one task: what it holds is unknown); when fewer workers answered
    /// than received the broadcast, which ones are busy cannot be known,
    /// and the read fails so the scale-in holds.
    fn tasks_by_worker(&self) -> InspectFuture<'_> {
        Box::pin(async move {
            let found = self
                .busy_workers(DEFAULT_INSPECT_WAIT)
                .await
                .map_err(|e| match e {
                    InspectError::Redis(e) => e,
                    other => SourceError::BadResult(other.to_string()),
                })?;
            let answered = (found.workers.len() + found.unknown.len()) as u64;
            if answered < found.listeners {
                return Err(SourceError::BadResult(format!(
                    "{}: {} of {} Celery workers did not answer within {} s (a worker \
                     with --pool solo cannot while it runs a task)",
                    self.describe(),
                    found.listeners - answered,
                    found.listeners,
                    DEFAULT_INSPECT_WAIT.as_secs()
                )));
            }
            let held = found
                .workers
                .into_iter()
                .map(|(node, load)| (node, load.active.saturating_add(load.reserved)));
            Ok(held
                .chain(found.unknown.into_iter().map(|node| (node, 1)))
                .collect())
        })
    }

    fn describe(&self) -> String {
        self.what().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Replies(Vec<(String, u32)>);

    impl CeleryInspect for Replies {
        fn tasks_by_worker(&self) -> InspectFuture<'_> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    #[tokio::test]
    async fn node_names_become_pod_names() {
        let replies = Replies(vec![
            ("celery@payments-7d9f-abcde".into(), 2),
            ("fast@payments-7d9f-abcde".into(), 1),
            ("celery@payments-7d9f-fghij".into(), 0),
        ]);
        let busy = CeleryBusy(replies).read().await.unwrap();
        assert_eq!(busy.names(), vec!["payments-7d9f-abcde"]);
        assert_eq!(busy.tasks("payments-7d9f-abcde"), 3);
    }
}

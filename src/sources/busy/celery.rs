//! The adapter a Celery inspect reader plugs into: it answers, per worker
//! node name (`celery@<host>`, or `<name>@<host>` with `-n`), how many
//! tasks the worker holds (`active` plus `reserved`); the adapter turns
//! node names into pod names. Until a reader is connected, the Celery busy
//! signal fails every read (see `NotWired` in the parent module).

use std::future::Future;
use std::pin::Pin;

use super::{BusyFuture, BusyPods, BusySource};
use crate::sources::SourceError;

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
                busy.add(pod_of_celery_worker(&node), tasks);
            }
            Ok(busy)
        })
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The pod of a Celery node name: the host after `@` (Celery's `%h`, the
/// host name, which in Kubernetes is the pod's name).
pub fn pod_of_celery_worker(node: &str) -> &str {
    node.rsplit_once('@').map_or(node, |(_, host)| host)
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
        assert_eq!(pod_of_celery_worker("bare-host"), "bare-host");
    }
}

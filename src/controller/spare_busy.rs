//! `spec.scaleIn` in a poll: when the decision is a scale-in, read which of
//! the target's pods are busy, decide again with that, and (Deployments)
//! rank the busy pods last for deletion before the scale is written. A
//! scale-out or a hold never waits for any of it.

use futures::future::join;

use super::context::Context;
use super::pods::{target_pods, write_deletion_costs};
use super::prepare::Prepared;
use super::target::{cached_kind, CachedKind};
use crate::api::WorkerPool;
use crate::decision::{Busy, Decision};
use crate::sources::BusyPods;

/// A pool's poll, as far as sparing busy workers needs it.
pub struct ScaleInContext<'a> {
    pub ctx: &'a Context,
    pub pool: &'a WorkerPool,
    pub namespace: &'a str,
    pub prepared: &'a Prepared,
    /// The pool writes to its target (not paused, not shadow).
    pub writes: bool,
}

impl ScaleInContext<'_> {
    /// The decision after the busy pods had their say; `decide` is the
    /// poll's decision with a busy reading (pure, so it can run again).
    pub async fn spare_busy(
        &self,
        decision: Decision,
        decide: impl Fn(&Busy) -> Decision,
    ) -> Decision {
        let policy = &self.prepared.policy;
        let (Some(source), Some(si)) = (&self.prepared.busy, &policy.scale_in) else {
            return decision;
        };
        let r = &self.pool.spec.scale_target_ref;
        let costs = si.deletion_cost && cached_kind(r) == Some(CachedKind::Deployment);
        if !decision.wants_busy_signal(policy) || !(si.keep_busy || costs) {
            return decision;
        }
        let resolved = self.prepared.resolved.as_ref();
        let pods = target_pods(self.ctx, r, self.namespace, resolved);
        // Boxed: a scale-in is rare next to polls, whose futures would
        // otherwise all be as large as this one.
        let (busy, pods) = Box::pin(join(source.read(), pods)).await;
        let read = match (busy, pods) {
            (Ok(b), Ok(p)) => Ok((b, p)),
            (Err(e), _) => Err(e.to_string()),
            (_, Err(e)) => Err(e),
        };
        let (busy, pods) = match read {
            Ok((b, pods)) => {
                let names = pods.iter().filter_map(|p| p.metadata.name.as_deref());
                (b.among(names), pods)
            }
            Err(e) => return decide(&Busy::Failed(e)),
        };
        let decision = decide(&Busy::Pods(count(&busy)));
        if !(costs && self.writes && decision.desired < decision.current) {
            return decision;
        }
        let client = &self.ctx.client;
        match Box::pin(write_deletion_costs(client, self.namespace, &pods, &busy)).await {
            Ok(_) => decision,
            Err(e) => decide(&Busy::Failed(e)),
        }
    }
}

fn count(busy: &BusyPods) -> i32 {
    i32::try_from(busy.len()).unwrap_or(i32::MAX)
}

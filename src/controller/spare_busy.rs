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
    /// Whether `decision` needs the busy pods: a scale-in of a pool with
    /// `spec.scaleIn` that keeps busy pods or ranks them for deletion.
    /// Asked first, so the common poll never builds [`Self::spare_busy`]'s
    /// future.
    pub fn reads_busy(&self, decision: &Decision) -> bool {
        let policy = &self.prepared.policy;
        let (Some(_), Some(si)) = (&self.prepared.busy, &policy.scale_in) else {
            return false;
        };
        decision.wants_busy_signal(policy) && (si.keep_busy || self.ranks_by_cost())
    }

    /// `deletionCost` applies: only a Deployment's pods carry the annotation.
    fn ranks_by_cost(&self) -> bool {
        let ranks = self
            .prepared
            .policy
            .scale_in
            .as_ref()
            .is_some_and(|si| si.deletion_cost);
        ranks && cached_kind(&self.pool.spec.scale_target_ref) == Some(CachedKind::Deployment)
    }

    /// The decision after the busy pods had their say; `decide` is the
    /// poll's decision with a busy reading (pure, so it can run again).
    pub async fn spare_busy(
        &self,
        decision: Decision,
        decide: impl Fn(&Busy) -> Decision,
    ) -> Decision {
        let Some(source) = self.prepared.busy.as_ref() else {
            return decision;
        };
        if !self.reads_busy(&decision) {
            return decision;
        }
        let costs = self.ranks_by_cost();
        let r = &self.pool.spec.scale_target_ref;
        let resolved = self.prepared.resolved.as_deref();
        let pods = target_pods(self.ctx, r, self.namespace, resolved);
        let (busy, pods) = join(source.read(), pods).await;
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

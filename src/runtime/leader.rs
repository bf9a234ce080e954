//! Leader election on a coordination.k8s.io/v1 Lease (kube-lease-manager).
//! Only the leader scales and writes status.
//!
//! The crate claims and renews the Lease by server-side apply; two
//! candidates' claims conflict only because each applies with its own field
//! manager (the crate's default, derived from the identity) — so we never
//! set a shared one. Three more rules keep "never two leaders" true when the
//! API misbehaves:
//! - Every Lease request has a deadline shorter than the renewal grace
//!   period: a renewal that hangs fails *before* the Lease expires, and this
//!   instance stands down before a standby may take over.
//! - After any error the manager is dropped. Its idea of who holds the Lease
//!   may be stale; a new one starts from the Lease as the API server has it.
//! - Before rebuilding, wait one lease duration, so that a standby can take
//!   over cleanly if this instance's renewals were failing; if nobody did,
//!   this instance renews and leads again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after it.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

impl LeaseConfig {
    /// The deadline of one Lease request: three quarters of the grace
    /// period, so a renewal started at `expiry - grace` fails before expiry.
    pub fn request_deadline(&self) -> Duration {
        (self.grace.max(Duration::from_secs(1)) * 3 / 4).max(Duration::from_millis(500))
    }
}

/// Keeps `leader` true while this instance holds the Lease; `known` turns
/// true once the Lease has been read. Releases the Lease when `stop` fires,
/// so a standby takes over at once instead of after the lease duration.
pub async fn hold(
    client: Client,
    cfg: LeaseConfig,
    leader: Arc<AtomicBool>,
    known: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let client = with_deadline(client, cfg.request_deadline());
    loop {
        let Some(manager) = build(&client, &cfg, &mut stop).await else {
            return;
        };
        known.store(true, Ordering::Release);
        let failed = loop {
            tokio::select! {
                changed = manager.changed() => match changed {
                    Ok(is_leader) => {
                        info!(identity = %cfg.identity, is_leader, "leadership changed");
                        leader.store(is_leader, Ordering::Release);
                    }
                    Err(e) => break e,
                },
                _ = stop.changed() => {
                    leader.store(false, Ordering::Release);
                    release(&manager, &cfg).await;
                    return;
                }
            }
        };
        let was_leader = leader.swap(false, Ordering::AcqRel);
        warn!(
            error = %failed,
            was_leader,
            "leader election error; standing down for one lease duration, then re-reading the Lease"
        );
        drop(manager);
        tokio::select! {
            _ = tokio::time::sleep(cfg.duration) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Builds a manager (reading or creating the Lease), retrying until `stop`.
async fn build(
    client: &Client,
    cfg: &LeaseConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<LeaseManager> {
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.duration.as_secs().max(1))
            .with_grace(cfg.grace.as_secs().max(1))
            .build()
            .await;
        match built {
            Ok(m) => return Some(m),
            Err(e) => {
                warn!(error = %e, lease = %cfg.name, "cannot set up leader election; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return None,
                }
            }
        }
    }
}

async fn release(manager: &LeaseManager, cfg: &LeaseConfig) {
    match manager.release().await {
        Ok(()) => info!(lease = %cfg.name, "lease released"),
        Err(e) => warn!(error = %e, "could not release the lease"),
    }
}

/// A client whose every request fails after `deadline` (the shared client
/// has no read timeout, and a watch must not have one).
fn with_deadline(client: Client, deadline: Duration) -> Client {
    let namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let client = client.clone();
        async move {
            match tokio::time::timeout(deadline, client.send(request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                Err(_) => Err(format!("Lease request took longer than {deadline:?}").into()),
            }
        }
    });
    Client::new(service, namespace)
}

//! Leader election on a coordination.k8s.io/v1 Lease (kube-lease-manager,
//! which updates the Lease by server-side apply with its resourceVersion, so
//! two instances can never both believe they hold it). Only the leader
//! scales and writes status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
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
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.duration.as_secs().max(1))
            .with_grace(cfg.grace.as_secs().max(1))
            .with_field_manager("workerpool-operator")
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                warn!(error = %e, lease = %cfg.name, "cannot set up leader election; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    known.store(true, Ordering::Release);
    loop {
        tokio::select! {
            changed = manager.changed() => match changed {
                Ok(is_leader) => {
                    info!(identity = %cfg.identity, is_leader, "leadership changed");
                    leader.store(is_leader, Ordering::Release);
                }
                Err(e) => {
                    warn!(error = %e, "leader election error; standing down until the lease is confirmed");
                    leader.store(false, Ordering::Release);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    leader.store(false, Ordering::Release);
    if let Err(e) = manager.release().await {
        warn!(error = %e, "could not release the lease");
    } else {
        info!(lease = %cfg.name, "lease released");
    }
}

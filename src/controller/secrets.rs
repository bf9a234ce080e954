//! Trigger credentials: the Secrets a pool names, read by name (one GET
//! each) when the pool is prepared. The operator never lists or watches
//! Secrets, so its RBAC on them is `get` alone and it holds only the ones
//! pools name — not every Secret of every watched namespace.
//!
//! Reads go through a short cache shared by every pool, so thousands of
//! pools naming one Secret cost one GET per refresh period, not one each.
//! A pool re-reads its Secrets once the period has passed (a rotated
//! password takes effect within it) and at once after an authentication
//! failure ([`SecretCache::forget`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;

use crate::api::SecretKeyRef;
use crate::sources::{SecretLookup, SourceError};

/// One Secret as read: its version and its data (`None` = it does not exist).
#[derive(Debug, Default)]
pub struct ReadSecret {
    resource_version: Option<String>,
    data: BTreeMap<String, Vec<u8>>,
}

struct Entry {
    read_at: Instant,
    secret: Option<Arc<ReadSecret>>,
}

/// Secrets read by name, each kept for at most `max_age`.
pub struct SecretCache {
    client: Client,
    max_age: Duration,
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl SecretCache {
    pub fn new(client: Client, max_age: Duration) -> Self {
        SecretCache {
            client,
            max_age,
            entries: Mutex::default(),
        }
    }

    /// How long a read Secret is trusted before it is read again.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The named Secrets of `namespace`, from the cache when fresh.
    pub async fn read(&self, namespace: &str, names: &[String]) -> Result<Snapshot, kube::Error> {
        let mut secrets = BTreeMap::new();
        for name in names {
            let secret = match self.cached(namespace, name) {
                Some(s) => s,
                None => self.fetch(namespace, name).await?,
            };
            secrets.insert(name.clone(), secret);
        }
        Ok(Snapshot { secrets })
    }

    /// Drops the named Secrets, so the next read asks the API server (after
    /// an authentication failure: the password may have just been rotated).
    pub fn forget(&self, namespace: &str, names: &[String]) {
        let mut entries = self.lock();
        for name in names {
            entries.remove(&(namespace.to_string(), name.clone()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Option<Arc<ReadSecret>>> {
        let entries = self.lock();
        let e = entries.get(&(namespace.to_string(), name.to_string()))?;
        (e.read_at.elapsed() < self.max_age).then(|| e.secret.clone())
    }

    async fn fetch(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ReadSecret>>, kube::Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await?.map(|s| Arc::new(read_secret(s)));
        let mut entries = self.lock();
        // Entries of Secrets no pool asked for lately go: the cache holds
        // what pools name, nothing more.
        let stale = self.max_age * 2;
        entries.retain(|_, e| e.read_at.elapsed() < stale);
        entries.insert(
            (namespace.to_string(), name.to_string()),
            Entry {
                read_at: Instant::now(),
                secret: secret.clone(),
            },
        );
        Ok(secret)
    }
}

fn read_secret(s: Secret) -> ReadSecret {
    ReadSecret {
        resource_version: s.metadata.resource_version,
        data: s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    }
}

/// The Secrets one pool names, as read at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    secrets: BTreeMap<String, Option<Arc<ReadSecret>>>,
}

impl Snapshot {
    /// The resourceVersion of each Secret (None: missing), to tell whether a
    /// re-read changed anything.
    pub fn versions(&self) -> Vec<Option<String>> {
        self.secrets
            .values()
            .map(|s| s.as_ref().and_then(|s| s.resource_version.clone()))
            .collect()
    }
}

impl SecretLookup for Snapshot {
    fn get(&self, r: &SecretKeyRef) -> Result<Vec<u8>, SourceError> {
        let missing = |reason: &str| SourceError::SecretMissing {
            name: r.name.clone(),
            key: r.key.clone(),
            reason: reason.into(),
        };
        let secret = self
            .secrets
            .get(&r.name)
            .and_then(Option::as_ref)
            .ok_or_else(|| missing("secret not found"))?;
        secret
            .data
            .get(&r.key)
            .cloned()
            .ok_or_else(|| missing("key not found in secret"))
    }
}

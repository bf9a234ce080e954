//! Trigger credentials from Secrets in the pool's namespace, read from the
//! watch cache (so a rotated password is picked up without a GET per poll).

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::SecretKeyRef;
use crate::sources::{SecretLookup, SourceError};

/// Looks Secrets up in one namespace of the Secret cache.
pub struct NamespacedSecrets<'a> {
    pub store: &'a Store<Secret>,
    pub namespace: &'a str,
}

impl SecretLookup for NamespacedSecrets<'_> {
    fn get(&self, r: &SecretKeyRef) -> Result<Vec<u8>, SourceError> {
        let secret = self
            .store
            .get(&ObjectRef::new(&r.name).within(self.namespace))
            .ok_or_else(|| SourceError::SecretMissing {
                name: r.name.clone(),
                key: r.key.clone(),
                reason: "secret not found".into(),
            })?;
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            return Ok(v.0.clone());
        }
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(&r.key)) {
            return Ok(v.clone().into_bytes());
        }
        Err(SourceError::SecretMissing {
            name: r.name.clone(),
            key: r.key.clone(),
            reason: "key not found in secret".into(),
        })
    }
}

/// The resourceVersions of the Secrets a spec names, so built sources are
/// rebuilt when one of them changes.
pub fn versions(store: &Store<Secret>, namespace: &str, names: &[String]) -> Vec<Option<String>> {
    names
        .iter()
        .map(|n| {
            store
                .get(&ObjectRef::new(n).within(namespace))
                .and_then(|s| s.metadata.resource_version.clone())
        })
        .collect()
}

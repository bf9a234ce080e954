//! One trigger being converted: its metadata, the TriggerAuthentication it
//! names, and where each KEDA parameter's value comes from.

use serde_json::Value;

use super::auth::{AuthParams, AuthValue};
use super::fields::{mapping, Object};
use super::warnings::{ConvertError, Warnings};

/// Where one KEDA parameter's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Written in the trigger's metadata.
    Plain(String),
    /// A Secret key (from a TriggerAuthentication's secretTargetRef).
    Secret { name: String, key: String },
    /// Somewhere convert cannot read (env, a vault): why, for the warning.
    Unreadable(String),
}

/// A parameter and the field it was found at (for messages).
#[derive(Debug, Clone)]
pub struct Found {
    pub param: Param,
    pub from: String,
}

/// The trigger being converted.
pub struct TriggerCtx<'a> {
    /// `spec.triggers[i]`.
    pub at: String,
    pub meta: Object,
    pub auth: Option<AuthParams>,
    /// The namespace the WorkerPool will live in (for Secret messages).
    pub namespace: String,
    pub w: &'a mut Warnings,
}

impl TriggerCtx<'_> {
    /// Finds a parameter (under any of its KEDA names) in the metadata, as
    /// `<name>FromEnv`, or in the TriggerAuthentication.
    pub fn param(&mut self, names: &[&str]) -> Result<Option<Found>, ConvertError> {
        for name in names {
            if let Some(v) = self.meta.take_str(name, self.w)? {
                let from = self.meta.path(name);
                return Ok(Some(Found {
                    param: Param::Plain(v),
                    from,
                }));
            }
            let env_key = format!("{name}FromEnv");
            if let Some(v) = self.meta.take_str(&env_key, self.w)? {
                let why = format!(
                    "environment variable {v} of the target's container: convert does not read env"
                );
                let from = self.meta.path(&env_key);
                return Ok(Some(Found {
                    param: Param::Unreadable(why),
                    from,
                }));
            }
            if let Some(found) = self.auth_param(name) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn auth_param(&mut self, name: &str) -> Option<Found> {
        let auth = self.auth.as_mut()?;
        let value = auth.params.remove(name)?;
        let from = format!("{} parameter {name}", auth.label);
        let param = match value {
            AuthValue::Secret { name, key } => Param::Secret { name, key },
            AuthValue::Elsewhere(why) => Param::Unreadable(why),
        };
        Some(Found { param, from })
    }

    /// A parameter a WorkerPool takes from a Secret: the `{name, key}` ref
    /// for field `ours`, or None with a warning saying what to do.
    pub fn secret(&mut self, names: &[&str], ours: &str) -> Result<Option<Value>, ConvertError> {
        let Some(found) = self.param(names)? else {
            return Ok(None);
        };
        match found.param {
            Param::Secret { name, key } => {
                self.warn_cluster_secret(&found.from, &name);
                Ok(Some(mapping([("name", name.into()), ("key", key.into())])))
            }
            Param::Plain(_) => {
                let msg = format!("a plain value; a WorkerPool reads credentials only from Secrets: put it in a Secret in namespace {} and set {ours}", self.namespace);
                self.w.add(found.from, msg);
                Ok(None)
            }
            Param::Unreadable(why) => {
                let msg = format!(
                    "comes from {why}; put the value in a Secret in namespace {} and set {ours}",
                    self.namespace
                );
                self.w.add(found.from, msg);
                Ok(None)
            }
        }
    }

    /// A parameter written into the WorkerPool as text (an address, a
    /// master name). A value convert cannot read becomes `placeholder`,
    /// with a warning to replace it.
    pub fn text(
        &mut self,
        names: &[&str],
        placeholder: &str,
        ours: &str,
    ) -> Result<Option<String>, ConvertError> {
        let Some(found) = self.param(names)? else {
            return Ok(None);
        };
        let source = match found.param {
            Param::Plain(v) => return Ok(Some(v)),
            Param::Secret { name, key } => {
                format!("Secret {name} key {key}, which convert does not read")
            }
            Param::Unreadable(why) => why,
        };
        let msg = format!("comes from {source}: replace the placeholder {placeholder:?} in {ours} with the real value");
        self.w.add(found.from, msg);
        Ok(Some(placeholder.to_string()))
    }

    fn warn_cluster_secret(&mut self, from: &str, secret: &str) {
        if self.auth.as_ref().is_some_and(|a| a.cluster) {
            let msg = format!("a ClusterTriggerAuthentication reads Secret {secret} from KEDA's namespace (default keda); a WorkerPool reads it from its own namespace {}: copy the Secret there", self.namespace);
            self.w.add(from, msg);
        }
    }

    /// Warnings for every metadata key and authentication parameter the
    /// trigger's mapping did not use.
    pub fn finish(self, kind: &str) {
        self.meta.warn_leftovers(
            self.w,
            &format!("not a field of KEDA's {kind} scaler; ignored"),
        );
        let Some(auth) = self.auth else { return };
        for (param, _) in auth.params {
            let msg = format!("parameter {param:?} is not used by a {kind} trigger; ignored");
            self.w.add(auth.label.clone(), msg);
        }
        for provider in auth.providers {
            let msg = format!("spec.{provider}: no equivalent (a WorkerPool authenticates with Secrets named in its triggers); ignored");
            self.w.add(auth.label.clone(), msg);
        }
    }
}

//! What a conversion could not carry over: warnings (printed, exit 0) and
//! errors (nothing printed, exit 2). Both name the object and the field.

use std::fmt;

/// A field of a ScaledObject (or of a TriggerAuthentication it uses) that
/// has no exact equivalent, with what the user should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `ScaledObject <namespace>/<name>`.
    pub object: String,
    /// The KEDA field, as a path (`spec.triggers[0].metadata.unsafeSsl`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {}: {}: {}",
            self.object, self.field, self.message
        )
    }
}

/// The warnings of one ScaledObject, in the order they were found.
#[derive(Debug)]
pub struct Warnings {
    object: String,
    list: Vec<Warning>,
}

impl Warnings {
    pub fn new(object: impl Into<String>) -> Self {
        Warnings {
            object: object.into(),
            list: Vec::new(),
        }
    }

    pub fn object(&self) -> &str {
        &self.object
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(Warning {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// An error naming a field of this object.
    pub fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ConvertError {
        ConvertError::InvalidField {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn into_vec(self) -> Vec<Warning> {
        self.list
    }
}

/// Input `convert` refuses (exit status 2, nothing printed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The input could not be read at all.
    #[error("{0}")]
    Read(String),
    /// A document is not YAML.
    #[error("document {doc}: invalid YAML: {message}")]
    Yaml { doc: usize, message: String },
    /// A document is a KEDA object that is not a ScaledObject (e.g. a ScaledJob).
    #[error("document {doc}: {what}: {why}")]
    NotScaledObject {
        doc: usize,
        what: String,
        why: String,
    },
    /// Nothing to convert.
    #[error("no ScaledObject (apiVersion keda.sh/v1alpha1) in the input")]
    NoScaledObject,
    /// A trigger type with no WorkerPool source.
    #[error("{object}: {field}: trigger type {kind:?} cannot be converted (supported: redis, redis-sentinel, redis-cluster, redis-streams, redis-sentinel-streams, redis-cluster-streams, prometheus)")]
    UnsupportedTrigger {
        object: String,
        field: String,
        kind: String,
    },
    /// A field KEDA itself would reject, or one with no usable value.
    #[error("{object}: {field}: {message}")]
    InvalidField {
        object: String,
        field: String,
        message: String,
    },
}

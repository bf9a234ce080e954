//! The controller's errors, each with a metric label (as controller-rs does).

/// Why a reconcile failed (and will be retried with backoff).
// Variants name what failed; their messages say the rest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("scaling {target}: {source}")]
    Scale { target: String, source: kube::Error },
    #[error("writing status: {0}")]
    Status(kube::Error),
    #[error("WorkerPool has no namespace")]
    NoNamespace,
    #[error("WorkerPool polled before it was prepared")]
    NotPrepared,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Scale { .. } => "scale",
            Error::Status(_) => "status",
            Error::NoNamespace => "no_namespace",
            Error::NotPrepared => "not_prepared",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

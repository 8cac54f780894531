//! The operator's error type, with a retry class and a metric label per variant.

use thiserror::Error;

/// Everything that can go wrong in a reconcile.
#[derive(Debug, Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The object lacks metadata the apiserver always sets (name, namespace, uid).
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
    /// A reconcile did not finish in time (a request that never answered); it is retried.
    #[error("reconcile did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// Wraps a kube error with what the operator was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// Short label for metrics and events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::Timeout(_) => "timeout",
        }
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The operator's error type: one variant per stage of the pipeline, so that logs and the
//! error metric (`shoal_reconcile_errors_total{reason=...}`) say which stage failed.

use thiserror::Error;

/// Everything that can go wrong in a reconcile or a scaling tick.
#[derive(Debug, Error)]
pub enum Error {
    /// The object lacks metadata the apiserver always sets (name, namespace, uid).
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
    /// Server-side apply of a child was refused or failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting a child (an optional child no longer wanted, a stale ConfigMap) failed.
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the status subresource failed.
    #[error("writing status of {kind} {name}: {source}")]
    Status {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the scale subresource failed.
    #[error("scaling Deployment {name} to {replicas}: {source}")]
    Scale {
        /// Name of the Deployment.
        name: String,
        /// The replica count that was to be written.
        replicas: i32,
        #[source]
        source: kube::Error,
    },
    /// A read from the apiserver (outside the watch caches) failed.
    #[error("{action}: {source}")]
    Query {
        /// What the operator was reading.
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A reconcile did not finish in time (a request that never answered); it is retried.
    #[error("reconcile did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// The stage that failed, as the label of the error metric and in logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingMetadata(_) => "validate",
            Error::Apply { .. } | Error::Delete { .. } => "apply",
            Error::Status { .. } => "status",
            Error::Scale { .. } => "scale",
            Error::Query { .. } => "query",
            Error::Timeout(_) => "timeout",
        }
    }

    /// When the apiserver refused to apply a child (a 4xx answer such as 422 Invalid or 403
    /// Forbidden): which child and the apiserver's own message, which names the field.
    /// None for every other error (a timeout, a connection failure, a 5xx).
    pub fn refusal(&self) -> Option<String> {
        match self {
            Error::Apply {
                kind,
                name,
                source: kube::Error::Api(status),
            } if (400..500).contains(&status.code) => Some(format!(
                "the apiserver refused {kind} {name}: {}",
                status.message
            )),
            _ => None,
        }
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_label_names_the_stage() {
        let refused = || kube::Error::LinesCodecMaxLineLengthExceeded;
        let apply = Error::Apply {
            kind: "Deployment",
            name: "shop".into(),
            source: refused(),
        };
        assert_eq!(apply.metric_label(), "apply");
        assert!(apply.to_string().starts_with("applying Deployment shop: "));
        let status = Error::Status {
            kind: "Microservice",
            name: "shop".into(),
            source: refused(),
        };
        assert_eq!(status.metric_label(), "status");
        assert_eq!(Error::MissingMetadata("name").metric_label(), "validate");
    }

    #[test]
    fn a_refused_apply_carries_the_apiservers_message() {
        let answer = |code: u16| {
            let status: kube::core::Status = serde_json::from_value(serde_json::json!({
                "status": "Failure", "reason": "Invalid", "code": code,
                "message": "Deployment.apps \"shop\" is invalid: spec.template.spec.containers[0].env[0].name: Required value",
            }))
            .expect("a Status");
            kube::Error::Api(Box::new(status))
        };
        let apply = |code| Error::Apply {
            kind: "Deployment",
            name: "shop".into(),
            source: answer(code),
        };
        let refusal = apply(422).refusal().expect("a 422 is a refusal");
        assert!(
            refusal.starts_with("the apiserver refused Deployment shop: "),
            "{refusal}"
        );
        assert!(refusal.contains("env[0].name: Required value"), "{refusal}");
        // A server error or a failed connection is no refusal: it only retries.
        assert_eq!(apply(500).refusal(), None);
        let unreachable = Error::Apply {
            kind: "Deployment",
            name: "shop".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(unreachable.refusal(), None);
    }
}

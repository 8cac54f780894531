//! Shoal: a Kubernetes operator and horizontal autoscaler for Microservices.
//!
//! Two loops share one vocabulary. The [`controller`] reconciles each Microservice through
//! `validate -> render -> rollout -> apply -> status`: [`validate`] turns it into a
//! [`validate::ValidatedMicroservice`] with every default resolved, the renderers and the
//! rollout and status functions are pure, and only the apply and status writes talk to the
//! cluster. The [`autoscaler`] reads metrics and writes the scale subresource. Both use
//! [`kube_ext`] for their API calls; `docs/architecture.md` says which module may use which.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod app;
#[cfg(feature = "test-support")]
pub mod arbitrary;
pub mod autoscaler;
pub mod caches;
pub mod cli;
pub mod condition_metrics;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod error;
pub mod kube_ext;
pub mod leader;
pub mod metrics;
pub mod packed;
pub mod process_metrics;
pub mod progress;
pub mod projection;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tracks;
pub mod validate;
pub mod vocabulary;

/// Field manager of the controller's server-side applies.
pub const FIELD_MANAGER: &str = "shoal";
/// Field manager of the autoscaler's writes to the scale subresource.
pub const AUTOSCALER_FIELD_MANAGER: &str = "shoal-autoscaler";

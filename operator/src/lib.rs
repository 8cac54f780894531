//! Shoal: a Kubernetes operator and horizontal autoscaler for Microservices.
//!
//! The reconcile pipeline is `validate -> build -> apply -> update_status`:
//! [`validate`] turns a Microservice into a [`validate::ValidatedMicroservice`], the
//! [`build`] functions render each child from it and cannot fail, [`status`] computes
//! conditions as pure data, and [`controller`] is the one module with side effects.
#![forbid(unsafe_code)]

pub mod autoscaler;
pub mod build;
pub mod cli;
pub mod condition_metrics;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod diff;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod rollout;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod validate;

/// Field manager of the controller's server-side applies.
pub const FIELD_MANAGER: &str = "shoal";
/// Field manager of the autoscaler's writes to the scale subresource.
pub const AUTOSCALER_FIELD_MANAGER: &str = "shoal-autoscaler";

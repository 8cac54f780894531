//! The autoscaler: a loop, separate from the reconcile loop, that reads request rate and
//! CPU from Prometheus and scales Microservices whose engine is Shoal through the
//! Deployment's scale subresource (field manager `shoal-autoscaler`).

pub mod decision;
pub mod run;
pub mod source;

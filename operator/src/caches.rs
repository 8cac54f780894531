//! The watch caches both loops read when they run in one process: the controller builds
//! them and hands them to the metrics loop, so that each Microservice and each Deployment
//! is held once, not once per loop.

use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::Store;

use crate::crd::Microservice;

/// A cached Microservice: packed (`crate::packed`), unpacked by each reader.
pub type PackedMicroservice = crate::packed::Packed<Microservice>;

/// What the controller shares with the metrics loop.
#[derive(Clone)]
pub struct SharedCaches {
    /// Every Microservice in scope (packed, `managedFields` stripped).
    pub microservices: Store<PackedMicroservice>,
    /// Shoal's Deployments (`managedFields` stripped).
    pub deployments: crate::packed::PackedStore<Deployment>,
    /// Completes once both caches hold their first list; it wakes every waiter. Never wait
    /// on `microservices.wait_until_ready()` or `deployments.wait_until_ready()` beside it:
    /// kube-runtime wakes only the last task that polled a store's own readiness, and the
    /// controller (its runtime, its readiness future) waits on both, so one of them would
    /// sleep forever.
    pub ready: Shared<BoxFuture<'static, ()>>,
}

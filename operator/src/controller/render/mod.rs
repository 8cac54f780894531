//! Pure renderers: one file per child, each a function from a [`ValidatedMicroservice`]
//! to the object to apply. They cannot fail and touch no client.

mod availability;
mod canary;
mod config_map;
mod cron_jobs;
mod deployment;
mod hpa;
mod ingress;
mod meta;
pub mod routing;
mod scrape;
mod service;

pub use availability::{
    HOSTNAME_TOPOLOGY_KEY, UNHEALTHY_POD_EVICTION_POLICY, ZONE_TOPOLOGY_KEY,
    render_pod_disruption_budget, topology_spread,
};
pub use canary::{
    CANARY_TRACK, STABLE_TRACK, TRACK_LABEL, canary_name, render_canary_deployment, stable_name,
};
pub use config_map::render_config_map;
pub use cron_jobs::{PART_OF_LABEL, SCHEDULE_LABEL, render_cron_jobs};
pub use deployment::{CONTAINER_NAME, initial_replicas, render_deployment, replicas_handoff};
pub use hpa::render_hpa;
pub use ingress::render_ingress;
pub use meta::{
    APPLIED_HASH_ANNOTATION, COMPONENT_LABEL, CONFIG_HASH_ANNOTATION, INSTANCE_LABEL,
    MANAGED_BY_LABEL, NAME_LABEL, REPLICAS_MANAGED_ANNOTATION, TEMPLATE_HASH_ANNOTATION,
    common_labels, selector_labels,
};
pub use scrape::{
    METRICS_PORT_NAME, MONITORING_GROUP, PodMonitor, PodMonitorSpec, SCRAPE_ANNOTATION,
    SCRAPE_PATH_ANNOTATION, SCRAPE_PORT_ANNOTATION, pod_annotations, render_pod_monitor,
};
pub use service::render_service;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::validate::ValidatedMicroservice;

/// Every child a Microservice asks for. Optional children are `None` when the spec does
/// not ask for them (and must then be deleted if they exist).
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The content-addressed, immutable config.
    pub config_map: ConfigMap,
    /// The workload.
    pub deployment: Deployment,
    /// The Service in front of it.
    pub service: Service,
    /// The Ingress, when `spec.ingress` is set.
    pub ingress: Option<Ingress>,
    /// The HPA, when the HPA engine scales this service.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// The Prometheus Operator PodMonitor, unless `spec.metrics.enabled` is false. Applied
    /// only where the PodMonitor CRD is installed.
    pub pod_monitor: Option<PodMonitor>,
    /// The PodDisruptionBudget, when the service can run 2+ replicas.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// One CronJob per `spec.schedules` entry.
    pub cron_jobs: Vec<CronJob>,
    /// Hash of the Deployment's pod template: the revision this generation asks for.
    pub template_hash: String,
}

/// Renders all children of a validated Microservice.
pub fn render(ms: &ValidatedMicroservice) -> Children {
    let (deployment, template_hash) = deployment::render_deployment_and_hash(ms);
    Children {
        config_map: render_config_map(ms),
        deployment,
        service: render_service(ms),
        ingress: render_ingress(ms),
        hpa: render_hpa(ms),
        pod_monitor: render_pod_monitor(ms),
        pod_disruption_budget: render_pod_disruption_budget(ms),
        cron_jobs: render_cron_jobs(ms),
        template_hash,
    }
}

#[cfg(all(test, feature = "test-support"))]
mod props;
#[cfg(test)]
mod tests;

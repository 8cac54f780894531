//! `spec.disruption`: the PodDisruptionBudget of a service that can run 2+ replicas.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How many pods voluntary disruptions (a node drain, a cluster autoscaler removing a node)
/// may take at once. Shoal creates a PodDisruptionBudget named after the Microservice when it
/// can run 2 or more replicas (`spec.replicas` >= 2, or `spec.autoscaling.maxReplicas` >= 2),
/// by default with `maxUnavailable: 1`: drains go one pod at a time and never block on a
/// service scaled down to its minimum. Unhealthy pods may always be evicted
/// (`unhealthyPodEvictionPolicy: AlwaysAllow`), so a broken rollout cannot block a drain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.maxUnavailable) && has(self.minAvailable))").message("spec.disruption: set maxUnavailable or minAvailable, not both"))]
pub struct DisruptionSettings {
    /// Set to false to have no PodDisruptionBudget. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Most pods unavailable through evictions at once: a number or a percentage. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    /// Fewest pods that must stay available through evictions: a number or a percentage.
    /// Replaces the default `maxUnavailable`; beware that a budget at or above the replica
    /// count blocks every drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::int_or_string")]
    pub min_available: Option<IntOrString>,
}

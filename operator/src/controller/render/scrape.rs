//! What Prometheus needs to scrape a Microservice's own metrics: the conventional
//! `prometheus.io/*` pod-template annotations, and a Prometheus Operator `PodMonitor`
//! (applied only where its CRD is installed). The label contract is in docs/metrics.md.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::meta::{INSTANCE_LABEL, object_meta, selector_labels, with_applied_hash};
use crate::validate::{MetricsEndpoint, ValidatedMicroservice};

/// Pod annotation: whether Prometheus should scrape the pod.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// Pod annotation: the port to scrape.
pub const SCRAPE_PORT_ANNOTATION: &str = "prometheus.io/port";
/// Pod annotation: the HTTP path to scrape.
pub const SCRAPE_PATH_ANNOTATION: &str = "prometheus.io/path";
/// Name of the container port serving the metrics when it is not the HTTP port.
pub const METRICS_PORT_NAME: &str = "metrics";
/// Name of the container port serving HTTP traffic (and the metrics by default).
pub const HTTP_PORT_NAME: &str = "http";
/// The label the PodMonitor sets to a pod's track of a canary release (`canary`; unset
/// for stable pods): the operator's default `--track-label`.
pub const TRACK_TARGET_LABEL: &str = "track";
/// The label the PodMonitor sets to the Microservice's name: the service label of
/// Shoal's default request-rate query.
pub const SERVICE_LABEL: &str = "service";
/// API group of the Prometheus Operator's resources.
pub const MONITORING_GROUP: &str = "monitoring.coreos.com";

/// The `prometheus.io/*` annotations of the pod template; empty when metrics are off.
pub fn pod_annotations(ms: &ValidatedMicroservice) -> BTreeMap<String, String> {
    let Some(metrics) = &ms.metrics else {
        return BTreeMap::new();
    };
    BTreeMap::from([
        (SCRAPE_ANNOTATION.to_string(), "true".to_string()),
        (SCRAPE_PORT_ANNOTATION.to_string(), metrics.port.to_string()),
        (SCRAPE_PATH_ANNOTATION.to_string(), metrics.path.clone()),
    ])
}

/// The extra named container port serving the metrics, when it is not the HTTP port (a
/// PodMonitor selects ports by name).
pub fn metrics_container_port(ms: &ValidatedMicroservice) -> Option<ContainerPort> {
    let metrics = ms.metrics.as_ref()?;
    (metrics.port != ms.ports.container).then(|| ContainerPort {
        name: Some(METRICS_PORT_NAME.to_string()),
        container_port: metrics.port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    })
}

fn port_name(ms: &ValidatedMicroservice, metrics: &MetricsEndpoint) -> &'static str {
    if metrics.port == ms.ports.container {
        HTTP_PORT_NAME
    } else {
        METRICS_PORT_NAME
    }
}

/// The part of the Prometheus Operator's `PodMonitor` (`monitoring.coreos.com/v1`) that
/// Shoal writes. The CRD is the Prometheus Operator's; Shoal does not install it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    plural = "podmonitors",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Pods to scrape.
    pub selector: LabelSelector,
    /// Namespaces of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Endpoints of each pod to scrape.
    #[serde(default)]
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// Namespaces a PodMonitor selects pods in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_names: Vec<String>,
}

/// One scraped endpoint of a pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// Name of the container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// HTTP path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Relabelings applied to the target before scraping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<RelabelConfig>,
}

/// A Prometheus relabel rule, in the Prometheus Operator's spelling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RelabelConfig {
    /// Labels whose values are joined and matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// Label written by `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    /// What to do (`replace`, `keep`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The Prometheus target label of a pod label, as Kubernetes service discovery spells it.
pub fn pod_label_meta(label: &str) -> String {
    let sanitized: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__meta_kubernetes_pod_label_{sanitized}")
}

/// The PodMonitor of a Microservice, or None when `spec.metrics.enabled` is false. It
/// selects the Microservice's pods in its namespace, scrapes the metrics port and path,
/// and sets the `service` label to the Microservice's name and `track` to the pod's track
/// (`namespace` and `pod` are set by the Prometheus Operator itself).
pub fn render_pod_monitor(ms: &ValidatedMicroservice) -> Option<PodMonitor> {
    let metrics = ms.metrics.as_ref()?;
    let spec = PodMonitorSpec {
        selector: LabelSelector {
            match_labels: Some(selector_labels(ms)),
            match_expressions: None,
        },
        namespace_selector: Some(NamespaceSelector {
            match_names: vec![ms.namespace.clone()],
        }),
        pod_metrics_endpoints: vec![PodMetricsEndpoint {
            port: Some(port_name(ms, metrics).to_string()),
            path: Some(metrics.path.clone()),
            relabelings: vec![
                RelabelConfig {
                    source_labels: vec![pod_label_meta(INSTANCE_LABEL)],
                    target_label: Some(SERVICE_LABEL.to_string()),
                    action: Some("replace".to_string()),
                },
                // Canary pods carry `shoal.dev/track: canary`; stable ones no track label.
                RelabelConfig {
                    source_labels: vec![pod_label_meta(super::TRACK_LABEL)],
                    target_label: Some(TRACK_TARGET_LABEL.to_string()),
                    action: Some("replace".to_string()),
                },
            ],
        }],
    };
    Some(with_applied_hash(PodMonitor {
        metadata: object_meta(ms, ms.name.clone(), "metrics"),
        spec,
    }))
}

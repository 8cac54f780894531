//! The Service in front of the pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{object_meta, selector_labels, with_applied_hash};
use crate::crd::ServiceType;
use crate::validate::ValidatedMicroservice;

/// Renders the Service named like the Microservice, forwarding to the container's `http` port.
pub fn render_service(ms: &ValidatedMicroservice) -> Service {
    let type_name = match ms.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    with_applied_hash(Service {
        metadata: object_meta(ms, ms.name.clone(), "server"),
        spec: Some(ServiceSpec {
            type_: Some(type_name.to_string()),
            selector: Some(selector_labels(ms)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: ms.ports.service,
                target_port: Some(IntOrString::String("http".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

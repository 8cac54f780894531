//! The Service in front of the pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{object_meta, selector_labels, with_applied_hash};
use crate::crd::ServiceType;
use crate::validate::ValidatedMicroservice;

/// Default port of the Service.
pub const DEFAULT_SERVICE_PORT: i32 = 80;

/// Port the Service listens on.
pub fn service_port(ms: &ValidatedMicroservice) -> i32 {
    ms.spec
        .service
        .as_ref()
        .and_then(|s| s.port)
        .unwrap_or(DEFAULT_SERVICE_PORT)
}

/// Renders the Service named like the Microservice, forwarding to the container's `http` port.
pub fn render_service(ms: &ValidatedMicroservice) -> Service {
    let type_ = ms
        .spec
        .service
        .as_ref()
        .and_then(|s| s.type_)
        .unwrap_or_default();
    let type_name = match type_ {
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
                port: service_port(ms),
                target_port: Some(IntOrString::String("http".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

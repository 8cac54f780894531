//! The optional Ingress.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::meta::{object_meta, with_applied_hash};
use crate::validate::ValidatedMicroservice;

/// Renders the Ingress for `spec.ingress`, or None when the spec has none.
pub fn render_ingress(ms: &ValidatedMicroservice) -> Option<Ingress> {
    let settings = ms.ingress.as_ref()?;
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: ms.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(ms.ports.service),
                name: None,
            }),
        }),
        resource: None,
    };
    Some(with_applied_hash(Ingress {
        metadata: object_meta(ms, ms.name.clone(), "ingress"),
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(settings.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(settings.path.clone()),
                        path_type: "Prefix".to_string(),
                        backend,
                    }],
                }),
            }]),
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![settings.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            default_backend: None,
        }),
        ..Ingress::default()
    }))
}

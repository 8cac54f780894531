//! The ingress-nginx router (`trafficRouting: {nginx: {}}`): a canary Ingress
//! `<name>-canary` beside the Microservice's own, with the same host, path, class and TLS,
//! sending to `<name>-canary` with ingress-nginx's `canary-weight`; the own Ingress sends
//! to `<name>-stable` meanwhile, so that the weight is exact whatever the pod counts.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;

use super::{ROUTING_COMPONENT, Router, with_backend};
use crate::controller::render::canary::canary_name;
use crate::controller::render::ingress::render_ingress;
use crate::controller::render::meta::object_meta;
use crate::validate::ValidatedMicroservice;

/// Marks an Ingress as ingress-nginx's canary of the Ingress with the same host and path.
pub const CANARY_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary";
/// Percent of the requests (of 100) ingress-nginx sends to the canary Ingress's backend.
pub const CANARY_WEIGHT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// The ingress-nginx router.
pub struct Nginx;

impl Router for Nginx {
    fn ingresses(&self, ms: &ValidatedMicroservice, weight: i32) -> Vec<Ingress> {
        // Validation makes sure `spec.ingress` is set with this router.
        let Some(main) = render_ingress(ms) else {
            return Vec::new();
        };
        let mut metadata = object_meta(ms, canary_name(&ms.name), ROUTING_COMPONENT);
        metadata.annotations = Some(BTreeMap::from([
            (CANARY_ANNOTATION.to_string(), "true".to_string()),
            (CANARY_WEIGHT_ANNOTATION.to_string(), weight.to_string()),
        ]));
        let canary = Ingress { metadata, ..main };
        vec![with_backend(canary, &ms.name, &canary_name(&ms.name))]
    }

    fn stable_ingress(&self) -> bool {
        true
    }
}

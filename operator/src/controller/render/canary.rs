//! The canary Deployment of strategy Canary: the rendered Deployment's pod template with
//! the track label, under its own name and selector, at the size the canary step asks for.

use k8s_openapi::api::apps::v1::Deployment;

use super::meta::{
    APPLIED_HASH_ANNOTATION, REPLICAS_MANAGED_ANNOTATION, object_meta, with_applied_hash,
};
use crate::validate::ValidatedMicroservice;

/// Pod label naming the track of a canary release: `canary` on canary pods; `stable` on the
/// stable Deployment's pods only when a traffic router needs a Service of its own for them
/// (`nginx`, `gatewayAPI`). Pods without it are the stable track, so turning canaries on
/// with the default routing (replica ratio) restarts no pod.
pub const TRACK_LABEL: &str = "shoal.dev/track";
/// Value of [`TRACK_LABEL`] on canary pods.
pub const CANARY_TRACK: &str = "canary";
/// Value of [`TRACK_LABEL`] on the stable Deployment's pods when a traffic router is set.
pub const STABLE_TRACK: &str = "stable";

/// Name of the canary Deployment (and of the canary Service and Ingress).
pub fn canary_name(name: &str) -> String {
    format!("{name}-canary")
}

/// Name of the Service that selects only the stable track (traffic routers).
pub fn stable_name(name: &str) -> String {
    format!("{name}-stable")
}

/// The canary Deployment for `rendered` (the stable Deployment as rendered for this
/// generation) with `replicas` pods.
pub fn render_canary_deployment(
    ms: &ValidatedMicroservice,
    rendered: &Deployment,
    replicas: i32,
) -> Deployment {
    let mut metadata = object_meta(ms, canary_name(&ms.name), "canary");
    if let Some(annotations) = rendered.metadata.annotations.as_ref() {
        let mut kept = annotations.clone();
        kept.remove(APPLIED_HASH_ANNOTATION);
        kept.remove(REPLICAS_MANAGED_ANNOTATION);
        if !kept.is_empty() {
            metadata.annotations = Some(kept);
        }
    }
    let mut spec = rendered.spec.clone().unwrap_or_default();
    spec.replicas = Some(replicas);
    spec.selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(TRACK_LABEL.to_string(), CANARY_TRACK.to_string());
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(TRACK_LABEL.to_string(), CANARY_TRACK.to_string());
    with_applied_hash(Deployment {
        metadata,
        spec: Some(spec),
        ..Deployment::default()
    })
}

//! The canary Deployment of strategy Canary: the rendered Deployment's pod template with
//! the track label, under its own name and selector, at the size the canary step asks for.

use k8s_openapi::api::apps::v1::Deployment;

use super::meta::{
    APPLIED_HASH_ANNOTATION, REPLICAS_MANAGED_ANNOTATION, object_meta, with_applied_hash,
};
use crate::validate::ValidatedMicroservice;

pub use crate::tracks::{CANARY_TRACK, STABLE_TRACK, TRACK_LABEL, canary_name, stable_name};

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

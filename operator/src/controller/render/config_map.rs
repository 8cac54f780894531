//! The config ConfigMap: immutable, named after a hash of its content.

use k8s_openapi::api::core::v1::ConfigMap;

use super::meta::{object_meta, with_applied_hash};
use crate::validate::ValidatedMicroservice;

/// Renders `<name>-config-<hash>` holding `spec.config`.
pub fn render_config_map(ms: &ValidatedMicroservice) -> ConfigMap {
    with_applied_hash(ConfigMap {
        metadata: object_meta(ms, ms.config_map_name(), "config"),
        data: Some(ms.config.clone()),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

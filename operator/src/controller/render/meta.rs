//! Names, labels, annotations and owner references shared by every child.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use sha2::{Digest, Sha256};

use kube::Resource as _;

use crate::crd::Microservice;
use crate::validate::ValidatedMicroservice;

pub use crate::vocabulary::{COMPONENT_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL};

/// Pod-template annotation with the hash of the config, so a config change is a new revision.
pub const CONFIG_HASH_ANNOTATION: &str = "shoal.dev/config-hash";
/// Pod-template annotation: hash of the rendered pod template, which identifies a revision.
pub const TEMPLATE_HASH_ANNOTATION: &str = "shoal.dev/template-hash";
/// Hash of the object as Shoal last rendered it; a differing hash means the child must be re-applied.
pub const APPLIED_HASH_ANNOTATION: &str = "shoal.dev/applied-hash";
/// Set on a Deployment while Shoal's controller owns `spec.replicas` (no autoscaling).
pub const REPLICAS_MANAGED_ANNOTATION: &str = "shoal.dev/replicas-managed-by-controller";

/// Labels that select the pods of a Microservice.
pub fn selector_labels(ms: &ValidatedMicroservice) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), ms.name.clone()),
        (INSTANCE_LABEL.to_string(), ms.name.clone()),
    ])
}

/// Labels every child carries.
pub fn common_labels(ms: &ValidatedMicroservice) -> BTreeMap<String, String> {
    let mut labels = selector_labels(ms);
    labels.insert(MANAGED_BY_LABEL.to_string(), "shoal".to_string());
    labels
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
pub fn object_meta(ms: &ValidatedMicroservice, name: String, component: &str) -> ObjectMeta {
    let mut labels = common_labels(ms);
    labels.insert(COMPONENT_LABEL.to_string(), component.to_string());
    ObjectMeta {
        name: Some(name),
        namespace: Some(ms.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(ms)]),
        ..ObjectMeta::default()
    }
}

/// The controller owner reference to the Microservice: the garbage collector removes the
/// child with it, and a change to the child wakes the controller.
pub fn owner_reference(ms: &ValidatedMicroservice) -> OwnerReference {
    OwnerReference {
        api_version: Microservice::api_version(&()).into_owned(),
        kind: Microservice::kind(&()).into_owned(),
        name: ms.name.clone(),
        uid: ms.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Stamps `shoal.dev/applied-hash` with a hash of the rendered object (before stamping).
/// The controller re-applies a child whose live hash differs, which also catches fields
/// that were dropped from the spec.
pub fn with_applied_hash<T: Serialize + kube::Resource>(mut object: T) -> T {
    let hash = content_hash(&object);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.to_string(), hash);
    object
}

/// 16 hex digits of the SHA-256 of an object's JSON.
pub fn content_hash<T: Serialize>(object: &T) -> String {
    // Serialising a k8s-openapi object cannot fail: its maps all have string keys.
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

//! Fixtures shared by the unit tests and (with the `test-support` feature) the integration
//! tests: a valid Microservice from YAML, a Deployment at a given generation and progress.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::controller::render::{CONFIG_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use crate::crd::Microservice;
use crate::validate::{ValidatedMicroservice, validate};

/// Name of the fixtures' Microservice.
pub const NAME: &str = "shop";
/// Namespace of the fixtures' Microservice.
pub const NAMESPACE: &str = "prod";
/// UID of the fixtures' Microservice.
pub const UID: &str = "u-1";

/// A Microservice `shop` in `prod` (uid `u-1`) at `generation`, with the given spec, as YAML
/// lines indented by two spaces (`"  image: app:1\n"`).
pub fn microservice_at(generation: i64, spec_yaml: &str) -> Microservice {
    let yaml = format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {NAME}, namespace: {NAMESPACE}, uid: {UID}, generation: {generation}}}\nspec:\n{spec_yaml}"
    );
    serde_yaml::from_str(&yaml).expect("test yaml parses as a Microservice")
}

/// [`microservice_at`] generation 3.
pub fn microservice(spec_yaml: &str) -> Microservice {
    microservice_at(3, spec_yaml)
}

/// [`microservice`], validated; panics if the spec is invalid.
pub fn valid(spec_yaml: &str) -> ValidatedMicroservice {
    validate(&microservice(spec_yaml)).expect("valid test spec")
}

/// A pod template of one container running `image`, carrying Shoal's template hash `hash`
/// (and config hash `cfg-<hash>`), with the label the deployment controller adds.
pub fn pod_template(image: &str, hash: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([(
                "pod-template-hash".to_string(),
                "x".to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (TEMPLATE_HASH_ANNOTATION.to_string(), hash.to_string()),
                (CONFIG_HASH_ANNOTATION.to_string(), format!("cfg-{hash}")),
            ])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// Where a Deployment's rollout stands.
#[derive(Clone, Copy, Debug)]
pub struct DeploymentAt {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed: i64,
    /// `spec.replicas` and `status.replicas`.
    pub replicas: i32,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas` and `status.readyReplicas`.
    pub available: i32,
    /// Whether `Progressing=False, reason=ProgressDeadlineExceeded` is set.
    pub deadline_exceeded: bool,
}

impl DeploymentAt {
    /// A rollout of generation `generation` that completed with `replicas` replicas.
    pub fn complete(generation: i64, replicas: i32) -> DeploymentAt {
        DeploymentAt {
            generation,
            observed: generation,
            replicas,
            updated: replicas,
            available: replicas,
            deadline_exceeded: false,
        }
    }
}

/// A Deployment at the given progress (no name, no template).
pub fn deployment(p: DeploymentAt) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(p.generation),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(p.replicas),
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(p.observed),
            replicas: Some(p.replicas),
            updated_replicas: Some(p.updated),
            available_replicas: Some(p.available),
            ready_replicas: Some(p.available),
            conditions: p.deadline_exceeded.then(|| {
                vec![DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some("ProgressDeadlineExceeded".into()),
                    message: Some("ReplicaSet has timed out progressing.".into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

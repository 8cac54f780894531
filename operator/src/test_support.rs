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

/// What the traffic router of `ms` (a Microservice with a router) has applied mid-canary at
/// `weight` percent, once the stable pods carry their track, the track Services exist and a
/// canary pod is available: the track Services, the router's Ingresses, the Microservice's
/// own Ingress when the router changes it, and `route` (the user's HTTPRoute) as patched. As JSON,
/// in that order: what the golden files and the apiserver's dry run check.
pub fn routed_mid_canary(
    ms: &ValidatedMicroservice,
    weight: i32,
    route: Option<&serde_json::Value>,
) -> Vec<serde_json::Value> {
    use crate::controller::render::routing::{self, LiveRouting, RouteUpdate};
    use crate::controller::render::{render, render_canary_deployment};

    let children = render(ms);
    let complete = |mut d: Deployment, replicas: i32| {
        d.metadata.generation = Some(1);
        d.status = deployment(DeploymentAt::complete(1, replicas)).status;
        d
    };
    let stable = complete(children.deployment.clone(), 4);
    let canary = complete(render_canary_deployment(ms, &children.deployment, 1), 1);
    let router = ms
        .rollout
        .canary
        .as_ref()
        .and_then(|c| routing::router(&c.routing))
        .expect("a Microservice with a traffic router");
    let services = routing::track_services(ms, &router.service_annotations());
    let status: crate::crd::CanaryStatus = serde_json::from_value(serde_json::json!({
        "phase": "Paused", "templateHash": children.template_hash, "generation": 1,
        "step": 1, "steps": 2, "weight": weight,
        "startedAt": "2025-01-01T00:00:00Z", "stepStartedAt": "2025-01-01T00:00:00Z",
    }))
    .expect("a canary status");
    let plan = routing::plan(
        ms,
        Some(&status),
        true,
        LiveRouting {
            stable: Some(&stable),
            ingress: children.ingress.as_ref(),
            stable_service: services.first(),
            canary_service: services.get(1),
            canary_ingress: None,
            canary: Some(&canary),
        },
    );
    assert_eq!(plan.split, Some(weight), "the router splits the traffic");
    let mut out: Vec<serde_json::Value> = plan.services.iter().map(to_json).collect();
    out.extend(plan.ingresses.iter().map(to_json));
    if let Some(own) = plan.main_ingress(ms, children.ingress.clone())
        && plan.stable_ingress
    {
        out.push(to_json(&own));
    }
    if let (Some((router, _, split)), Some(route)) = (&plan.route, route) {
        let mut patched = route.clone();
        if let RouteUpdate::Patch { ops, .. } = router.route_update(ms, route, *split) {
            let patch: json_patch::Patch =
                serde_json::from_value(serde_json::Value::Array(ops)).expect("a JSON patch");
            json_patch::patch(&mut patched, &patch.0).expect("the patch applies");
        }
        out.push(patched);
    }
    out
}

fn to_json<K: serde::Serialize>(object: &K) -> serde_json::Value {
    serde_json::to_value(object).expect("JSON")
}

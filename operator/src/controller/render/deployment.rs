//! The Deployment, and the hand-over of `spec.replicas` when autoscaling is turned on.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, HTTPGetAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::canary::{STABLE_TRACK, TRACK_LABEL};
use super::meta::{
    CONFIG_HASH_ANNOTATION, REPLICAS_MANAGED_ANNOTATION, TEMPLATE_HASH_ANNOTATION, common_labels,
    content_hash, object_meta, selector_labels, with_applied_hash,
};
use crate::validate::{HttpGetProbe, Scaling, ValidatedMicroservice};

/// Name of the application container.
pub const CONTAINER_NAME: &str = "app";
/// Name of the writable `emptyDir` volume mounted at [`TMP_PATH`].
pub const TMP_VOLUME: &str = "tmp";
/// Where the writable scratch volume is mounted (the root filesystem is read-only).
pub const TMP_PATH: &str = "/tmp";

/// The container's security settings Pod Security `restricted` admits: non-root, no
/// privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem.
pub fn default_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

/// The pod's security settings: non-root and RuntimeDefault seccomp.
pub fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}

/// `defaults` with every field that `overrides` sets replaced (one level deep, as
/// Kubernetes merges a container's securityContext over the pod's).
pub fn overlay<T: Serialize + DeserializeOwned>(defaults: T, overrides: Option<&T>) -> T {
    let Some(overrides) = overrides else {
        return defaults;
    };
    let mut merged = serde_json::to_value(&defaults).unwrap_or_default();
    if let (Some(merged), Ok(serde_json::Value::Object(over))) =
        (merged.as_object_mut(), serde_json::to_value(overrides))
    {
        merged.extend(over);
    }
    serde_json::from_value(merged).unwrap_or(defaults)
}

/// The application container as every workload of the service runs it (the Deployment's
/// pods and the scheduled tasks'): image, command, environment with the config first,
/// resources, the security context over its defaults, `/tmp` and the extra mounts.
pub(super) fn app_container(ms: &ValidatedMicroservice) -> Container {
    let app = &ms.app;
    let pod = &ms.pod;
    let mut env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: ms.config_map_name(),
            optional: None,
        }),
        ..EnvFromSource::default()
    }];
    env_from.extend(app.env_from.iter().cloned());
    let mut volume_mounts = vec![VolumeMount {
        name: TMP_VOLUME.to_string(),
        mount_path: TMP_PATH.to_string(),
        ..VolumeMount::default()
    }];
    volume_mounts.extend(pod.volume_mounts.iter().cloned());
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(app.image.clone()),
        command: app.command.clone(),
        args: app.args.clone(),
        env: app.env.clone(),
        env_from: Some(env_from),
        resources: app.resources.clone(),
        security_context: Some(overlay(
            default_security_context(),
            pod.security_context.as_ref(),
        )),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

/// The pod around `container` with the service's pod settings over the secure defaults,
/// the `/tmp` volume and the extra volumes.
pub(super) fn app_pod_spec(ms: &ValidatedMicroservice, container: Container) -> PodSpec {
    let pod = &ms.pod;
    let mut volumes = vec![Volume {
        name: TMP_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    volumes.extend(pod.volumes.iter().cloned());
    PodSpec {
        containers: vec![container],
        security_context: Some(overlay(
            default_pod_security_context(),
            pod.pod_security_context.as_ref(),
        )),
        service_account_name: pod.service_account_name.clone(),
        automount_service_account_token: Some(pod.automount_service_account_token),
        image_pull_secrets: pod.image_pull_secrets.clone(),
        node_selector: pod.node_selector.clone(),
        tolerations: pod.tolerations.clone(),
        affinity: pod.affinity.clone(),
        priority_class_name: pod.priority_class_name.clone(),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// Renders the Deployment. `spec.replicas` is set only when the Microservice is not
/// autoscaled, so the controller never fights the HPA, the metrics loop or `kubectl scale`.
pub fn render_deployment(ms: &ValidatedMicroservice) -> Deployment {
    render_deployment_and_hash(ms).0
}

/// The Deployment and the hash of its pod template (which identifies the revision).
pub(super) fn render_deployment_and_hash(ms: &ValidatedMicroservice) -> (Deployment, String) {
    let mut metadata = object_meta(ms, ms.name.clone(), "server");
    let replicas = match ms.scaling {
        Scaling::Fixed(n) => {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REPLICAS_MANAGED_ANNOTATION.to_string(), "true".to_string());
            Some(n)
        }
        Scaling::Hpa(_) | Scaling::Shoal(_) => None,
    };
    let pod = &ms.pod;
    let mut container = app_container(ms);
    container.ports = Some(
        std::iter::once(ContainerPort {
            name: Some("http".to_string()),
            container_port: ms.ports.container,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        })
        .chain(super::scrape::metrics_container_port(ms))
        .collect(),
    );
    container.readiness_probe = ms.probes.readiness.as_ref().map(render_probe);
    container.liveness_probe = ms.probes.liveness.as_ref().map(render_probe);
    // Keep serving while the endpoints controller stops routing to this pod.
    container.lifecycle = (pod.pre_stop_sleep_seconds > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: pod.pre_stop_sleep_seconds,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    let rollout = &ms.rollout;
    let strategy = (rollout.max_surge.is_some() || rollout.max_unavailable.is_some()).then(|| {
        DeploymentStrategy {
            type_: Some("RollingUpdate".to_string()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: rollout.max_surge.clone(),
                max_unavailable: rollout.max_unavailable.clone(),
            }),
        }
    });
    // Shoal's labels and annotations win over the user's of the same name.
    let mut labels = pod.labels.clone();
    labels.extend(common_labels(ms));
    // The prometheus.io annotations first, so the user's pod annotations can override them.
    let mut annotations = super::scrape::pod_annotations(ms);
    annotations.extend(pod.annotations.clone());
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), ms.config_hash.clone());
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            topology_spread_constraints: Some(super::availability::topology_spread(ms))
                .filter(|c| !c.is_empty()),
            termination_grace_period_seconds: Some(pod.termination_grace_period_seconds),
            ..app_pod_spec(ms, container)
        }),
    };
    let template_hash = content_hash(&template);
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.insert(TEMPLATE_HASH_ANNOTATION.to_string(), template_hash.clone());
    }
    // After the hash: with a traffic router the stable pods carry their track, which must
    // not make a new revision (a canary) of pods otherwise the same, only one rolling update.
    if super::routing::labels_stable_track(ms)
        && let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut())
    {
        labels.insert(TRACK_LABEL.to_string(), STABLE_TRACK.to_string());
    }
    let deployment = with_applied_hash(Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(ms)),
                match_expressions: None,
            },
            strategy,
            progress_deadline_seconds: Some(rollout.progress_deadline_seconds),
            revision_history_limit: Some(rollout.revision_history_limit),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    });
    (deployment, template_hash)
}

fn render_probe(probe: &HttpGetProbe) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(probe.path.clone()),
            port: IntOrString::Int(probe.port),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        failure_threshold: probe.failure_threshold,
        ..Probe::default()
    }
}

/// The replica count the autoscaler's field manager must claim before the controller
/// applies a Deployment without `spec.replicas`, or None when no hand-over is needed.
///
/// Server-side apply removes a field that its only manager stops applying, and a
/// Deployment without `spec.replicas` defaults to 1: turning autoscaling on would drop a
/// service to one pod. So while the live Deployment is still marked as having its replicas
/// managed by the controller, the autoscaler's manager first claims the current count,
/// clamped to the new bounds.
pub fn replicas_handoff(ms: &ValidatedMicroservice, live: &Deployment) -> Option<i32> {
    let (min, max) = ms.autoscaled_bounds()?;
    let max = max.max(min);
    let managed_by_controller = live
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(REPLICAS_MANAGED_ANNOTATION));
    let current = live.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    managed_by_controller.then_some(current.clamp(min, max))
}

/// The first replica count of a Deployment the controller has just created for an
/// autoscaled Microservice: `minReplicas` when above the default of 1, and only while no
/// other field manager (the HPA, the metrics loop, a user) has written to it yet.
pub fn initial_replicas(ms: &ValidatedMicroservice, applied: &Deployment) -> Option<i32> {
    let (min, _) = ms.autoscaled_bounds()?;
    let untouched = applied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .all(|entry| entry.manager.as_deref() == Some(crate::FIELD_MANAGER));
    let current = applied.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (untouched && current < min).then_some(min)
}

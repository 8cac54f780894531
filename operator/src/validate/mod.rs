//! Validation: what the CRD schema and its CEL rules cannot say, checked before anything
//! is rendered. A [`ValidatedMicroservice`] has every default resolved, so the renderers
//! cannot fail and nothing after validation reads the raw spec.

use std::collections::BTreeMap;

use kube::ResourceExt;
use sha2::{Digest, Sha256};

mod canary;
mod schedules;
mod settings;

pub use canary::{AnalysisPolicy, CanaryPolicy, DEFAULT_STEPS, Routing, Step, analysis_policy};
pub use schedules::{MAX_CRON_JOB_NAME, ScheduledTask, check_cron, cron_job_name};
pub use settings::*;

use crate::crd::{HttpProbe, Microservice, MicroserviceSpec, ScalingEngine, ServiceType};
// Re-exported for the autoscaler, which still imports it from here.
pub use crate::vocabulary::Engine;

/// A Microservice that passed validation, with every default resolved once: the
/// renderers, the reconcile and the status read these fields, never the raw spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedMicroservice {
    /// Name of the Microservice, also the name of its Deployment, Service, Ingress and HPA.
    pub name: String,
    /// Namespace of the Microservice and of all its children.
    pub namespace: String,
    /// UID, for owner references.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    // Only the autoscaler still reads the raw spec (`spec.autoscaling`); this field goes
    // once it reads the resolved `scaling`. The controller, render and status code must not.
    /// The spec as given.
    pub spec: MicroserviceSpec,
    /// `spec.config` (empty when unset).
    pub config: BTreeMap<String, String>,
    /// Content hash of `spec.config` (8 hex digits).
    pub config_hash: String,
    /// The application container.
    pub app: App,
    /// Pod settings (security, scheduling, service account, extra volumes).
    pub pod: PodSettings,
    /// Container and Service ports.
    pub ports: Ports,
    /// The probes; None when turned off.
    pub probes: ResolvedProbes,
    /// Type of the Service.
    pub service_type: ServiceType,
    /// The Ingress, when asked for.
    pub ingress: Option<IngressRoute>,
    /// Who scales the Deployment, and with which settings.
    pub scaling: Scaling,
    /// How revisions roll out.
    pub rollout: RolloutPolicy,
    /// Where Prometheus scrapes the pods; None when `spec.metrics.enabled` is false.
    pub metrics: Option<MetricsEndpoint>,
    /// The PodDisruptionBudget; None when the service cannot run 2+ replicas or it is off.
    pub disruption: Option<DisruptionBudget>,
    /// `spec.schedules`, each a CronJob.
    pub schedules: Vec<ScheduledTask>,
}

impl ValidatedMicroservice {
    /// Name of the content-addressed ConfigMap of the current config.
    pub fn config_map_name(&self) -> String {
        format!("{}-config-{}", self.name, self.config_hash)
    }

    /// Name of the CronJob of the task named `task`.
    pub fn cron_job_name(&self, task: &str) -> String {
        cron_job_name(&self.name, task)
    }

    /// Which component scales the Deployment.
    pub fn engine(&self) -> Engine {
        match self.scaling {
            Scaling::Fixed(_) => Engine::None,
            Scaling::Hpa(_) => Engine::Hpa,
            Scaling::Shoal(_) => Engine::Shoal,
        }
    }

    /// `(min, max)` replicas when autoscaled (by the HPA or Shoal), None for a fixed count.
    pub fn autoscaled_bounds(&self) -> Option<(i32, i32)> {
        match &self.scaling {
            Scaling::Fixed(_) => None,
            Scaling::Hpa(HpaScaling { min, max, .. })
            | Scaling::Shoal(ShoalScaling { min, max, .. }) => Some((*min, *max)),
        }
    }
}

/// Why a Microservice cannot be reconciled: shown as `Ready=False, reason=InvalidSpec`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    /// The field at fault, as a path (`metadata.name`, `spec.resources.requests.cpu`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        message: message.into(),
    }
}

/// Why the apiserver would refuse `path` as the path of an Ingress rule of type `Prefix`
/// (Kubernetes' `invalidPathSequences` and `invalidPathSuffixes`), or None. The CRD's rule
/// [`crate::crd::INGRESS_PATH_RULE`] says the same at admission.
pub fn ingress_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("must start with '/'");
    }
    for sequence in ["//", "/./", "/../"] {
        if path.contains(sequence) {
            return Some("must not contain '//', '/./' or '/../'");
        }
    }
    if path.to_ascii_lowercase().contains("%2f") {
        return Some("must not contain '%2F'");
    }
    if path.ends_with("/.") || path.ends_with("/..") {
        return Some("must not end with '/.' or '/..'");
    }
    None
}

/// Most bytes a ConfigMap may hold.
const CONFIG_MAP_MAX_BYTES: usize = 1024 * 1024;

/// Checks what the schema could not, and resolves defaults the builders rely on.
pub fn validate(ms: &Microservice) -> Result<ValidatedMicroservice, InvalidSpec> {
    let name = ms
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name", "missing"))?;
    let namespace = ms
        .namespace()
        .ok_or_else(|| invalid("metadata.namespace", "missing"))?;
    let uid = ms.uid().ok_or_else(|| invalid("metadata.uid", "missing"))?;
    let generation = ms.metadata.generation.unwrap_or(0);
    let spec = &ms.spec;

    if !is_dns1035_label(&name) {
        return Err(invalid(
            "metadata.name",
            format!(
                "{name:?} cannot name a Service: it must be at most 63 characters of lowercase letters, digits and '-', start with a letter and end with a letter or digit"
            ),
        ));
    }
    if let Some(path) = spec.ingress.as_ref().and_then(|i| i.path.as_deref())
        && let Some(problem) = ingress_path_problem(path)
    {
        return Err(invalid(
            "spec.ingress.path",
            format!("{path:?} {problem}: an Ingress refuses such a path"),
        ));
    }
    // The scratch volume at /tmp is Shoal's (the root filesystem is read-only).
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        if volume.name == "tmp" {
            return Err(invalid(
                format!("spec.volumes[{i}].name"),
                "\"tmp\" is taken by the writable emptyDir Shoal mounts at /tmp: choose another name",
            ));
        }
    }
    for (i, mount) in spec.volume_mounts.iter().flatten().enumerate() {
        if mount.mount_path.trim_end_matches('/') == "/tmp" {
            return Err(invalid(
                format!("spec.volumeMounts[{i}].mountPath"),
                "/tmp is the writable emptyDir Shoal mounts: mount elsewhere",
            ));
        }
    }
    if let Some(resources) = &spec.resources {
        for (kind, list) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            for (resource, quantity) in list.iter().flatten() {
                if parse_quantity(&quantity.0).is_none() {
                    return Err(invalid(
                        format!("spec.resources.{kind}.{resource}"),
                        format!(
                            "{:?} is not a quantity such as 250m, 0.5, 128Mi or 1G",
                            quantity.0
                        ),
                    ));
                }
            }
        }
    }
    let config = spec.config.clone().unwrap_or_default();
    if let Some(key) = config.keys().find(|k| !is_config_key(k)) {
        return Err(invalid(
            format!("spec.config.{key}"),
            "config keys must be non-empty and consist of letters, digits, '-', '_' or '.' (they become ConfigMap keys)",
        ));
    }
    let config_bytes: usize = config.iter().map(|(k, v)| k.len() + v.len()).sum();
    if config_bytes > CONFIG_MAP_MAX_BYTES {
        return Err(invalid(
            "spec.config",
            format!("holds {config_bytes} bytes; a ConfigMap holds at most 1 MiB"),
        ));
    }
    let scaling = match &spec.autoscaling {
        None => Scaling::Fixed(spec.replicas.unwrap_or(1)),
        Some(autoscaling) => {
            let engine = match (
                autoscaling.engine.unwrap_or_default(),
                &autoscaling.request_rate,
            ) {
                (ScalingEngine::Hpa, _) | (ScalingEngine::Auto, None) => Engine::Hpa,
                (ScalingEngine::Shoal, _) | (ScalingEngine::Auto, Some(_)) => Engine::Shoal,
            };
            if autoscaling.cpu.is_some() && !has_cpu_request(spec) {
                return Err(invalid(
                    "spec.resources.requests.cpu",
                    "spec.autoscaling.cpu needs a CPU request: utilization is a percentage of spec.resources.requests.cpu",
                ));
            }
            let cpu_target = autoscaling.cpu.as_ref().map(|c| c.target_utilization);
            check_autoscaling_queries(autoscaling)?;
            match (engine, cpu_target) {
                (Engine::Hpa, None) => {
                    return Err(invalid(
                        "spec.autoscaling.cpu",
                        "the HPA engine scales on CPU only: set spec.autoscaling.cpu",
                    ));
                }
                (Engine::Hpa, Some(cpu_target)) => Scaling::Hpa(HpaScaling {
                    min: autoscaling.min_replicas,
                    max: autoscaling.max_replicas,
                    cpu_target,
                    behavior: autoscaling.behavior.clone(),
                }),
                _ => Scaling::Shoal(ShoalScaling {
                    min: autoscaling.min_replicas,
                    max: autoscaling.max_replicas,
                    paused: autoscaling.paused == Some(true),
                    behavior: autoscaling.behavior.clone(),
                    fallback: autoscaling.fallback.as_ref().map(|f| Fallback {
                        replicas: f.replicas,
                        after_failures: f
                            .after_failures
                            .unwrap_or(DEFAULT_FALLBACK_AFTER_FAILURES)
                            .max(1) as u32,
                    }),
                    cpu_target,
                    request_rate: autoscaling
                        .request_rate
                        .as_ref()
                        .map(|r| RequestRateSettings {
                            target_per_replica: r.target_per_replica,
                            query: r.query.clone(),
                            metric: r.metric.clone(),
                            selector: r.selector.clone(),
                        }),
                }),
            }
        }
    };
    let most_replicas = match &scaling {
        Scaling::Fixed(n) => *n,
        Scaling::Hpa(HpaScaling { max, .. }) | Scaling::Shoal(ShoalScaling { max, .. }) => *max,
    };
    let schedules = schedules::scheduled_tasks(spec, &name)?;
    let probes = spec.probes.clone().unwrap_or_default();
    let rollout = spec.rollout.clone().unwrap_or_default();
    let canary = canary::canary_policy(spec)?;
    canary::check_routed_name(&name, canary.as_ref())?;
    Ok(ValidatedMicroservice {
        config_hash: config_hash(&config),
        name,
        namespace,
        uid,
        generation,
        spec: spec.clone(),
        config,
        app: App {
            image: spec.image.clone(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            env_from: spec.env_from.clone().unwrap_or_default(),
            resources: spec.resources.clone(),
        },
        pod: PodSettings {
            security_context: spec.security_context.clone(),
            pod_security_context: spec.pod_security_context.clone(),
            service_account_name: spec.service_account_name.clone(),
            automount_service_account_token: spec.automount_service_account_token.unwrap_or(false),
            image_pull_secrets: spec.image_pull_secrets.clone(),
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            affinity: spec.affinity.clone(),
            topology_spread_constraints: spec.topology_spread_constraints.clone(),
            priority_class_name: spec.priority_class_name.clone(),
            labels: spec.pod_labels.clone().unwrap_or_default(),
            annotations: spec.pod_annotations.clone().unwrap_or_default(),
            volumes: spec.volumes.clone().unwrap_or_default(),
            volume_mounts: spec.volume_mounts.clone().unwrap_or_default(),
            pre_stop_sleep_seconds: spec
                .pre_stop_sleep_seconds
                .unwrap_or(DEFAULT_PRE_STOP_SLEEP_SECONDS),
            termination_grace_period_seconds: spec.termination_grace_period_seconds.unwrap_or(
                DEFAULT_SHUTDOWN_SECONDS
                    + spec
                        .pre_stop_sleep_seconds
                        .unwrap_or(DEFAULT_PRE_STOP_SLEEP_SECONDS),
            ),
        },
        ports: Ports {
            container: spec.port,
            service: spec
                .service
                .as_ref()
                .and_then(|s| s.port)
                .unwrap_or(DEFAULT_SERVICE_PORT),
        },
        probes: ResolvedProbes {
            readiness: http_get_probe(probes.readiness.as_ref(), spec.port),
            // Liveness only when asked for: a readiness that is slow under load must not
            // restart pods.
            liveness: probes
                .liveness
                .as_ref()
                .and_then(|p| http_get_probe(Some(p), spec.port)),
        },
        service_type: spec
            .service
            .as_ref()
            .and_then(|s| s.type_)
            .unwrap_or_default(),
        ingress: spec.ingress.as_ref().map(|i| IngressRoute {
            host: i.host.clone(),
            path: i.path.clone().unwrap_or_else(|| "/".to_string()),
            class_name: i.class_name.clone(),
            tls_secret_name: i.tls_secret_name.clone(),
        }),
        scaling,
        rollout: RolloutPolicy {
            auto_rollback: rollout.auto_rollback.unwrap_or(true),
            progress_deadline_seconds: rollout
                .progress_deadline_seconds
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
            revision_history_limit: rollout
                .revision_history_limit
                .unwrap_or(REVISION_HISTORY_LIMIT),
            max_surge: rollout.max_surge,
            max_unavailable: rollout.max_unavailable,
            canary,
        },
        metrics: metrics_endpoint(spec.metrics.as_ref(), spec.port),
        disruption: disruption_budget(spec.disruption.as_ref(), most_replicas),
        schedules,
    })
}

fn metrics_endpoint(
    metrics: Option<&crate::crd::MetricsSettings>,
    container_port: i32,
) -> Option<MetricsEndpoint> {
    let default = crate::crd::MetricsSettings::default();
    let metrics = metrics.unwrap_or(&default);
    if metrics.enabled == Some(false) {
        return None;
    }
    Some(MetricsEndpoint {
        port: metrics.port.unwrap_or(container_port),
        path: metrics
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_METRICS_PATH.to_string()),
    })
}

fn http_get_probe(probe: Option<&HttpProbe>, container_port: i32) -> Option<HttpGetProbe> {
    let default = HttpProbe::default();
    let probe = probe.unwrap_or(&default);
    if probe.enabled == Some(false) {
        return None;
    }
    Some(HttpGetProbe {
        path: probe
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_PROBE_PATH.to_string()),
        port: probe.port.unwrap_or(container_port),
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        failure_threshold: probe.failure_threshold,
    })
}

/// What only a PromQL parser and a quantity parser can say: a Microservice's own query,
/// metric and selector are PromQL, and each tolerance is a quantity. Refused before any
/// tick sends them.
fn check_autoscaling_queries(autoscaling: &crate::crd::Autoscaling) -> Result<(), InvalidSpec> {
    if let Some(rr) = &autoscaling.request_rate {
        if let Some(query) = &rr.query {
            promql_parser::parser::parse(query).map_err(|e| {
                invalid(
                    "spec.autoscaling.requestRate.query",
                    format!("{query:?} is not a PromQL expression: {e}"),
                )
            })?;
        }
        let metric = rr.metric.as_deref().unwrap_or("http_requests_total");
        if rr.metric.is_some() && promql_parser::parser::parse(metric).is_err() {
            return Err(invalid(
                "spec.autoscaling.requestRate.metric",
                format!("{metric:?} is not a metric name"),
            ));
        }
        if let Some(selector) = rr.selector.as_deref().filter(|s| !s.trim().is_empty()) {
            promql_parser::parser::parse(&format!("{metric}{{{selector}}}")).map_err(|e| {
                invalid(
                    "spec.autoscaling.requestRate.selector",
                    format!("{selector:?} is not a list of PromQL label matchers: {e}"),
                )
            })?;
        }
    }
    let behavior = autoscaling.behavior.as_ref();
    for (direction, rules) in [
        ("scaleUp", behavior.and_then(|b| b.scale_up.as_ref())),
        ("scaleDown", behavior.and_then(|b| b.scale_down.as_ref())),
    ] {
        if let Some(tolerance) = rules.and_then(|r| r.tolerance.as_ref())
            && !parse_quantity(&tolerance.0).is_some_and(|t| t >= 0.0)
        {
            return Err(invalid(
                format!("spec.autoscaling.behavior.{direction}.tolerance"),
                format!(
                    "{:?} is not a non-negative quantity such as \"0.05\" or 50m",
                    tolerance.0
                ),
            ));
        }
    }
    Ok(())
}

fn has_cpu_request(spec: &MicroserviceSpec) -> bool {
    spec.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .is_some_and(|r| r.contains_key("cpu"))
}

/// 8 hex digits of the SHA-256 of the config, stable across runs and key order.
pub fn config_hash(config: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config {
        // Length-prefixed so that {"a": "bc"} and {"ab": "c"} differ.
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A valid ConfigMap key.
pub fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// RFC 1035 label: what a Service name must be.
pub fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// Value of a Kubernetes quantity (`250m`, `1.5`, `128Mi`, `1e3`), or None if malformed.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(value * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("banana"), None);
        assert_eq!(parse_quantity("1.2.3"), None);
        assert_eq!(parse_quantity("5Q"), None);
    }

    #[test]
    fn config_hash_is_stable_and_content_sensitive() {
        let a = BTreeMap::from([("A".to_string(), "bc".to_string())]);
        let b = BTreeMap::from([("AB".to_string(), "c".to_string())]);
        assert_eq!(config_hash(&a), config_hash(&a.clone()));
        assert_ne!(config_hash(&a), config_hash(&b));
        assert_eq!(config_hash(&a).len(), 8);
    }

    #[test]
    fn service_names_must_be_dns_1035_labels() {
        assert!(is_dns1035_label("checkout-2"));
        assert!(!is_dns1035_label("2checkout"));
        assert!(!is_dns1035_label("a.b"));
        assert!(!is_dns1035_label(&"a".repeat(64)));
    }
}

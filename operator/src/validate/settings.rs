//! The settings of a [`super::ValidatedMicroservice`], every default resolved.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext,
    ResourceRequirements, SecurityContext, Toleration, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The application container as the spec describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct App {
    /// `spec.image`.
    pub image: String,
    /// `spec.command`.
    pub command: Option<Vec<String>>,
    /// `spec.args`.
    pub args: Option<Vec<String>>,
    /// `spec.env`.
    pub env: Option<Vec<EnvVar>>,
    /// `spec.envFrom` (Shoal's own config comes first, added by the renderer).
    pub env_from: Vec<EnvFromSource>,
    /// `spec.resources`.
    pub resources: Option<ResourceRequirements>,
}

/// Pod settings as the spec gives them; the renderer lays them over its secure defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSettings {
    /// `spec.securityContext`: fields that replace the container's defaults.
    pub security_context: Option<SecurityContext>,
    /// `spec.podSecurityContext`: fields that replace the pod's defaults.
    pub pod_security_context: Option<PodSecurityContext>,
    /// `spec.serviceAccountName`.
    pub service_account_name: Option<String>,
    /// `spec.automountServiceAccountToken` (false when unset).
    pub automount_service_account_token: bool,
    /// `spec.imagePullSecrets`.
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// `spec.nodeSelector`.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `spec.tolerations`.
    pub tolerations: Option<Vec<Toleration>>,
    /// `spec.affinity`.
    pub affinity: Option<Affinity>,
    /// `spec.topologySpreadConstraints`.
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// `spec.priorityClassName`.
    pub priority_class_name: Option<String>,
    /// `spec.podLabels` (empty when unset).
    pub labels: BTreeMap<String, String>,
    /// `spec.podAnnotations` (empty when unset).
    pub annotations: BTreeMap<String, String>,
    /// `spec.volumes` (empty when unset).
    pub volumes: Vec<Volume>,
    /// `spec.volumeMounts` (empty when unset).
    pub volume_mounts: Vec<VolumeMount>,
    /// `spec.preStopSleepSeconds` (default [`DEFAULT_PRE_STOP_SLEEP_SECONDS`]; 0: no preStop).
    pub pre_stop_sleep_seconds: i64,
    /// `spec.terminationGracePeriodSeconds` (default the preStop sleep plus
    /// [`DEFAULT_SHUTDOWN_SECONDS`]).
    pub termination_grace_period_seconds: i64,
}

/// Seconds a terminating pod keeps serving while endpoints stop routing to it.
pub const DEFAULT_PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Seconds the application has to shut down after the preStop sleep (Kubernetes' default
/// grace period).
pub const DEFAULT_SHUTDOWN_SECONDS: i64 = 30;

/// Ports, defaults resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The container's HTTP port (`spec.port`).
    pub container: i32,
    /// The Service's port (`spec.service.port`, default 80).
    pub service: i32,
}

/// Where Prometheus scrapes a Microservice's pods (`spec.metrics`, defaults resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsEndpoint {
    /// Container port serving the metrics (`spec.metrics.port`, default `spec.port`).
    pub port: i32,
    /// HTTP path (`spec.metrics.path`, default `/metrics`).
    pub path: String,
}

/// Path scraped when `spec.metrics.path` is unset.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// Default port of the Service.
pub const DEFAULT_SERVICE_PORT: i32 = 80;
/// Path probed when the spec names none.
pub const DEFAULT_PROBE_PATH: &str = "/health";
/// Seconds a rollout may stall before the Deployment reports ProgressDeadlineExceeded.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// ReplicaSets kept for rollbacks.
pub const REVISION_HISTORY_LIMIT: i32 = 10;
/// Consecutive failed ticks before a fallback applies, when the spec names none.
pub const DEFAULT_FALLBACK_AFTER_FAILURES: i32 = 3;

/// An HTTP GET probe, defaults resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGetProbe {
    /// Path to GET.
    pub path: String,
    /// Port to probe.
    pub port: i32,
    /// As in the spec (the kubelet's default when None).
    pub initial_delay_seconds: Option<i32>,
    /// As in the spec (the kubelet's default when None).
    pub period_seconds: Option<i32>,
    /// As in the spec (the kubelet's default when None).
    pub failure_threshold: Option<i32>,
}

/// Readiness and liveness probes; None when turned off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProbes {
    /// The readiness probe.
    pub readiness: Option<HttpGetProbe>,
    /// The liveness probe.
    pub liveness: Option<HttpGetProbe>,
}

/// The Ingress route, defaults resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRoute {
    /// Host name.
    pub host: String,
    /// Path prefix (default `/`).
    pub path: String,
    /// IngressClass, the cluster's default when None.
    pub class_name: Option<String>,
    /// TLS Secret, plain HTTP when None.
    pub tls_secret_name: Option<String>,
}

/// Who scales the Deployment, with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    /// Not autoscaled: the controller applies this count.
    Fixed(i32),
    /// A native HorizontalPodAutoscaler on CPU.
    Hpa(HpaScaling),
    /// Shoal's metrics loop.
    Shoal(ShoalScaling),
}

/// Settings of the HPA engine.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaScaling {
    /// `minReplicas`.
    pub min: i32,
    /// `maxReplicas`.
    pub max: i32,
    /// Target CPU utilization in percent.
    pub cpu_target: i32,
    /// `behavior`, as given.
    pub behavior: Option<crate::crd::ScalingBehavior>,
}

/// Settings of Shoal's metrics loop.
#[derive(Clone, Debug, PartialEq)]
pub struct ShoalScaling {
    /// `minReplicas`.
    pub min: i32,
    /// `maxReplicas`.
    pub max: i32,
    /// `paused`, default false.
    pub paused: bool,
    /// `behavior`, as given.
    pub behavior: Option<crate::crd::ScalingBehavior>,
    /// `fallback`, resolved.
    pub fallback: Option<Fallback>,
    /// Target CPU utilization in percent, when scaling on CPU.
    pub cpu_target: Option<i32>,
    /// The request-rate target, when scaling on request rate.
    pub request_rate: Option<RequestRateSettings>,
}

/// The replica floor while metrics are missing, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// Replicas to keep at least.
    pub replicas: i32,
    /// Consecutive failed ticks before it applies (at least 1, default 3).
    pub after_failures: u32,
}

/// The request-rate target.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRateSettings {
    /// Requests per second one replica should serve.
    pub target_per_replica: f64,
    /// A whole PromQL query of the service's own.
    pub query: Option<String>,
    /// A request counter of the service's own.
    pub metric: Option<String>,
    /// Extra label matchers.
    pub selector: Option<String>,
}

/// How revisions roll out, defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutPolicy {
    /// Restore the last good revision when a rollout fails (default true).
    pub auto_rollback: bool,
    /// `progressDeadlineSeconds` of the Deployment (default 600).
    pub progress_deadline_seconds: i32,
    /// `revisionHistoryLimit` of the Deployment (default 10).
    pub revision_history_limit: i32,
    /// `maxSurge`, the Deployment's default when None.
    pub max_surge: Option<IntOrString>,
    /// `maxUnavailable`, the Deployment's default when None.
    pub max_unavailable: Option<IntOrString>,
    /// Strategy Canary: its steps, analysis and router. None for RollingUpdate.
    pub canary: Option<super::canary::CanaryPolicy>,
}

/// The PodDisruptionBudget to render (`spec.disruption`, defaults resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct DisruptionBudget {
    /// `maxUnavailable` (default [`DEFAULT_MAX_UNAVAILABLE_PODS`] when neither is set).
    pub max_unavailable: Option<IntOrString>,
    /// `minAvailable`.
    pub min_available: Option<IntOrString>,
}

/// Pods a voluntary disruption may take at once by default: one at a time at any count.
pub const DEFAULT_MAX_UNAVAILABLE_PODS: i32 = 1;

/// The budget of a service that can run `most_replicas` at most: None below 2 (a budget
/// on one pod either blocks every drain or allows nothing) or when turned off.
pub fn disruption_budget(
    settings: Option<&crate::crd::DisruptionSettings>,
    most_replicas: i32,
) -> Option<DisruptionBudget> {
    let default = crate::crd::DisruptionSettings::default();
    let settings = settings.unwrap_or(&default);
    if settings.enabled == Some(false) || most_replicas < 2 {
        return None;
    }
    let max_unavailable = match (&settings.max_unavailable, &settings.min_available) {
        (None, None) => Some(IntOrString::Int(DEFAULT_MAX_UNAVAILABLE_PODS)),
        (max, _) => max.clone(),
    };
    Some(DisruptionBudget {
        max_unavailable,
        min_available: settings.min_available.clone(),
    })
}

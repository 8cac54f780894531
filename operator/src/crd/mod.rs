//! The `Microservice` custom resource (group `shoal.dev`, version `v1alpha1`).
//!
//! Doc comments on these types are what `kubectl explain microservice.spec...` shows:
//! they are written for users. Developer notes are `//` comments.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext,
    ResourceRequirements, SecurityContext, Toleration, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

mod autoscaling;
mod canary;
mod disruption;
mod schedules;
mod status;

pub use autoscaling::{
    Autoscaling, CpuTarget, Fallback, PolicyType, RequestRateTarget, ScalingBehavior,
    ScalingEngine, ScalingPolicy, ScalingRules, SelectPolicy,
};
pub use canary::{
    CanaryAnalysis, CanaryPause, CanarySettings, CanaryStep, GatewayApiRouting, NginxRouting,
    RolloutStrategy, TrafficRouting,
};
pub use disruption::DisruptionSettings;
pub use schedules::{ConcurrencyPolicy, Schedule, TaskRestartPolicy};
pub use status::{
    AutoscalerStatus, CanaryChecks, CanaryPhase, CanaryStatus, MetricStatus, MicroserviceStatus,
    Revision, RolloutStatus,
};

/// API group of the Microservice resource.
pub const GROUP: &str = "shoal.dev";
/// Name of the CustomResourceDefinition.
pub const CRD_NAME: &str = "microservices.shoal.dev";

// The DNS-name rule used for ingress hosts: RFC 1123 subdomain, optionally with a leading
// wildcard label, as Ingress itself accepts.
const HOST_RULE: &str =
    r"self.matches('^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

// Config keys become environment variables (envFrom): Kubernetes' relaxed env var name.
const CONFIG_KEY_RULE: &str = r"self.all(k, k.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$'))";

/// A Microservice is one service described in one object. Shoal turns it into a
/// ConfigMap, a Deployment, a Service, an optional Ingress and, for CPU-only autoscaling,
/// a HorizontalPodAutoscaler; it scales it on CPU and request rate and reports rollouts
/// through status conditions.
// The printcolumn entries repeat `type_ = ...` by design; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "shoal.dev",
    version = "v1alpha1",
    kind = "Microservice",
    plural = "microservices",
    singular = "microservice",
    shortname = "ms",
    shortname = "msvc",
    category = "shoal",
    namespaced,
    status = "MicroserviceStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    derive = "PartialEq",
    doc = "A Microservice is one service described in one object: Shoal renders its ConfigMap, Deployment, Service, Ingress and HPA, autoscales it and reports rollouts in status.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "RPS",
        type_ = "number",
        json_path = ".status.autoscaler.requestRate.current"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Engine",
        type_ = "string",
        json_path = ".status.scalingEngine",
        priority = "1"
    ),
    printcolumn(
        name = "Canary",
        type_ = "string",
        json_path = ".status.rollout.canary.phase",
        priority = "1"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.rollout.canary.weight",
        priority = "1"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("spec.replicas and spec.autoscaling are mutually exclusive: while autoscaling owns the replica count (kubectl scale cannot set it), change spec.autoscaling.minReplicas and maxReplicas; remove spec.replicas to autoscale, or spec.autoscaling to run a fixed count"))]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceSpec {
    /// Container image to run, for example `registry.example/checkout:1.4.2`.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.trim() != ''").message("spec.image must not be empty"))]
    #[x_kube(validation = Rule::new(r"!self.matches('\\s')").message("spec.image must not contain whitespace"))]
    pub image: String,

    /// Port the container listens on for HTTP traffic (1-65535). Probes and the Service
    /// target it. Defaults to 8080.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("spec.port must be between 1 and 65535"))]
    pub port: i32,

    /// Entrypoint override (the container's `command`). The image's ENTRYPOINT is used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint (the container's `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,

    /// Environment variables of the container, as in a Pod (`value` or `valueFrom`, for
    /// example a `secretKeyRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,

    /// Sources of environment variables, as in a Pod: whole ConfigMaps or Secrets
    /// (`secretRef`). Shoal's own config (`spec.config`) is always added first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,

    /// Configuration as key/value pairs. It becomes an immutable ConfigMap named after a
    /// hash of its content and is passed to the container as environment variables, so a
    /// change of config is a new revision that rolls out (and rolls back) with the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(CONFIG_KEY_RULE).message("spec.config keys must be environment variable names: a letter, '-', '_' or '.', then letters, digits, '-', '_' or '.'"))]
    pub config: Option<BTreeMap<String, String>>,

    /// Compute resources of the container (requests and limits). CPU autoscaling needs
    /// `requests.cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// HTTP probes. By default readiness probes `GET /health` on `spec.port`; liveness is off
    /// unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,

    /// The Service in front of the pods. Defaults to a ClusterIP Service on port 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSettings>,

    /// Expose the service through an Ingress. No Ingress exists when this is unset; removing
    /// it deletes the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSettings>,

    /// Fixed number of replicas when not autoscaling (default 1). Must not be set together
    /// with `spec.autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.replicas must not be negative"))]
    pub replicas: Option<i32>,

    /// Horizontal autoscaling. With only a CPU target a native HorizontalPodAutoscaler does
    /// the scaling; with a request-rate target Shoal's own metrics loop scales on all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// How new revisions roll out and what happens when one fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSettings>,

    /// Security settings of the application container. By default the container runs as
    /// non-root, without privilege escalation, with every capability dropped, the
    /// RuntimeDefault seccomp profile and a read-only root filesystem (with a writable
    /// `emptyDir` at `/tmp`), which Pod Security `restricted` admits. Each field set here
    /// replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,

    /// Security settings of the pod. By default `runAsNonRoot: true` and the RuntimeDefault
    /// seccomp profile; each field set here replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// ServiceAccount the pods run as (the namespace's `default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Mount an API token of the ServiceAccount into the pods. Off by default: a service
    /// that talks to the Kubernetes API turns it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,

    /// Secrets with credentials to pull the image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Node labels a node must have to run the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod affinity and anti-affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over topology domains (nodes, zones). Constraints without a
    /// `labelSelector` select this service's pods. By default the pods spread over nodes
    /// (`kubernetes.io/hostname`) and zones (`topology.kubernetes.io/zone`), `maxSkew: 1`,
    /// `whenUnsatisfiable: ScheduleAnyway`, per revision. The scheduler leaves nodes without
    /// every key out of its spreading score, so on a cluster whose nodes carry no zone label
    /// give the hostname constraint alone here; `[]` leaves spreading to the scheduler's
    /// cluster defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra labels on the pods (Shoal's own `app.kubernetes.io/*` labels cannot be replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Extra volumes of the pods (Shoal adds an `emptyDir` named `tmp` for `/tmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,

    /// Extra mounts of the application container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,

    /// Seconds a terminating pod keeps serving (a `preStop` sleep) while the endpoints stop
    /// routing to it, so a rollout or a drain drops no request. Default 5; 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 300").message("spec.preStopSleepSeconds must be between 0 and 300"))]
    pub pre_stop_sleep_seconds: Option<i64>,

    /// Seconds a pod has to stop, the `preStop` sleep included. Default 30 plus
    /// `spec.preStopSleepSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.terminationGracePeriodSeconds must not be negative"))]
    pub termination_grace_period_seconds: Option<i64>,

    /// Where Prometheus scrapes the service's own metrics. By default Shoal marks the pods
    /// with the `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path`
    /// annotations (port `spec.port`, path `/metrics`) and, when the Prometheus Operator's
    /// PodMonitor resource is installed, creates a PodMonitor named after the
    /// Microservice. Set `enabled: false` to do neither. See docs/metrics.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSettings>,

    /// The PodDisruptionBudget of a service that can run 2 or more replicas (default
    /// `maxUnavailable: 1`). Set `enabled: false` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<DisruptionSettings>,

    /// Tasks run on a schedule beside the service, each a CronJob named
    /// `<microservice>-<name>` with the service's image, config and pod settings, so a task
    /// runs the revision the spec asks for. Removing an entry deletes its CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(max = 20))]
    pub schedules: Option<Vec<Schedule>>,
}

fn default_port() -> i32 {
    8080
}

/// HTTP probes of the container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Readiness probe: a pod receives traffic only while it passes. Default `GET /health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<HttpProbe>,
    /// Liveness probe: a pod that fails it is restarted. Off unless set here (a slow
    /// readiness under load must not restart pods); `{}` probes `GET /health`, better a path
    /// distinct from readiness that only fails when the process is stuck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<HttpProbe>,
}

/// An HTTP GET probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Set to false to turn this probe off. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// HTTP path to GET, starting with `/`. Default `/health`.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("probe path must start with '/'"))]
    pub path: Option<String>,
    /// Port to probe. Default `spec.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("probe port must be between 1 and 65535"))]
    pub port: Option<i32>,
    /// Seconds after the container starts before the first probe. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between probes. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// Consecutive failures before the probe counts as failed. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
}

/// Kind of Service.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ServiceType {
    /// Reachable inside the cluster only (default).
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

/// Settings of the Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Service type: ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Port the Service listens on (1-65535); it forwards to `spec.port`. Default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("spec.service.port must be between 1 and 65535"))]
    pub port: Option<i32>,
}

/// What the apiserver refuses in the path of an Ingress rule of type `Prefix` (Kubernetes'
/// `invalidPathSequences` and `invalidPathSuffixes`), as a CEL rule on `spec.ingress.path`.
/// [`crate::validate`] checks the same with [`crate::validate::ingress_path_problem`].
pub const INGRESS_PATH_RULE: &str = "!self.contains('//') && !self.contains('/./') && !self.contains('/../') && !self.lowerAscii().contains('%2f') && !self.endsWith('/.') && !self.endsWith('/..')";

/// The message of [`INGRESS_PATH_RULE`].
pub const INGRESS_PATH_MESSAGE: &str = "spec.ingress.path must not contain '//', '/./', '/../' or '%2F', nor end with '/.' or '/..': an Ingress refuses such a path";

/// Settings of the Ingress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressSettings {
    /// Host name the Ingress answers for, a DNS name such as `checkout.example.com`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(HOST_RULE).message("spec.ingress.host must be a lowercase DNS name such as checkout.example.com"))]
    pub host: String,
    /// URL path prefix routed to the service. Default `/`.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.ingress.path must start with '/'"))]
    #[x_kube(validation = Rule::new(INGRESS_PATH_RULE).message(INGRESS_PATH_MESSAGE))]
    pub path: Option<String>,
    /// IngressClass to use; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Name of a Secret holding the TLS certificate for the host. Plain HTTP when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// Where the service serves its Prometheus metrics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSettings {
    /// Set to false to have the pods neither annotated for scraping nor selected by a
    /// PodMonitor. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Container port serving the metrics (1-65535). Default `spec.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("spec.metrics.port must be between 1 and 65535"))]
    pub port: Option<i32>,
    /// HTTP path of the metrics, starting with `/`. Default `/metrics`.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.metrics.path must start with '/'"))]
    pub path: Option<String>,
}

/// Rollout settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.canary) || (has(self.strategy) && self.strategy == 'Canary')").message("spec.rollout.canary needs spec.rollout.strategy: Canary"))]
pub struct RolloutSettings {
    /// `RollingUpdate` (default) or `Canary`. With `Canary` a change of the pod template
    /// (image, config, env, ...) first runs as a canary Deployment `<name>-canary` that gets
    /// a growing share of the traffic while Prometheus says it is healthy; other changes
    /// (replicas, autoscaling, Service, Ingress) apply at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
    /// Steps, analysis and traffic routing of canary releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySettings>,
    /// Most pods above the desired count during a rollout: a number or a percentage. Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_surge: Option<IntOrString>,
    /// Most pods unavailable during a rollout: a number or a percentage. Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds a rollout may make no progress before it counts as failed. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("spec.rollout.progressDeadlineSeconds must be greater than 0"))]
    pub progress_deadline_seconds: Option<i32>,
    /// Restore the last good revision when a rollout fails. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
    /// Old revisions (ReplicaSets, and the ConfigMaps they use) kept for rollbacks. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.rollout.revisionHistoryLimit must not be negative"))]
    pub revision_history_limit: Option<i32>,
}

pub(crate) fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

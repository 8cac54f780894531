//! `spec.rollout.strategy` and `spec.rollout.canary`: canary releases.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A duration such as `30s`, `5m` or `1h30m`.
pub(crate) const DURATION_RULE: &str = r"self.matches('^([0-9]+(ms|s|m|h))+$')";

/// How a new revision reaches the users.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum RolloutStrategy {
    /// The Deployment replaces the pods of the old revision with new ones (default).
    #[default]
    RollingUpdate,
    /// A canary Deployment `<name>-canary` runs the new revision beside the stable one, gets
    /// a share of the traffic that grows step by step while Prometheus says it is healthy,
    /// and is then promoted (or aborted). See `spec.rollout.canary`.
    Canary,
}

/// Canary release settings (used when `spec.rollout.strategy` is `Canary`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanarySettings {
    /// Ordered steps: `{weight: 10}` sends that percent of the traffic to the canary (it
    /// moves on once the canary is ready and one analysis passed at that weight),
    /// `{pause: {duration: 60s}}` waits (analysis goes on), `{pause: {}}` waits for a
    /// promote. After the last step the canary is promoted. Default: weight 10, pause 60s,
    /// weight 50, pause 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub steps: Option<Vec<CanaryStep>>,
    /// How Prometheus decides whether the canary goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,
    /// How traffic is split. By default by replica ratio: the canary's pods sit behind the
    /// same Service, so its share of the traffic is its share of the pods. With an Ingress,
    /// `nginx: {}` adds an ingress-nginx canary Ingress for an exact weight; `gatewayAPI`
    /// sets backend weights on a Gateway API HTTPRoute. Either gives the stable pods the
    /// label `shoal.dev/track: stable` (one ordinary rolling update, no canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Skip the remaining steps and promote the canary in flight (and any later canary at
    /// once, while true). For a one-off promote, annotate the Microservice with
    /// `shoal.dev/promote=true` instead: Shoal removes the annotation when it promotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<bool>,
}

/// One canary step: exactly one of `weight` and `pause`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.weight) != has(self.pause)").message("each spec.rollout.canary.steps entry needs exactly one of weight and pause"))]
pub struct CanaryStep {
    /// Percent of the traffic the canary gets (1-99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 99").message("spec.rollout.canary.steps[].weight must be between 1 and 99"))]
    pub weight: Option<i32>,
    /// Wait: for `duration` (such as `60s`), or until promoted when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<CanaryPause>,
}

/// A pause in a canary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPause {
    /// How long to wait, such as `60s` or `5m`. Without it the canary waits for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.rollout.canary.steps[].pause.duration must be a duration such as 60s, 5m or 1h30m"))]
    pub duration: Option<String>,
}

/// What a canary must show in Prometheus, checked every `interval`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysis {
    /// Time between checks, and the window each check reads. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.rollout.canary.analysis.interval must be a duration such as 30s or 1m"))]
    pub interval: Option<String>,
    /// Lowest share of the canary's requests answered without a 5xx, in percent. Default 99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("spec.rollout.canary.analysis.minSuccessRate must be between 0 and 100"))]
    pub min_success_rate: Option<f64>,
    /// Most percentage points the canary's success rate may be below the stable track's.
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("spec.rollout.canary.analysis.maxSuccessRateDrop must be between 0 and 100"))]
    pub max_success_rate_drop: Option<f64>,
    /// Highest p99 latency of the canary in milliseconds, when the latency histogram
    /// exists. No absolute limit by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.rollout.canary.analysis.maxP99LatencyMs must be greater than 0"))]
    pub max_p99_latency_ms: Option<f64>,
    /// Most the canary's p99 latency may be, as a multiple of the stable track's. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1.0").message("spec.rollout.canary.analysis.maxP99LatencyRatio must be at least 1"))]
    pub max_p99_latency_ratio: Option<f64>,
    /// Consecutive failed checks that abort the canary. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.rollout.canary.analysis.failureLimit must be at least 1"))]
    pub failure_limit: Option<i32>,
    /// Fewest canary requests in a check's window for it to count: with fewer the step
    /// waits (no data is never a success). Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.rollout.canary.analysis.minRequests must be at least 1"))]
    pub min_requests: Option<i32>,
    /// How long a canary may go without a check that has enough requests before it is
    /// aborted. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("spec.rollout.canary.analysis.noDataTimeout must be a duration such as 5m"))]
    pub no_data_timeout: Option<String>,
    /// Request counter with a `code` label (the operator's `--request-metric` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_:][a-zA-Z0-9_:]*$')").message("spec.rollout.canary.analysis.requestMetric must be a Prometheus metric name"))]
    pub request_metric: Option<String>,
    /// Base name of the latency histogram in seconds (its `_bucket` series are read).
    /// Default `http_request_duration_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_:][a-zA-Z0-9_:]*$')").message("spec.rollout.canary.analysis.latencyMetric must be a Prometheus metric name"))]
    pub latency_metric: Option<String>,
    /// Extra label matchers for both series, such as `handler!="/health"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub selector: Option<String>,
}

/// Where the traffic split is made. With a router, the stable Deployment's pods carry
/// `shoal.dev/track: stable` (setting a router rolls them once, without a canary) and,
/// while the canary is in its steps, the Services `<name>-stable` and `<name>-canary` select
/// one track each for the router. Until every stable pod carries the label (a router set
/// together with a new image), the canary goes by replica ratio and its status says so.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.nginx) && has(self.gatewayAPI))").message("spec.rollout.canary.trafficRouting takes one router: nginx or gatewayAPI"))]
pub struct TrafficRouting {
    /// ingress-nginx: a canary Ingress `<name>-canary` (same host, path, class and TLS) to
    /// `<name>-canary` with the `nginx.ingress.kubernetes.io/canary-weight` annotation, while
    /// the Microservice's Ingress sends to `<name>-stable` (needs `spec.ingress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxRouting>,
    /// Gateway API: backend weights on an HTTPRoute you own (needs RBAC `get`, `patch` on
    /// `httproutes`, which the chart grants).
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiRouting>,
}

/// ingress-nginx canary routing (no settings yet).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NginxRouting {}

/// Gateway API routing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of the HTTPRoute, in the Microservice's namespace, whose rules send traffic to
    /// this service. During a canary Shoal points those rules' backendRefs to the service at
    /// `<name>-stable` and `<name>-canary` with the step's weights, and back at `<name>` after
    /// it; other rules, backendRefs and fields stay as you set them. Without the route (or
    /// without a rule to the service) the canary goes by replica ratio, with a Warning Event.
    #[schemars(length(max = 253))]
    pub http_route: String,
}

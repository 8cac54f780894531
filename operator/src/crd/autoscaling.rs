//! `spec.autoscaling`: bounds, targets, engine, behavior and fallback.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Which component scales the Deployment.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ScalingEngine {
    /// A native HPA when only CPU is targeted, Shoal's metrics loop when a request-rate
    /// target is set (default).
    #[default]
    Auto,
    /// Always a native HorizontalPodAutoscaler (CPU targets only).
    #[serde(rename = "HPA")]
    Hpa,
    /// Always Shoal's own metrics loop.
    Shoal,
}

/// Horizontal autoscaling settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas"))]
#[x_kube(validation = Rule::new("has(self.cpu) || has(self.requestRate)").message("spec.autoscaling needs at least one target: spec.autoscaling.cpu or spec.autoscaling.requestRate"))]
#[x_kube(validation = Rule::new("!(has(self.engine) && self.engine == 'HPA' && has(self.requestRate))").message("spec.autoscaling.engine HPA scales on CPU only: remove spec.autoscaling.requestRate or use engine Shoal"))]
#[x_kube(validation = Rule::new("!has(self.fallback) || self.fallback.replicas <= self.maxReplicas").message("spec.autoscaling.fallback.replicas must be less than or equal to spec.autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// Lowest number of replicas (at least 1). Default 1.
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,
    /// Highest number of replicas.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.maxReplicas must be at least 1"))]
    pub max_replicas: i32,
    /// Scale on average CPU utilization, as a percentage of the pods' CPU requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuTarget>,
    /// Scale on request rate, read from Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<RequestRateTarget>,
    /// Which component scales: Auto (default), HPA or Shoal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<ScalingEngine>,
    /// Scaling speed and stabilization, with the shape and defaults of the HPA's `behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// Hold the current replica count: Shoal's metrics loop makes no change while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// What to do when no metric can be read (Prometheus down, empty results). Replicas are
    /// always held; with a fallback they are raised to at least `replicas` after
    /// `afterFailures` consecutive failed ticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// Replica floor while metrics are missing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    /// Replicas to keep at least (clamped to min/max).
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.fallback.replicas must be at least 1"))]
    pub replicas: i32,
    /// Consecutive failed ticks before the fallback applies. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.autoscaling.fallback.afterFailures must be at least 1"))]
    pub after_failures: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

/// CPU utilization target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CpuTarget {
    /// Target average CPU utilization in percent of the requested CPU, for example 70.
    #[x_kube(validation = Rule::new("self > 0").message("spec.autoscaling.cpu.targetUtilization must be greater than 0"))]
    pub target_utilization: i32,
}

/// Request-rate target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestRateTarget {
    /// Requests per second one replica should serve, for example 50.
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.autoscaling.requestRate.targetPerReplica must be greater than 0"))]
    pub target_per_replica: f64,
    /// A whole PromQL query that returns this service's total request rate per second as
    /// a single series, replacing the operator's default query. Queried on its own each
    /// tick (the default query is shared by all Microservices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Request counter to use instead of the operator's default (e.g. `nginx_requests_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Extra label matchers for the request counter, e.g. `code!~"5.."`, added to the
    /// namespace and service matchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Scaling behavior, as in the HPA's `behavior` field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// How fast to scale up. Default: no stabilization; at most +100% or +4 pods per 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// How fast to scale down. Default: 300 s stabilization; at most -100% per 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// Scaling rules for one direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations to consider (0-3600): the most conservative one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 3600").message("stabilizationWindowSeconds must be between 0 and 3600"))]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy wins when several apply: Max (default), Min, or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Limits on the change per period. When set, at least one policy (an empty list is
    /// refused: leave the field out for the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("policies must specify at least one policy; leave the field out for the defaults"))]
    pub policies: Option<Vec<ScalingPolicy>>,
    /// How far the usage ratio may stray from 1 in this direction before the count changes,
    /// as a quantity (`0.05`, `50m`); default 0.1 (10%), as the HPA's `tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!string(self).startsWith('-')").message("tolerance must be a non-negative quantity such as \"0.05\" or 50m"))]
    pub tolerance: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

/// Which of several policies is used.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SelectPolicy {
    /// The policy that allows the largest change (default).
    #[default]
    Max,
    /// The policy that allows the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Kind of a scaling policy.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    /// An absolute number of pods.
    Pods,
    /// A percentage of the current replicas.
    Percent,
}

/// One limit on the change of replicas per period.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub type_: PolicyType,
    /// How many pods, or what percentage, may change within the period (> 0).
    #[x_kube(validation = Rule::new("self > 0").message("scaling policy value must be greater than 0"))]
    pub value: i32,
    /// Length of the period in seconds (1-1800).
    #[x_kube(validation = Rule::new("self > 0 && self <= 1800").message("scaling policy periodSeconds must be between 1 and 1800"))]
    pub period_seconds: i32,
}

//! The Microservice's status: conditions, replica counts, the autoscaler's last decision
//! and the rollout history. Doc comments are what `kubectl explain` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::vocabulary::RevisionOutcome;

/// Observed state of a Microservice.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceStatus {
    /// The generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready, and the rollout and autoscaler conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Replicas the Deployment asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Replicas that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods of the Deployment, as its status counts them (what `kubectl scale` reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the pods, as a string (for the scale subresource and autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Where the service answers inside the cluster:
    /// `http://<name>.<namespace>.svc.cluster.local[:port]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the service answers from outside, through its Ingress (when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_url: Option<String>,
    /// Which component scales this service: None, HPA or Shoal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_engine: Option<String>,
    /// Name of the ConfigMap the current pod template uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// The last decision of Shoal's metrics loop (engine Shoal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// Revisions: what runs now, the last good one, and how recent ones ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Rollout state: the current and last good revision, and a short history.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision the Deployment runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Revision>,
    /// The last revision that became available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<Revision>,
    /// The Microservice generation whose pod template Shoal holds back (its rollout failed
    /// and was rolled back, or a `kubectl rollout undo` replaced it) until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_generation: Option<i64>,
    /// The generation whose pod template Shoal last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The Deployment's `metadata.generation` right after that apply (a later change is someone else's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_deployment_generation: Option<i64>,
    /// Recent revisions, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
    /// The canary in flight, or the last one and how it ended (strategy `Canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
}

/// Where a canary stands.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum CanaryPhase {
    /// Going through its steps.
    #[default]
    Progressing,
    /// At a pause without a duration: waiting for a promote.
    Paused,
    /// Past its last step (or promoted by hand): the stable Deployment takes its revision.
    Promoting,
    /// Promoted: the stable Deployment runs its revision, the canary Deployment is gone.
    Promoted,
    /// Aborted (failed analysis, no data, `kubectl rollout undo`): the stable revision
    /// serves, the canary Deployment is gone, and its spec is not retried until it changes.
    Aborted,
    /// The spec changed again (or back) before the canary ended.
    Superseded,
}

impl CanaryPhase {
    /// Whether the canary is still running (its Deployment is wanted).
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting
        )
    }
}

/// A canary release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Where it stands.
    pub phase: CanaryPhase,
    /// Hash of the canary's pod template (its revision).
    pub template_hash: String,
    /// The canary's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Microservice generation that started it.
    pub generation: i64,
    /// Hash of the stable Deployment's pod template when the canary started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_template_hash: Option<String>,
    /// Index of the current step (from 0); equal to `steps` once past the last one.
    pub step: i32,
    /// Number of steps.
    pub steps: i32,
    /// Percent of the traffic the canary gets now.
    pub weight: i32,
    /// When the canary started.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// When the current step began.
    pub step_started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// Replicas of the canary Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_replicas: Option<i32>,
    /// Replicas of the stable Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_replicas: Option<i32>,
    /// The analysis so far.
    #[serde(default)]
    pub checks: CanaryChecks,
    /// What happened last, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The canary analysis: the last check's figures and the counts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryChecks {
    /// When the last check was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Checks passed at the current step.
    #[serde(default)]
    pub passed_at_step: i32,
    /// Consecutive failed checks.
    #[serde(default)]
    pub failed: i32,
    /// Since when the checks found too few canary requests (unset once one has enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Canary requests in the last check's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    /// Canary success rate in percent (non-5xx share of its requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Stable success rate in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_success_rate: Option<f64>,
    /// Canary p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Stable p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_p99_latency_ms: Option<f64>,
    /// The last check's verdict, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
}

/// One revision of the pod template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// The Deployment revision number (`deployment.kubernetes.io/revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Hash of the config (the ConfigMap is `<name>-config-<hash>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Hash of the pod template Shoal rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// How the revision ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RevisionOutcome>,
}

/// The metrics loop's last decision, explained.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// Replicas before the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Replicas after the decision (stabilized, rate-limited and clamped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// The largest per-metric proposal, before stabilization, policies and min/max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_desired_replicas: Option<i32>,
    /// Why the desired count differs from the raw one (a ScalingLimited reason), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// When the metrics loop last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Request rate: total requests per second and the target per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<MetricStatus>,
    /// CPU: average utilization of the ready pods in percent of their requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<MetricStatus>,
}

/// One metric as the metrics loop last read it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The value read (requests/s in total, or CPU percent); absent when there was no data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// The target (requests/s per replica, or CPU percent).
    pub target: f64,
    /// Replicas this metric alone asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    /// The PromQL, exactly as sent, that produced the value (for a batched query, the
    /// query of all Microservices at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Which window drove the proposal: `stable` (the rate window) or `burst` (the short
    /// window, which only ever raises the count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Why the reading may under-read (a scrape gap inside the window, pods without a
    /// whole window of data yet): it may raise the count but not lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// Why there was no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = generator.subschema_for::<Condition>();
    schemars::json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}

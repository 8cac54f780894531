//! Shoal's vocabulary: condition types and reasons, Event reasons, revision outcomes,
//! scaling engines and limiting reasons, each an enum with one spelling in one place; and
//! the labels both loops select children by.
//!
//! Every enum has `as_str()` (a `const fn`, so the `&'static str` constants some modules
//! keep are derived from it) and `Display`. Enums stored in the CRD also derive serde and
//! a schema; their JSON values are the variant names, as they were when they were strings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The spelling Kubernetes objects carry.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// A condition type in `status.conditions`.
    ConditionType {
        /// The service is available at its desired replica count (controller).
        Ready = "Ready",
        /// A rollout is running or has finished (controller).
        Progressing = "Progressing",
        /// The current generation's rollout failed (controller).
        Degraded = "Degraded",
        /// An older revision was restored (controller).
        RolledBack = "RolledBack",
        /// The autoscaler can write the scale subresource (autoscaler).
        AbleToScale = "AbleToScale",
        /// The autoscaler has metrics to act on (autoscaler).
        ScalingActive = "ScalingActive",
        /// The desired count was limited by min/max or a rate policy (autoscaler).
        ScalingLimited = "ScalingLimited",
    }
}

/// Condition types the controller owns; the autoscaler owns the others.
pub const CONTROLLER_CONDITIONS: [ConditionType; 4] = [
    ConditionType::Ready,
    ConditionType::Progressing,
    ConditionType::Degraded,
    ConditionType::RolledBack,
];

/// Condition types the autoscaler owns.
pub const AUTOSCALER_CONDITIONS: [ConditionType; 3] = [
    ConditionType::AbleToScale,
    ConditionType::ScalingActive,
    ConditionType::ScalingLimited,
];

words! {
    /// A reason of one of the controller's conditions (Ready, Progressing, Degraded, RolledBack).
    Reason {
        /// Ready: every desired replica is updated and available.
        Available = "Available",
        /// Ready: the spec is invalid in a way the schema could not catch.
        InvalidSpec = "InvalidSpec",
        /// Ready: the children are being created.
        Creating = "Creating",
        /// Ready, Progressing: pods of the new revision are being created.
        RolloutInProgress = "RolloutInProgress",
        /// Ready: fewer replicas are available than desired.
        ReplicasUnavailable = "ReplicasUnavailable",
        /// Ready: the apiserver refused a child (its message names the field); retried with backoff.
        ApplyFailed = "ApplyFailed",
        /// Ready: the ReplicaSet cannot create pods (Pod Security, quota, invalid image reference).
        FailedCreate = "FailedCreate",
        /// Ready, Progressing, Degraded, RolledBack: the Deployment made no progress within its deadline.
        ProgressDeadlineExceeded = "ProgressDeadlineExceeded",
        /// Progressing: every replica runs the new revision and is available.
        NewRevisionAvailable = "NewRevisionAvailable",
        /// RolledBack: `kubectl rollout undo` replaced Shoal's template.
        ManualRollback = "ManualRollback",
        /// RolledBack: nothing was rolled back.
        NoRollback = "NoRollback",
        /// Degraded: the rollout is healthy.
        Healthy = "Healthy",
        /// Progressing: a canary goes through its steps (the message names the step).
        CanaryStep = "CanaryStep",
        /// Progressing: a canary waits at a pause without a duration for a promote.
        CanaryPaused = "CanaryPaused",
        /// Degraded, RolledBack: a canary failed its analysis (or had no data) and was removed.
        CanaryAnalysisFailed = "CanaryAnalysisFailed",
    }
}

words! {
    /// A reason of one of the autoscaler's conditions, as the HPA names them; the
    /// ScalingLimited reasons that do limit are [`LimitedBy`].
    ScalingReason {
        /// The last scale write succeeded or none was needed.
        ReadyForNewScale = "ReadyForNewScale",
        /// The autoscaler changed the replica count.
        SucceededRescale = "SucceededRescale",
        /// Writing the scale subresource failed.
        FailedUpdateScale = "FailedUpdateScale",
        /// Every metric was read.
        ValidMetricFound = "ValidMetricFound",
        /// No metric could be read: replicas are held.
        FailedGetMetrics = "FailedGetMetrics",
        /// Autoscaling is paused or the workload was scaled to zero by hand.
        ScalingDisabled = "ScalingDisabled",
        /// The desired count is within bounds and limits.
        DesiredWithinRange = "DesiredWithinRange",
        /// Held down by lower recommendations of the scale-up window.
        ScaleUpStabilized = "ScaleUpStabilized",
        /// Held up by higher recommendations of the scale-down window.
        ScaleDownStabilized = "ScaleDownStabilized",
    }
}

/// The autoscaler's condition types and reasons as `&'static str` constants, for the
/// decision code that builds [`crate::conditions::ConditionSpec`]s from them.
pub mod scaling {
    use super::{ConditionType, ScalingReason};

    /// Condition type: the autoscaler can write the scale subresource.
    pub const ABLE_TO_SCALE: &str = ConditionType::AbleToScale.as_str();
    /// Condition type: the autoscaler has metrics to act on.
    pub const SCALING_ACTIVE: &str = ConditionType::ScalingActive.as_str();
    /// Condition type: the desired count was limited (min/max or a rate policy).
    pub const SCALING_LIMITED: &str = ConditionType::ScalingLimited.as_str();

    /// Reasons, as the HPA names them.
    pub mod reason {
        use super::ScalingReason as R;
        use crate::vocabulary::LimitedBy as L;

        /// The last scale write succeeded or none was needed.
        pub const READY_FOR_NEW_SCALE: &str = R::ReadyForNewScale.as_str();
        /// The autoscaler changed the replica count.
        pub const SUCCEEDED_RESCALE: &str = R::SucceededRescale.as_str();
        /// Writing the scale subresource failed.
        pub const FAILED_UPDATE_SCALE: &str = R::FailedUpdateScale.as_str();
        /// Every metric was read.
        pub const VALID_METRIC_FOUND: &str = R::ValidMetricFound.as_str();
        /// No metric could be read: replicas are held.
        pub const FAILED_GET_METRICS: &str = R::FailedGetMetrics.as_str();
        /// Autoscaling is paused or the workload was scaled to zero by hand.
        pub const SCALING_DISABLED: &str = R::ScalingDisabled.as_str();
        /// The desired count is within bounds and limits.
        pub const DESIRED_WITHIN_RANGE: &str = R::DesiredWithinRange.as_str();
        /// Clamped up to minReplicas.
        pub const TOO_FEW_REPLICAS: &str = L::TooFewReplicas.as_str();
        /// Clamped down to maxReplicas.
        pub const TOO_MANY_REPLICAS: &str = L::TooManyReplicas.as_str();
        /// Limited by a scale-up policy.
        pub const SCALE_UP_LIMIT: &str = L::ScaleUpLimit.as_str();
        /// Limited by a scale-down policy.
        pub const SCALE_DOWN_LIMIT: &str = L::ScaleDownLimit.as_str();
        /// Scale-down held while a rollout is in progress.
        pub const ROLLOUT_IN_PROGRESS: &str = L::RolloutInProgress.as_str();
        /// Held down by lower recommendations of the scale-up window.
        pub const SCALE_UP_STABILIZED: &str = R::ScaleUpStabilized.as_str();
        /// Held up by higher recommendations of the scale-down window.
        pub const SCALE_DOWN_STABILIZED: &str = R::ScaleDownStabilized.as_str();
        /// Scale-down held until every reading covers its whole window.
        pub const INCOMPLETE_METRICS: &str = L::IncompleteMetrics.as_str();
        /// All metrics missing for long enough: the fallback count applies.
        pub const FALLBACK: &str = L::Fallback.as_str();
    }
}

words! {
    /// Why the autoscaler's desired count differs from the raw one (`status.autoscaler.limitedBy`).
    LimitedBy {
        /// Clamped up to minReplicas.
        TooFewReplicas = "TooFewReplicas",
        /// Clamped down to maxReplicas.
        TooManyReplicas = "TooManyReplicas",
        /// Limited by a scale-up policy.
        ScaleUpLimit = "ScaleUpLimit",
        /// Limited by a scale-down policy.
        ScaleDownLimit = "ScaleDownLimit",
        /// Scale-down held while a rollout is in progress.
        RolloutInProgress = "RolloutInProgress",
        /// Scale-down held until every reading covers its whole window (a scrape gap, or
        /// pods without a whole window of data yet).
        IncompleteMetrics = "IncompleteMetrics",
        /// All metrics missing for long enough: the fallback count applies.
        Fallback = "FallbackReplicas",
    }
}

impl LimitedBy {
    /// The limiting reason a ScalingLimited reason stands for, if it is one.
    pub fn from_reason(reason: &str) -> Option<LimitedBy> {
        LimitedBy::ALL
            .iter()
            .copied()
            .find(|l| l.as_str() == reason)
    }
}

words! {
    /// Who sets the Deployment's replica count (`status.scalingEngine`).
    Engine {
        /// Not autoscaled: the controller applies a fixed count.
        None = "None",
        /// A native HorizontalPodAutoscaler (CPU targets only).
        Hpa = "HPA",
        /// Shoal's own metrics loop.
        Shoal = "Shoal",
    }
}

impl Engine {
    /// Name shown in `status.scalingEngine` (same as [`Engine::as_str`]).
    pub fn label(self) -> &'static str {
        self.as_str()
    }
}

words! {
    /// The reason of an Event the controller publishes (besides condition transitions,
    /// whose Events carry the condition's reason or `<Type>`/`<Type>Cleared`).
    EventReason {
        /// A child was created.
        Created = "Created",
        /// A child was updated.
        Updated = "Updated",
        /// An optional child the spec no longer asks for was deleted.
        Deleted = "Deleted",
        /// Autoscaling took over the replica count of the Deployment.
        AutoscalingEnabled = "AutoscalingEnabled",
        /// The spec is invalid.
        InvalidSpec = "InvalidSpec",
        /// The apiserver refused a child.
        ApplyFailed = "ApplyFailed",
        /// A canary's traffic router cannot split the traffic (no HTTPRoute, no rule to the
        /// service, stable pods without their track label): it goes by replica ratio.
        TrafficRoutingUnavailable = "TrafficRoutingUnavailable",
    }
}

words! {
    /// The `action` of an Event the controller publishes.
    EventAction {
        /// Server-side apply of a child.
        Apply = "Apply",
        /// Deletion of a child.
        Delete = "Delete",
        /// Hand-over of the replica count to autoscaling.
        HandOver = "HandOver",
        /// A change of a rollout condition.
        Rollout = "Rollout",
        /// Validation of the spec.
        Validate = "Validate",
        /// Splitting a canary's traffic through its router.
        Route = "Route",
    }
}

/// How the revision ended: InProgress, Available, Failed, RolledBack (failed, and the last
/// good revision was restored), Superseded, or ManualRollback (brought back by `kubectl
/// rollout undo`).
// This doc is the CRD's description of `outcome` (kubectl explain): written for users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RevisionOutcome {
    /// Pods of the revision are being rolled out.
    InProgress,
    /// The revision became available.
    Available,
    /// The revision missed its progress deadline.
    Failed,
    /// The revision failed and Shoal restored the last good one.
    RolledBack,
    /// A newer revision replaced it after it became available.
    Superseded,
    /// `kubectl rollout undo` brought this revision back; Shoal holds it.
    ManualRollback,
}

impl RevisionOutcome {
    /// Every value, in declaration order.
    pub const ALL: &'static [RevisionOutcome] = &[
        RevisionOutcome::InProgress,
        RevisionOutcome::Available,
        RevisionOutcome::Failed,
        RevisionOutcome::RolledBack,
        RevisionOutcome::Superseded,
        RevisionOutcome::ManualRollback,
    ];

    /// The spelling stored in the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevisionOutcome::InProgress => "InProgress",
            RevisionOutcome::Available => "Available",
            RevisionOutcome::Failed => "Failed",
            RevisionOutcome::RolledBack => "RolledBack",
            RevisionOutcome::Superseded => "Superseded",
            RevisionOutcome::ManualRollback => "ManualRollback",
        }
    }
}

impl std::fmt::Display for RevisionOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `app.kubernetes.io/name`: the Microservice's name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the Microservice's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`: always `shoal`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/component`: which child this is (`config`, `server`, ...).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label selector of every child Shoal manages (and of their pods).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=shoal";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_outcomes_keep_their_stored_spelling() {
        for outcome in RevisionOutcome::ALL {
            let json = serde_json::to_value(outcome).expect("serialises");
            assert_eq!(json, serde_json::json!(outcome.as_str()));
            let back: RevisionOutcome = serde_json::from_value(json).expect("parses");
            assert_eq!(back, *outcome);
        }
    }

    #[test]
    fn engines_and_limits_are_named_as_before() {
        assert_eq!(Engine::Hpa.to_string(), "HPA");
        assert_eq!(Engine::None.as_str(), "None");
        assert_eq!(
            LimitedBy::from_reason("FallbackReplicas"),
            Some(LimitedBy::Fallback)
        );
        assert_eq!(LimitedBy::from_reason("DesiredWithinRange"), None);
        assert_eq!(scaling::reason::FALLBACK, "FallbackReplicas");
    }
}

//! Where a Deployment's rollout stands, read once from its spec and status: the one reader
//! of `observedGeneration`, the replica counts and `ProgressDeadlineExceeded` that the
//! Ready condition, the rollout transition and the autoscaler share.

use k8s_openapi::api::apps::v1::Deployment;

/// The Deployment condition type and reason that mean a rollout failed.
const PROGRESSING: &str = "Progressing";
const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// A Deployment's rollout progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `spec.replicas` (1 when unset, as the apiserver defaults it).
    pub desired: i32,
    /// `status.replicas`: pods of every revision.
    pub total: i32,
    /// `status.updatedReplicas`: pods of the newest revision.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// The deployment controller has observed the current `metadata.generation`.
    pub observed: bool,
    /// The message of `Progressing=False, reason=ProgressDeadlineExceeded`, when set.
    pub deadline_exceeded: Option<String>,
}

impl Progress {
    /// Reads a Deployment.
    pub fn of(deployment: &Deployment) -> Progress {
        let status = deployment.status.clone().unwrap_or_default();
        let deadline_exceeded = status
            .conditions
            .iter()
            .flatten()
            .find(|c| {
                c.type_ == PROGRESSING
                    && c.status == "False"
                    && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
            })
            .map(|c| c.message.clone().unwrap_or_default());
        Progress {
            desired: deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1),
            total: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            observed: status.observed_generation.unwrap_or(0)
                >= deployment.metadata.generation.unwrap_or(0),
            deadline_exceeded,
        }
    }

    /// Every desired replica runs the current revision and is available, and no old pod is left.
    pub fn complete(&self) -> bool {
        self.observed
            && self.updated >= self.desired
            && self.available >= self.desired
            && self.total <= self.updated
    }

    /// A new revision is still replacing old pods (or is not yet observed): what the
    /// autoscaler holds scale-downs for.
    pub fn rollout_in_progress(&self) -> bool {
        !self.observed || self.total > self.updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{DeploymentAt, deployment};

    #[test]
    fn progress_reads_generation_counts_and_deadline() {
        let done = Progress::of(&deployment(DeploymentAt::complete(2, 3)));
        assert!(done.complete() && !done.rollout_in_progress());
        let unobserved = Progress::of(&deployment(DeploymentAt {
            observed: 1,
            ..DeploymentAt::complete(2, 3)
        }));
        assert!(!unobserved.complete() && unobserved.rollout_in_progress());
        let surging = Progress::of(&deployment(DeploymentAt {
            updated: 2,
            ..DeploymentAt::complete(2, 3)
        }));
        assert!(surging.rollout_in_progress());
        let failed = Progress::of(&deployment(DeploymentAt {
            deadline_exceeded: true,
            ..DeploymentAt::complete(2, 3)
        }));
        assert_eq!(
            failed.deadline_exceeded.as_deref(),
            Some("ReplicaSet has timed out progressing.")
        );
    }
}

//! The Microservice's status as a pure function of what the controller observed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, ConditionSpec};
use crate::crd::{Microservice, MicroserviceStatus};
use crate::validate::{InvalidSpec, ValidatedMicroservice};

/// The Ready condition for a valid Microservice, from its live Deployment.
pub fn ready_condition(deployment: Option<&Deployment>) -> ConditionSpec {
    use conditions::*;
    let Some(deployment) = deployment else {
        return ConditionSpec::new(
            READY,
            false,
            REASON_CREATING,
            "waiting for the Deployment to be created",
        );
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return ConditionSpec::new(
            READY,
            false,
            REASON_PROGRESS_DEADLINE_EXCEEDED,
            format!(
                "the rollout made no progress within its deadline: {available} of {desired} replicas available"
            ),
        );
    }
    if status.observed_generation.unwrap_or(0) < generation {
        return ConditionSpec::new(
            READY,
            false,
            REASON_ROLLOUT_IN_PROGRESS,
            "waiting for the Deployment controller to observe the new revision",
        );
    }
    if updated < desired {
        return ConditionSpec::new(
            READY,
            false,
            REASON_ROLLOUT_IN_PROGRESS,
            format!("{updated} of {desired} replicas updated to the new revision"),
        );
    }
    let total = status.replicas.unwrap_or(0);
    if total > updated {
        return ConditionSpec::new(
            READY,
            false,
            REASON_ROLLOUT_IN_PROGRESS,
            format!("{} old replicas pending termination", total - updated),
        );
    }
    if available < desired {
        return ConditionSpec::new(
            READY,
            false,
            REASON_REPLICAS_UNAVAILABLE,
            format!("{ready} of {desired} replicas ready"),
        );
    }
    ConditionSpec::new(
        READY,
        true,
        REASON_AVAILABLE,
        format!("{available} of {desired} replicas available"),
    )
}

/// Status of a valid Microservice.
pub fn valid_status(
    ms: &Microservice,
    valid: &ValidatedMicroservice,
    deployment: Option<&Deployment>,
    rollout: &crate::rollout::Transition,
    now: &Time,
) -> MicroserviceStatus {
    let old = ms.status.clone().unwrap_or_default();
    let mut wanted = vec![ready_condition(deployment)];
    wanted.extend(rollout.conditions.iter().cloned());
    MicroserviceStatus {
        observed_generation: Some(valid.generation),
        conditions: conditions::merge(&old.conditions, &wanted, valid.generation, now),
        desired_replicas: deployment
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas),
        ready_replicas: deployment
            .and_then(|d| d.status.as_ref())
            .map(|s| s.ready_replicas.unwrap_or(0)),
        scaling_engine: Some(valid.engine.label().to_string()),
        config_map: Some(valid.config_map_name()),
        autoscaler: None,
        rollout: Some(rollout.status.clone()),
    }
}

/// Status of a Microservice whose spec is invalid: Ready=False with the reason; the rest
/// of the status (what the children still are) is kept.
pub fn invalid_status(ms: &Microservice, invalid: &InvalidSpec, now: &Time) -> MicroserviceStatus {
    let old = ms.status.clone().unwrap_or_default();
    let generation = ms.metadata.generation.unwrap_or(0);
    let wanted = [ConditionSpec::new(
        conditions::READY,
        false,
        conditions::REASON_INVALID_SPEC,
        format!("{invalid}; existing children are left unchanged until the spec is fixed"),
    )];
    MicroserviceStatus {
        observed_generation: Some(generation),
        conditions: conditions::merge(&old.conditions, &wanted, generation, now),
        ..old
    }
}

/// Condition types the controller owns; the autoscaler owns the others.
pub const CONTROLLER_CONDITIONS: [&str; 4] = [
    conditions::READY,
    crate::rollout::PROGRESSING,
    crate::rollout::DEGRADED,
    crate::rollout::ROLLED_BACK,
];

/// The part of the status the controller writes (its field manager owns exactly this):
/// its own conditions and fields, not the autoscaler's.
pub fn controller_view(status: &MicroserviceStatus) -> MicroserviceStatus {
    MicroserviceStatus {
        conditions: status
            .conditions
            .iter()
            .filter(|c| CONTROLLER_CONDITIONS.contains(&c.type_.as_str()))
            .cloned()
            .collect(),
        autoscaler: None,
        ..status.clone()
    }
}

/// True when the controller's part of the status changed and must be written. Timestamps
/// only move when a condition flips (see [`conditions::merge`]), so equality is exact.
pub fn needs_write(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> bool {
    old.map(controller_view) != Some(controller_view(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{REASON_AVAILABLE, REASON_INVALID_SPEC, REASON_ROLLOUT_IN_PROGRESS};
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        available: i32,
    ) -> Deployment {
        Deployment {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn ms() -> Microservice {
        serde_yaml::from_str("apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: a, namespace: n, uid: u, generation: 2}\nspec: {image: x}\n").expect("ms")
    }

    #[test]
    fn ready_follows_the_deployment() {
        assert_eq!(
            ready_condition(Some(&deployment(2, 1, 2, 2, 2))).reason,
            REASON_ROLLOUT_IN_PROGRESS
        );
        assert_eq!(
            ready_condition(Some(&deployment(2, 2, 3, 1, 3))).reason,
            REASON_ROLLOUT_IN_PROGRESS
        );
        let ready = ready_condition(Some(&deployment(2, 2, 3, 3, 3)));
        assert!(ready.status);
        assert_eq!(ready.reason, REASON_AVAILABLE);
        assert!(!ready_condition(None).status);
    }

    #[test]
    fn a_second_pass_with_nothing_new_needs_no_write() {
        let mut ms = ms();
        let valid = crate::validate::validate(&ms).expect("valid");
        let d = deployment(1, 1, 1, 1, 1);
        let rollout = crate::rollout::transition(&crate::rollout::Observed {
            generation: 2,
            desired_template_hash: "h",
            auto_rollback: true,
            previous: None,
            deployment: Some(&d),
            replica_sets: &[],
        });
        let first = valid_status(
            &ms,
            &valid,
            Some(&d),
            &rollout,
            &Time("2026-01-01T00:00:00Z".parse().expect("t")),
        );
        assert!(needs_write(ms.status.as_ref(), &first));
        assert_eq!(first.observed_generation, Some(2));
        ms.status = Some(first);
        let second = valid_status(
            &ms,
            &valid,
            Some(&d),
            &rollout,
            &Time("2026-01-01T01:00:00Z".parse().expect("t")),
        );
        assert!(!needs_write(ms.status.as_ref(), &second));
    }

    #[test]
    fn invalid_spec_sets_ready_false_and_keeps_the_rest() {
        let mut ms = ms();
        ms.status = Some(MicroserviceStatus {
            ready_replicas: Some(3),
            ..Default::default()
        });
        let invalid = InvalidSpec {
            field: "spec.x".into(),
            message: "bad".into(),
        };
        let s = invalid_status(
            &ms,
            &invalid,
            &Time("2026-01-01T00:00:00Z".parse().expect("t")),
        );
        let ready =
            crate::conditions::find(&s.conditions, crate::conditions::READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", REASON_INVALID_SPEC)
        );
        assert!(ready.message.contains("spec.x: bad"));
        assert_eq!(s.ready_replicas, Some(3));
    }
}

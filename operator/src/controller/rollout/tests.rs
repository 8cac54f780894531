//! Tests of the rollout transition, on Deployments and ReplicaSets built by hand.

use super::*;

const PROGRESSING: &str = ConditionType::Progressing.as_str();
const DEGRADED: &str = ConditionType::Degraded.as_str();
const ROLLED_BACK: &str = ConditionType::RolledBack.as_str();
use crate::test_support::{self, DeploymentAt, pod_template as template};
use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

fn deployment(
    image: &str,
    hash: &str,
    generation: i64,
    revision: i64,
    complete: bool,
    deadline: bool,
) -> Deployment {
    let mut d = test_support::deployment(DeploymentAt {
        generation,
        observed: generation,
        replicas: 2,
        updated: if complete { 2 } else { 1 },
        available: if complete { 2 } else { 0 },
        deadline_exceeded: deadline,
    });
    d.metadata.uid = Some("d-1".into());
    d.metadata.annotations = Some(BTreeMap::from([(
        REVISION_ANNOTATION.to_string(),
        revision.to_string(),
    )]));
    if let Some(spec) = d.spec.as_mut() {
        spec.template = template(image, hash);
    }
    d
}

fn replica_set(image: &str, hash: &str, revision: i64) -> Arc<ReplicaSet> {
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                uid: "d-1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            template: Some(template(image, hash)),
            ..Default::default()
        }),
        status: None,
    })
}

fn reason_of<'a>(t: &'a Transition, type_: &str) -> Option<(&'a str, bool)> {
    t.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.reason, c.status))
}

#[test]
fn a_completed_rollout_is_the_last_good_revision() {
    let d = deployment("app:1", "h1", 3, 1, true, false);
    let t = transition(&Observed {
        canary: None,
        generation: 1,
        desired_template_hash: "h1",
        auto_rollback: true,
        previous: None,
        deployment: Some(&d),
        replica_sets: &[],
    });
    assert_eq!(t.template, Template::Desired);
    assert_eq!(
        reason_of(&t, PROGRESSING),
        Some((Reason::NewRevisionAvailable.as_str(), true))
    );
    assert_eq!(
        t.status.last_good.as_ref().and_then(|g| g.image.as_deref()),
        Some("app:1")
    );
    assert_eq!(
        t.status.history[0].outcome,
        Some(RevisionOutcome::Available)
    );
}

#[test]
fn a_spec_change_rolls_forward_and_grows_the_history() {
    let d1 = deployment("app:1", "h1", 3, 1, true, false);
    let first = transition(&Observed {
        canary: None,
        generation: 1,
        desired_template_hash: "h1",
        auto_rollback: true,
        previous: None,
        deployment: Some(&d1),
        replica_sets: &[],
    });
    let mut previous = first.status.clone();
    previous.applied_generation = Some(1);
    previous.applied_deployment_generation = Some(3);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&previous),
        deployment: Some(&d1),
        replica_sets: &[],
    });
    assert_eq!(t.template, Template::Desired);
    assert_eq!(
        reason_of(&t, PROGRESSING),
        Some((Reason::RolloutInProgress.as_str(), true))
    );
    let d2 = deployment("app:2", "h2", 4, 2, false, false);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&t.status),
        deployment: Some(&d2),
        replica_sets: &[],
    });
    assert_eq!(t.status.history.len(), 2);
    assert_eq!(
        t.status.history[0].outcome,
        Some(RevisionOutcome::InProgress)
    );
    assert_eq!(
        t.status.history[1].outcome,
        Some(RevisionOutcome::Superseded)
    );
}

#[test]
fn kubectl_rollout_undo_is_kept_and_reported() {
    let rs1 = replica_set("app:1", "h1", 1);
    let rs2 = replica_set("app:2", "h2", 2);
    let previous = RolloutStatus {
        applied_generation: Some(2),
        applied_deployment_generation: Some(4),
        ..Default::default()
    };
    // The undo brought back h1's template as revision 3 and bumped the generation.
    let undone = deployment("app:1", "h1", 5, 3, true, false);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&previous),
        deployment: Some(&undone),
        replica_sets: &[rs1.clone(), rs2.clone()],
    });
    assert_eq!(t.template, Template::Keep);
    assert_eq!(
        reason_of(&t, ROLLED_BACK),
        Some((Reason::ManualRollback.as_str(), true))
    );
    let message = &t
        .conditions
        .iter()
        .find(|c| c.type_ == ROLLED_BACK)
        .expect("rolled back")
        .message;
    assert!(
        message.contains("revision 3") && message.contains("app:1"),
        "{message}"
    );
    assert_eq!(t.status.held_generation, Some(2));
    // Held across later passes, until the generation changes.
    let again = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&t.status),
        deployment: Some(&undone),
        replica_sets: &[rs1.clone(), rs2.clone()],
    });
    assert_eq!(again.template, Template::Keep);
    let forward = transition(&Observed {
        canary: None,
        generation: 3,
        desired_template_hash: "h3",
        auto_rollback: true,
        previous: Some(&t.status),
        deployment: Some(&undone),
        replica_sets: &[rs1.clone(), rs2.clone()],
    });
    assert_eq!(forward.template, Template::Desired);
}

#[test]
fn a_stale_cache_is_not_mistaken_for_an_undo() {
    let rs1 = replica_set("app:1", "h1", 1);
    let previous = RolloutStatus {
        applied_generation: Some(2),
        applied_deployment_generation: Some(4),
        ..Default::default()
    };
    // The cache still shows the Deployment before our apply (generation 3 < 4).
    let stale = deployment("app:1", "h1", 3, 1, true, false);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&previous),
        deployment: Some(&stale),
        replica_sets: std::slice::from_ref(&rs1),
    });
    assert_eq!(t.template, Template::Desired);
}

#[test]
fn a_failed_rollout_restores_the_last_good_revision_once() {
    let rs1 = replica_set("app:1", "h1", 1);
    let previous = RolloutStatus {
        last_good: Some(Revision {
            revision: Some(1),
            image: Some("app:1".into()),
            config_hash: None,
            template_hash: Some("h1".into()),
            outcome: None,
        }),
        ..Default::default()
    };
    let failed = deployment("app:broken", "h2", 4, 2, false, true);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&previous),
        deployment: Some(&failed),
        replica_sets: std::slice::from_ref(&rs1),
    });
    let Template::Restore(template) = &t.template else {
        panic!("expected a restore, got {:?}", t.template)
    };
    assert_eq!(
        template
            .spec
            .as_ref()
            .map(|s| s.containers[0].image.clone()),
        Some(Some("app:1".to_string()))
    );
    assert!(
        !template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .is_some_and(|l| l.contains_key("pod-template-hash"))
    );
    assert_eq!(
        reason_of(&t, DEGRADED),
        Some((Reason::ProgressDeadlineExceeded.as_str(), true))
    );
    assert_eq!(
        reason_of(&t, ROLLED_BACK),
        Some((Reason::ProgressDeadlineExceeded.as_str(), true))
    );
    assert_eq!(t.status.held_generation, Some(2));
    let restored = deployment("app:1", "h1", 5, 3, true, false);
    let next = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: true,
        previous: Some(&t.status),
        deployment: Some(&restored),
        replica_sets: std::slice::from_ref(&rs1),
    });
    assert_eq!(
        next.template,
        Template::Keep,
        "the failed spec is not retried"
    );
}

#[test]
fn without_auto_rollback_the_failure_is_only_reported() {
    let rs1 = replica_set("app:1", "h1", 1);
    let previous = RolloutStatus {
        last_good: Some(Revision {
            template_hash: Some("h1".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let failed = deployment("app:broken", "h2", 4, 2, false, true);
    let t = transition(&Observed {
        canary: None,
        generation: 2,
        desired_template_hash: "h2",
        auto_rollback: false,
        previous: Some(&previous),
        deployment: Some(&failed),
        replica_sets: std::slice::from_ref(&rs1),
    });
    assert_eq!(t.template, Template::Desired);
    assert_eq!(
        reason_of(&t, DEGRADED),
        Some((Reason::ProgressDeadlineExceeded.as_str(), true))
    );
    assert_eq!(
        reason_of(&t, ROLLED_BACK),
        Some((Reason::NoRollback.as_str(), false))
    );
}

#[test]
fn history_is_bounded() {
    let mut previous: Option<RolloutStatus> = None;
    for i in 0..25 {
        let d = deployment(&format!("app:{i}"), &format!("h{i}"), i, i, true, false);
        let t = transition(&Observed {
            canary: None,
            generation: i,
            desired_template_hash: &format!("h{i}"),
            auto_rollback: true,
            previous: previous.as_ref(),
            deployment: Some(&d),
            replica_sets: &[],
        });
        previous = Some(t.status);
    }
    assert_eq!(previous.expect("status").history.len(), HISTORY_LIMIT);
}

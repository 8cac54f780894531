//! Rollout state as one pure transition: from the Microservice, its previous rollout status,
//! the live Deployment and its ReplicaSets to what the controller must do with the pod
//! template, the rollout conditions and the new rollout status. Side effects (applying a
//! template, events) stay in the controller.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::build::{CONFIG_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use crate::conditions::ConditionSpec;
use crate::crd::{Revision, RolloutStatus};

/// Condition type: a rollout is running or has finished.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the current generation's rollout failed.
pub const DEGRADED: &str = "Degraded";
/// Condition type: an older revision was restored.
pub const ROLLED_BACK: &str = "RolledBack";

/// Reasons of the rollout conditions.
pub mod reason {
    /// Pods of the new revision are being created.
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    /// Every replica runs the new revision and is available.
    pub const NEW_REVISION_AVAILABLE: &str = "NewRevisionAvailable";
    /// The Deployment made no progress within its deadline.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// `kubectl rollout undo` replaced Shoal's template.
    pub const MANUAL_ROLLBACK: &str = "ManualRollback";
    /// Nothing was rolled back.
    pub const NO_ROLLBACK: &str = "NoRollback";
    /// The rollout is healthy.
    pub const HEALTHY: &str = "Healthy";
}

/// Revisions kept in `status.rollout.history`.
pub const HISTORY_LIMIT: usize = 10;
/// Annotation the deployment controller sets on Deployments and ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// What to do with the Deployment's pod template.
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    /// Apply the template Shoal renders for the current spec.
    Desired,
    /// Leave the live template alone (held: failed or manually rolled back).
    Keep,
    /// Apply this older template (automatic rollback).
    Restore(Box<PodTemplateSpec>),
}

/// Everything the transition looks at.
pub struct Observed<'a> {
    /// The Microservice's generation.
    pub generation: i64,
    /// Hash of the template rendered for this generation.
    pub desired_template_hash: &'a str,
    /// `spec.rollout.autoRollback` (default true).
    pub auto_rollback: bool,
    /// `status.rollout` as stored.
    pub previous: Option<&'a RolloutStatus>,
    /// The live Deployment, if it exists.
    pub deployment: Option<&'a Deployment>,
    /// The Deployment's ReplicaSets.
    pub replica_sets: &'a [&'a ReplicaSet],
}

/// The transition's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// What to do with the template.
    pub template: Template,
    /// Progressing, Degraded, RolledBack.
    pub conditions: Vec<ConditionSpec>,
    /// The new `status.rollout` (before the controller records its apply).
    pub status: RolloutStatus,
}

fn annotation<'a>(map: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).map(String::as_str)
}

/// The revision a pod template (and its Deployment or ReplicaSet revision) stands for.
pub fn revision_of(template: Option<&PodTemplateSpec>, revision: Option<&str>) -> Revision {
    let annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    Revision {
        revision: revision.and_then(|r| r.parse().ok()),
        image: template
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone()),
        config_hash: annotation(annotations, CONFIG_HASH_ANNOTATION).map(str::to_string),
        template_hash: annotation(annotations, TEMPLATE_HASH_ANNOTATION).map(str::to_string),
        outcome: None,
    }
}

fn describe(r: &Revision) -> String {
    format!(
        "revision {} (image {}, config {})",
        r.revision.map_or("?".to_string(), |n| n.to_string()),
        r.image.as_deref().unwrap_or("?"),
        r.config_hash.as_deref().unwrap_or("?")
    )
}

enum Progress {
    Underway(String),
    Complete(String),
    DeadlineExceeded(String),
}

fn progress(deployment: &Deployment) -> Progress {
    let status = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let deadline = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let (true, Some(c)) = (observed, deadline) {
        return Progress::DeadlineExceeded(c.message.clone().unwrap_or_default());
    }
    if observed && updated >= desired && available >= desired && total <= updated {
        Progress::Complete(format!("{available} of {desired} replicas available"))
    } else {
        Progress::Underway(format!(
            "{updated} of {desired} replicas updated, {available} available"
        ))
    }
}

/// The rollout transition.
pub fn transition(o: &Observed) -> Transition {
    use reason::*;
    let previous = o.previous.cloned().unwrap_or_default();
    let mut status = previous.clone();
    let Some(deployment) = o.deployment else {
        return Transition {
            template: Template::Desired,
            conditions: vec![
                ConditionSpec::new(
                    PROGRESSING,
                    true,
                    ROLLOUT_IN_PROGRESS,
                    "creating the Deployment",
                ),
                ConditionSpec::new(DEGRADED, false, HEALTHY, "no failed rollout"),
                ConditionSpec::new(ROLLED_BACK, false, NO_ROLLBACK, "nothing was rolled back"),
            ],
            status,
        };
    };
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let live_revision = annotation(
        deployment.metadata.annotations.as_ref(),
        REVISION_ANNOTATION,
    );
    let live = revision_of(template, live_revision);
    let live_hash = live.template_hash.clone().unwrap_or_default();
    let desired = o.desired_template_hash;
    let held = previous.held_generation == Some(o.generation);

    // History: a new template hash at the head is a new revision.
    if status
        .history
        .first()
        .and_then(|h| h.template_hash.as_deref())
        != Some(live_hash.as_str())
        && !live_hash.is_empty()
    {
        if let Some(head) = status.history.first_mut()
            && head.outcome.as_deref() == Some("Available")
        {
            head.outcome = Some("Superseded".into());
        }
        status.history.insert(
            0,
            Revision {
                outcome: Some("InProgress".into()),
                ..live.clone()
            },
        );
        status.history.truncate(HISTORY_LIMIT);
    } else if let Some(head) = status.history.first_mut() {
        // The revision number moves when an old template comes back (undo).
        head.revision = live.revision.or(head.revision);
    }
    status.current = Some(live.clone());

    let progress = progress(deployment);
    let set_head = |status: &mut RolloutStatus, outcome: &str| {
        if let Some(head) = status.history.first_mut() {
            head.outcome = Some(outcome.into());
        }
    };
    let progressing = match &progress {
        Progress::Underway(m) => ConditionSpec::new(
            PROGRESSING,
            true,
            ROLLOUT_IN_PROGRESS,
            format!("{}: {m}", describe(&live)),
        ),
        Progress::Complete(m) => ConditionSpec::new(
            PROGRESSING,
            true,
            NEW_REVISION_AVAILABLE,
            format!("{} is available: {m}", describe(&live)),
        ),
        Progress::DeadlineExceeded(m) => ConditionSpec::new(
            PROGRESSING,
            false,
            PROGRESS_DEADLINE_EXCEEDED,
            format!("{} made no progress: {m}", describe(&live)),
        ),
    };
    if matches!(progress, Progress::Complete(_)) {
        status.last_good = Some(Revision {
            outcome: None,
            ..live.clone()
        });
        if status.history.first().and_then(|h| h.outcome.as_deref()) == Some("InProgress") {
            set_head(&mut status, "Available");
        }
    }
    if held {
        // Held: keep the live template until the spec changes. The conditions that explain
        // why are kept as they were set when the hold began.
        return Transition {
            template: Template::Keep,
            conditions: vec![progressing],
            status,
        };
    }

    if live_hash != desired {
        let applied_by_us = previous.applied_generation == Some(o.generation);
        let changed_since = deployment.metadata.generation.unwrap_or(0)
            > previous.applied_deployment_generation.unwrap_or(i64::MAX);
        let known = o.replica_sets.iter().any(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
                == Some(&live_hash)
        });
        if applied_by_us && changed_since && known && !live_hash.is_empty() {
            let observed = deployment
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0)
                >= deployment.metadata.generation.unwrap_or(0);
            if !observed {
                // Wait for the deployment controller to number the restored revision
                // before reporting it; leave the template alone meanwhile.
                return Transition {
                    template: Template::Keep,
                    conditions: vec![progressing],
                    status,
                };
            }
            status.held_generation = Some(o.generation);
            set_head(&mut status, "ManualRollback");
            return Transition {
                template: Template::Keep,
                conditions: vec![
                    progressing,
                    ConditionSpec::new(DEGRADED, false, HEALTHY, "no failed rollout"),
                    ConditionSpec::new(
                        ROLLED_BACK,
                        true,
                        MANUAL_ROLLBACK,
                        format!(
                            "the Deployment was rolled back by hand to {}; Shoal keeps it until the Microservice changes",
                            describe(&live)
                        ),
                    ),
                ],
                status,
            };
        }
        // The spec changed (or someone edited the template): roll forward.
        return Transition {
            template: Template::Desired,
            conditions: vec![
                ConditionSpec::new(
                    PROGRESSING,
                    true,
                    ROLLOUT_IN_PROGRESS,
                    format!("rolling out generation {}", o.generation),
                ),
                ConditionSpec::new(DEGRADED, false, HEALTHY, "no failed rollout"),
                ConditionSpec::new(ROLLED_BACK, false, NO_ROLLBACK, "nothing was rolled back"),
            ],
            status,
        };
    }

    // The live template is the desired one.
    if let Progress::DeadlineExceeded(message) = &progress {
        set_head(&mut status, "Failed");
        let degraded = ConditionSpec::new(
            DEGRADED,
            true,
            PROGRESS_DEADLINE_EXCEEDED,
            format!("the rollout of {} failed: {message}", describe(&live)),
        );
        let good = previous
            .last_good
            .clone()
            .filter(|g| g.template_hash.as_deref().is_some_and(|h| h != desired));
        let restore = good.as_ref().and_then(|g| {
            o.replica_sets
                .iter()
                .filter_map(|rs| rs.spec.as_ref().and_then(|s| s.template.clone()))
                .find(|t| {
                    t.metadata
                        .as_ref()
                        .and_then(|m| m.annotations.as_ref())
                        .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
                        == g.template_hash.as_ref()
                })
        });
        if o.auto_rollback
            && let (Some(good), Some(mut template)) = (good, restore)
        {
            // The deployment controller adds pod-template-hash to a ReplicaSet's template.
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove("pod-template-hash");
            }
            set_head(&mut status, "RolledBack");
            status.held_generation = Some(o.generation);
            return Transition {
                template: Template::Restore(Box::new(template)),
                conditions: vec![
                    ConditionSpec::new(
                        PROGRESSING,
                        true,
                        ROLLOUT_IN_PROGRESS,
                        format!("rolling back to {}", describe(&good)),
                    ),
                    degraded,
                    ConditionSpec::new(
                        ROLLED_BACK,
                        true,
                        PROGRESS_DEADLINE_EXCEEDED,
                        format!(
                            "{} exceeded its progress deadline; restored {}. The failed spec is not retried until the Microservice changes",
                            describe(&live),
                            describe(&good)
                        ),
                    ),
                ],
                status,
            };
        }
        let why = if o.auto_rollback {
            "no earlier revision became available, so there is nothing to roll back to"
        } else {
            "spec.rollout.autoRollback is false, so Shoal does not roll back"
        };
        return Transition {
            template: Template::Desired,
            conditions: vec![
                progressing,
                ConditionSpec::new(
                    DEGRADED,
                    true,
                    PROGRESS_DEADLINE_EXCEEDED,
                    format!("{}; {why}", degraded.message),
                ),
                ConditionSpec::new(ROLLED_BACK, false, NO_ROLLBACK, why),
            ],
            status,
        };
    }
    Transition {
        template: Template::Desired,
        conditions: vec![
            progressing,
            ConditionSpec::new(DEGRADED, false, HEALTHY, "no failed rollout"),
            ConditionSpec::new(ROLLED_BACK, false, NO_ROLLBACK, "nothing was rolled back"),
        ],
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSetSpec,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn template(image: &str, hash: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([(
                    "pod-template-hash".to_string(),
                    "x".to_string(),
                )])),
                annotations: Some(BTreeMap::from([
                    (TEMPLATE_HASH_ANNOTATION.to_string(), hash.to_string()),
                    (CONFIG_HASH_ANNOTATION.to_string(), format!("cfg-{hash}")),
                ])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn deployment(
        image: &str,
        hash: &str,
        generation: i64,
        revision: i64,
        complete: bool,
        deadline: bool,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                uid: Some("d-1".into()),
                annotations: Some(BTreeMap::from([(
                    REVISION_ANNOTATION.to_string(),
                    revision.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                template: template(image, hash),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(generation),
                replicas: Some(2),
                updated_replicas: Some(if complete { 2 } else { 1 }),
                available_replicas: Some(if complete { 2 } else { 0 }),
                conditions: deadline.then(|| {
                    vec![DeploymentCondition {
                        type_: "Progressing".into(),
                        status: "False".into(),
                        reason: Some("ProgressDeadlineExceeded".into()),
                        message: Some("ReplicaSet has timed out progressing.".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn replica_set(image: &str, hash: &str, revision: i64) -> ReplicaSet {
        ReplicaSet {
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
        }
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
            Some((reason::NEW_REVISION_AVAILABLE, true))
        );
        assert_eq!(
            t.status.last_good.as_ref().and_then(|g| g.image.as_deref()),
            Some("app:1")
        );
        assert_eq!(t.status.history[0].outcome.as_deref(), Some("Available"));
    }

    #[test]
    fn a_spec_change_rolls_forward_and_grows_the_history() {
        let d1 = deployment("app:1", "h1", 3, 1, true, false);
        let first = transition(&Observed {
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
            Some((reason::ROLLOUT_IN_PROGRESS, true))
        );
        let d2 = deployment("app:2", "h2", 4, 2, false, false);
        let t = transition(&Observed {
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&t.status),
            deployment: Some(&d2),
            replica_sets: &[],
        });
        assert_eq!(t.status.history.len(), 2);
        assert_eq!(t.status.history[0].outcome.as_deref(), Some("InProgress"));
        assert_eq!(t.status.history[1].outcome.as_deref(), Some("Superseded"));
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
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&previous),
            deployment: Some(&undone),
            replica_sets: &[&rs1, &rs2],
        });
        assert_eq!(t.template, Template::Keep);
        assert_eq!(
            reason_of(&t, ROLLED_BACK),
            Some((reason::MANUAL_ROLLBACK, true))
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
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&t.status),
            deployment: Some(&undone),
            replica_sets: &[&rs1, &rs2],
        });
        assert_eq!(again.template, Template::Keep);
        let forward = transition(&Observed {
            generation: 3,
            desired_template_hash: "h3",
            auto_rollback: true,
            previous: Some(&t.status),
            deployment: Some(&undone),
            replica_sets: &[&rs1, &rs2],
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
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&previous),
            deployment: Some(&stale),
            replica_sets: &[&rs1],
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
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&previous),
            deployment: Some(&failed),
            replica_sets: &[&rs1],
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
            Some((reason::PROGRESS_DEADLINE_EXCEEDED, true))
        );
        assert_eq!(
            reason_of(&t, ROLLED_BACK),
            Some((reason::PROGRESS_DEADLINE_EXCEEDED, true))
        );
        assert_eq!(t.status.held_generation, Some(2));
        let restored = deployment("app:1", "h1", 5, 3, true, false);
        let next = transition(&Observed {
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: true,
            previous: Some(&t.status),
            deployment: Some(&restored),
            replica_sets: &[&rs1],
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
            generation: 2,
            desired_template_hash: "h2",
            auto_rollback: false,
            previous: Some(&previous),
            deployment: Some(&failed),
            replica_sets: &[&rs1],
        });
        assert_eq!(t.template, Template::Desired);
        assert_eq!(
            reason_of(&t, DEGRADED),
            Some((reason::PROGRESS_DEADLINE_EXCEEDED, true))
        );
        assert_eq!(
            reason_of(&t, ROLLED_BACK),
            Some((reason::NO_ROLLBACK, false))
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut previous: Option<RolloutStatus> = None;
        for i in 0..25 {
            let d = deployment(&format!("app:{i}"), &format!("h{i}"), i, i, true, false);
            let t = transition(&Observed {
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
}

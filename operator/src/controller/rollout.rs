//! Rollout state as one pure transition: from the Microservice, its previous rollout status,
//! the live Deployment and its ReplicaSets to what the controller must do with the pod
//! template, the rollout conditions and the new rollout status. Side effects (applying a
//! template, events) stay in the apply step; [`deployment_to_apply`] assembles what it applies.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::render::{CONFIG_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use crate::conditions::ConditionSpec;
use crate::crd::{Revision, RolloutStatus};
use crate::progress::Progress;
use crate::vocabulary::{ConditionType, Reason, RevisionOutcome};

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
    pub replica_sets: &'a [Arc<ReplicaSet>],
    /// Strategy Canary: what the canary transition needs. None for RollingUpdate.
    pub canary: Option<CanaryView<'a>>,
}

/// What the canary transition needs besides [`Observed`].
#[derive(Clone, Copy)]
pub struct CanaryView<'a> {
    /// The policy.
    pub policy: &'a crate::validate::CanaryPolicy,
    /// The image this generation asks for.
    pub desired_image: &'a str,
    /// The live canary Deployment.
    pub deployment: Option<&'a Deployment>,
    /// A promote was asked for.
    pub promote: bool,
    /// The latest analysis sample.
    pub sample: Option<&'a crate::analysis::Sample>,
    /// Now.
    pub now: k8s_openapi::jiff::Timestamp,
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
    /// Replicas of the canary Deployment; None: it must not exist.
    pub canary_replicas: Option<i32>,
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

/// The rollout's phase, from [`Progress`], with the message of its condition.
enum Phase {
    Underway(String),
    Complete(String),
    DeadlineExceeded(String),
}

fn phase(progress: &Progress) -> Phase {
    let Progress {
        desired,
        updated,
        available,
        observed,
        ..
    } = *progress;
    if let (true, Some(message)) = (observed, &progress.deadline_exceeded) {
        return Phase::DeadlineExceeded(message.clone());
    }
    if progress.complete() {
        Phase::Complete(format!("{available} of {desired} replicas available"))
    } else {
        Phase::Underway(format!(
            "{updated} of {desired} replicas updated, {available} available"
        ))
    }
}

/// The conditions of a rollout that has not failed: `progressing`, not Degraded, not rolled back.
pub(super) fn healthy(progressing: ConditionSpec) -> Vec<ConditionSpec> {
    use ConditionType::{Degraded, RolledBack};
    vec![
        progressing,
        ConditionSpec::of(Degraded, false, Reason::Healthy, "no failed rollout"),
        ConditionSpec::of(
            RolledBack,
            false,
            Reason::NoRollback,
            "nothing was rolled back",
        ),
    ]
}

/// Apply the desired template: a rollout starts.
fn roll_forward(message: impl Into<String>, status: RolloutStatus) -> Transition {
    Transition {
        canary_replicas: None,
        template: Template::Desired,
        conditions: healthy(ConditionSpec::of(
            ConditionType::Progressing,
            true,
            Reason::RolloutInProgress,
            message,
        )),
        status,
    }
}

/// The rollout transition: the rolling one, then (strategy Canary) the canary's part.
pub fn transition(o: &Observed) -> Transition {
    let mut t = rolling(o);
    if let (Some(view), Some(deployment)) = (o.canary, o.deployment) {
        canary_part(o, &view, deployment, &mut t);
    } else if let Some(c) = t.status.canary.as_mut().filter(|c| c.phase.in_flight()) {
        // Strategy changed to RollingUpdate during a canary: it ends.
        *c = super::canary::superseded(Some(c)).unwrap_or_else(|| c.clone());
    }
    t
}

/// Strategy Canary: a roll-forward of the stable Deployment becomes a canary; a canary
/// ends when held, promoted or no longer wanted.
fn canary_part(o: &Observed, view: &CanaryView, deployment: &Deployment, t: &mut Transition) {
    use super::canary;
    let live_hash = revision_of(deployment.spec.as_ref().map(|s| &s.template), None)
        .template_hash
        .unwrap_or_default();
    let previous = t.status.canary.clone();
    let held = t.status.held_generation == Some(o.generation);
    if held {
        // Held (failed, rolled back by hand): a canary in flight ends.
        if let Some(c) = t.status.canary.as_mut().filter(|c| c.phase.in_flight()) {
            c.phase = crate::crd::CanaryPhase::Aborted;
            c.canary_replicas = Some(0);
            c.message = Some("aborted: the Deployment was rolled back".to_string());
        }
        t.canary_replicas = None;
        return;
    }
    if live_hash == o.desired_template_hash {
        // The stable Deployment has (or takes) the desired template: a canary in flight is
        // being promoted (it stays until the stable rollout completes) or superseded.
        if let Some(c) = previous.filter(|c| c.phase.in_flight()) {
            let promoting = c.phase == crate::crd::CanaryPhase::Promoting
                && c.template_hash == o.desired_template_hash;
            if promoting && !Progress::of(deployment).complete() {
                t.canary_replicas = c.canary_replicas.filter(|r| *r > 0);
            } else {
                t.status.canary = canary::superseded(Some(&c));
                t.canary_replicas = None;
            }
        }
        return;
    }
    if t.template != Template::Desired {
        return;
    }
    let out = canary::transition(&canary::Observed {
        policy: view.policy,
        generation: o.generation,
        desired_hash: o.desired_template_hash,
        desired_image: view.desired_image,
        stable_hash: &live_hash,
        stable: deployment,
        canary: view.deployment,
        previous: previous.as_ref(),
        promote: view.promote,
        sample: view.sample,
        now: view.now,
    });
    t.canary_replicas = out.canary_replicas;
    t.status.canary = Some(out.status);
    if out.hold {
        t.status.held_generation = Some(o.generation);
    }
    if !out.promote_stable {
        t.template = Template::Keep;
        if let Some(conditions) = out.conditions {
            t.conditions = conditions;
        }
    }
}

/// The rolling transition (strategy RollingUpdate, and the stable Deployment of a canary).
fn rolling(o: &Observed) -> Transition {
    use ConditionType::{Degraded, Progressing, RolledBack};
    let previous = o.previous.cloned().unwrap_or_default();
    let mut status = previous.clone();
    let Some(deployment) = o.deployment else {
        return roll_forward("creating the Deployment", status);
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
            && head.outcome == Some(RevisionOutcome::Available)
        {
            head.outcome = Some(RevisionOutcome::Superseded);
        }
        status.history.insert(
            0,
            Revision {
                outcome: Some(RevisionOutcome::InProgress),
                ..live.clone()
            },
        );
        status.history.truncate(HISTORY_LIMIT);
    } else if let Some(head) = status.history.first_mut() {
        // The revision number moves when an old template comes back (undo).
        head.revision = live.revision.or(head.revision);
    }
    status.current = Some(live.clone());

    let progress = Progress::of(deployment);
    let observed = progress.observed;
    let progress = phase(&progress);
    let set_head = |status: &mut RolloutStatus, outcome: RevisionOutcome| {
        if let Some(head) = status.history.first_mut() {
            head.outcome = Some(outcome);
        }
    };
    let progressing = match &progress {
        Phase::Underway(m) => ConditionSpec::of(
            Progressing,
            true,
            Reason::RolloutInProgress,
            format!("{}: {m}", describe(&live)),
        ),
        Phase::Complete(m) => ConditionSpec::of(
            Progressing,
            true,
            Reason::NewRevisionAvailable,
            format!("{} is available: {m}", describe(&live)),
        ),
        Phase::DeadlineExceeded(m) => ConditionSpec::of(
            Progressing,
            false,
            Reason::ProgressDeadlineExceeded,
            format!("{} made no progress: {m}", describe(&live)),
        ),
    };
    if matches!(progress, Phase::Complete(_)) {
        status.last_good = Some(Revision {
            outcome: None,
            ..live.clone()
        });
        if status.history.first().and_then(|h| h.outcome) == Some(RevisionOutcome::InProgress) {
            set_head(&mut status, RevisionOutcome::Available);
        }
    }
    if held {
        // Held: keep the live template until the spec changes. The conditions that explain
        // why are kept as they were set when the hold began.
        return Transition {
            canary_replicas: None,
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
            if !observed {
                // Wait for the deployment controller to number the restored revision
                // before reporting it; leave the template alone meanwhile.
                return Transition {
                    canary_replicas: None,
                    template: Template::Keep,
                    conditions: vec![progressing],
                    status,
                };
            }
            status.held_generation = Some(o.generation);
            set_head(&mut status, RevisionOutcome::ManualRollback);
            return Transition {
                canary_replicas: None,
                template: Template::Keep,
                conditions: vec![
                    progressing,
                    ConditionSpec::of(Degraded, false, Reason::Healthy, "no failed rollout"),
                    ConditionSpec::of(
                        RolledBack,
                        true,
                        Reason::ManualRollback,
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
        return roll_forward(format!("rolling out generation {}", o.generation), status);
    }

    // The live template is the desired one.
    if let Phase::DeadlineExceeded(message) = &progress {
        set_head(&mut status, RevisionOutcome::Failed);
        let degraded = ConditionSpec::of(
            Degraded,
            true,
            Reason::ProgressDeadlineExceeded,
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
            set_head(&mut status, RevisionOutcome::RolledBack);
            status.held_generation = Some(o.generation);
            return Transition {
                canary_replicas: None,
                template: Template::Restore(Box::new(template)),
                conditions: vec![
                    ConditionSpec::of(
                        Progressing,
                        true,
                        Reason::RolloutInProgress,
                        format!("rolling back to {}", describe(&good)),
                    ),
                    degraded,
                    ConditionSpec::of(
                        RolledBack,
                        true,
                        Reason::ProgressDeadlineExceeded,
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
            canary_replicas: None,
            template: Template::Desired,
            conditions: vec![
                progressing,
                ConditionSpec::of(
                    Degraded,
                    true,
                    Reason::ProgressDeadlineExceeded,
                    format!("{}; {why}", degraded.message),
                ),
                ConditionSpec::of(RolledBack, false, Reason::NoRollback, why),
            ],
            status,
        };
    }
    Transition {
        canary_replicas: None,
        template: Template::Desired,
        conditions: healthy(progressing),
        status,
    }
}

/// The Deployment to apply for a transition: the rendered one, the rendered one carrying an
/// older pod template (a rollback), or None to leave the live one alone.
pub fn deployment_to_apply(template: &Template, rendered: &Deployment) -> Option<Deployment> {
    match template {
        Template::Desired => Some(rendered.clone()),
        Template::Keep => None,
        Template::Restore(template) => {
            let mut restored = rendered.clone();
            if let Some(spec) = restored.spec.as_mut() {
                spec.template = (**template).clone();
            }
            Some(restored)
        }
    }
}

impl Transition {
    /// Records an apply of the desired template: as of this generation the Deployment runs
    /// Shoal's template, so a later change of its generation that brings back an older
    /// template is a `kubectl rollout undo`. `deployment` is the freshest view (as applied,
    /// else cached).
    pub fn record_apply(&mut self, generation: i64, deployment: Option<&Deployment>) {
        if self.template == Template::Desired {
            self.status.applied_generation = Some(generation);
            self.status.applied_deployment_generation =
                deployment.and_then(|d| d.metadata.generation);
        }
    }
}

#[cfg(test)]
mod tests;

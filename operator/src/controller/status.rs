//! The Microservice's status as a pure function of what the controller observed, and the
//! Events a change of status calls for, as data.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use crate::conditions::{self, ConditionSpec};
use crate::crd::{Microservice, MicroserviceStatus};
use crate::progress::Progress;
use crate::validate::{InvalidSpec, ValidatedMicroservice};
use crate::vocabulary::{CONTROLLER_CONDITIONS, ConditionType, EventAction, EventReason, Reason};

/// The condition type a ReplicaSet (and, copied from it, its Deployment) reports pods it
/// cannot create under (reason `FailedCreate`).
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why pods cannot be created, when they cannot: the Deployment's `ReplicaFailure`
/// condition, else that of one of its ReplicaSets that wants pods. The message is the
/// apiserver's (a Pod Security violation, an exceeded quota, an invalid image reference).
pub fn replica_failure(
    deployment: &Deployment,
    replica_sets: &[Arc<ReplicaSet>],
) -> Option<String> {
    let of_deployment = deployment
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
        .map(|c| c.message.clone().unwrap_or_default());
    let of_replica_set = || {
        replica_sets
            .iter()
            .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default())
    };
    of_deployment.or_else(of_replica_set)
}

/// The Ready condition for a valid Microservice, from its live Deployment and the
/// Deployment's ReplicaSets.
pub fn ready_condition(
    deployment: Option<&Deployment>,
    replica_sets: &[Arc<ReplicaSet>],
) -> ConditionSpec {
    use ConditionType::Ready;
    let Some(deployment) = deployment else {
        return ConditionSpec::of(
            Ready,
            false,
            Reason::Creating,
            "waiting for the Deployment to be created",
        );
    };
    let Progress {
        desired,
        total,
        updated,
        available,
        ready,
        observed,
        deadline_exceeded,
    } = Progress::of(deployment);
    // Pods that cannot be created never come: say why now, not at the progress deadline.
    if let Some(message) = replica_failure(deployment, replica_sets) {
        return ConditionSpec::of(
            Ready,
            false,
            Reason::FailedCreate,
            format!("pods cannot be created: {message}"),
        );
    }
    if deadline_exceeded.is_some() {
        return ConditionSpec::of(
            Ready,
            false,
            Reason::ProgressDeadlineExceeded,
            format!(
                "the rollout made no progress within its deadline: {available} of {desired} replicas available"
            ),
        );
    }
    let rolling_out =
        |message: String| ConditionSpec::of(Ready, false, Reason::RolloutInProgress, message);
    if !observed {
        return rolling_out(
            "waiting for the Deployment controller to observe the new revision".to_string(),
        );
    }
    if updated < desired {
        return rolling_out(format!(
            "{updated} of {desired} replicas updated to the new revision"
        ));
    }
    if total > updated {
        return rolling_out(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < desired {
        return ConditionSpec::of(
            Ready,
            false,
            Reason::ReplicasUnavailable,
            format!("{ready} of {desired} replicas ready"),
        );
    }
    ConditionSpec::of(
        Ready,
        true,
        Reason::Available,
        format!("{available} of {desired} replicas available"),
    )
}

/// Status of a valid Microservice.
pub fn valid_status(
    ms: &Microservice,
    valid: &ValidatedMicroservice,
    deployment: Option<&Deployment>,
    replica_sets: &[Arc<ReplicaSet>],
    rollout: &super::rollout::Transition,
    now: &Time,
) -> MicroserviceStatus {
    let old = ms.status.clone().unwrap_or_default();
    let mut wanted = vec![ready_condition(deployment, replica_sets)];
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
        replicas: deployment
            .and_then(|d| d.status.as_ref())
            .map(|s| s.replicas.unwrap_or(0)),
        selector: Some(selector(valid)),
        url: Some(cluster_url(valid)),
        ingress_url: valid.ingress.as_ref().map(ingress_url),
        scaling_engine: Some(valid.engine().as_str().to_string()),
        config_map: Some(valid.config_map_name()),
        autoscaler: None,
        rollout: Some(rollout.status.clone()),
    }
}

/// The pods' label selector as a string, `app.kubernetes.io/instance=<name>,...`.
pub fn selector(valid: &ValidatedMicroservice) -> String {
    super::render::selector_labels(valid)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The in-cluster URL of the Service: `http://<name>.<namespace>.svc.cluster.local`, with
/// the port unless it is 80.
pub fn cluster_url(valid: &ValidatedMicroservice) -> String {
    let port = match valid.ports.service {
        80 => String::new(),
        port => format!(":{port}"),
    };
    format!(
        "http://{}.{}.svc.cluster.local{port}",
        valid.name, valid.namespace
    )
}

/// The URL of the Ingress route: https when it has a TLS Secret.
pub fn ingress_url(route: &crate::validate::IngressRoute) -> String {
    let scheme = if route.tls_secret_name.is_some() {
        "https"
    } else {
        "http"
    };
    let path = if route.path == "/" {
        ""
    } else {
        route.path.as_str()
    };
    format!("{scheme}://{}{path}", route.host)
}

/// Status of a Microservice whose spec is invalid: Ready=False with the reason; the rest
/// of the status (what the children still are) is kept.
pub fn invalid_status(ms: &Microservice, invalid: &InvalidSpec, now: &Time) -> MicroserviceStatus {
    let old = ms.status.clone().unwrap_or_default();
    let generation = ms.metadata.generation.unwrap_or(0);
    let wanted = [ConditionSpec::of(
        ConditionType::Ready,
        false,
        Reason::InvalidSpec,
        format!("{invalid}; existing children are left unchanged until the spec is fixed"),
    )];
    MicroserviceStatus {
        observed_generation: Some(generation),
        conditions: conditions::merge(&old.conditions, &wanted, generation, now),
        ..old
    }
}

/// Status of a Microservice one of whose children the apiserver refused (`refusal`, from
/// [`crate::error::Error::refusal`]): Ready=False with the apiserver's message; the rest of
/// the status (what the children still are) is kept. The reconcile is retried with backoff.
pub fn apply_failed_status(
    ms: &Microservice,
    valid: &ValidatedMicroservice,
    refusal: &str,
    now: &Time,
) -> MicroserviceStatus {
    let old = ms.status.clone().unwrap_or_default();
    let wanted = [ConditionSpec::of(
        ConditionType::Ready,
        false,
        Reason::ApplyFailed,
        format!("{refusal}; retrying with backoff until the spec or the cluster changes"),
    )];
    MicroserviceStatus {
        observed_generation: Some(valid.generation),
        conditions: conditions::merge(&old.conditions, &wanted, valid.generation, now),
        scaling_engine: Some(valid.engine().as_str().to_string()),
        ..old
    }
}

/// The Event of a child the apiserver refused.
pub fn apply_failed_event(refusal: &str) -> EventSpec {
    EventSpec {
        type_: EventType::Warning,
        reason: EventReason::ApplyFailed.to_string(),
        action: EventAction::Apply.as_str(),
        note: crate::kube_ext::fit_note(refusal),
    }
}

/// The part of the status the controller writes (its field manager owns exactly this):
/// its own conditions and fields, not the autoscaler's.
pub fn controller_view(status: &MicroserviceStatus) -> MicroserviceStatus {
    MicroserviceStatus {
        conditions: status
            .conditions
            .iter()
            .filter(|c| CONTROLLER_CONDITIONS.iter().any(|t| t.as_str() == c.type_))
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

/// True when `new` differs from `old` only in figures (replica counts, the revision's
/// number, messages, the rollout history's numbering): no condition changed its status or
/// reason, the generation is the same, and no canary moved to another step or phase. Such
/// a write may wait a few seconds, so that a rollout (or a new Microservice) costs one
/// status write when it starts and one when it is done, not one per step of the Deployment
/// controller. Anything else (a condition's status or reason, the generation, a failure, a
/// canary step) is news and is written at once.
pub fn only_progress(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> bool {
    let Some(old) = old else {
        return false;
    };
    let verdicts = |s: &MicroserviceStatus| {
        let mut v: Vec<(String, String, String)> = s
            .conditions
            .iter()
            .filter(|c| CONTROLLER_CONDITIONS.iter().any(|t| t.as_str() == c.type_))
            .map(|c| {
                // Ready=False between "rolling out" and "replicas unavailable" is the same
                // rollout getting on.
                let reason = if c.reason == Reason::ReplicasUnavailable.as_str() {
                    Reason::RolloutInProgress.as_str().to_string()
                } else {
                    c.reason.clone()
                };
                (c.type_.clone(), c.status.clone(), reason)
            })
            .collect();
        v.sort();
        v
    };
    let canary = |s: &MicroserviceStatus| {
        s.rollout
            .as_ref()
            .and_then(|r| r.canary.as_ref())
            .map(|c| (c.template_hash.clone(), c.phase, c.step))
    };
    let held = |s: &MicroserviceStatus| s.rollout.as_ref().and_then(|r| r.held_generation);
    old.observed_generation == new.observed_generation
        && verdicts(old) == verdicts(new)
        && canary(old) == canary(new)
        && held(old) == held(new)
}

/// How soon a status write must be made ([`urgency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// News: a condition's status or reason, the generation, a canary step, a failure, or
    /// the first status of a Microservice that is not simply rolling out.
    Now,
    /// A new Microservice's first status while its first rollout is under way: it may wait
    /// a few seconds for the rollout to end, so that a fast one costs one status write, and
    /// while the controller is creating many Microservices' children (a burst), so that
    /// status writes follow the child writes instead of competing with them.
    First,
    /// A new Microservice's first status with its first rollout over already (Ready: no
    /// pods to wait for, or fast ones): written at once, except while the controller is
    /// creating many Microservices' children, when it follows them as [`Urgency::First`]
    /// does. Without this, a burst of Microservices that are Ready at once (0 replicas, or
    /// children that existed) wrote one status per Microservice among the child writes.
    FirstReady,
    /// Figures a person watches (replica counts, what was applied, the last good revision,
    /// a canary's figures): at most one write per few seconds.
    Progress,
    /// Only details moved (a condition's message, the revision's number once the
    /// Deployment controller has numbered it, the history's numbering): they ride along
    /// with the next write, or go alone after a long while.
    Detail,
    /// Only details moved while a rollout is under way (Ready=False, rolling out): they
    /// ride along with the next write and never go alone, since the rollout's end (or its
    /// failure) is news written at once. A slow rollout (10,000 new Microservices waiting on
    /// the Deployment controller for half an hour) then costs no write for its details.
    WithNext,
}

/// How soon the change from `old` to `new` must be written (see [`Urgency`]).
pub fn urgency(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> Urgency {
    let in_progress = new.conditions.iter().any(|c| {
        c.type_ == ConditionType::Ready.as_str()
            && c.status == "False"
            && (c.reason == Reason::RolloutInProgress.as_str()
                || c.reason == Reason::ReplicasUnavailable.as_str())
    });
    if old.is_none_or(|o| o.observed_generation.is_none()) {
        let failing = new
            .conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Degraded.as_str() && c.status == "True");
        let ready = new
            .conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True");
        return match (failing, in_progress, ready) {
            (false, true, _) => Urgency::First,
            (false, false, true) => Urgency::FirstReady,
            _ => Urgency::Now,
        };
    }
    if !only_progress(old, new) {
        return Urgency::Now;
    }
    let figures = |s: &MicroserviceStatus| {
        let rollout = s.rollout.clone().unwrap_or_default();
        (
            (s.replicas, s.ready_replicas, s.desired_replicas),
            (
                rollout.applied_generation,
                rollout.applied_deployment_generation,
            ),
            rollout.last_good,
            rollout.canary,
        )
    };
    match (old.map(figures) == Some(figures(new)), in_progress) {
        (true, true) => Urgency::WithNext,
        (true, false) => Urgency::Detail,
        (false, _) => Urgency::Progress,
    }
}

/// What differs between the controller's part of `old` and `new`, as field paths
/// (`readyReplicas`, `rollout.history`, `conditions.Ready`), for the log of a status write.
pub fn changed_fields(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> Vec<String> {
    let to_map = |s: Option<&MicroserviceStatus>| -> serde_json::Map<String, serde_json::Value> {
        let mut map = match s.map(|s| serde_json::to_value(controller_view(s))) {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => serde_json::Map::new(),
        };
        // Conditions by type, the rollout by field: the paths name what moved.
        for (key, nested) in [("conditions", true), ("rollout", false)] {
            let Some(value) = map.remove(key) else {
                continue;
            };
            let entries: Vec<(String, serde_json::Value)> = match (nested, value) {
                (true, serde_json::Value::Array(items)) => items
                    .into_iter()
                    .map(|c| (c["type"].as_str().unwrap_or("?").to_string(), c))
                    .collect(),
                (false, serde_json::Value::Object(fields)) => fields.into_iter().collect(),
                (_, other) => vec![(String::new(), other)],
            };
            for (sub, v) in entries {
                map.insert(format!("{key}.{sub}"), v);
            }
        }
        map
    };
    let (old, new) = (to_map(old), to_map(Some(new)));
    let mut keys: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| old.get(k) != new.get(k));
    keys
}

/// An Event to publish about the Microservice.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSpec {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why.
    pub reason: String,
    /// What the controller was doing.
    pub action: &'static str,
    /// For humans.
    pub note: String,
}

/// The Event of an invalid spec.
pub fn invalid_spec_event(invalid: &InvalidSpec) -> EventSpec {
    EventSpec {
        type_: EventType::Warning,
        reason: EventReason::InvalidSpec.to_string(),
        action: EventAction::Validate.as_str(),
        note: invalid.to_string(),
    }
}

/// Events for every rollout condition that changed (status or reason) from `old` to `new`.
pub fn events_for(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> Vec<EventSpec> {
    use ConditionType::{Degraded, Progressing, RolledBack};
    let mut events = Vec::new();
    for type_ in [Progressing, Degraded, RolledBack] {
        let Some(now) = conditions::find(&new.conditions, type_.as_str()) else {
            continue;
        };
        let before = old.and_then(|o| conditions::find(&o.conditions, type_.as_str()));
        if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
            continue;
        }
        // A canary's steps have Events of their own ([`canary_event`]).
        if type_ == Progressing
            && (now.reason == Reason::CanaryStep.as_str()
                || now.reason == Reason::CanaryPaused.as_str())
        {
            continue;
        }
        let warning = (type_ != Progressing && now.status == "True")
            || now.reason == Reason::ProgressDeadlineExceeded.as_str();
        // A new Microservice's first rollout is not news (its children's Event says it is
        // being created; a failure is a Warning): no Event until a revision was available.
        let first_rollout = old
            .and_then(|o| o.rollout.as_ref())
            .is_none_or(|r| r.last_good.is_none());
        if type_ == Progressing && first_rollout && !warning {
            continue;
        }
        // Degraded/RolledBack appearing False is not news; failures and rollbacks are.
        if before.is_none() && !warning && type_ != Progressing {
            continue;
        }
        let reason = if type_ == Progressing {
            now.reason.clone()
        } else {
            format!(
                "{type_}{}",
                if now.status == "True" { "" } else { "Cleared" }
            )
        };
        events.push(EventSpec {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason,
            action: EventAction::Rollout.as_str(),
            note: now.message.clone(),
        });
    }
    events.extend(canary_event(old, new));
    events
}

/// An Event when a canary starts, moves to another step, or ends.
fn canary_event(old: Option<&MicroserviceStatus>, new: &MicroserviceStatus) -> Option<EventSpec> {
    use crate::crd::CanaryPhase;
    let canary = |s: &MicroserviceStatus| s.rollout.as_ref().and_then(|r| r.canary.clone());
    let now = canary(new)?;
    let before = old.and_then(canary);
    let same = before.as_ref().is_some_and(|b| {
        b.template_hash == now.template_hash && b.phase == now.phase && b.step == now.step
    });
    if same {
        return None;
    }
    let (type_, reason) = match now.phase {
        CanaryPhase::Progressing | CanaryPhase::Paused => (EventType::Normal, "CanaryStep"),
        CanaryPhase::Promoting => (EventType::Normal, "CanaryPromoting"),
        CanaryPhase::Promoted => (EventType::Normal, "CanaryPromoted"),
        CanaryPhase::Aborted => (EventType::Warning, "CanaryAborted"),
        CanaryPhase::Superseded => (EventType::Normal, "CanarySuperseded"),
    };
    Some(EventSpec {
        type_,
        reason: reason.to_string(),
        action: EventAction::Rollout.as_str(),
        note: now
            .message
            .unwrap_or_else(|| format!("canary {:?}", now.phase)),
    })
}

#[cfg(test)]
mod tests;

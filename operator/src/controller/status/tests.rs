//! Tests of the pure status: Ready from the Deployment, no write without news, and the
//! Events of condition changes.

use super::*;
use crate::controller::rollout;
use crate::test_support::{DeploymentAt, deployment, microservice_at};
use crate::vocabulary::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn at(generation: i64, observed: i64, replicas: i32, updated: i32, available: i32) -> Deployment {
    deployment(DeploymentAt {
        generation,
        observed,
        replicas,
        updated,
        available,
        deadline_exceeded: false,
    })
}

fn time(s: &str) -> Time {
    Time(s.parse().expect("t"))
}

#[test]
fn ready_follows_the_deployment() {
    let in_progress = Reason::RolloutInProgress.as_str();
    assert_eq!(
        ready_condition(Some(&at(2, 1, 2, 2, 2)), &[]).reason,
        in_progress
    );
    assert_eq!(
        ready_condition(Some(&at(2, 2, 3, 1, 3)), &[]).reason,
        in_progress
    );
    let ready = ready_condition(Some(&at(2, 2, 3, 3, 3)), &[]);
    assert!(ready.status);
    assert_eq!(ready.reason, Reason::Available.as_str());
    assert!(!ready_condition(None, &[]).status);
    let failed = deployment(DeploymentAt {
        deadline_exceeded: true,
        ..DeploymentAt::complete(2, 3)
    });
    assert_eq!(
        ready_condition(Some(&failed), &[]).reason,
        Reason::ProgressDeadlineExceeded.as_str()
    );
}

#[test]
fn pods_that_cannot_be_created_say_why_before_the_deadline() {
    use k8s_openapi::api::apps::v1::{
        DeploymentCondition, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
    };
    let forbidden = "pods \"shop-7d9\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true";
    // The ReplicaSet's condition is enough (the Deployment controller copies it later).
    let rs = |replicas: i32| {
        Arc::new(ReplicaSet {
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                conditions: Some(vec![ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some("FailedCreate".into()),
                    message: Some(forbidden.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let stuck = at(2, 2, 2, 0, 0);
    let ready = ready_condition(Some(&stuck), &[rs(2)]);
    assert_eq!(
        (ready.status, ready.reason),
        (false, Reason::FailedCreate.as_str())
    );
    assert!(
        ready.message.contains("violates PodSecurity"),
        "{}",
        ready.message
    );
    // An old ReplicaSet scaled to zero says nothing about the current pods.
    assert_eq!(
        ready_condition(Some(&stuck), &[rs(0)]).reason,
        Reason::RolloutInProgress.as_str()
    );
    // The Deployment's own condition counts too, and wins over the deadline.
    let mut failed = deployment(DeploymentAt {
        deadline_exceeded: true,
        ..DeploymentAt::complete(2, 3)
    });
    if let Some(status) = failed.status.as_mut() {
        status
            .conditions
            .get_or_insert_default()
            .push(DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("exceeded quota: compute".into()),
                ..Default::default()
            });
    }
    let ready = ready_condition(Some(&failed), &[]);
    assert_eq!(ready.reason, Reason::FailedCreate.as_str());
    assert!(
        ready.message.ends_with("exceeded quota: compute"),
        "{}",
        ready.message
    );
}

#[test]
fn a_refused_child_sets_ready_false_with_the_apiservers_message() {
    let mut ms = microservice_at(2, "  image: x\n");
    ms.status = Some(MicroserviceStatus {
        ready_replicas: Some(3),
        ..Default::default()
    });
    let valid = crate::validate::validate(&ms).expect("valid");
    let refusal = "the apiserver refused Deployment shop: spec.strategy.rollingUpdate.maxSurge: Invalid value";
    let s = apply_failed_status(&ms, &valid, refusal, &time("2026-01-01T00:00:00Z"));
    let ready = conditions::find(&s.conditions, "Ready").expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", Reason::ApplyFailed.as_str())
    );
    assert!(ready.message.starts_with(refusal), "{}", ready.message);
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.ready_replicas, Some(3));
    assert!(needs_write(ms.status.as_ref(), &s));
    let event = apply_failed_event(&"x".repeat(5000));
    assert_eq!(
        (event.type_, event.reason.as_str()),
        (EventType::Warning, "ApplyFailed")
    );
    assert!(event.note.len() <= crate::kube_ext::NOTE_MAX_BYTES);
    assert!(event.note.ends_with("..."));
}

#[test]
fn a_second_pass_with_nothing_new_needs_no_write() {
    let mut ms = microservice_at(2, "  image: x\n");
    let valid = crate::validate::validate(&ms).expect("valid");
    let d = at(1, 1, 1, 1, 1);
    let rollout = rollout::transition(&rollout::Observed {
        canary: None,
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
        &[],
        &rollout,
        &time("2026-01-01T00:00:00Z"),
    );
    assert!(needs_write(ms.status.as_ref(), &first));
    assert_eq!(first.observed_generation, Some(2));
    assert_eq!(first.scaling_engine.as_deref(), Some("None"));
    ms.status = Some(first);
    let second = valid_status(
        &ms,
        &valid,
        Some(&d),
        &[],
        &rollout,
        &time("2026-01-01T01:00:00Z"),
    );
    assert!(!needs_write(ms.status.as_ref(), &second));
    assert!(events_for(ms.status.as_ref(), &second).is_empty());
}

#[test]
fn invalid_spec_sets_ready_false_and_keeps_the_rest() {
    let mut ms = microservice_at(2, "  image: x\n");
    ms.status = Some(MicroserviceStatus {
        ready_replicas: Some(3),
        ..Default::default()
    });
    let invalid = InvalidSpec {
        field: "spec.x".into(),
        message: "bad".into(),
    };
    let s = invalid_status(&ms, &invalid, &time("2026-01-01T00:00:00Z"));
    let ready = conditions::find(&s.conditions, "Ready").expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", Reason::InvalidSpec.as_str())
    );
    assert!(ready.message.contains("spec.x: bad"));
    assert_eq!(s.ready_replicas, Some(3));
    let event = invalid_spec_event(&invalid);
    assert_eq!(
        (event.type_, event.reason.as_str()),
        (EventType::Warning, "InvalidSpec")
    );
}

fn status_with(conditions: &[ConditionSpec]) -> MicroserviceStatus {
    MicroserviceStatus {
        conditions: conditions::merge(&[], conditions, 1, &time("2026-01-01T00:00:00Z")),
        ..Default::default()
    }
}

#[test]
fn events_report_progress_failures_and_their_end() {
    use ConditionType::{Degraded, Progressing, RolledBack};
    let healthy = [
        ConditionSpec::of(Progressing, true, Reason::RolloutInProgress, "rolling"),
        ConditionSpec::of(Degraded, false, Reason::Healthy, "ok"),
        ConditionSpec::of(RolledBack, false, Reason::NoRollback, "none"),
    ];
    // A new object's first rollout is no news (its children's Event says it is created).
    assert_eq!(events_for(None, &status_with(&healthy)), vec![]);
    let available = [ConditionSpec::of(
        Progressing,
        true,
        Reason::NewRevisionAvailable,
        "revision 1 is available",
    )];
    assert_eq!(
        events_for(Some(&status_with(&healthy)), &status_with(&available)),
        vec![],
        "nor its first revision becoming available"
    );
    // Once a revision was available, a rollout is news.
    let mut before = status_with(&available);
    before.rollout = Some(crate::crd::RolloutStatus {
        last_good: Some(Default::default()),
        ..Default::default()
    });
    let next = events_for(Some(&before), &status_with(&healthy));
    assert_eq!(
        next.iter()
            .map(|e| (e.type_, e.reason.as_str()))
            .collect::<Vec<_>>(),
        [(EventType::Normal, "RolloutInProgress")]
    );
    let failed = [
        ConditionSpec::of(
            Progressing,
            false,
            Reason::ProgressDeadlineExceeded,
            "stuck",
        ),
        ConditionSpec::of(Degraded, true, Reason::ProgressDeadlineExceeded, "failed"),
        ConditionSpec::of(RolledBack, false, Reason::NoRollback, "none"),
    ];
    let old = status_with(&healthy);
    let events = events_for(Some(&old), &status_with(&failed));
    let reasons: Vec<(&str, bool)> = events
        .iter()
        .map(|e| (e.reason.as_str(), e.type_ == EventType::Warning))
        .collect();
    assert_eq!(
        reasons,
        [("ProgressDeadlineExceeded", true), ("Degraded", true)]
    );
    let cleared = events_for(Some(&status_with(&failed)), &status_with(&healthy));
    assert!(
        cleared
            .iter()
            .any(|e| e.reason == "DegradedCleared" && e.type_ == EventType::Normal)
    );
}

#[test]
fn status_says_where_the_service_answers_and_how_to_select_its_pods() {
    let plain = crate::test_support::valid("  image: x\n");
    assert_eq!(cluster_url(&plain), "http://shop.prod.svc.cluster.local");
    assert_eq!(
        selector(&plain),
        "app.kubernetes.io/instance=shop,app.kubernetes.io/name=shop"
    );
    let routed = crate::test_support::valid(
        "  image: x\n  service: {port: 8081}\n  ingress: {host: shop.example.com, path: /api, tlsSecretName: cert}\n",
    );
    assert_eq!(
        cluster_url(&routed),
        "http://shop.prod.svc.cluster.local:8081"
    );
    assert_eq!(
        routed.ingress.as_ref().map(ingress_url).as_deref(),
        Some("https://shop.example.com/api")
    );
    // valid_status carries them, and the Deployment's pod count for the scale subresource.
    let ms = microservice_at(1, "  image: x\n");
    let d = at(1, 1, 3, 3, 2);
    let rollout = rollout::transition(&rollout::Observed {
        canary: None,
        generation: 1,
        desired_template_hash: "h",
        auto_rollback: true,
        previous: None,
        deployment: Some(&d),
        replica_sets: &[],
    });
    let s = valid_status(
        &ms,
        &plain,
        Some(&d),
        &[],
        &rollout,
        &time("2026-01-01T00:00:00Z"),
    );
    assert_eq!(s.replicas, Some(3));
    assert_eq!(s.url.as_deref(), Some("http://shop.prod.svc.cluster.local"));
    assert_eq!(s.ingress_url, None);
    assert!(s.selector.is_some());
}

fn rollout_status(
    ready: (&str, Reason),
    progressing: (&str, Reason),
    ready_replicas: i32,
) -> MicroserviceStatus {
    let condition = |type_: ConditionType, (status, reason): (&str, Reason)| Condition {
        type_: type_.as_str().to_string(),
        status: status.to_string(),
        reason: reason.as_str().to_string(),
        message: format!("{ready_replicas} ready"),
        observed_generation: Some(1),
        last_transition_time: time("2026-01-01T00:00:00Z"),
    };
    MicroserviceStatus {
        observed_generation: Some(1),
        ready_replicas: Some(ready_replicas),
        conditions: vec![
            condition(ConditionType::Ready, ready),
            condition(ConditionType::Progressing, progressing),
        ],
        ..MicroserviceStatus::default()
    }
}

#[test]
fn only_the_progress_of_a_rollout_in_progress_may_wait() {
    use Reason::{Available, NewRevisionAvailable, ReplicasUnavailable, RolloutInProgress};
    let starting = rollout_status(("False", RolloutInProgress), ("True", RolloutInProgress), 0);
    let halfway = rollout_status(
        ("False", ReplicasUnavailable),
        ("True", RolloutInProgress),
        1,
    );
    let done = rollout_status(("True", Available), ("True", NewRevisionAvailable), 2);
    assert!(only_progress(Some(&starting), &halfway));
    assert!(only_progress(Some(&halfway), &halfway.clone()));
    // The rollout starting, ending, or a new generation is news.
    assert!(!only_progress(None, &starting));
    assert!(!only_progress(Some(&done), &starting));
    assert!(!only_progress(Some(&halfway), &done));
    let mut next_generation = halfway.clone();
    next_generation.observed_generation = Some(2);
    assert!(!only_progress(Some(&halfway), &next_generation));
    // So is any other condition changing on the way.
    let mut degraded = halfway.clone();
    degraded.conditions.push(Condition {
        type_: ConditionType::Degraded.as_str().to_string(),
        ..halfway.conditions[0].clone()
    });
    assert!(!only_progress(Some(&halfway), &degraded));
    // A settled Microservice whose figures move (replicas counted, a revision numbered)
    // may wait too; a canary's step is news.
    let more = rollout_status(("True", Available), ("True", NewRevisionAvailable), 3);
    assert!(only_progress(Some(&done), &more));
}

#[test]
fn a_new_microservices_first_status_may_wait_figures_soon_details_long() {
    use Reason::{Available, NewRevisionAvailable, ReplicasUnavailable, RolloutInProgress};
    let starting = rollout_status(("False", RolloutInProgress), ("True", RolloutInProgress), 0);
    let done = rollout_status(("True", Available), ("True", NewRevisionAvailable), 0);
    // The first status of a rollout under way may wait for it to end; a first status that is
    // Ready already is written at once unless a burst holds it; a failing one at once.
    assert_eq!(urgency(None, &starting), Urgency::First);
    assert_eq!(
        urgency(Some(&MicroserviceStatus::default()), &starting),
        Urgency::First
    );
    assert_eq!(urgency(None, &done), Urgency::FirstReady);
    // Neither under way nor Ready (pods refused): news.
    let refused = rollout_status(
        ("False", Reason::FailedCreate),
        ("True", RolloutInProgress),
        0,
    );
    assert_eq!(urgency(None, &refused), Urgency::Now);
    let mut failing = starting.clone();
    failing.conditions.push(Condition {
        type_: ConditionType::Degraded.as_str().to_string(),
        status: "True".into(),
        ..starting.conditions[0].clone()
    });
    assert_eq!(urgency(None, &failing), Urgency::Now);
    // Once written: the end of the rollout is news.
    assert_eq!(urgency(Some(&starting), &done), Urgency::Now);
    // A replica count is a figure people watch.
    let halfway = rollout_status(
        ("False", ReplicasUnavailable),
        ("True", RolloutInProgress),
        1,
    );
    assert_eq!(urgency(Some(&starting), &halfway), Urgency::Progress);
    // The revision numbered and a message reworded are details.
    let mut numbered = starting.clone();
    numbered.conditions[1].message = "ReplicaSet api-1a2b created".into();
    numbered.rollout = Some(crate::crd::RolloutStatus {
        current: Some(crate::crd::Revision {
            revision: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(urgency(Some(&starting), &numbered), Urgency::WithNext);
    // The same details of a settled Microservice may go alone, after a long while.
    let mut settled = done.clone();
    settled.conditions[1].message = "reworded".into();
    assert_eq!(urgency(Some(&done), &settled), Urgency::Detail);
    // What was applied is not a detail: the undo detection reads it back.
    let mut applied = numbered.clone();
    applied
        .rollout
        .as_mut()
        .expect("rollout")
        .applied_deployment_generation = Some(2);
    assert_eq!(urgency(Some(&numbered), &applied), Urgency::Progress);
}

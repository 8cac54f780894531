//! Tests of the pure status: Ready from the Deployment, no write without news, and the
//! Events of condition changes.

use super::*;
use crate::controller::rollout;
use crate::test_support::{DeploymentAt, deployment, microservice_at};
use crate::vocabulary::Reason;

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
        ready_condition(Some(&at(2, 1, 2, 2, 2))).reason,
        in_progress
    );
    assert_eq!(
        ready_condition(Some(&at(2, 2, 3, 1, 3))).reason,
        in_progress
    );
    let ready = ready_condition(Some(&at(2, 2, 3, 3, 3)));
    assert!(ready.status);
    assert_eq!(ready.reason, Reason::Available.as_str());
    assert!(!ready_condition(None).status);
    let failed = deployment(DeploymentAt {
        deadline_exceeded: true,
        ..DeploymentAt::complete(2, 3)
    });
    assert_eq!(
        ready_condition(Some(&failed)).reason,
        Reason::ProgressDeadlineExceeded.as_str()
    );
}

#[test]
fn a_second_pass_with_nothing_new_needs_no_write() {
    let mut ms = microservice_at(2, "  image: x\n");
    let valid = crate::validate::validate(&ms).expect("valid");
    let d = at(1, 1, 1, 1, 1);
    let rollout = rollout::transition(&rollout::Observed {
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
    // A new object: only Progressing is news.
    let first = events_for(None, &status_with(&healthy));
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].type_, first[0].reason.as_str()),
        (EventType::Normal, "RolloutInProgress")
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

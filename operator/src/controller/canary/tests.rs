//! Canary transitions through `rollout::transition`, on Deployments built by hand, with
//! the clock and the analysis samples given.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::analysis::{Sample, Track};
use crate::controller::rollout::{self, CanaryView, Template, Transition};
use crate::crd::{CanaryPhase, RolloutStatus};
use crate::test_support::{self, DeploymentAt, pod_template};
use crate::validate::{CanaryPolicy, Routing, Step, analysis_policy};

fn policy() -> CanaryPolicy {
    CanaryPolicy {
        steps: vec![
            Step::Weight(10),
            Step::Pause(Some(Duration::from_secs(60))),
            Step::Weight(50),
        ],
        analysis: analysis_policy(&Default::default()).expect("defaults"),
        routing: Routing::Replicas,
        promote: false,
    }
}

fn deployment(hash: &str, replicas: i32, complete: bool) -> Deployment {
    let mut d = test_support::deployment(DeploymentAt {
        generation: 3,
        observed: 3,
        replicas,
        updated: if complete { replicas } else { 0 },
        available: if complete { replicas } else { 0 },
        deadline_exceeded: false,
    });
    if let Some(spec) = d.spec.as_mut() {
        spec.template = pod_template(&format!("app:{hash}"), hash);
    }
    d
}

fn time(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time") + SignedDuration::from_secs(seconds)
}

fn track(requests: f64, success: f64, p99: f64) -> Track {
    Track {
        requests: Some(requests),
        success_rate: Some(success),
        p99_ms: Some(p99),
    }
}

fn sample(seconds: i64, canary: Track) -> Sample {
    Sample {
        at: time(seconds),
        window: Duration::from_secs(30),
        canary,
        stable: track(900.0, 100.0, 50.0),
        error: None,
    }
}

/// One pass: stable Deployment `stable`, desired template "new".
struct Pass<'a> {
    policy: &'a CanaryPolicy,
    stable: &'a Deployment,
    canary: Option<&'a Deployment>,
    previous: Option<&'a RolloutStatus>,
    sample: Option<&'a Sample>,
    promote: bool,
    now: i64,
}

/// A pass at `now` seconds with nothing else known yet.
fn at<'a>(policy: &'a CanaryPolicy, stable: &'a Deployment, now: i64) -> Pass<'a> {
    Pass {
        policy,
        stable,
        canary: None,
        previous: None,
        sample: None,
        promote: false,
        now,
    }
}

impl<'a> Pass<'a> {
    fn canary(self, canary: &'a Deployment) -> Self {
        Pass {
            canary: Some(canary),
            ..self
        }
    }

    /// After the pass that wrote `previous`.
    fn after(self, previous: &'a RolloutStatus) -> Self {
        Pass {
            previous: Some(previous),
            ..self
        }
    }

    fn sample(self, sample: &'a Sample) -> Self {
        Pass {
            sample: Some(sample),
            ..self
        }
    }

    fn promote(self) -> Self {
        Pass {
            promote: true,
            ..self
        }
    }

    fn run(&self) -> Transition {
        rollout::transition(&rollout::Observed {
            generation: 7,
            desired_template_hash: "new",
            auto_rollback: true,
            previous: self.previous,
            deployment: Some(self.stable),
            replica_sets: &[],
            canary: Some(CanaryView {
                policy: self.policy,
                desired_image: "app:new",
                deployment: self.canary,
                promote: self.promote,
                sample: self.sample,
                now: time(self.now),
            }),
        })
    }
}

fn phase(t: &Transition) -> (CanaryPhase, i32, i32) {
    let c = t.status.canary.as_ref().expect("canary status");
    (c.phase, c.step, c.weight)
}

fn condition(t: &Transition, type_: ConditionType) -> &ConditionSpec {
    t.conditions
        .iter()
        .find(|c| c.type_ == type_.as_str())
        .expect("condition")
}

#[test]
fn replica_split_keeps_the_weight_and_at_least_one_canary_pod() {
    assert_eq!(canary_replicas(9, 10), 1);
    assert_eq!(canary_replicas(5, 50), 5);
    assert_eq!(canary_replicas(1, 10), 1);
    assert_eq!(canary_replicas(18, 10), 2);
    assert_eq!(canary_replicas(0, 10), 1);
    assert_eq!(stable_share(10, 10), 9);
    assert_eq!(stable_share(10, 50), 5);
    for weight in [1, 5, 10, 25, 50, 75, 99] {
        for total in 1..60 {
            let s = stable_share(total, weight);
            assert!(s >= 1);
            let sum = s + canary_replicas(s, weight);
            assert!(sum >= total || s == total, "{total} at {weight}%: {s}+");
            if s > 1 {
                let smaller = s - 1 + canary_replicas(s - 1, weight);
                assert!(
                    smaller < total,
                    "{total} at {weight}%: {s} is not the least"
                );
            }
            if total >= 4 {
                let share = f64::from(canary_replicas(s, weight)) / f64::from(sum);
                assert!(
                    (share - f64::from(weight) / 100.0).abs() <= 1.0 / f64::from(sum) + 0.01
                        || canary_replicas(s, weight) == 1,
                    "{total} at {weight}%: share {share}"
                );
            }
        }
    }
}

#[test]
fn the_verdicts_name_the_metric_and_the_values() {
    let p = analysis_policy(&Default::default()).expect("defaults");
    assert!(matches!(
        evaluate(&p, &sample(0, track(300.0, 100.0, 52.0))),
        Verdict::Pass(_)
    ));
    let Verdict::Fail(why) = evaluate(&p, &sample(0, track(300.0, 80.0, 52.0))) else {
        panic!("20% errors must fail");
    };
    assert!(
        why.contains("success rate 80.00%") && why.contains("minSuccessRate 99"),
        "{why}"
    );
    let Verdict::Fail(why) = evaluate(&p, &sample(0, track(300.0, 100.0, 400.0))) else {
        panic!("8x the stable p99 must fail");
    };
    assert!(why.contains("p99 latency 400 ms"), "{why}");
    let Verdict::NoData(why) = evaluate(&p, &sample(0, track(3.0, 100.0, 50.0))) else {
        panic!("3 requests are not enough");
    };
    assert!(why.contains("minRequests 20"), "{why}");
    let mut down = sample(0, track(300.0, 100.0, 50.0));
    down.error = Some("Prometheus unreachable".into());
    let Verdict::NoData(why) = evaluate(&p, &down) else {
        panic!("no figures are no data, never a pass");
    };
    assert!(why.contains("Prometheus unreachable"), "{why}");
    let mut relative = p.clone();
    relative.min_success_rate = 90.0;
    let mut s = sample(0, track(300.0, 97.0, 50.0));
    s.stable.success_rate = Some(99.9);
    let Verdict::Fail(why) = evaluate(&relative, &s) else {
        panic!("2.9 points below the stable track must fail");
    };
    assert!(why.contains("below the stable track's 99.90%"), "{why}");
}

#[test]
fn a_good_canary_goes_through_every_step_and_is_promoted() {
    let policy = policy();
    let stable = deployment("old", 9, true);
    // A new template: the canary starts at 10% with one pod; the stable template is kept.
    let t = at(&policy, &stable, 0).run();
    assert_eq!(t.template, Template::Keep);
    assert_eq!(phase(&t), (CanaryPhase::Progressing, 0, 10));
    assert_eq!(t.canary_replicas, Some(1));
    assert_eq!(
        condition(&t, ConditionType::Progressing).reason,
        Reason::CanaryStep.as_str()
    );
    // Ready canary, but no check yet: the step waits.
    let canary = deployment("new", 1, true);
    let s1 = t.status.clone();
    let early = sample(10, track(100.0, 100.0, 50.0));
    let t = at(&policy, &stable, 12)
        .canary(&canary)
        .after(&s1)
        .sample(&early)
        .run();
    assert_eq!(
        phase(&t),
        (CanaryPhase::Progressing, 0, 10),
        "a sample from before one interval is no check"
    );
    // A passing check after an interval: on to the pause.
    let good = sample(31, track(100.0, 100.0, 50.0));
    let s2 = t.status.clone();
    let t = at(&policy, &stable, 32)
        .canary(&canary)
        .after(&s2)
        .sample(&good)
        .run();
    assert_eq!(phase(&t), (CanaryPhase::Progressing, 1, 10));
    let checks = &t.status.canary.as_ref().expect("canary").checks;
    assert_eq!(checks.success_rate, Some(100.0));
    assert!(
        checks
            .last_result
            .as_deref()
            .is_some_and(|r| r.starts_with("passed"))
    );
    // The pause holds for 60 s, then the weight goes to 50%: 9 canary pods beside 9.
    let s3 = t.status.clone();
    let t = at(&policy, &stable, 80)
        .canary(&canary)
        .after(&s3)
        .sample(&good)
        .run();
    assert_eq!(phase(&t), (CanaryPhase::Progressing, 1, 10));
    let s4 = t.status.clone();
    let t = at(&policy, &stable, 93)
        .canary(&canary)
        .after(&s4)
        .sample(&good)
        .run();
    assert_eq!(phase(&t), (CanaryPhase::Progressing, 2, 50));
    let s5 = t.status.clone();
    let t = at(&policy, &stable, 95)
        .canary(&canary)
        .after(&s5)
        .sample(&good)
        .run();
    assert_eq!(t.canary_replicas, Some(9));
    // The canary at 9 ready pods and a passing check: promotion. The stable Deployment
    // takes the new template; the canary stays until it is complete.
    let canary9 = deployment("new", 9, true);
    let good2 = sample(125, track(500.0, 99.8, 50.0));
    let s6 = t.status.clone();
    let t = at(&policy, &stable, 126)
        .canary(&canary9)
        .after(&s6)
        .sample(&good2)
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Promoting);
    assert_eq!(t.template, Template::Desired);
    assert_eq!(t.canary_replicas, Some(9));
    // The stable Deployment rolling to "new": the canary stays; complete: it goes.
    let s7 = t.status.clone();
    let rolling = deployment("new", 9, false);
    let t = at(&policy, &rolling, 130).canary(&canary9).after(&s7).run();
    assert_eq!(t.canary_replicas, Some(9));
    let done = deployment("new", 9, true);
    let s8 = t.status.clone();
    let t = at(&policy, &done, 150).canary(&canary9).after(&s8).run();
    assert_eq!(phase(&t).0, CanaryPhase::Promoted);
    assert_eq!(t.canary_replicas, None);
    assert_eq!(
        condition(&t, ConditionType::Progressing).reason,
        Reason::NewRevisionAvailable.as_str()
    );
}

#[test]
fn a_bad_canary_is_aborted_after_failure_limit_and_held() {
    let policy = policy();
    let stable = deployment("old", 4, true);
    let canary = deployment("new", 1, true);
    let start = at(&policy, &stable, 0).run();
    let bad = sample(31, track(200.0, 80.0, 50.0));
    let s = start.status.clone();
    let t = at(&policy, &stable, 32)
        .canary(&canary)
        .after(&s)
        .sample(&bad)
        .run();
    assert_eq!(
        phase(&t).0,
        CanaryPhase::Progressing,
        "one failure of a limit of 2"
    );
    assert_eq!(t.status.canary.as_ref().map(|c| c.checks.failed), Some(1));
    let s = t.status.clone();
    let bad2 = sample(62, track(200.0, 80.0, 50.0));
    let t = at(&policy, &stable, 63)
        .canary(&canary)
        .after(&s)
        .sample(&bad2)
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Aborted);
    assert_eq!(t.canary_replicas, None);
    assert_eq!(t.template, Template::Keep);
    assert_eq!(t.status.held_generation, Some(7));
    for type_ in [ConditionType::Degraded, ConditionType::RolledBack] {
        let c = condition(&t, type_);
        assert!(c.status);
        assert_eq!(c.reason, Reason::CanaryAnalysisFailed.as_str());
        assert!(c.message.contains("success rate 80.00%"), "{}", c.message);
    }
    // Held: the next pass keeps the stable template and no canary.
    let s = t.status.clone();
    let t = at(&policy, &stable, 70).canary(&canary).after(&s).run();
    assert_eq!(t.template, Template::Keep);
    assert_eq!(t.canary_replicas, None);
    assert_eq!(phase(&t).0, CanaryPhase::Aborted);
}

#[test]
fn no_data_waits_and_then_aborts_never_promotes() {
    let mut policy = policy();
    policy.analysis.no_data_timeout = Duration::from_secs(90);
    let stable = deployment("old", 4, true);
    let canary = deployment("new", 1, true);
    let mut status = at(&policy, &stable, 0).run().status;
    for now in [31, 62] {
        let empty = sample(now, track(0.0, 100.0, 50.0));
        let t = at(&policy, &stable, now + 1)
            .canary(&canary)
            .after(&status)
            .sample(&empty)
            .run();
        assert_eq!(
            phase(&t),
            (CanaryPhase::Progressing, 0, 10),
            "waits at {now}"
        );
        status = t.status;
    }
    let empty = sample(93, track(2.0, 100.0, 50.0));
    let t = at(&policy, &stable, 94)
        .canary(&canary)
        .after(&status)
        .sample(&empty)
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Aborted);
    assert!(
        condition(&t, ConditionType::RolledBack)
            .message
            .contains("noDataTimeout")
    );
    // Prometheus never answering at all is no data too.
    let t = at(&policy, &stable, 0).canary(&canary).run();
    let s = t.status.clone();
    let t = at(&policy, &stable, 91).canary(&canary).after(&s).run();
    assert_eq!(phase(&t).0, CanaryPhase::Aborted);
}

#[test]
fn promote_skips_the_steps_and_undo_aborts() {
    let mut policy = policy();
    policy.steps = vec![Step::Weight(20), Step::Pause(None)];
    let stable = deployment("old", 4, true);
    let canary = deployment("new", 1, true);
    let start = at(&policy, &stable, 0).run();
    let good = sample(31, track(100.0, 100.0, 50.0));
    let s = start.status.clone();
    let t = at(&policy, &stable, 32)
        .canary(&canary)
        .after(&s)
        .sample(&good)
        .run();
    let s = t.status.clone();
    let t = at(&policy, &stable, 40)
        .canary(&canary)
        .after(&s)
        .sample(&good)
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Paused);
    assert_eq!(
        condition(&t, ConditionType::Progressing).reason,
        Reason::CanaryPaused.as_str()
    );
    let paused = t.status.clone();
    let t = at(&policy, &stable, 500)
        .canary(&canary)
        .after(&paused)
        .promote()
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Promoting);
    assert_eq!(t.template, Template::Desired);
    // `kubectl rollout undo` of the stable Deployment during the canary: another template.
    let undone = deployment("older", 4, true);
    let t = at(&policy, &undone, 500)
        .canary(&canary)
        .after(&paused)
        .run();
    assert_eq!(phase(&t).0, CanaryPhase::Aborted);
    assert_eq!(t.canary_replicas, None);
    assert_eq!(t.template, Template::Keep);
    assert_eq!(t.status.held_generation, Some(7));
    let rolled_back = condition(&t, ConditionType::RolledBack);
    assert_eq!(rolled_back.reason, Reason::ManualRollback.as_str());
    assert!(!condition(&t, ConditionType::Degraded).status);
}

#[test]
fn a_spec_back_at_the_stable_template_supersedes_the_canary() {
    let policy = policy();
    let stable = deployment("old", 4, true);
    let t = at(&policy, &stable, 0).run();
    let back = rollout::transition(&rollout::Observed {
        generation: 8,
        desired_template_hash: "old",
        auto_rollback: true,
        previous: Some(&t.status),
        deployment: Some(&stable),
        replica_sets: &[],
        canary: Some(CanaryView {
            policy: &policy,
            desired_image: "app:old",
            deployment: None,
            promote: false,
            sample: None,
            now: time(5),
        }),
    });
    assert_eq!(back.canary_replicas, None);
    assert_eq!(phase(&back).0, CanaryPhase::Superseded);
    assert_eq!(back.template, Template::Desired);
}

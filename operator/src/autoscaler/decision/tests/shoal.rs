//! Shoal's additions to the HPA: the burst window, incomplete readings, rollouts, pause,
//! fallback, and the regressions seen by users.

use super::*;

fn rps_pods(values: &[Option<f64>], complete: bool, burst: Option<f64>) -> Metric {
    Metric {
        kind: MetricKind::RequestRate,
        target: 50.0,
        reading: Ok(Reading::Pods {
            pods: values
                .iter()
                .map(|&value| PodSample {
                    state: PodState::Ready,
                    value,
                    request: 0.0,
                })
                .collect(),
            window_complete: complete,
            burst,
        }),
    }
}

fn inputs(current: i32, metrics: Vec<Metric>) -> Inputs {
    let mut behavior = defaults();
    behavior.down.window_seconds = 0;
    Inputs {
        current,
        min: 1,
        max: 20,
        behavior,
        metrics,
        rollout_in_progress: false,
        paused: false,
        fallback: None,
    }
}

fn even(total: f64, pods: usize) -> Vec<Option<f64>> {
    vec![Some(total / pods as f64); pods]
}

#[test]
fn request_rate_proposes_total_over_target_per_replica() {
    let (d, _) = decide(
        &inputs(2, vec![rps_pods(&even(375.0, 2), true, None)]),
        &State::default(),
        NOW,
    );
    assert_eq!(
        d.desired, 6,
        "the default scale-up policy allows the larger of 4 pods and 100% per 15 s"
    );
    assert_eq!(d.raw_desired, Some(8));
    assert_eq!(d.limited_by(), Some(reason::SCALE_UP_LIMIT));
}

#[test]
fn the_burst_window_only_raises_and_is_remembered_by_a_zero_window() {
    // The stable window lags (reads 100 at 2 pods), the burst window sees 375.
    let mut i = inputs(2, vec![rps_pods(&even(100.0, 2), true, Some(375.0))]);
    i.behavior.up.policies = vec![Policy {
        kind: PolicyType::Pods,
        value: 100,
        period_seconds: 15,
    }];
    let (d, state) = decide(&i, &State::default(), NOW);
    assert_eq!(d.desired, 8);
    let (_, p) = d.driver().expect("driver");
    assert_eq!(p.window, Window::Burst);
    // Next tick at 8 replicas: the stable window still lags (200 over 8 pods of which 6 are
    // new and have no whole window yet), the burst window still reads 375: no scale-down.
    let mut pods = even(200.0, 2);
    pods.extend([None; 6]);
    i.current = 8;
    i.metrics = vec![rps_pods(&pods, true, Some(375.0))];
    let (d, state) = decide(&i, &state, NOW + 2_000);
    assert_eq!(d.desired, 8);
    // Even when the burst reading dips for a tick, the new pods count as at target.
    i.metrics = vec![rps_pods(&pods, true, None)];
    let (d, _) = decide(&i, &state, NOW + 4_000);
    assert_eq!(d.desired, 8, "no reversal under constant load");
    // A burst below the stable window never lowers.
    i.metrics = vec![rps_pods(&even(375.0, 8), true, Some(10.0))];
    let (d, _) = decide(&i, &State::default(), NOW);
    assert_eq!(d.desired, 8);
}

#[test]
fn a_half_read_window_after_a_gap_never_scales_down_but_may_scale_up() {
    // 7 replicas at 375 req/s; after a Prometheus gap the long window reads 21 req/s.
    let (d, _) = decide(
        &inputs(7, vec![rps_pods(&even(21.0, 7), false, Some(375.0))]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 7, "7 -> 2 at full load was the defect");
    let (d, _) = decide(
        &inputs(7, vec![rps_pods(&even(21.0, 7), false, None)]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 7);
    assert_eq!(d.limited_by(), Some(reason::INCOMPLETE_METRICS));
    // More load than the pods can take: an incomplete reading still raises.
    let (d, _) = decide(
        &inputs(7, vec![rps_pods(&even(600.0, 7), false, None)]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 12);
    // Once the window is whole again, a real drop scales down.
    let (d, _) = decide(
        &inputs(7, vec![rps_pods(&even(100.0, 7), true, Some(100.0))]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 2);
}

#[test]
fn new_pods_without_a_whole_window_count_as_at_target_when_scaling_down() {
    // 1 -> 8 under 375 req/s: the old pod's windowed rate is still high-ish, 7 new pods have
    // no whole window yet. Upstream's missing-pod rule keeps 8.
    let mut pods = vec![Some(120.0)];
    pods.extend([None; 7]);
    let (d, _) = decide(
        &inputs(8, vec![rps_pods(&pods, true, None)]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 8);
}

#[test]
fn slow_pods_that_are_not_ready_do_not_make_a_scale_down() {
    // 8 replicas, 2 ready (serving all the load), 6 starting.
    let mut metric = rps_pods(&even(375.0, 2), true, Some(375.0));
    if let Ok(Reading::Pods { pods, .. }) = &mut metric.reading {
        pods.extend((0..6).map(|_| PodSample {
            state: PodState::Unready,
            value: None,
            request: 0.0,
        }));
    }
    let (d, _) = decide(&inputs(8, vec![metric]), &State::default(), NOW);
    assert_eq!(d.desired, 8);
}

#[test]
fn the_period_start_counts_added_and_deleted_replicas_as_upstream() {
    // 1 -> 3 ten seconds ago, load gone; scale-down policy 1 pod per 60 s. Upstream's period
    // start is 3 - 2 + 0 = 1, so the HPA goes 3 -> 1 at once.
    let mut i = inputs(3, vec![rps_pods(&even(10.0, 3), true, Some(10.0))]);
    i.behavior.down.policies = vec![Policy {
        kind: PolicyType::Pods,
        value: 1,
        period_seconds: 60,
    }];
    let mut state = State::default();
    limits::record_scale(&mut state.scale_events, &i.behavior, 1, 3, NOW - 10_000);
    let (d, _) = decide(&i, &state, NOW);
    assert_eq!(d.desired, 1);
}

#[test]
fn a_failed_write_spends_no_rate_budget() {
    // decide() never records scale events: only a successful write does.
    let mut i = inputs(2, vec![rps_pods(&even(375.0, 2), true, None)]);
    i.behavior.up.policies = vec![Policy {
        kind: PolicyType::Pods,
        value: 1,
        period_seconds: 60,
    }];
    let (d, state) = decide(&i, &State::default(), NOW);
    assert_eq!(d.desired, 3);
    assert!(state.scale_events.up.is_empty());
    // The write failed: the next tick asks for the same step again.
    let (d, mut state) = decide(&i, &state, NOW + 2_000);
    assert_eq!(d.desired, 3);
    // It succeeded: the budget is spent for the period.
    limits::record_scale(&mut state.scale_events, &i.behavior, 2, 3, NOW + 2_000);
    i.current = 3;
    let (d, _) = decide(&i, &state, NOW + 4_000);
    assert_eq!(d.desired, 3);
    assert_eq!(d.limited_by(), Some(reason::SCALE_UP_LIMIT));
}

#[test]
fn stabilization_reasons_are_the_hpas() {
    let mut i = inputs(6, vec![rps_pods(&even(100.0, 6), true, Some(100.0))]);
    i.behavior.down.window_seconds = 300;
    let mut state = State {
        initialized: true,
        ..Default::default()
    };
    state.recommendations.push_back((NOW - 60_000, 6));
    let (d, _) = decide(&i, &state, NOW);
    assert_eq!(d.desired, 6);
    assert_eq!(d.able_to_scale.reason, reason::SCALE_DOWN_STABILIZED);
    assert!(!d.scaling_limited.status);
}

#[test]
fn a_missing_metric_holds_a_scale_down_and_allows_a_scale_up() {
    let cpu_missing = Metric {
        kind: MetricKind::Cpu,
        target: 70.0,
        reading: Err(MetricError::Timeout(std::time::Duration::from_secs(5))),
    };
    let (d, _) = decide(
        &inputs(
            6,
            vec![rps_pods(&even(50.0, 6), true, None), cpu_missing.clone()],
        ),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 6);
    assert_eq!(d.scaling_active.reason, reason::FAILED_GET_METRICS);
    assert!(
        d.scaling_active.message.contains("timed out"),
        "{}",
        d.scaling_active.message
    );
    let (d, _) = decide(
        &inputs(6, vec![rps_pods(&even(500.0, 6), true, None), cpu_missing]),
        &State::default(),
        NOW,
    );
    assert_eq!(d.desired, 10);
}

#[test]
fn bounds_apply_even_without_metrics() {
    let none = Metric {
        kind: MetricKind::RequestRate,
        target: 50.0,
        reading: Err(MetricError::NoData("x".into())),
    };
    let mut i = inputs(25, vec![none.clone()]);
    let (d, _) = decide(&i, &State::default(), NOW);
    assert_eq!(d.desired, 20);
    i.current = 1;
    i.min = 3;
    let (d, _) = decide(&i, &State::default(), NOW);
    assert_eq!(d.desired, 3);
    assert_eq!(d.limited_by(), Some(reason::TOO_FEW_REPLICAS));
}

#[test]
fn no_metric_holds_then_the_fallback_floor_applies() {
    let none = Metric {
        kind: MetricKind::RequestRate,
        target: 50.0,
        reading: Err(MetricError::NoData("x".into())),
    };
    let mut i = inputs(2, vec![none]);
    i.fallback = Some((5, 2));
    let (d, state) = decide(&i, &State::default(), NOW);
    assert_eq!(
        (d.desired, d.scaling_active.reason),
        (2, reason::FAILED_GET_METRICS)
    );
    let (d, _) = decide(&i, &state, NOW + 2_000);
    assert_eq!((d.desired, d.limited_by()), (5, Some(reason::FALLBACK)));
}

#[test]
fn rollout_paused_and_zero_hold() {
    let mut i = inputs(6, vec![rps_pods(&even(50.0, 6), true, None)]);
    i.rollout_in_progress = true;
    let (d, _) = decide(&i, &State::default(), NOW);
    assert_eq!(
        (d.desired, d.limited_by()),
        (6, Some(reason::ROLLOUT_IN_PROGRESS))
    );
    i.rollout_in_progress = false;
    i.paused = true;
    assert_eq!(decide(&i, &State::default(), NOW).0.desired, 6);
    i.paused = false;
    i.current = 0;
    assert_eq!(decide(&i, &State::default(), NOW).0.desired, 0);
}

#[test]
fn a_custom_query_total_is_held_to_the_tolerance() {
    let total = |v: f64| Metric {
        kind: MetricKind::RequestRate,
        target: 50.0,
        reading: Ok(Reading::Total { value: v }),
    };
    assert_eq!(
        decide(&inputs(4, vec![total(210.0)]), &State::default(), NOW)
            .0
            .desired,
        4
    );
    assert_eq!(
        decide(&inputs(4, vec![total(400.0)]), &State::default(), NOW)
            .0
            .desired,
        8
    );
}

#[test]
fn state_stays_bounded() {
    let mut i = inputs(4, vec![rps_pods(&even(200.0, 4), true, None)]);
    i.behavior.down.window_seconds = 60;
    let mut state = State::default();
    for tick in 0..1000 {
        let (_, s) = decide(&i, &state, NOW + tick * 2_000);
        state = s;
    }
    assert!(
        state.recommendations.len() <= 31,
        "{}",
        state.recommendations.len()
    );
}

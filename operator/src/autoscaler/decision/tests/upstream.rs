//! Upstream's decision tables, ported with their inputs and expected results.

use super::*;
use crate::autoscaler::decision::limits::{
    change_in_period, limit, record_scale, scale_down_limit, scale_up_limit,
};
use crate::autoscaler::decision::proposals::{plain_metric_replicas, resource_replicas};
use crate::autoscaler::decision::stabilize::stabilize;

fn reason_of(l: Limit) -> &'static str {
    match l {
        Limit::DesiredWithinRange => "DesiredWithinRange",
        Limit::ScaleUpLimit => "ScaleUpLimit",
        Limit::ScaleDownLimit => "ScaleDownLimit",
        Limit::TooManyReplicas => "TooManyReplicas",
        Limit::TooFewReplicas => "TooFewReplicas",
    }
}

/// upstream `TestScalingWithRules` (horizontal_test.go): rate policies, period start from
/// both directions' events, and bounds. Columns: name, up events, down events, min, max,
/// up rules, down rules, current, prenormalized desired, expected, expected condition.
#[rustfmt::skip]
#[test]
fn test_scaling_with_rules() {
    type R = Option<Rules>;
    let none: &[i32] = &[];
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &[i32], &[i32], i32, i32, R, R, i32, i32, i32, &str)> = vec![
        ("prenormalized desired replicas within range", none, none, 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
        ("prenormalized desired replicas < minReplicas", none, none, 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
        ("prenormalized desired replicas within range when minReplicas is 0", none, none, 0, 10, None, None, 1, 0, 0, "DesiredWithinRange"),
        ("maxReplicas is the limit because maxReplicas < scaleUpLimit", none, none, 1, 10, None, None, 20, 1000, 10, "TooManyReplicas"),
        ("desired replica count is more than the maximum replica count", none, none, 100, 150, None, None, 100, 1000, 150, "TooManyReplicas"),
        ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", none, none, 1, 2000, Some(rules(0, 0, 1, 60, 0)), None, 3, 1000, 4, "ScaleUpLimit"),
        ("scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies", none, none, 3, 2000, None, Some(rules(20, 60, 0, 0, 0)), 1000, 3, 980, "ScaleDownLimit"),
        ("scaleUp with default behavior", none, none, 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
        ("scaleUp with pods policy larger than percent policy", none, none, 1, 1000, Some(rules(100, 60, 100, 60, 0)), None, 10, 500, 110, "ScaleUpLimit"),
        ("scaleUp with percent policy larger than pods policy", none, none, 1, 1000, Some(rules(2, 60, 100, 60, 0)), None, 10, 500, 20, "ScaleUpLimit"),
        ("scaleUp with spec MaxReplicas limitation with large pod policy", none, none, 1, 1000, Some(rules(100, 60, 0, 0, 0)), None, 10, 50, 50, "DesiredWithinRange"),
        ("scaleUp with spec MaxReplicas limitation with large percent policy", none, none, 1, 1000, Some(rules(10000, 60, 0, 0, 0)), None, 10, 50, 50, "DesiredWithinRange"),
        ("scaleUp with pod policy limitation", none, none, 1, 1000, Some(rules(30, 60, 0, 0, 0)), None, 10, 50, 40, "ScaleUpLimit"),
        ("scaleUp with percent policy limitation", none, none, 1, 1000, Some(rules(0, 0, 200, 60, 0)), None, 10, 50, 30, "ScaleUpLimit"),
        ("scaleDown with percent policy larger than pod policy", none, none, 1, 1000, None, Some(rules(20, 60, 1, 60, 300)), 100, 2, 80, "ScaleDownLimit"),
        ("scaleDown with pod policy larger than percent policy", none, none, 1, 1000, None, Some(rules(2, 60, 1, 60, 300)), 100, 2, 98, "ScaleDownLimit"),
        ("scaleDown with spec MinReplicas=nil limitation with large pod policy", none, none, 1, 1000, None, Some(rules(100, 60, 0, 0, 300)), 10, 0, 1, "TooFewReplicas"),
        ("scaleDown with spec MinReplicas limitation with large pod policy", none, none, 1, 1000, None, Some(rules(100, 60, 0, 0, 300)), 10, 0, 1, "TooFewReplicas"),
        ("scaleDown with spec MinReplicas limitation with large percent policy", none, none, 5, 1000, None, Some(rules(0, 0, 100, 60, 300)), 10, 2, 5, "TooFewReplicas"),
        ("scaleDown with pod policy limitation", none, none, 1, 1000, None, Some(rules(5, 60, 0, 0, 300)), 10, 2, 5, "ScaleDownLimit"),
        ("scaleDown with percent policy limitation", none, none, 1, 1000, None, Some(rules(0, 0, 50, 60, 300)), 10, 5, 5, "DesiredWithinRange"),
        ("scaleUp with spec MaxReplicas limitation with large pod policy and events", &[1, 5, 9], none, 1, 200, Some(rules(300, 60, 0, 0, 0)), None, 100, 500, 200, "TooManyReplicas"),
        ("scaleUp with spec MaxReplicas limitation with large percent policy and events", &[1, 5, 9], none, 1, 200, Some(rules(0, 0, 10000, 60, 0)), None, 100, 500, 200, "TooManyReplicas"),
        ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", &[1, 5, 9], none, 1, 1000, Some(rules(5, 120, 0, 0, 0)), None, 100, 500, 100, "ScaleUpLimit"),
        ("scaleUp with pod policy and previous scale up events", &[1, 5, 9], none, 1, 1000, Some(rules(150, 120, 0, 0, 0)), None, 100, 500, 235, "ScaleUpLimit"),
        ("scaleUp with percent policy and previous scale up events", &[1, 5, 9], none, 1, 1000, Some(rules(0, 0, 200, 120, 0)), None, 100, 500, 255, "ScaleUpLimit"),
        ("scaleUp with percent policy and previous scale up and down events", &[4], &[2], 1, 1000, Some(rules(0, 0, 300, 300, 0)), None, 6, 24, 16, "ScaleUpLimit"),
        ("scaleDown with default policy and previous events", none, &[1, 5, 9], 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange"),
        ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", none, &[1, 5, 9], 1, 1000, None, Some(rules(115, 120, 0, 0, 300)), 100, 0, 1, "TooFewReplicas"),
        ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", none, &[1, 5, 9], 5, 1000, None, Some(rules(130, 120, 0, 0, 300)), 100, 0, 5, "TooFewReplicas"),
        ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", none, &[1, 5, 9], 5, 1000, None, Some(rules(0, 0, 100, 120, 300)), 100, 2, 5, "TooFewReplicas"),
        ("scaleDown with pod policy limitation and previous events", none, &[1, 5, 9], 1, 1000, None, Some(rules(5, 120, 0, 0, 300)), 100, 2, 100, "ScaleDownLimit"),
        ("scaleDown with percent policy limitation and previous events", none, &[2, 4, 6], 1, 1000, None, Some(rules(0, 0, 50, 120, 300)), 100, 0, 56, "ScaleDownLimit"),
        ("scaleDown with percent policy and previous scale up and down events", &[2], &[4], 1, 1000, None, Some(rules(0, 0, 50, 180, 0)), 10, 1, 6, "ScaleDownLimit"),
        ("scaleDown with previous events preventing further scale down", none, &[10, 10, 10], 1, 1000, None, Some(rules(0, 0, 10, 120, 300)), 100, 0, 100, "ScaleDownLimit"),
        ("scaleDown with with previous events still allowing more scale down", none, &[10, 10, 10], 1, 1000, None, Some(rules(0, 0, 1000, 120, 300)), 10, 5, 5, "DesiredWithinRange"),
        ("check 'outdated' flag for events for one behavior for up", &[8, 12, 9, 11], none, 1, 1000, Some(rules(1000, 60, 0, 0, 0)), None, 100, 200, 200, "DesiredWithinRange"),
        ("check that events were not marked 'outdated' for two different policies in the behavior for up", &[8, 12, 9, 11], none, 1, 1000, Some(rules(1000, 120, 100, 60, 0)), None, 100, 200, 200, "DesiredWithinRange"),
        ("check that events were marked 'outdated' for two different policies in the behavior for up", &[8, 12, 9, 11], none, 1, 1000, Some(rules(1000, 30, 100, 60, 0)), None, 100, 200, 200, "DesiredWithinRange"),
        ("check 'outdated' flag for events for one behavior for down", none, &[8, 12, 9, 11], 1, 1000, None, Some(rules(1000, 60, 0, 0, 300)), 100, 5, 5, "DesiredWithinRange"),
        ("check that events were not marked 'outdated' for two different policies in the behavior for down", none, &[8, 12, 9, 11], 1, 1000, None, Some(rules(1000, 120, 100, 60, 300)), 100, 5, 5, "DesiredWithinRange"),
        ("check that events were marked 'outdated' for two different policies in the behavior for down", none, &[8, 12, 9, 11], 1, 1000, None, Some(rules(1000, 30, 100, 60, 300)), 100, 5, 5, "DesiredWithinRange"),
    ];
    for (name, up, down, min, max, up_rules, down_rules, current, desired, expected, condition) in
        cases
    {
        let d = defaults();
        let behavior = Behavior {
            up: up_rules.unwrap_or(d.up),
            down: down_rules.unwrap_or(d.down),
        };
        let events = ScaleEvents {
            up: uniform(up, 120, NOW),
            down: uniform(down, 120, NOW),
        };
        let (got, why) = limit(current, desired, min, max, &behavior, &events, NOW);
        assert_eq!((got, reason_of(why)), (expected, condition), "{name}");
    }
}

/// upstream `TestCalculateScaleUpLimitWithScalingRules` and
/// `TestCalculateScaleDownLimitWithBehaviors`: the Min select policy.
#[rustfmt::skip]
#[test]
fn test_calculate_limits_with_min_select_policy() {
    let mut r = rules(2, 60, 50, 60, 300);
    r.select = SelectPolicy::Min;
    assert_eq!(scale_up_limit(1, &ScaleEvents::default(), &r, NOW), 2);
    assert_eq!(scale_down_limit(5, &ScaleEvents::default(), &r, NOW), 3);
}

/// upstream `TestNormalizeDesiredReplicasWithBehavior`: the stabilized count of both
/// windows. Columns: name, recommendations (count, seconds ago), current, prenormalized,
/// expected, up window, down window.
#[rustfmt::skip]
#[test]
fn test_normalize_desired_replicas_with_behavior() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &[(i32, i64)], i32, i32, i32, i64, i64)> = vec![
        ("empty recommendations for scaling down", &[], 100, 5, 5, 0, 0),
        ("simple scale down stabilization", &[(4, 120), (5, 60)], 100, 3, 5, 0, 180),
        ("simple scale up stabilization", &[(4, 120), (5, 60)], 1, 7, 4, 300, 0),
        ("no scale down stabilization", &[(1, 120), (2, 60)], 100, 3, 3, 300, 0),
        ("no scale up stabilization", &[(4, 120), (5, 60)], 1, 3, 3, 0, 300),
        ("no scale down stabilization, reuse recommendation element", &[(10, 600), (9, 540)], 100, 3, 3, 0, 0),
        ("no scale up stabilization, reuse recommendation element", &[(10, 600), (9, 540)], 1, 100, 100, 0, 0),
        ("scale down stabilization, reuse one of obsolete recommendation element", &[(10, 600), (4, 60), (5, 120), (9, 540)], 100, 3, 5, 0, 180),
        ("scale up stabilization, reuse one of obsolete recommendation element", &[(10, 6000), (6, 60), (5, 120), (9, 180)], 1, 100, 5, 300, 0),
        ("scale up and down stabilization, do not scale up when prenormalized rec goes down", &[(2, 6000), (3, 180)], 2, 1, 2, 300, 300),
        ("scale up and down stabilization, do not scale down when prenormalized rec goes up", &[(2, 6000), (1, 180)], 2, 3, 2, 300, 300),
    ];
    for (name, recs, current, desired, expected, up, down) in cases {
        let mut behavior = defaults();
        behavior.up.window_seconds = up;
        behavior.down.window_seconds = down;
        let mut history: VecDeque<(i64, i32)> =
            recs.iter().map(|&(n, ago)| (NOW - ago * 1000, n)).collect();
        let (got, _) = stabilize(&behavior, current, desired, &mut history, NOW);
        assert_eq!(got, expected, "{name}");
        assert_eq!(
            history.back(),
            Some(&(NOW, desired)),
            "{name}: the raw recommendation is recorded"
        );
        assert!(
            history.iter().all(|&(t, _)| t >= NOW - up.max(down) * 1000),
            "{name}: the history is bounded"
        );
    }
}

/// upstream `TestNormalizeDesiredReplicas` (no behavior: a 5 minute scale-down window).
#[rustfmt::skip]
#[test]
fn test_normalize_desired_replicas() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &[(i32, i64)], i32, i32)> = vec![
        ("empty log", &[], 5, 5),
        ("stabilize", &[(4, 120), (5, 60)], 3, 5),
        ("no stabilize", &[(1, 120), (2, 60)], 3, 3),
        ("no stabilize - old recommendations", &[(10, 600), (9, 540)], 3, 3),
        ("stabilize - old recommendations", &[(10, 600), (4, 60), (5, 120), (9, 540)], 3, 5),
    ];
    for (name, recs, desired, expected) in cases {
        let behavior = defaults();
        let mut history: VecDeque<(i64, i32)> =
            recs.iter().map(|&(n, ago)| (NOW - ago * 1000, n)).collect();
        // Upstream's no-behavior path takes the highest recommendation of the scale-down
        // window; a current count above all of them lets the scale-up window not bind.
        let (got, _) = stabilize(&behavior, 100, desired, &mut history, NOW);
        assert_eq!(got, expected, "{name}");
    }
}

/// upstream `TestStoreScaleEvents`: the change within the last 60 s before a new event, and
/// the events kept after it (older than the longest period are dropped).
#[rustfmt::skip]
#[test]
fn test_store_scale_events() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &[(i32, i64)], Rules, i32, usize)> = vec![
        ("empty entries with two-policy-behavior", &[], rules(10, 60, 100, 60, 0), 0, 1),
        ("one outdated entry to be replaced with behavior", &[(7, 61)], rules(10, 60, 100, 60, 0), 0, 1),
        ("one actual entry to be not touched with behavior", &[(7, 58)], rules(10, 60, 100, 60, 0), 7, 2),
        ("two entries, one of them to be replaced", &[(7, 61), (6, 59)], rules(10, 60, 0, 0, 0), 6, 2),
        ("replace one entry, use policies with different periods", &[(8, 29), (6, 59), (7, 61), (9, 61)], rules(10, 60, 100, 30, 0), 14, 3),
        ("two entries, both actual", &[(7, 58), (6, 59)], rules(10, 120, 100, 30, 0), 13, 3),
    ];
    for (name, previous, r, expected_change, kept) in cases {
        for up in [true, false] {
            let list: VecDeque<(i64, i32)> = previous
                .iter()
                .map(|&(n, ago)| (NOW - ago * 1000, n))
                .collect();
            let mut events = ScaleEvents::default();
            let behavior = Behavior {
                up: r.clone(),
                down: r.clone(),
            };
            if up {
                events.up = list
            } else {
                events.down = list
            }
            let before = if up { &events.up } else { &events.down };
            assert_eq!(change_in_period(before, 60, NOW), expected_change, "{name}");
            let to = if up { 15 } else { 5 };
            record_scale(&mut events, &behavior, 10, to, NOW);
            let after = if up { &events.up } else { &events.down };
            assert_eq!(after.len(), kept, "{name} (up: {up})");
            assert_eq!(after.back(), Some(&(NOW, 5)), "{name}");
        }
    }
}

fn pod(state: PodState, value: Option<f64>, request: f64) -> PodSample {
    PodSample {
        state,
        value,
        request,
    }
}

/// upstream `replica_calculator_test.go`, CPU (resource) cases: per-pod usage in
/// milli-cores, requests in cores, target utilization in percent; a pod whose readiness is
/// False is Unready, a Failed pod is Ignored, a pod beyond the metric levels has no data.
/// Columns: name, tolerances (down, up), current, target, pods (state, usage m, request),
/// expected replicas, expected utilization.
#[rustfmt::skip]
#[test]
fn test_replica_calc_resource() {
    use PodState::*;
    let t = DEFAULT_TOLERANCE;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, (f64, f64), i32, f64, Vec<(PodState, Option<f64>, f64)>, i32, i64)> = vec![
        ("TestReplicaCalcScaleUp", (t, t), 3, 30.0, vec![(Ready, Some(300.0), 1.0), (Ready, Some(500.0), 1.0), (Ready, Some(700.0), 1.0)], 5, 50),
        ("TestReplicaCalcScaleUpUnreadyLessScale", (t, t), 3, 30.0, vec![(Unready, Some(300.0), 1.0), (Ready, Some(500.0), 1.0), (Ready, Some(700.0), 1.0)], 4, 60),
        ("TestReplicaCalcScaleUpUnreadyNoScale", (t, t), 3, 30.0, vec![(Ready, Some(400.0), 1.0), (Unready, Some(500.0), 1.0), (Unready, Some(700.0), 1.0)], 3, 40),
        ("TestReplicaCalcScaleUpIgnoresFailedPods", (t, t), 2, 30.0, vec![(Ready, Some(500.0), 1.0), (Ready, Some(700.0), 1.0), (Ignored, None, 1.0), (Ignored, None, 1.0)], 4, 60),
        ("TestReplicaCalcScaleDown", (t, t), 5, 50.0, vec![(Ready, Some(100.0), 1.0), (Ready, Some(300.0), 1.0), (Ready, Some(500.0), 1.0), (Ready, Some(250.0), 1.0), (Ready, Some(250.0), 1.0)], 3, 28),
        ("TestReplicaCalcScaleDownExcludeUnreadyPods", (t, t), 5, 50.0, vec![(Ready, Some(100.0), 1.0), (Ready, Some(300.0), 1.0), (Ready, Some(500.0), 1.0), (Unready, Some(250.0), 1.0), (Unready, Some(250.0), 1.0)], 2, 30),
        ("TestReplicaCalcTolerance", (t, t), 3, 100.0, vec![(Ready, Some(1010.0), 0.9), (Ready, Some(1030.0), 1.0), (Ready, Some(1020.0), 1.1)], 3, 102),
        ("TestReplicaCalcMissingMetricsNoChangeEq", (t, t), 2, 100.0, vec![(Ready, Some(1000.0), 1.0), (Ready, None, 1.0)], 2, 100),
        ("TestReplicaCalcMissingMetricsNoChangeGt", (t, t), 2, 100.0, vec![(Ready, Some(1900.0), 1.0), (Ready, None, 1.0)], 2, 190),
        ("TestReplicaCalcMissingMetricsNoChangeLt", (t, t), 2, 100.0, vec![(Ready, Some(600.0), 1.0), (Ready, None, 1.0)], 2, 60),
        ("TestReplicaCalcMissingMetricsUnreadyChange", (t, t), 3, 50.0, vec![(Unready, Some(100.0), 1.0), (Ready, Some(450.0), 1.0), (Ready, None, 1.0)], 3, 45),
        ("TestReplicaCalcMissingMetricsUnreadyScaleUp", (t, t), 3, 50.0, vec![(Unready, Some(100.0), 1.0), (Ready, Some(2000.0), 1.0), (Ready, None, 1.0)], 4, 200),
        ("TestReplicaCalcMissingMetricsUnreadyScaleDown", (t, t), 4, 50.0, vec![(Unready, Some(100.0), 1.0), (Ready, Some(100.0), 1.0), (Ready, Some(100.0), 1.0), (Ready, None, 1.0)], 3, 10),
        ("TestReplicaCalcMissingMetricsScaleDownTargetOver100", (t, t), 4, 300.0, vec![(Unready, Some(200.0), 1.0), (Ready, Some(100.0), 1.0), (Ready, Some(100.0), 2.0), (Ready, None, 2.0)], 2, 6),
        ("TestReplicaCalcConfigurableTolerance: Outside of a 0% tolerance", (0.0, 0.0), 3, 100.0, vec![(Ready, Some(909.0), 0.9), (Ready, Some(1010.0), 1.0), (Ready, Some(1111.0), 1.1)], 4, 101),
        ("TestReplicaCalcConfigurableTolerance: Within a 200% scale-up tolerance", (t, 2.0), 3, 100.0, vec![(Ready, Some(1890.0), 0.9), (Ready, Some(1910.0), 1.0), (Ready, Some(1900.0), 1.1)], 3, 190),
        ("TestReplicaCalcConfigurableTolerance: Outside 8% scale-up tolerance", (2.0, 0.08), 3, 100.0, vec![(Ready, Some(1100.0), 0.9), (Ready, Some(1080.0), 1.0), (Ready, Some(1090.0), 1.1)], 4, 109),
        ("TestReplicaCalcConfigurableTolerance: Within a 36% scale-down tolerance", (0.36, t), 3, 100.0, vec![(Ready, Some(660.0), 0.9), (Ready, Some(640.0), 1.0), (Ready, Some(650.0), 1.1)], 3, 65),
        ("TestReplicaCalcConfigurableTolerance: Outside a 34% scale-down tolerance", (0.34, t), 3, 100.0, vec![(Ready, Some(660.0), 0.9), (Ready, Some(640.0), 1.0), (Ready, Some(650.0), 1.1)], 2, 65),
    ];
    for (name, (down, up), current, target, pods, expected, utilization) in cases {
        let pods: Vec<PodSample> = pods
            .into_iter()
            .map(|(s, v, r)| pod(s, v.map(|m| m / 1000.0), r))
            .collect();
        let tolerances = Tolerances { up, down };
        let (got, used) = resource_replicas(current, target, tolerances, &pods).expect(name);
        assert_eq!(got, expected, "{name}");
        assert_eq!((used + 1e-9) as i64, utilization, "{name}");
    }
}

/// upstream `replica_calculator_test.go`, pods-metric cases (`calcPlainMetricReplicas`):
/// per-pod values against a per-pod target, in milli-units; readiness does not exclude
/// pods of a pods metric upstream, so all are Ready; pods beyond the levels have no data.
/// Columns: name, current, target, levels, pods, expected replicas.
#[rustfmt::skip]
#[test]
fn test_replica_calc_plain_metric() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, i32, f64, Vec<f64>, usize, i32)> = vec![
        ("TestReplicaCalcScaleUpCM", 3, 15000.0, vec![20000.0, 10000.0, 30000.0], 3, 4),
        ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", 3, 15000.0, vec![50000.0, 10000.0, 30000.0], 3, 6),
        ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", 3, 15000.0, vec![50000.0, 15000.0, 30000.0], 3, 7),
        ("TestReplicaCalcScaleDownCM", 5, 20000.0, vec![12000.0; 5], 5, 3),
        ("TestReplicaCalcToleranceCM", 3, 20000.0, vec![20000.0, 21000.0, 21000.0], 3, 3),
        ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", 5, 20000.0, vec![20000.0, 19000.0, 21000.0], 5, 5),
    ];
    for (name, current, target, levels, pods, expected) in cases {
        let pods: Vec<PodSample> = (0..pods)
            .map(|i| pod(PodState::Ready, levels.get(i).copied(), 0.0))
            .collect();
        let (got, _) =
            plain_metric_replicas(current, target, Tolerances::default(), &pods).expect(name);
        assert_eq!(got, expected, "{name}");
    }
}

/// upstream `TestReplicaCalcMissingMetrics`/`TestReplicaCalcEmptyMetrics`: no metric for
/// any targeted pod is an error, never a zero.
#[rustfmt::skip]
#[test]
fn test_replica_calc_empty_metrics_is_an_error() {
    let pods = vec![
        pod(PodState::Ready, None, 1.0),
        pod(PodState::Unready, Some(1.0), 1.0),
    ];
    assert!(resource_replicas(2, 50.0, Tolerances::default(), &pods).is_err());
    assert!(plain_metric_replicas(2, 50.0, Tolerances::default(), &pods).is_err());
}

/// upstream `TestScaleDownStabilizeInitialSize`/`recordInitialRecommendation`: a new
/// autoscaler records the current count, so the scale-down window starts with it.
#[rustfmt::skip]
#[test]
fn test_scale_down_stabilize_initial_size() {
    let inputs = Inputs {
        current: 4,
        min: 1,
        max: 5,
        behavior: defaults(),
        metrics: vec![Metric {
            kind: MetricKind::Cpu,
            target: 100.0,
            reading: Ok(Reading::Pods {
                pods: (0..4)
                    .map(|_| pod(PodState::Ready, Some(0.05), 0.1))
                    .collect(),
                window_complete: true,
                burst: None,
            }),
        }],
        rollout_in_progress: false,
        paused: false,
        fallback: None,
    };
    let (decision, state) = decide(&inputs, &State::default(), NOW);
    assert_eq!(decision.desired, 4);
    assert_eq!(decision.able_to_scale.reason, reason::SCALE_DOWN_STABILIZED);
    // Upstream TestStabilizeDownscale: an older higher recommendation outside the window
    // does not hold; one inside does.
    let mut old = state.clone();
    old.recommendations = VecDeque::from([(NOW - 600_000, 10), (NOW - 60_000, 4)]);
    let (decision, _) = decide(&inputs, &old, NOW);
    assert_eq!(decision.desired, 4);
    assert_eq!(decision.able_to_scale.reason, reason::SCALE_DOWN_STABILIZED);
}

//! The scaling decision: a pure function following the upstream HPA algorithm
//! (`pkg/controller/podautoscaler`): per-metric proposals with a 10% tolerance, the largest
//! proposal wins, scale-down stabilization, scale-up/scale-down rate policies, min/max clamp.
//! Two additions: a short-window burst signal lets a sudden jump scale up on the next tick
//! while scale-down follows the long window (Knative's stable/panic idea), and missing data
//! never scales down.

use std::collections::VecDeque;

use crate::conditions::ConditionSpec;
use crate::crd::{PolicyType, ScalingBehavior, ScalingRules, SelectPolicy};

// Condition types and reasons live in the shared vocabulary.
pub use crate::vocabulary::scaling::{ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED, reason};

/// The HPA's tolerance: no change while the usage ratio is within 10% of 1.
pub const TOLERANCE: f64 = 0.1;

/// Which metric a reading is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Total requests per second of the service; the target is per replica.
    RequestRate,
    /// Average CPU utilization of the ready pods, in percent of their requests.
    Cpu,
}

impl MetricKind {
    /// Name used in status and events.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::RequestRate => "requestRate",
            MetricKind::Cpu => "cpu",
        }
    }
}

/// One metric as read this tick.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricInput {
    /// Which metric.
    pub kind: MetricKind,
    /// Target: requests/s per replica, or utilization percent.
    pub target: f64,
    /// Value over the long (stable) window; Err with the reason when there is no data.
    pub value: Result<f64, String>,
    /// Value over the short (burst) window, used only to scale up faster.
    pub burst: Option<f64>,
}

/// Scaling rules with the HPA's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Stabilization window in seconds.
    pub window_seconds: i64,
    /// Which policy wins.
    pub select: SelectPolicy,
    /// (type, value, period seconds).
    pub policies: Vec<(PolicyType, i32, i64)>,
}

/// Resolved behavior in both directions.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// Scale-up rules.
    pub up: Rules,
    /// Scale-down rules.
    pub down: Rules,
}

impl Behavior {
    /// The HPA defaults, overridden by what the spec sets. `down_window_default` lets the
    /// operator choose the default scale-down window (300 s like the HPA unless configured).
    pub fn resolve(spec: Option<&ScalingBehavior>, down_window_default: i64) -> Behavior {
        let up_default = Rules {
            window_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![(PolicyType::Pods, 4, 15), (PolicyType::Percent, 100, 15)],
        };
        let down_default = Rules {
            window_seconds: down_window_default,
            select: SelectPolicy::Max,
            policies: vec![(PolicyType::Percent, 100, 15)],
        };
        let merge = |rules: Option<&ScalingRules>, default: Rules| match rules {
            None => default,
            Some(r) => Rules {
                window_seconds: r
                    .stabilization_window_seconds
                    .map(i64::from)
                    .unwrap_or(default.window_seconds),
                select: r.select_policy.unwrap_or(default.select),
                policies: r
                    .policies
                    .as_ref()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| (p.type_, p.value, i64::from(p.period_seconds)))
                            .collect()
                    })
                    .unwrap_or(default.policies),
            },
        };
        Behavior {
            up: merge(spec.and_then(|b| b.scale_up.as_ref()), up_default),
            down: merge(spec.and_then(|b| b.scale_down.as_ref()), down_default),
        }
    }
}

/// Everything the decision needs for one Microservice at one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// `spec.replicas` of the Deployment.
    pub current: i32,
    /// Ready pods (CPU utilization is averaged over them).
    pub ready: i32,
    /// minReplicas.
    pub min: i32,
    /// maxReplicas.
    pub max: i32,
    /// Resolved behavior.
    pub behavior: Behavior,
    /// The metrics read this tick.
    pub metrics: Vec<MetricInput>,
    /// A rollout is in progress: no scale-down.
    pub rollout_in_progress: bool,
    /// Autoscaling is paused: hold.
    pub paused: bool,
    /// Replica floor once all metrics have failed `after` consecutive ticks: (replicas, after).
    pub fallback: Option<(i32, u32)>,
}

/// What the autoscaler remembers between ticks, per Microservice (bounded by the windows).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// (time in ms, raw recommendation), newest last.
    pub recommendations: VecDeque<(i64, i32)>,
    /// (time in ms, replica change), newest last.
    pub scale_events: VecDeque<(i64, i32)>,
    /// Consecutive ticks on which no metric could be read.
    pub failures: u32,
}

/// The outcome of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to have; equal to `current` when nothing changes.
    pub desired: i32,
    /// The largest per-metric proposal, before stabilization and limits.
    pub raw_desired: Option<i32>,
    /// Per-metric proposals (None: no data).
    pub proposals: Vec<(MetricKind, Option<i32>)>,
    /// Condition AbleToScale.
    pub able_to_scale: ConditionSpec,
    /// Condition ScalingActive.
    pub scaling_active: ConditionSpec,
    /// Condition ScalingLimited.
    pub scaling_limited: ConditionSpec,
}

impl Decision {
    /// The reason the count was limited, if it was.
    pub fn limited_by(&self) -> Option<&'static str> {
        self.scaling_limited
            .status
            .then_some(self.scaling_limited.reason)
    }
}

fn proposal(metric: &MetricInput, current: i32, ready: i32) -> Option<i32> {
    let value = *metric.value.as_ref().ok()?;
    let target = metric.target;
    let propose = |v: f64| -> i32 {
        match metric.kind {
            MetricKind::RequestRate => {
                let ratio = v / (target * f64::from(current.max(1)));
                if (ratio - 1.0).abs() <= TOLERANCE {
                    current
                } else {
                    (v / target).ceil() as i32
                }
            }
            MetricKind::Cpu => {
                let ratio = v / target;
                if (ratio - 1.0).abs() <= TOLERANCE {
                    current
                } else {
                    let base = if ready > 0 { ready } else { current };
                    (ratio * f64::from(base)).ceil() as i32
                }
            }
        }
    };
    let stable = propose(value);
    match metric.burst {
        Some(burst) if burst.is_finite() => {
            let fast = propose(burst);
            Some(if fast > stable.max(current) {
                fast
            } else {
                stable
            })
        }
        _ => Some(stable),
    }
}

/// Decides the replica count for one tick; returns the decision and the new state.
pub fn decide(inputs: &Inputs, state: &State, now_ms: i64) -> (Decision, State) {
    use reason::*;
    let current = inputs.current;
    let mut state = state.clone();
    let able = ConditionSpec::new(
        ABLE_TO_SCALE,
        true,
        READY_FOR_NEW_SCALE,
        "the last scale operation succeeded or none was needed",
    );
    let hold = |active: ConditionSpec, limited: ConditionSpec, proposals, raw, state: State| {
        (
            Decision {
                desired: current,
                raw_desired: raw,
                proposals,
                able_to_scale: able.clone(),
                scaling_active: active,
                scaling_limited: limited,
            },
            state,
        )
    };
    let not_limited = ConditionSpec::new(
        SCALING_LIMITED,
        false,
        DESIRED_WITHIN_RANGE,
        "the desired count is within the acceptable range",
    );

    if inputs.paused {
        let active = ConditionSpec::new(
            SCALING_ACTIVE,
            false,
            SCALING_DISABLED,
            "autoscaling is paused (spec.autoscaling.paused); replicas are held",
        );
        return hold(active, not_limited, vec![], None, state);
    }
    if current == 0 {
        let active = ConditionSpec::new(
            SCALING_ACTIVE,
            false,
            SCALING_DISABLED,
            "scaled to zero by hand; autoscaling resumes when replicas are above zero",
        );
        return hold(active, not_limited, vec![], None, state);
    }

    let proposals: Vec<(MetricKind, Option<i32>)> = inputs
        .metrics
        .iter()
        .map(|m| (m.kind, proposal(m, current, inputs.ready)))
        .collect();
    let errors: Vec<String> = inputs
        .metrics
        .iter()
        .filter_map(|m| {
            m.value
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", m.kind.name()))
        })
        .collect();
    let raw = proposals.iter().filter_map(|(_, p)| *p).max();

    let Some(raw) = raw else {
        state.failures += 1;
        // No tick counter in the message: it would change the status on every tick.
        let message = format!(
            "no metric could be read; replicas held at {current}: {}",
            errors.join("; ")
        );
        let active = ConditionSpec::new(SCALING_ACTIVE, false, FAILED_GET_METRICS, message);
        if let Some((fallback, after)) = inputs.fallback
            && state.failures >= after
        {
            let floor = fallback.clamp(inputs.min, inputs.max);
            if floor > current {
                state.scale_events.push_back((now_ms, floor - current));
                let limited = ConditionSpec::new(
                    SCALING_LIMITED,
                    true,
                    FALLBACK,
                    format!(
                        "metrics missing for {} ticks: fallback floor of {floor} replicas",
                        state.failures
                    ),
                );
                return (
                    Decision {
                        desired: floor,
                        raw_desired: None,
                        proposals,
                        able_to_scale: able,
                        scaling_active: active,
                        scaling_limited: limited,
                    },
                    state,
                );
            }
        }
        return hold(active, not_limited, proposals, None, state);
    };
    state.failures = 0;
    let active = if errors.is_empty() {
        ConditionSpec::new(
            SCALING_ACTIVE,
            true,
            VALID_METRIC_FOUND,
            "the autoscaler has valid metrics for every target",
        )
    } else {
        ConditionSpec::new(
            SCALING_ACTIVE,
            true,
            VALID_METRIC_FOUND,
            format!(
                "scaling on the metrics that could be read; scale-down is held: {}",
                errors.join("; ")
            ),
        )
    };

    // Stabilization (upstream stabilizeRecommendationWithBehaviors).
    let up_cutoff = now_ms - inputs.behavior.up.window_seconds * 1000;
    let down_cutoff = now_ms - inputs.behavior.down.window_seconds * 1000;
    let mut up_rec = raw;
    let mut down_rec = raw;
    for &(t, rec) in &state.recommendations {
        if t > up_cutoff {
            up_rec = up_rec.min(rec);
        }
        if t > down_cutoff {
            down_rec = down_rec.max(rec);
        }
    }
    let mut stabilized = current.max(up_rec).min(down_rec);
    state.recommendations.push_back((now_ms, raw));
    let keep = inputs
        .behavior
        .up
        .window_seconds
        .max(inputs.behavior.down.window_seconds)
        * 1000;
    while state
        .recommendations
        .front()
        .is_some_and(|&(t, _)| t <= now_ms - keep)
    {
        state.recommendations.pop_front();
    }

    let mut limited = not_limited.clone();
    if stabilized < current && !errors.is_empty() {
        stabilized = current;
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            MISSING_METRIC,
            format!(
                "scale-down held while a metric is missing: {}",
                errors.join("; ")
            ),
        );
    }
    if stabilized < current && inputs.rollout_in_progress {
        stabilized = current;
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            ROLLOUT_IN_PROGRESS,
            "scale-down held while a rollout is in progress",
        );
    }

    // Rate policies and bounds (upstream convertDesiredReplicasWithBehaviorRate).
    let mut desired = stabilized;
    if desired > current {
        let limit = scale_up_limit(current, &state.scale_events, &inputs.behavior.up, now_ms);
        let maximum = limit.min(inputs.max);
        if desired > maximum {
            desired = maximum;
            limited = if limit < inputs.max {
                ConditionSpec::new(
                    SCALING_LIMITED,
                    true,
                    SCALE_UP_LIMIT,
                    format!(
                        "the desired count {stabilized} is above the scale-up limit of {limit}"
                    ),
                )
            } else {
                ConditionSpec::new(
                    SCALING_LIMITED,
                    true,
                    TOO_MANY_REPLICAS,
                    format!(
                        "the desired count {stabilized} is above maxReplicas {}",
                        inputs.max
                    ),
                )
            };
        }
    } else if desired < current {
        let limit = scale_down_limit(current, &state.scale_events, &inputs.behavior.down, now_ms);
        let minimum = limit.max(inputs.min);
        if desired < minimum {
            desired = minimum;
            limited = if limit > inputs.min {
                ConditionSpec::new(
                    SCALING_LIMITED,
                    true,
                    SCALE_DOWN_LIMIT,
                    format!(
                        "the desired count {stabilized} is below the scale-down limit of {limit}"
                    ),
                )
            } else {
                ConditionSpec::new(
                    SCALING_LIMITED,
                    true,
                    TOO_FEW_REPLICAS,
                    format!(
                        "the desired count {stabilized} is below minReplicas {}",
                        inputs.min
                    ),
                )
            };
        }
    }
    // Bounds apply even with no change proposed (e.g. someone scaled outside them).
    if desired > inputs.max {
        desired = inputs.max;
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            TOO_MANY_REPLICAS,
            format!(
                "the desired count {stabilized} is above maxReplicas {}",
                inputs.max
            ),
        );
    } else if desired < inputs.min {
        desired = inputs.min;
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            TOO_FEW_REPLICAS,
            format!(
                "the desired count {stabilized} is below minReplicas {}",
                inputs.min
            ),
        );
    } else if raw > inputs.max && desired == inputs.max && !limited.status {
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            TOO_MANY_REPLICAS,
            format!(
                "the desired count {raw} is above maxReplicas {}",
                inputs.max
            ),
        );
    } else if raw < inputs.min && desired == inputs.min && !limited.status {
        limited = ConditionSpec::new(
            SCALING_LIMITED,
            true,
            TOO_FEW_REPLICAS,
            format!(
                "the desired count {raw} is below minReplicas {}",
                inputs.min
            ),
        );
    }

    if desired != current {
        state.scale_events.push_back((now_ms, desired - current));
    }
    let longest = inputs
        .behavior
        .up
        .policies
        .iter()
        .chain(&inputs.behavior.down.policies)
        .map(|p| p.2)
        .max()
        .unwrap_or(0)
        * 1000;
    while state
        .scale_events
        .front()
        .is_some_and(|&(t, _)| t <= now_ms - longest)
    {
        state.scale_events.pop_front();
    }
    let able = if desired != current {
        ConditionSpec::new(
            ABLE_TO_SCALE,
            true,
            SUCCEEDED_RESCALE,
            format!("the autoscaler set the replica count from {current} to {desired}"),
        )
    } else {
        able
    };
    (
        Decision {
            desired,
            raw_desired: Some(raw),
            proposals,
            able_to_scale: able,
            scaling_active: active,
            scaling_limited: limited,
        },
        state,
    )
}

fn change_in_period(events: &VecDeque<(i64, i32)>, period_s: i64, now_ms: i64, up: bool) -> i32 {
    let cutoff = now_ms - period_s * 1000;
    events
        .iter()
        .filter(|(t, _)| *t > cutoff)
        .map(|&(_, c)| if up { c.max(0) } else { (-c).max(0) })
        .sum()
}

fn scale_up_limit(current: i32, events: &VecDeque<(i64, i32)>, rules: &Rules, now_ms: i64) -> i32 {
    if rules.select == SelectPolicy::Disabled {
        return current;
    }
    let limits = rules.policies.iter().map(|&(kind, value, period)| {
        let start = current - change_in_period(events, period, now_ms, true);
        match kind {
            PolicyType::Pods => start + value,
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32
            }
        }
    });
    let limit = match rules.select {
        SelectPolicy::Min => limits.min(),
        _ => limits.max(),
    };
    limit.unwrap_or(i32::MAX).max(current)
}

fn scale_down_limit(
    current: i32,
    events: &VecDeque<(i64, i32)>,
    rules: &Rules,
    now_ms: i64,
) -> i32 {
    if rules.select == SelectPolicy::Disabled {
        return current;
    }
    let limits = rules.policies.iter().map(|&(kind, value, period)| {
        let start = current + change_in_period(events, period, now_ms, false);
        match kind {
            PolicyType::Pods => start - value,
            PolicyType::Percent => {
                (f64::from(start) * (1.0 - f64::from(value) / 100.0)).floor() as i32
            }
        }
    });
    let limit = match rules.select {
        SelectPolicy::Min => limits.max(),
        _ => limits.min(),
    };
    limit.unwrap_or(i32::MIN).min(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rps(value: f64, target: f64) -> MetricInput {
        MetricInput {
            kind: MetricKind::RequestRate,
            target,
            value: Ok(value),
            burst: None,
        }
    }

    fn cpu(utilization: f64, target: f64) -> MetricInput {
        MetricInput {
            kind: MetricKind::Cpu,
            target,
            value: Ok(utilization),
            burst: None,
        }
    }

    fn inputs(current: i32, metrics: Vec<MetricInput>) -> Inputs {
        Inputs {
            current,
            ready: current,
            min: 1,
            max: 100,
            behavior: Behavior::resolve(None, 300),
            metrics,
            rollout_in_progress: false,
            paused: false,
            fallback: None,
        }
    }

    const S: i64 = 1000;

    #[test]
    fn request_rate_proposes_total_over_target_per_replica() {
        let (d, _) = decide(&inputs(2, vec![rps(400.0, 50.0)]), &State::default(), 0);
        assert_eq!(d.raw_desired, Some(8));
        // Default scale-up limit from 2: max(2 + 4, 2 * 200%) = 6.
        assert_eq!(d.desired, 6);
        assert_eq!(d.scaling_limited.reason, reason::SCALE_UP_LIMIT);
    }

    #[test]
    fn within_tolerance_nothing_changes() {
        for value in [95.0, 104.0, 109.0, 91.0] {
            let (d, _) = decide(&inputs(2, vec![rps(value, 50.0)]), &State::default(), 0);
            assert_eq!(d.desired, 2, "load {value}");
        }
        let (d, _) = decide(&inputs(2, vec![rps(115.0, 50.0)]), &State::default(), 0);
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn cpu_uses_utilization_over_ready_pods() {
        let mut i = inputs(4, vec![cpu(140.0, 70.0)]);
        i.ready = 3;
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.raw_desired, Some(6));
        assert_eq!(d.desired, 6);
    }

    #[test]
    fn the_largest_proposal_wins() {
        let (d, _) = decide(
            &inputs(4, vec![rps(100.0, 50.0), cpu(140.0, 70.0)]),
            &State::default(),
            0,
        );
        assert_eq!(
            d.proposals,
            vec![
                (MetricKind::RequestRate, Some(2)),
                (MetricKind::Cpu, Some(8))
            ]
        );
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let mut i = inputs(8, vec![rps(400.0, 50.0)]);
        i.behavior = Behavior::resolve(None, 30);
        let (_, state) = decide(&i, &State::default(), 0);
        i.metrics = vec![rps(100.0, 50.0)];
        let (d, state) = decide(&i, &state, 10 * S);
        assert_eq!(
            d.desired, 8,
            "within the window the high recommendation holds"
        );
        let (d, state) = decide(&i, &state, 25 * S);
        assert_eq!(d.desired, 8);
        let (d, _) = decide(&i, &state, 31 * S);
        assert_eq!(d.desired, 2, "after the window the low recommendation wins");
    }

    #[test]
    fn scale_down_rate_policy_limits_each_period() {
        let mut i = inputs(10, vec![rps(50.0, 50.0)]);
        i.behavior = Behavior::resolve(
            Some(&ScalingBehavior {
                scale_up: None,
                scale_down: Some(ScalingRules {
                    stabilization_window_seconds: Some(0),
                    select_policy: None,
                    policies: Some(vec![crate::crd::ScalingPolicy {
                        type_: PolicyType::Pods,
                        value: 3,
                        period_seconds: 60,
                    }]),
                }),
            }),
            300,
        );
        let (d, state) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 7);
        assert_eq!(d.scaling_limited.reason, reason::SCALE_DOWN_LIMIT);
        i.current = 7;
        let (d, state) = decide(&i, &state, 30 * S);
        assert_eq!(d.desired, 7, "3 pods already removed in this 60 s period");
        let (d, _) = decide(&i, &state, 61 * S);
        assert_eq!(d.desired, 4);
    }

    #[test]
    fn bounds_clamp_with_the_hpa_reasons() {
        let mut i = inputs(3, vec![rps(1000.0, 50.0)]);
        i.max = 5;
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 5);
        assert_eq!(d.limited_by(), Some(reason::TOO_MANY_REPLICAS));
        let mut i = inputs(3, vec![rps(1.0, 50.0)]);
        i.min = 2;
        i.behavior = Behavior::resolve(None, 0);
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 2);
        assert_eq!(d.limited_by(), Some(reason::TOO_FEW_REPLICAS));
    }

    #[test]
    fn missing_data_holds_and_never_scales_down() {
        let mut i = inputs(
            4,
            vec![MetricInput {
                kind: MetricKind::RequestRate,
                target: 50.0,
                value: Err("empty result".into()),
                burst: None,
            }],
        );
        let (d, state) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 4);
        assert!(!d.scaling_active.status);
        assert_eq!(d.scaling_active.reason, reason::FAILED_GET_METRICS);
        assert_eq!(state.failures, 1);
        // One metric missing, the other says scale down: hold.
        i.behavior = Behavior::resolve(None, 0);
        i.metrics.push(cpu(10.0, 70.0));
        let (d, state) = decide(&i, &state, S);
        assert_eq!(d.desired, 4);
        assert_eq!(d.limited_by(), Some(reason::MISSING_METRIC));
        assert_eq!(state.failures, 0);
        // ... but it may still scale up.
        i.metrics[1] = cpu(140.0, 70.0);
        let (d, _) = decide(&i, &state, 2 * S);
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn fallback_is_a_floor_after_n_failures() {
        let mut i = inputs(
            2,
            vec![MetricInput {
                kind: MetricKind::RequestRate,
                target: 50.0,
                value: Err("prometheus unreachable".into()),
                burst: None,
            }],
        );
        i.fallback = Some((5, 3));
        let mut state = State::default();
        for tick in 0..2 {
            let (d, s) = decide(&i, &state, tick * S);
            assert_eq!(d.desired, 2);
            state = s;
        }
        let (d, _) = decide(&i, &state, 3 * S);
        assert_eq!(d.desired, 5);
        assert_eq!(d.limited_by(), Some(reason::FALLBACK));
    }

    #[test]
    fn burst_scales_up_at_once_but_not_down() {
        let mut m = rps(100.0, 50.0);
        m.burst = Some(400.0);
        let mut i = inputs(2, vec![m]);
        i.behavior.up.policies = vec![(PolicyType::Percent, 1000, 15)];
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 8, "the short window sees the jump");
        let mut m = rps(400.0, 50.0);
        m.burst = Some(10.0);
        let (d, _) = decide(&inputs(8, vec![m]), &State::default(), 0);
        assert_eq!(
            d.raw_desired,
            Some(8),
            "a dip in the short window does not scale down"
        );
    }

    #[test]
    fn rollout_in_progress_blocks_scale_down_only() {
        let mut i = inputs(6, vec![rps(100.0, 50.0)]);
        i.behavior = Behavior::resolve(None, 0);
        i.rollout_in_progress = true;
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 6);
        assert_eq!(d.limited_by(), Some(reason::ROLLOUT_IN_PROGRESS));
        i.metrics = vec![rps(400.0, 50.0)];
        let (d, _) = decide(&i, &State::default(), 0);
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn paused_and_zero_hold() {
        let mut i = inputs(3, vec![rps(1000.0, 50.0)]);
        i.paused = true;
        assert_eq!(decide(&i, &State::default(), 0).0.desired, 3);
        let (d, _) = decide(&inputs(0, vec![rps(1000.0, 50.0)]), &State::default(), 0);
        assert_eq!(d.desired, 0);
        assert_eq!(d.scaling_active.reason, reason::SCALING_DISABLED);
    }

    #[test]
    fn state_stays_bounded() {
        let mut i = inputs(2, vec![rps(100.0, 50.0)]);
        i.behavior = Behavior::resolve(None, 60);
        let mut state = State::default();
        for tick in 0..10_000 {
            state = decide(&i, &state, tick * 15 * S).1;
        }
        assert!(
            state.recommendations.len() <= 5,
            "{}",
            state.recommendations.len()
        );
    }
}

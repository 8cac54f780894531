//! The scaling decision, pure, in the HPA's stages (`pkg/controller/podautoscaler`):
//! [`proposals`] (one per metric, with the tolerance and the missing-pod rule), the largest
//! wins; [`stabilize`] (the recommendation history of both windows); [`limits`] (rate
//! policies, then min/max). Scale events enter the rate budget only once the write
//! succeeded ([`limits::record_scale`], called by the act step).
//!
//! Shoal's additions to the HPA: a burst (short window) reading only raises, and enters the
//! history like any recommendation; a reading that is incomplete (a gap in the window,
//! pods without a whole window of data) may raise the count, never lower it; no scale-down
//! while a rollout is in progress; a fallback floor after N ticks without any metric.

pub mod behavior;
pub mod limits;
pub mod proposals;
pub mod stabilize;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use behavior::{Behavior, DEFAULT_TOLERANCE, Policy, Rules, Tolerances};
pub use limits::{Limit, ScaleEvents};
pub use proposals::{Metric, MetricKind, PodSample, PodState, Proposal, Reading, Window};
pub use stabilize::Stabilized;

use crate::autoscaler::source::MetricError;
use crate::conditions::ConditionSpec;

pub use crate::vocabulary::scaling::{ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED, reason};

/// Everything the decision needs for one Microservice at one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// `spec.replicas` of the Deployment (the scale's spec).
    pub current: i32,
    /// minReplicas.
    pub min: i32,
    /// maxReplicas.
    pub max: i32,
    /// Resolved behavior.
    pub behavior: Behavior,
    /// The metrics read this tick.
    pub metrics: Vec<Metric>,
    /// A rollout is in progress: no scale-down.
    pub rollout_in_progress: bool,
    /// Autoscaling is paused: hold.
    pub paused: bool,
    /// Replica floor once every metric has failed `after` consecutive ticks.
    pub fallback: Option<(i32, u32)>,
}

/// What the autoscaler remembers between ticks, per Microservice (bounded by the windows
/// and the policy periods).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// (time in ms, raw recommendation), newest last.
    pub recommendations: VecDeque<(i64, i32)>,
    /// Scale events that the apiserver accepted.
    pub scale_events: ScaleEvents,
    /// Consecutive ticks on which no metric could be read.
    pub failures: u32,
    /// The first recommendation (the current count, upstream `recordInitialRecommendation`)
    /// has been recorded.
    pub initialized: bool,
}

/// The outcome of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to have; equal to `current` when nothing changes.
    pub desired: i32,
    /// The largest per-metric proposal, before stabilization and limits.
    pub raw_desired: Option<i32>,
    /// Per-metric proposals, in the order of the inputs.
    pub proposals: Vec<(MetricKind, Result<Proposal, MetricError>)>,
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

    /// The proposal that set the raw count (the largest), if any.
    pub fn driver(&self) -> Option<(MetricKind, &Proposal)> {
        self.proposals
            .iter()
            .filter_map(|(k, p)| Some((*k, p.as_ref().ok()?)))
            .max_by_key(|(_, p)| p.replicas)
    }
}

fn limited(reason: &'static str, message: impl Into<String>) -> ConditionSpec {
    ConditionSpec::new(SCALING_LIMITED, true, reason, message)
}

fn not_limited() -> ConditionSpec {
    ConditionSpec::new(
        SCALING_LIMITED,
        false,
        reason::DESIRED_WITHIN_RANGE,
        "the desired count is within the acceptable range",
    )
}

fn ready_for_new_scale() -> ConditionSpec {
    ConditionSpec::new(
        ABLE_TO_SCALE,
        true,
        reason::READY_FOR_NEW_SCALE,
        "recommended size matches current size",
    )
}

/// Decides the replica count for one tick; returns the decision and the new state. The
/// state's scale events are not touched: the act step records a scale once it succeeded.
pub fn decide(inputs: &Inputs, state: &State, now_ms: i64) -> (Decision, State) {
    use reason::*;
    let current = inputs.current;
    let mut state = state.clone();
    if !state.initialized {
        state.recommendations.push_back((now_ms, current));
        state.initialized = true;
    }
    let tolerances = inputs.behavior.tolerances();
    let proposals: Vec<(MetricKind, Result<Proposal, MetricError>)> = inputs
        .metrics
        .iter()
        .map(|m| (m.kind, proposals::propose(m, current, tolerances)))
        .collect();
    let hold = |active: ConditionSpec, limited: ConditionSpec, raw, state: State| {
        (
            Decision {
                desired: current,
                raw_desired: raw,
                proposals: proposals.clone(),
                able_to_scale: ready_for_new_scale(),
                scaling_active: active,
                scaling_limited: limited,
            },
            state,
        )
    };
    if inputs.paused {
        let active = ConditionSpec::new(
            SCALING_ACTIVE,
            false,
            SCALING_DISABLED,
            "autoscaling is paused (spec.autoscaling.paused); replicas are held",
        );
        return hold(active, not_limited(), None, state);
    }
    if current == 0 {
        let active = ConditionSpec::new(
            SCALING_ACTIVE,
            false,
            SCALING_DISABLED,
            "scaling is disabled since the replica count of the target is zero",
        );
        return hold(active, not_limited(), None, state);
    }

    let errors: Vec<String> = proposals
        .iter()
        .filter_map(|(k, p)| p.as_ref().err().map(|e| format!("{}: {e}", k.name())))
        .collect();
    // An incomplete reading may raise the count, never lower it.
    let raw = proposals
        .iter()
        .filter_map(|(_, p)| p.as_ref().ok())
        .map(|p| {
            if p.incomplete.is_some() {
                p.replicas.max(current)
            } else {
                p.replicas
            }
        })
        .max();
    let active_ok = ConditionSpec::new(
        SCALING_ACTIVE,
        true,
        VALID_METRIC_FOUND,
        "the autoscaler was able to successfully calculate a replica count",
    );

    // Bounds first, without metrics (upstream: a count outside min/max is corrected
    // before any metric is computed).
    if current > inputs.max || current < inputs.min {
        let (desired, why) = if current > inputs.max {
            (
                inputs.max,
                limited(
                    TOO_MANY_REPLICAS,
                    "the current replica count is above maxReplicas",
                ),
            )
        } else {
            (
                inputs.min,
                limited(
                    TOO_FEW_REPLICAS,
                    "the current replica count is below minReplicas",
                ),
            )
        };
        let active = if raw.is_some() {
            active_ok
        } else {
            ConditionSpec::new(
                SCALING_ACTIVE,
                false,
                FAILED_GET_METRICS,
                format!(
                    "the autoscaler was unable to compute the replica count: {}",
                    errors.join("; ")
                ),
            )
        };
        return (
            Decision {
                desired,
                raw_desired: raw,
                proposals,
                able_to_scale: ready_for_new_scale(),
                scaling_active: active,
                scaling_limited: why,
            },
            state,
        );
    }

    let Some(raw) = raw.filter(|r| errors.is_empty() || *r >= current) else {
        // Every metric failed, or one failed and the others would scale down.
        let all_failed = proposals.iter().all(|(_, p)| p.is_err());
        let message = if all_failed {
            format!(
                "the autoscaler was unable to compute the replica count; replicas held at {current}: {}",
                errors.join("; ")
            )
        } else {
            format!(
                "a metric is missing and the others would scale down; replicas held at {current}: {}",
                errors.join("; ")
            )
        };
        let active = ConditionSpec::new(SCALING_ACTIVE, false, FAILED_GET_METRICS, message);
        if !all_failed {
            return hold(active, not_limited(), None, state);
        }
        state.failures += 1;
        if let Some((fallback, after)) = inputs.fallback
            && state.failures >= after
        {
            let floor = fallback.clamp(inputs.min, inputs.max);
            if floor > current {
                return (
                    Decision {
                        desired: floor,
                        raw_desired: None,
                        proposals,
                        able_to_scale: ready_for_new_scale(),
                        scaling_active: active,
                        scaling_limited: limited(
                            FALLBACK,
                            "metrics have been missing for too long: the fallback replica count applies",
                        ),
                    },
                    state,
                );
            }
        }
        return hold(active, not_limited(), None, state);
    };
    state.failures = 0;

    let (stabilized, why) = stabilize::stabilize(
        &inputs.behavior,
        current,
        raw,
        &mut state.recommendations,
        now_ms,
    );
    let able = match why {
        Stabilized::No => ready_for_new_scale(),
        Stabilized::Up => ConditionSpec::new(
            ABLE_TO_SCALE,
            true,
            SCALE_UP_STABILIZED,
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        ),
        Stabilized::Down => ConditionSpec::new(
            ABLE_TO_SCALE,
            true,
            SCALE_DOWN_STABILIZED,
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        ),
    };

    let mut target = stabilized;
    let mut held = None;
    if target < current && inputs.rollout_in_progress {
        target = current;
        held = Some(limited(
            ROLLOUT_IN_PROGRESS,
            "scale-down is held while a rollout is in progress",
        ));
    }
    let (desired, limit) = limits::limit(
        current,
        target,
        inputs.min,
        inputs.max,
        &inputs.behavior,
        &state.scale_events,
        now_ms,
    );
    let scaling_limited = match limit {
        Limit::DesiredWithinRange => held.unwrap_or_else(not_limited),
        Limit::ScaleUpLimit => limited(
            SCALE_UP_LIMIT,
            "the desired replica count is increasing faster than the maximum scale rate",
        ),
        Limit::ScaleDownLimit => limited(
            SCALE_DOWN_LIMIT,
            "the desired replica count is decreasing faster than the maximum scale rate",
        ),
        Limit::TooManyReplicas => limited(
            TOO_MANY_REPLICAS,
            format!(
                "the desired replica count is more than the maximum replica count (maxReplicas {})",
                inputs.max
            ),
        ),
        Limit::TooFewReplicas => limited(
            TOO_FEW_REPLICAS,
            format!(
                "the desired replica count is less than the minimum replica count (minReplicas {})",
                inputs.min
            ),
        ),
    };
    let scaling_limited = if !scaling_limited.status
        && desired == current
        && proposals.iter().any(|(_, p)| {
            p.as_ref()
                .is_ok_and(|p| p.incomplete.is_some() && p.replicas < current)
        }) {
        limited(
            INCOMPLETE_METRICS,
            "scale-down is held until every reading covers its whole window (a scrape gap, or pods without a whole window of data yet)",
        )
    } else {
        scaling_limited
    };
    (
        Decision {
            desired,
            raw_desired: Some(raw),
            proposals,
            able_to_scale: able,
            scaling_active: active_ok,
            scaling_limited,
        },
        state,
    )
}

//! Tests of the decision: upstream's own cases (each names the test of
//! `pkg/controller/podautoscaler` it comes from, with upstream's inputs and expected
//! counts), then Shoal's additions.

mod shoal;
mod upstream;

use super::*;
use crate::crd::{PolicyType, SelectPolicy};

/// upstream `generateScalingRules(pods, podsPeriod, percent, percentPeriod, window)`.
pub(super) fn rules(
    pods: i32,
    pods_period: i64,
    percent: i32,
    percent_period: i64,
    window: i64,
) -> Rules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(Policy {
            kind: PolicyType::Pods,
            value: pods,
            period_seconds: pods_period,
        });
    }
    if percent != 0 {
        policies.push(Policy {
            kind: PolicyType::Percent,
            value: percent,
            period_seconds: percent_period,
        });
    }
    Rules {
        window_seconds: window,
        select: SelectPolicy::Max,
        policies,
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// The HPA's defaults (`GenerateHPAScaleUpRules(nil)`, `GenerateHPAScaleDownRules(nil)`).
pub(super) fn defaults() -> Behavior {
    Behavior::resolve(None, 300)
}

/// upstream `generateEventsUniformDistribution(events, period)` at `now_ms`.
pub(super) fn uniform(events: &[i32], period_s: i64, now_ms: i64) -> VecDeque<(i64, i32)> {
    let segment = period_s as f64 / events.len() as f64;
    events
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let back = period_s as f64 - segment * (i as f64 + 1.0) + segment / 2.0;
            (now_ms - (back * 1000.0) as i64, n)
        })
        .collect()
}

pub(super) const NOW: i64 = 1_000_000_000;

//! Stage 3: rate policies and bounds (upstream `convertDesiredReplicasWithBehaviorRate`,
//! `calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`,
//! `storeScaleEvent`). The replicas at the start of a policy's period are
//! `current - added + deleted` within that period, in both directions. A scale event is
//! recorded only after the write succeeded ([`record_scale`]).

use std::collections::VecDeque;

use super::{Behavior, Rules};
use crate::crd::{PolicyType, SelectPolicy};

/// Why the count was limited in this stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Not limited.
    DesiredWithinRange,
    /// A scale-up policy.
    ScaleUpLimit,
    /// A scale-down policy.
    ScaleDownLimit,
    /// maxReplicas.
    TooManyReplicas,
    /// minReplicas.
    TooFewReplicas,
}

/// Scale events of one Microservice: (time in ms, replicas added / removed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleEvents {
    /// Scale-ups, newest last.
    pub up: VecDeque<(i64, i32)>,
    /// Scale-downs, newest last.
    pub down: VecDeque<(i64, i32)>,
}

/// Replicas changed within the last `period_s` seconds (events strictly after the cutoff).
pub fn change_in_period(events: &VecDeque<(i64, i32)>, period_s: i64, now_ms: i64) -> i32 {
    let cutoff = now_ms - period_s * 1000;
    events
        .iter()
        .filter(|&&(t, _)| t > cutoff)
        .map(|&(_, n)| n)
        .sum()
}

fn period_start(current: i32, events: &ScaleEvents, period_s: i64, now_ms: i64) -> i32 {
    current - change_in_period(&events.up, period_s, now_ms)
        + change_in_period(&events.down, period_s, now_ms)
}

/// The most replicas the scale-up rules allow now.
pub fn scale_up_limit(current: i32, events: &ScaleEvents, rules: &Rules, now_ms: i64) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(current, events, p.period_seconds, now_ms);
        match p.kind {
            PolicyType::Pods => start.saturating_add(p.value),
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        }
    });
    match rules.select {
        SelectPolicy::Disabled => current,
        SelectPolicy::Min => proposals.min().unwrap_or(i32::MAX),
        SelectPolicy::Max => proposals.max().unwrap_or(i32::MIN),
    }
}

/// The fewest replicas the scale-down rules allow now.
pub fn scale_down_limit(current: i32, events: &ScaleEvents, rules: &Rules, now_ms: i64) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(current, events, p.period_seconds, now_ms);
        match p.kind {
            PolicyType::Pods => start - p.value,
            PolicyType::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        }
    });
    match rules.select {
        SelectPolicy::Disabled => current,
        SelectPolicy::Min => proposals.max().unwrap_or(i32::MIN),
        SelectPolicy::Max => proposals.min().unwrap_or(i32::MAX),
    }
}

/// The count the rate policies and bounds allow for `desired`, and what limited it.
pub fn limit(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    behavior: &Behavior,
    events: &ScaleEvents,
    now_ms: i64,
) -> (i32, Limit) {
    if desired > current {
        let up = scale_up_limit(current, events, &behavior.up, now_ms).max(current);
        let (allowed, why) = if max > up {
            (up, Limit::ScaleUpLimit)
        } else {
            (max, Limit::TooManyReplicas)
        };
        if desired > allowed {
            return (allowed, why);
        }
    } else if desired < current {
        let down = scale_down_limit(current, events, &behavior.down, now_ms).min(current);
        let (allowed, why) = if min < down {
            (down, Limit::ScaleDownLimit)
        } else {
            (min, Limit::TooFewReplicas)
        };
        if desired < allowed {
            return (allowed, why);
        }
    }
    (desired, Limit::DesiredWithinRange)
}

fn longest_period(rules: &Rules) -> i64 {
    rules
        .policies
        .iter()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0)
}

/// Records a scale from `from` to `to` that the apiserver accepted, dropping events older
/// than the longest policy period of their direction.
pub fn record_scale(
    events: &mut ScaleEvents,
    behavior: &Behavior,
    from: i32,
    to: i32,
    now_ms: i64,
) {
    let (list, rules, change) = match to.cmp(&from) {
        std::cmp::Ordering::Greater => (&mut events.up, &behavior.up, to - from),
        std::cmp::Ordering::Less => (&mut events.down, &behavior.down, from - to),
        std::cmp::Ordering::Equal => return,
    };
    let cutoff = now_ms - longest_period(rules) * 1000;
    list.retain(|&(t, _)| t >= cutoff);
    list.push_back((now_ms, change));
}

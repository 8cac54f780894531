//! Status conditions as data (types and reasons come from [`crate::vocabulary`]), and the
//! merge that keeps `lastTransitionTime` unless the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::vocabulary::{ConditionType, Reason};

/// A condition without its timestamp: what the pure status functions produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// Reason constant.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ConditionSpec {
    /// A condition with the given parts.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// One of the controller's conditions.
    pub fn of(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_.as_str(), status, reason.as_str(), message)
    }
}

/// Merges wanted conditions into the existing list: a condition whose status did not flip
/// keeps its `lastTransitionTime`; conditions of other types are kept as they are.
pub fn merge(
    existing: &[Condition],
    wanted: &[ConditionSpec],
    generation: i64,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    for w in wanted {
        let status = if w.status { "True" } else { "False" };
        let previous = existing.iter().find(|c| c.type_ == w.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: w.type_.to_string(),
            status: status.to_string(),
            reason: w.reason.to_string(),
            message: w.message.clone(),
            observed_generation: Some(generation),
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    const READY: &str = ConditionType::Ready.as_str();
    const REASON_CREATING: &str = Reason::Creating.as_str();
    const REASON_ROLLOUT_IN_PROGRESS: &str = Reason::RolloutInProgress.as_str();
    const REASON_AVAILABLE: &str = Reason::Available.as_str();

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-01T00:05:00Z");
        let first = merge(
            &[],
            &[ConditionSpec::new(
                READY,
                false,
                REASON_CREATING,
                "creating",
            )],
            1,
            &t0,
        );
        assert_eq!(first[0].last_transition_time, t0);
        let same = merge(
            &first,
            &[ConditionSpec::new(
                READY,
                false,
                REASON_ROLLOUT_IN_PROGRESS,
                "1 of 2",
            )],
            1,
            &t1,
        );
        assert_eq!(same[0].last_transition_time, t0, "no flip keeps the time");
        assert_eq!(same[0].reason, REASON_ROLLOUT_IN_PROGRESS);
        let flipped = merge(
            &same,
            &[ConditionSpec::new(READY, true, REASON_AVAILABLE, "2 of 2")],
            2,
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, t1);
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn unchanged_conditions_merge_to_an_equal_list() {
        let t0 = time("2026-01-01T00:00:00Z");
        let wanted = [ConditionSpec::new(READY, true, REASON_AVAILABLE, "2 of 2")];
        let stored = merge(&[], &wanted, 4, &t0);
        let again = merge(&stored, &wanted, 4, &time("2026-02-01T00:00:00Z"));
        assert_eq!(
            stored, again,
            "a later pass with nothing new must produce an identical list"
        );
    }

    #[test]
    fn other_condition_types_are_kept() {
        let t0 = time("2026-01-01T00:00:00Z");
        let other = Condition {
            type_: "ScalingActive".into(),
            status: "True".into(),
            reason: "ValidMetricFound".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: t0.clone(),
        };
        let merged = merge(
            std::slice::from_ref(&other),
            &[ConditionSpec::new(READY, true, REASON_AVAILABLE, "")],
            1,
            &t0,
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(find(&merged, "ScalingActive"), Some(&other));
    }
}

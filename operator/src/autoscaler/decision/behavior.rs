//! Scaling behavior with the HPA's defaults resolved (`GenerateHPAScaleUpRules`,
//! `GenerateHPAScaleDownRules`), and the tolerance of each direction.

use crate::crd::{PolicyType, ScalingBehavior, ScalingRules, SelectPolicy};
use crate::validate::parse_quantity;

/// The HPA's default tolerance in both directions.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// No change while the usage ratio is within `[1 - down, 1 + up]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Tolerance of a scale-up.
    pub up: f64,
    /// Tolerance of a scale-down.
    pub down: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            up: DEFAULT_TOLERANCE,
            down: DEFAULT_TOLERANCE,
        }
    }
}

impl Tolerances {
    /// True when `ratio` is close enough to 1 for no change.
    pub fn within(self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}

/// One rate policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Pods or Percent.
    pub kind: PolicyType,
    /// How many pods, or which percentage.
    pub value: i32,
    /// The period the change is counted over.
    pub period_seconds: i64,
}

/// Scaling rules of one direction with the HPA's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Stabilization window in seconds.
    pub window_seconds: i64,
    /// Which policy wins.
    pub select: SelectPolicy,
    /// The rate policies.
    pub policies: Vec<Policy>,
    /// Tolerance of this direction.
    pub tolerance: f64,
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
    /// The HPA's defaults (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`),
    /// overridden by what the spec sets; `down_window_default` is the operator's default
    /// scale-down window (300 s like the HPA unless configured).
    pub fn resolve(spec: Option<&ScalingBehavior>, down_window_default: i64) -> Behavior {
        let up_default = Rules {
            window_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![
                Policy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                Policy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
            tolerance: DEFAULT_TOLERANCE,
        };
        let down_default = Rules {
            window_seconds: down_window_default,
            select: SelectPolicy::Max,
            policies: vec![Policy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
            tolerance: DEFAULT_TOLERANCE,
        };
        Behavior {
            up: Rules::resolve(spec.and_then(|b| b.scale_up.as_ref()), up_default),
            down: Rules::resolve(spec.and_then(|b| b.scale_down.as_ref()), down_default),
        }
    }

    /// The tolerances of both directions.
    pub fn tolerances(&self) -> Tolerances {
        Tolerances {
            up: self.up.tolerance,
            down: self.down.tolerance,
        }
    }
}

impl Rules {
    fn resolve(rules: Option<&ScalingRules>, default: Rules) -> Rules {
        let Some(r) = rules else { return default };
        Rules {
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
                        .map(|p| Policy {
                            kind: p.type_,
                            value: p.value,
                            period_seconds: i64::from(p.period_seconds),
                        })
                        .collect()
                })
                .unwrap_or(default.policies),
            tolerance: r
                .tolerance
                .as_ref()
                .and_then(|q| parse_quantity(&q.0))
                .filter(|t| t.is_finite() && *t >= 0.0)
                .unwrap_or(default.tolerance),
        }
    }
}

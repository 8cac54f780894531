//! The autoscaler's part of a Microservice's status, as pure data: from the decision to
//! `status.autoscaler` and the AbleToScale / ScalingActive / ScalingLimited conditions, and
//! the patch to write, or None when nothing but metric noise changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decision::{self, Decision, MetricKind, Tolerances, Window};
use super::inputs::Observed;
use crate::conditions::{self, ConditionSpec};
use crate::crd::{AutoscalerStatus, MetricStatus};

/// Condition types the autoscaler owns in a Microservice's status.
pub const AUTOSCALER_CONDITIONS: [&str; 3] = [
    decision::ABLE_TO_SCALE,
    decision::SCALING_ACTIVE,
    decision::SCALING_LIMITED,
];

/// `status.autoscaler` for a decision.
pub fn autoscaler_status(
    observed: &Observed,
    decision: &Decision,
    last_scale_time: Option<Time>,
) -> AutoscalerStatus {
    let metric_status = |kind: MetricKind| -> Option<MetricStatus> {
        let metric = observed.metrics.iter().find(|m| m.kind == kind)?;
        let (_, proposal) = decision.proposals.iter().find(|(k, _)| *k == kind)?;
        let (_, stable_query, burst_query) =
            observed.queries.iter().find(|(k, _, _)| *k == kind)?;
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Some(match proposal {
            Ok(p) => MetricStatus {
                current: Some(round(p.value)),
                target: metric.target,
                proposed_replicas: Some(p.replicas),
                query: Some(match (p.window, burst_query) {
                    (Window::Burst, Some(q)) => q.clone(),
                    _ => stable_query.clone(),
                }),
                window: Some(match p.window {
                    Window::Stable => "stable".to_string(),
                    Window::Burst => "burst".to_string(),
                }),
                incomplete: p.incomplete.clone(),
                error: None,
            },
            Err(e) => MetricStatus {
                current: None,
                target: metric.target,
                proposed_replicas: None,
                query: Some(stable_query.clone()),
                window: None,
                incomplete: None,
                error: Some(e.to_string()),
            },
        })
    };
    AutoscalerStatus {
        current_replicas: Some(observed.current),
        desired_replicas: Some(decision.desired),
        raw_desired_replicas: decision.raw_desired,
        limited_by: decision.limited_by().map(str::to_string),
        last_scale_time,
        request_rate: metric_status(MetricKind::RequestRate),
        cpu: metric_status(MetricKind::Cpu),
    }
}

/// The autoscaler's conditions merged into the existing ones (only its own types).
pub fn conditions(
    existing: &[Condition],
    wanted: &[ConditionSpec],
    generation: i64,
    now: &Time,
) -> Vec<Condition> {
    conditions::merge(existing, wanted, generation, now)
        .into_iter()
        .filter(|c| AUTOSCALER_CONDITIONS.contains(&c.type_.as_str()))
        .collect()
}

/// True when the new status differs from the stored one beyond metric noise: any field but
/// the current metric values, or a value that moved more than the tolerance.
pub fn status_changed(
    old: Option<&AutoscalerStatus>,
    old_conditions: &[Condition],
    new: &AutoscalerStatus,
    new_conditions: &[Condition],
) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &AutoscalerStatus| {
        let mut s = s.clone();
        for m in [s.request_rate.as_mut(), s.cpu.as_mut()]
            .into_iter()
            .flatten()
        {
            m.current = m.current.map(|_| 0.0);
        }
        s
    };
    let tolerance = Tolerances::default().up;
    let moved = |a: Option<&MetricStatus>, b: Option<&MetricStatus>| match (
        a.and_then(|m| m.current),
        b.and_then(|m| m.current),
    ) {
        (Some(x), Some(y)) => {
            (x - y).abs() > tolerance * x.abs().max(y.abs()).max(1e-9) && (x - y).abs() > 0.01
        }
        _ => false,
    };
    let mine = |cs: &[Condition]| -> Vec<Condition> {
        cs.iter()
            .filter(|c| AUTOSCALER_CONDITIONS.contains(&c.type_.as_str()))
            .cloned()
            .collect()
    };
    strip(old) != strip(new)
        || moved(old.request_rate.as_ref(), new.request_rate.as_ref())
        || moved(old.cpu.as_ref(), new.cpu.as_ref())
        || mine(old_conditions) != mine(new_conditions)
}

/// The status patch body of the autoscaler's field manager, or None when nothing changed.
pub fn patch(
    old: Option<&crate::crd::MicroserviceStatus>,
    status: &AutoscalerStatus,
    conditions: &[Condition],
) -> Option<serde_json::Value> {
    status_changed(
        old.and_then(|s| s.autoscaler.as_ref()),
        old.map(|s| s.conditions.as_slice()).unwrap_or_default(),
        status,
        conditions,
    )
    .then(|| serde_json::json!({"autoscaler": status, "conditions": conditions}))
}

/// "requestRate 412.3/s (target 50/s per replica, burst window) wants 9; cpu 45% (target
/// 70%) wants 3": the value that drove each proposal and its window.
pub fn explain(status: &AutoscalerStatus) -> String {
    let mut parts = Vec::new();
    let window = |m: &MetricStatus| match m.window.as_deref() {
        Some("burst") => ", burst window",
        _ => "",
    };
    if let Some(r) = &status.request_rate {
        parts.push(match r.current {
            Some(v) => format!(
                "requestRate {v:.1}/s (target {}/s per replica{}) wants {}",
                r.target,
                window(r),
                r.proposed_replicas
                    .map_or("-".to_string(), |p| p.to_string())
            ),
            None => format!(
                "requestRate unavailable ({})",
                r.error.as_deref().unwrap_or("no data")
            ),
        });
    }
    if let Some(c) = &status.cpu {
        parts.push(match c.current {
            Some(v) => format!(
                "cpu {v:.0}% (target {}%) wants {}",
                c.target,
                c.proposed_replicas
                    .map_or("-".to_string(), |p| p.to_string())
            ),
            None => format!(
                "cpu unavailable ({})",
                c.error.as_deref().unwrap_or("no data")
            ),
        });
    }
    if let Some(limit) = &status.limited_by {
        parts.push(format!("limited by {limit}"));
    }
    parts.join("; ")
}

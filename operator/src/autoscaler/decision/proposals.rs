//! Stage 1: one replica proposal per metric, as the HPA's replica calculator makes it
//! (`replica_calculator.go`): a usage ratio over the pods that have data, the tolerance,
//! and the missing-pod rule (pods without data count as at target when scaling down and
//! as idle when scaling up; not-ready pods count as idle when scaling up).
//!
//! Shoal's additions: a reading whose window is not whole may raise the count but never
//! lower it, and a burst (short window) reading may only raise.

use super::Tolerances;
use crate::autoscaler::source::MetricError;

/// Which metric a reading is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Requests per second; the target is per replica.
    RequestRate,
    /// CPU utilization in percent of the pods' requests.
    Cpu,
}

impl MetricKind {
    /// Name used in status, events and messages.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::RequestRate => "requestRate",
            MetricKind::Cpu => "cpu",
        }
    }
}

/// How a pod takes part in the calculation (upstream `groupPods`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Running and Ready: its value counts, or it is a missing pod when it has none.
    Ready,
    /// Pending, or Running but not Ready yet: idle when scaling up, else left out.
    Unready,
    /// Being deleted or failed: left out entirely.
    Ignored,
}

/// One pod's reading.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    /// How the pod takes part.
    pub state: PodState,
    /// Its value over the whole window (requests/s, or CPU cores); None when its data does
    /// not cover the window (a new pod, a counter reset, no series).
    pub value: Option<f64>,
    /// Its CPU request in cores (CPU only; 0 for request rate).
    pub request: f64,
}

/// A metric as read this tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// Per-pod values.
    Pods {
        /// Every pod of the Microservice.
        pods: Vec<PodSample>,
        /// False when a scrape gap lies inside the rate window: the values may under-read.
        window_complete: bool,
        /// The service's total over the short (burst) window, if read.
        burst: Option<f64>,
    },
    /// One value for the whole service (a Microservice's own query): a total whose target
    /// is per replica.
    Total {
        /// The value.
        value: f64,
    },
}

/// One metric and its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Which metric.
    pub kind: MetricKind,
    /// Requests/s per replica, or utilization percent.
    pub target: f64,
    /// What was read, or why nothing was.
    pub reading: Result<Reading, MetricError>,
}

/// Which window a proposal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The long (stable) rate window.
    Stable,
    /// The short (burst) window: it only ever raises.
    Burst,
}

/// A metric's proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// Replicas this metric asks for.
    pub replicas: i32,
    /// The value that drove it (total requests/s, or utilization percent).
    pub value: f64,
    /// Which window drove it.
    pub window: Window,
    /// The reading may under-read (a gap in the window, or pods without data): it may raise
    /// the count, never lower it.
    pub incomplete: Option<String>,
}

/// Upstream `calcPlainMetricReplicas`: `values` are per-pod values against a per-pod
/// target. Returns the proposal and the average over the pods with data.
pub fn plain_metric_replicas(
    current: i32,
    target: f64,
    tolerances: Tolerances,
    pods: &[PodSample],
) -> Result<(i32, f64), MetricError> {
    usage_replicas(
        current,
        tolerances,
        pods,
        |values| {
            let n = values.len() as f64;
            let sum: f64 = values.iter().map(|(v, _)| v).sum();
            (sum / n / target, sum / n)
        },
        |_| target,
    )
}

/// Upstream `GetResourceReplicas`: per-pod CPU use against the pods' requests, in percent;
/// a missing pod counts at `max(100, target)` percent of its request when scaling down.
pub fn resource_replicas(
    current: i32,
    target_utilization: f64,
    tolerances: Tolerances,
    pods: &[PodSample],
) -> Result<(i32, f64), MetricError> {
    if pods
        .iter()
        .any(|p| p.state != PodState::Ignored && p.request <= 0.0)
    {
        return Err(MetricError::Invalid(
            "a pod has no CPU request: utilization is a percentage of the request".into(),
        ));
    }
    usage_replicas(
        current,
        tolerances,
        pods,
        |values| {
            let used: f64 = values.iter().map(|(v, _)| v).sum();
            let requested: f64 = values.iter().map(|(_, r)| r).sum();
            let utilization = used / requested * 100.0;
            (utilization / target_utilization, utilization)
        },
        |request| request * target_utilization.max(100.0) / 100.0,
    )
}

/// The shared shape of both calculations. `ratio` turns (value, request) pairs into the
/// usage ratio and the value to show; `at_target` is what a missing pod counts as when
/// scaling down.
fn usage_replicas(
    current: i32,
    tolerances: Tolerances,
    pods: &[PodSample],
    ratio: impl Fn(&[(f64, f64)]) -> (f64, f64),
    at_target: impl Fn(f64) -> f64,
) -> Result<(i32, f64), MetricError> {
    let mut values: Vec<(f64, f64)> = Vec::new();
    let mut missing: Vec<f64> = Vec::new();
    let mut unready: Vec<f64> = Vec::new();
    for pod in pods {
        match (pod.state, pod.value) {
            (PodState::Ignored, _) => {}
            (PodState::Unready, _) => unready.push(pod.request),
            (PodState::Ready, Some(v)) => values.push((v, pod.request)),
            (PodState::Ready, None) => missing.push(pod.request),
        }
    }
    if pods.iter().all(|p| p.state == PodState::Ignored) {
        return Err(MetricError::NoData(
            "no pods while calculating the replica count".into(),
        ));
    }
    if values.is_empty() {
        return Err(MetricError::NoData(
            "no metrics for the targeted pods yet (pods may be starting)".into(),
        ));
    }
    let ready_with_data = values.len() as f64;
    let (usage_ratio, shown) = ratio(&values);
    let scale_up_with_unready = !unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if tolerances.within(usage_ratio) {
            return Ok((current, shown));
        }
        return Ok((ceil(usage_ratio * ready_with_data), shown));
    }
    if usage_ratio < 1.0 {
        values.extend(missing.iter().map(|&r| (at_target(r), r)));
    } else if usage_ratio > 1.0 {
        values.extend(missing.iter().map(|&r| (0.0, r)));
    }
    if scale_up_with_unready {
        values.extend(unready.iter().map(|&r| (0.0, r)));
    }
    let (new_ratio, _) = ratio(&values);
    if tolerances.within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current, shown));
    }
    let new_replicas = ceil(new_ratio * values.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return Ok((current, shown));
    }
    Ok((new_replicas, shown))
}

/// A total against a per-replica target (upstream `GetObjectPerPodMetricReplicas`).
pub fn total_replicas(current: i32, target: f64, tolerances: Tolerances, total: f64) -> i32 {
    let ratio = total / (target * f64::from(current.max(1)));
    if tolerances.within(ratio) {
        current
    } else {
        ceil(total / target)
    }
}

/// `ceil` that does not turn 2.0000000000000004 (float noise of an exact 2) into 3.
fn ceil(x: f64) -> i32 {
    (x - 1e-9).ceil() as i32
}

/// The proposal of one metric, or why it has none.
pub fn propose(
    metric: &Metric,
    current: i32,
    tolerances: Tolerances,
) -> Result<Proposal, MetricError> {
    let reading = metric.reading.as_ref().map_err(Clone::clone)?;
    match (metric.kind, reading) {
        (_, Reading::Total { value }) => Ok(Proposal {
            replicas: total_replicas(current, metric.target, tolerances, *value),
            value: *value,
            window: Window::Stable,
            incomplete: None,
        }),
        (
            MetricKind::Cpu,
            Reading::Pods {
                pods,
                window_complete,
                ..
            },
        ) => {
            let (replicas, utilization) =
                resource_replicas(current, metric.target, tolerances, pods)?;
            Ok(Proposal {
                replicas,
                value: utilization,
                window: Window::Stable,
                incomplete: (!window_complete)
                    .then(|| "a scrape gap lies inside the rate window".to_string()),
            })
        }
        (
            MetricKind::RequestRate,
            Reading::Pods {
                pods,
                window_complete,
                burst,
            },
        ) => {
            let stable = plain_metric_replicas(current, metric.target, tolerances, pods);
            let with_data = pods
                .iter()
                .filter(|p| p.state == PodState::Ready && p.value.is_some())
                .count();
            let missing = pods
                .iter()
                .filter(|p| p.state == PodState::Ready && p.value.is_none())
                .count();
            let total: f64 = pods
                .iter()
                .filter(|p| p.state == PodState::Ready)
                .filter_map(|p| p.value)
                .sum();
            let incomplete = if !window_complete {
                Some("a scrape gap lies inside the rate window".to_string())
            } else if missing > 0 {
                Some(format!(
                    "{missing} ready pods have no data for the whole window yet"
                ))
            } else {
                None
            };
            // The burst window only raises: it is used when it asks for more than both the
            // current count and the stable window.
            let fast = burst
                .filter(|b| b.is_finite() && *b >= 0.0)
                .map(|b| (total_replicas(current, metric.target, tolerances, b), b))
                .filter(|(replicas, _)| *replicas > current);
            match (stable, fast) {
                (Ok((replicas, _)), Some((fast, b))) if fast > replicas => Ok(Proposal {
                    replicas: fast,
                    value: b,
                    window: Window::Burst,
                    incomplete,
                }),
                (Ok((replicas, _)), _) => Ok(Proposal {
                    replicas,
                    value: total,
                    window: Window::Stable,
                    incomplete,
                }),
                (Err(_), Some((fast, b))) => Ok(Proposal {
                    replicas: fast,
                    value: b,
                    window: Window::Burst,
                    incomplete: Some(format!(
                        "only the burst window has data ({with_data} pods with a whole window)"
                    )),
                }),
                (Err(err), None) => Err(err),
            }
        }
    }
}

//! `spec.rollout.strategy: Canary` resolved: steps with parsed durations, the analysis with
//! its defaults, and the traffic router.

use std::time::Duration;

use super::{InvalidSpec, invalid};
use crate::crd::{CanaryAnalysis, CanaryStep, MicroserviceSpec, RolloutStrategy};

/// Canary steps when `spec.rollout.canary.steps` is unset.
pub const DEFAULT_STEPS: [Step; 4] = [
    Step::Weight(10),
    Step::Pause(Some(Duration::from_secs(60))),
    Step::Weight(50),
    Step::Pause(Some(Duration::from_secs(60))),
];
/// Default analysis interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default no-data timeout.
pub const DEFAULT_NO_DATA_TIMEOUT: Duration = Duration::from_secs(300);
/// Default latency histogram.
pub const DEFAULT_LATENCY_METRIC: &str = "http_request_duration_seconds";

/// One step of a canary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Send this percent of the traffic to the canary.
    Weight(i32),
    /// Wait this long, or (None) until promoted.
    Pause(Option<Duration>),
}

/// Where the traffic split is made.
#[derive(Clone, Debug, PartialEq)]
pub enum Routing {
    /// By replica ratio behind the one Service.
    Replicas,
    /// An ingress-nginx canary Ingress.
    Nginx,
    /// Backend weights on this HTTPRoute.
    GatewayApi(String),
}

/// The analysis with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisPolicy {
    /// Time between checks and the window each reads.
    pub interval: Duration,
    /// Lowest canary success rate, percent.
    pub min_success_rate: f64,
    /// Most percentage points below the stable track's success rate.
    pub max_success_rate_drop: f64,
    /// Highest canary p99 in ms, if any.
    pub max_p99_latency_ms: Option<f64>,
    /// Most canary p99 as a multiple of the stable p99.
    pub max_p99_latency_ratio: f64,
    /// Consecutive failures that abort.
    pub failure_limit: i32,
    /// Fewest canary requests for a check to count.
    pub min_requests: f64,
    /// Longest time without a check with enough requests.
    pub no_data_timeout: Duration,
    /// The request counter, when not the operator's.
    pub request_metric: Option<String>,
    /// The latency histogram's base name.
    pub latency_metric: String,
    /// Extra label matchers.
    pub selector: Option<String>,
}

/// `spec.rollout` with strategy Canary.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryPolicy {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The analysis.
    pub analysis: AnalysisPolicy,
    /// The router.
    pub routing: Routing,
    /// `spec.rollout.canary.promote`.
    pub promote: bool,
}

fn duration(field: &str, text: &str) -> Result<Duration, InvalidSpec> {
    promql_parser::util::parse_duration(text).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a duration such as 30s or 5m: {e}"),
        )
    })
}

fn step(index: usize, s: &CanaryStep) -> Result<Step, InvalidSpec> {
    let field = format!("spec.rollout.canary.steps[{index}]");
    match (s.weight, &s.pause) {
        (Some(w), None) if (1..=99).contains(&w) => Ok(Step::Weight(w)),
        (Some(_), None) => Err(invalid(
            format!("{field}.weight"),
            "must be between 1 and 99 (the canary gets all the traffic when it is promoted)",
        )),
        (None, Some(p)) => match p.duration.as_deref() {
            None => Ok(Step::Pause(None)),
            Some(text) => {
                duration(&format!("{field}.pause.duration"), text).map(|d| Step::Pause(Some(d)))
            }
        },
        _ => Err(invalid(field, "needs exactly one of weight and pause")),
    }
}

/// The analysis of `spec.rollout.canary.analysis`, defaults resolved.
pub fn analysis_policy(a: &CanaryAnalysis) -> Result<AnalysisPolicy, InvalidSpec> {
    let field = "spec.rollout.canary.analysis";
    let interval = match a.interval.as_deref() {
        Some(text) => duration(&format!("{field}.interval"), text)?,
        None => DEFAULT_INTERVAL,
    };
    if interval < Duration::from_secs(5) {
        return Err(invalid(
            format!("{field}.interval"),
            "must be at least 5s (a rate over a shorter window has too few scrapes)",
        ));
    }
    let no_data_timeout = match a.no_data_timeout.as_deref() {
        Some(text) => duration(&format!("{field}.noDataTimeout"), text)?,
        None => DEFAULT_NO_DATA_TIMEOUT,
    };
    if let Some(selector) = a.selector.as_deref().filter(|s| !s.trim().is_empty()) {
        let series = format!("up{{{selector}}}");
        promql_parser::parser::parse(&series)
            .map(|_| ())
            .map_err(|e| {
                invalid(
                    format!("{field}.selector"),
                    format!("{selector:?} is not a list of PromQL label matchers: {e}"),
                )
            })?;
    }
    Ok(AnalysisPolicy {
        interval,
        min_success_rate: a.min_success_rate.unwrap_or(99.0),
        max_success_rate_drop: a.max_success_rate_drop.unwrap_or(1.0),
        max_p99_latency_ms: a.max_p99_latency_ms,
        max_p99_latency_ratio: a.max_p99_latency_ratio.unwrap_or(2.0),
        failure_limit: a.failure_limit.unwrap_or(2).max(1),
        min_requests: f64::from(a.min_requests.unwrap_or(20).max(1)),
        no_data_timeout,
        request_metric: a.request_metric.clone(),
        latency_metric: a
            .latency_metric
            .clone()
            .unwrap_or_else(|| DEFAULT_LATENCY_METRIC.to_string()),
        selector: a.selector.clone().filter(|s| !s.trim().is_empty()),
    })
}

/// The canary policy, None for strategy RollingUpdate.
pub fn canary_policy(spec: &MicroserviceSpec) -> Result<Option<CanaryPolicy>, InvalidSpec> {
    let Some(rollout) = spec.rollout.as_ref() else {
        return Ok(None);
    };
    if rollout.strategy != Some(RolloutStrategy::Canary) {
        if rollout.canary.is_some() {
            return Err(invalid(
                "spec.rollout.canary",
                "needs spec.rollout.strategy: Canary",
            ));
        }
        return Ok(None);
    }
    let settings = rollout.canary.clone().unwrap_or_default();
    let steps = match &settings.steps {
        None => DEFAULT_STEPS.to_vec(),
        Some(steps) => steps
            .iter()
            .enumerate()
            .map(|(i, s)| step(i, s))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let routing = match &settings.traffic_routing {
        None => Routing::Replicas,
        Some(r) => match (&r.nginx, &r.gateway_api) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "spec.rollout.canary.trafficRouting",
                    "takes one router: nginx or gatewayAPI",
                ));
            }
            (Some(_), None) if spec.ingress.is_none() => {
                return Err(invalid(
                    "spec.rollout.canary.trafficRouting.nginx",
                    "needs spec.ingress: the canary Ingress copies its host and path",
                ));
            }
            (Some(_), None) => Routing::Nginx,
            (None, Some(g)) if g.http_route.trim().is_empty() => {
                return Err(invalid(
                    "spec.rollout.canary.trafficRouting.gatewayAPI.httpRoute",
                    "must name an HTTPRoute in the Microservice's namespace",
                ));
            }
            (None, Some(g)) => Routing::GatewayApi(g.http_route.clone()),
            (None, None) => Routing::Replicas,
        },
    };
    Ok(Some(CanaryPolicy {
        steps,
        analysis: analysis_policy(&settings.analysis.clone().unwrap_or_default())?,
        routing,
        promote: settings.promote.unwrap_or(false),
    }))
}

/// Longest Microservice name a traffic router allows: its Services `<name>-stable` and
/// `<name>-canary` must be Service names too (at most 63 characters).
pub const MAX_ROUTED_NAME: usize = 63 - "-stable".len();

/// Refuses a name too long for the Services of the canary's traffic router, if it has one.
pub fn check_routed_name(name: &str, policy: Option<&CanaryPolicy>) -> Result<(), InvalidSpec> {
    let routed = policy.is_some_and(|p| p.routing != Routing::Replicas);
    if routed && name.len() > MAX_ROUTED_NAME {
        return Err(invalid(
            "metadata.name",
            format!(
                "{name:?} is too long for spec.rollout.canary.trafficRouting: its Services {name}-stable and {name}-canary must be at most 63 characters, so the name at most {MAX_ROUTED_NAME}"
            ),
        ));
    }
    Ok(())
}

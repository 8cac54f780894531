//! Gathering the inputs of one tick: which Microservices the loop scales, the batched and
//! per-Microservice queries, the pod index, and then one [`Observed`] per Microservice
//! (pure: [`observe`] takes the query results as data, so it is tested with canned
//! Prometheus responses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::decision::{Metric, MetricKind, PodSample, PodState, Reading};
use super::source::{self, Batch, MetricError, MetricsConfig};
use crate::crd::Microservice;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::validate::{Scaling, ShoalScaling, ValidatedMicroservice, parse_quantity};
use crate::vocabulary::INSTANCE_LABEL;

/// The settings of a Microservice whose engine is Shoal.
pub fn settings(valid: &ValidatedMicroservice) -> Option<ShoalScaling> {
    match &valid.scaling {
        Scaling::Shoal(s) => Some(s.clone()),
        Scaling::Fixed(_) | Scaling::Hpa(_) => None,
    }
}

/// A Microservice the loop scales this tick.
#[derive(Clone, Debug)]
pub struct Target {
    /// The object as cached.
    pub ms: Arc<Microservice>,
    /// Validated.
    pub valid: ValidatedMicroservice,
    /// Resolved settings.
    pub settings: ShoalScaling,
}

impl Target {
    /// Cache key.
    pub fn key(&self) -> ObjectRef<Microservice> {
        ObjectRef::from_obj(&*self.ms)
    }

    /// The query run for this Microservice alone, when it has a query, metric or selector
    /// of its own.
    pub fn own_query(&self, config: &MetricsConfig) -> Option<String> {
        let rr = self.settings.request_rate.as_ref()?;
        rr.query.clone().or_else(|| {
            (rr.metric.is_some() || rr.selector.is_some()).then(|| {
                config.request_rate_query_for(
                    &self.valid.namespace,
                    &self.valid.name,
                    rr.metric.as_deref(),
                    rr.selector.as_deref(),
                )
            })
        })
    }
}

/// Everything one Microservice's decision needs, read this tick.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The Microservice.
    pub target: Target,
    /// The replicas it runs: `spec.replicas` of its Deployment, plus its canary's during
    /// a canary release.
    pub current: i32,
    /// `spec.replicas` of the (stable) Deployment.
    pub stable: i32,
    /// The canary's weight while a canary release is in its steps: the stable Deployment
    /// then gets only its share of the desired total.
    pub canary_weight: Option<i32>,
    /// A rollout of the Deployment is in progress.
    pub rollout_in_progress: bool,
    /// Its metrics, in the order request rate, CPU.
    pub metrics: Vec<Metric>,
    /// The queries whose results the metrics come from, by metric: (stable, burst).
    pub queries: Vec<(MetricKind, String, Option<String>)>,
}

/// The results of one tick's queries.
#[derive(Debug)]
pub struct Batches {
    /// Request rate per pod: key (namespace, "service/pod").
    pub rate: Batch,
    /// Span of the rate per pod: key (namespace, "service/pod").
    pub span: Batch,
    /// Burst per service: key (namespace, service).
    pub burst: Batch,
    /// CPU cores per pod: key (namespace, pod).
    pub cpu: Batch,
    /// Results of the Microservices' own queries.
    pub own: HashMap<ObjectRef<Microservice>, Result<f64, MetricError>>,
}

/// How a pod takes part in the calculation (upstream `groupPods`, with readiness applied
/// to every metric: a pod that is not Ready serves no requests).
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some()
        || phase == Some("Failed")
        || phase == Some("Succeeded")
    {
        return PodState::Ignored;
    }
    let ready = status.is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    if phase == Some("Running") && ready {
        PodState::Ready
    } else {
        PodState::Unready
    }
}

fn cpu_request(pod: &Pod) -> f64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
        .filter_map(|q| parse_quantity(&q.0))
        .sum()
}

/// One [`Observed`] per target that has a Deployment, from the caches and query results.
pub fn observe(
    config: &MetricsConfig,
    targets: Vec<Target>,
    deployment_of: impl Fn(&Target) -> Option<Arc<Deployment>>,
    pods: &[Arc<Pod>],
    batches: &Batches,
) -> Vec<Observed> {
    let window = config.rate_window_seconds().unwrap_or(60.0);
    let mut by_service: HashMap<(String, String), Vec<&Arc<Pod>>> = HashMap::new();
    for pod in pods {
        if let (Some(ns), Some(instance)) = (pod.namespace(), pod.labels().get(INSTANCE_LABEL)) {
            by_service
                .entry((ns, instance.clone()))
                .or_default()
                .push(pod);
        }
    }
    let none = Vec::new();
    targets
        .into_iter()
        .filter_map(|target| {
            let deployment = deployment_of(&target)?;
            let (ns, name) = (target.valid.namespace.clone(), target.valid.name.clone());
            let pods = by_service.get(&(ns.clone(), name.clone())).unwrap_or(&none);
            let current = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let mut metrics = Vec::new();
            let mut queries = Vec::new();
            if let Some(rr) = &target.settings.request_rate {
                let kind = MetricKind::RequestRate;
                let target_value = rr.target_per_replica;
                if let Some(own) = target.own_query(config) {
                    let reading = batches
                        .own
                        .get(&target.key())
                        .cloned()
                        .unwrap_or_else(|| {
                            Err(MetricError::NoData(
                                "the query of this Microservice has not answered yet".into(),
                            ))
                        })
                        .map(|value| Reading::Total { value });
                    metrics.push(Metric {
                        kind,
                        target: target_value,
                        reading,
                    });
                    queries.push((kind, own, None));
                } else {
                    let reading = request_rate_reading(
                        &batches.rate,
                        &batches.span,
                        &batches.burst,
                        &ns,
                        &name,
                        pods,
                        window,
                    );
                    metrics.push(Metric {
                        kind,
                        target: target_value,
                        reading,
                    });
                    queries.push((
                        kind,
                        config.request_rate_query(),
                        Some(config.burst_query()),
                    ));
                }
            }
            if let Some(cpu) = target.settings.cpu_target {
                let reading = match &batches.cpu {
                    Err(e) => Err(e.clone()),
                    Ok(map) => Ok(Reading::Pods {
                        pods: pods
                            .iter()
                            .map(|p| PodSample {
                                state: pod_state(p),
                                value: map
                                    .get(&(ns.clone(), p.name_any()))
                                    .and_then(|v| v.clone().ok()),
                                request: cpu_request(p),
                            })
                            .collect(),
                        window_complete: true,
                        burst: None,
                    }),
                };
                metrics.push(Metric {
                    kind: MetricKind::Cpu,
                    target: f64::from(cpu),
                    reading,
                });
                queries.push((MetricKind::Cpu, config.cpu_query(), None));
            }
            Some(Observed {
                rollout_in_progress: Progress::of(&deployment).rollout_in_progress(),
                target,
                current,
                stable: current,
                canary_weight: None,
                metrics,
                queries,
            })
        })
        .collect()
}

/// Counts a canary release in: the canary's replicas join the current count, its weight
/// splits the desired total ([`crate::tracks::stable_share`]), and while its
/// pods are not all available there is no scale-down (as during a rollout).
pub fn with_canary(observed: &mut Observed, canary: Option<&Deployment>) {
    let status = observed.target.ms.status.as_ref();
    let Some(c) = status
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.canary.as_ref())
        .filter(|c| c.phase.in_flight())
    else {
        return;
    };
    let Some(canary) = canary else {
        return;
    };
    let replicas = canary.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    observed.current = observed.stable + replicas;
    if c.phase != crate::crd::CanaryPhase::Promoting {
        observed.canary_weight = Some(c.weight);
    }
    observed.rollout_in_progress |= Progress::of(canary).rollout_in_progress();
}

fn request_rate_reading(
    rate: &Batch,
    span: &Batch,
    burst: &Batch,
    ns: &str,
    name: &str,
    pods: &[&Arc<Pod>],
    window: f64,
) -> Result<Reading, MetricError> {
    let rates = rate.as_ref().map_err(Clone::clone)?;
    let spans = span.as_ref().ok();
    let mut window_complete = true;
    let samples = pods
        .iter()
        .map(|p| {
            let key = (ns.to_string(), format!("{name}/{}", p.name_any()));
            let value = rates.get(&key).and_then(|v| v.clone().ok());
            let state = pod_state(p);
            if state == PodState::Ready && value.is_some() {
                match spans.and_then(|s| s.get(&key)).and_then(|v| v.clone().ok()) {
                    Some(s) if s <= window * source::GAP_FACTOR => {}
                    // A span well over the window, or unknown: a gap may lie inside it.
                    _ => window_complete = false,
                }
            }
            PodSample {
                state,
                value,
                request: 0.0,
            }
        })
        .collect();
    let burst = burst
        .as_ref()
        .ok()
        .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
        .and_then(|v| v.clone().ok());
    Ok(Reading::Pods {
        pods: samples,
        window_complete,
        burst,
    })
}

/// Runs one batched query (or none when nobody needs it) and counts it.
pub async fn batch(
    prometheus: Option<&prometheus_http_query::Client>,
    config: &MetricsConfig,
    wanted: bool,
    promql: String,
    first: &str,
    rest: &[&str],
    metrics: &Metrics,
) -> Batch {
    if !wanted {
        return Ok(HashMap::new());
    }
    let Some(prometheus) = prometheus else {
        return Err(MetricError::NoClient("check --prometheus-url".into()));
    };
    let started = Instant::now();
    let result = source::query(prometheus, &promql, config.timeout)
        .await
        .and_then(|data| source::by_labels(&data, first, rest));
    metrics.observe_query(
        started.elapsed(),
        result.as_ref().err().map(|e| ("", "", e.reason())),
    );
    result
}

/// The batched queries of one tick, run concurrently.
pub async fn fetch_batches(
    prometheus: Option<&prometheus_http_query::Client>,
    config: &MetricsConfig,
    targets: &[Target],
    own: &OwnQueries,
    metrics: &Arc<Metrics>,
) -> Batches {
    let need_rps = targets
        .iter()
        .any(|t| t.settings.request_rate.is_some() && t.own_query(config).is_none());
    let need_cpu = targets.iter().any(|t| t.settings.cpu_target.is_some());
    let (ns, svc, pod) = (
        config.namespace_label.as_str(),
        config.service_label.as_str(),
        config.pod_label.as_str(),
    );
    let (by_pod, by_service, by_pod_only) = ([svc, pod], [svc], [pod]);
    let (rate, span, burst, cpu) = futures::join!(
        batch(
            prometheus,
            config,
            need_rps,
            config.request_rate_query(),
            ns,
            &by_pod,
            metrics
        ),
        batch(
            prometheus,
            config,
            need_rps,
            config.span_query(),
            ns,
            &by_pod,
            metrics
        ),
        batch(
            prometheus,
            config,
            need_rps,
            config.burst_query(),
            ns,
            &by_service,
            metrics
        ),
        batch(
            prometheus,
            config,
            need_cpu,
            config.cpu_query(),
            ns,
            &by_pod_only,
            metrics
        ),
    );
    Batches {
        rate,
        span,
        burst,
        cpu,
        own: own.results(prometheus, config, targets, metrics),
    }
}

/// The Microservices' own queries, each run in the background with its own timeout, so a
/// slow one never stretches the tick for the others. A tick reads the newest result.
#[derive(Clone, Default)]
pub struct OwnQueries {
    inner: Arc<Mutex<HashMap<ObjectRef<Microservice>, OwnQuery>>>,
}

#[derive(Default)]
struct OwnQuery {
    running: bool,
    query: String,
    result: Option<(Instant, Result<f64, MetricError>)>,
}

impl OwnQueries {
    /// Starts a query for every target with one that is not already running, and returns
    /// the newest finished result of each (fresh within a few timeouts; older is no data).
    pub fn results(
        &self,
        prometheus: Option<&prometheus_http_query::Client>,
        config: &MetricsConfig,
        targets: &[Target],
        metrics: &Arc<Metrics>,
    ) -> HashMap<ObjectRef<Microservice>, Result<f64, MetricError>> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: HashMap<ObjectRef<Microservice>, (String, String, String)> = targets
            .iter()
            .filter_map(|t| {
                Some((
                    t.key(),
                    (
                        t.own_query(config)?,
                        t.valid.namespace.clone(),
                        t.valid.name.clone(),
                    ),
                ))
            })
            .collect();
        map.retain(|k, _| wanted.contains_key(k));
        let mut out = HashMap::new();
        let stale_after = config.timeout * 3 + Duration::from_secs(30);
        for (key, (query, ns, name)) in wanted {
            let entry = map.entry(key.clone()).or_default();
            if entry.query != query {
                *entry = OwnQuery {
                    query: query.clone(),
                    ..Default::default()
                };
            }
            if let Some((at, result)) = &entry.result
                && at.elapsed() <= stale_after
            {
                out.insert(key.clone(), result.clone());
            }
            if entry.running {
                continue;
            }
            let Some(client) = prometheus.cloned() else {
                out.insert(
                    key,
                    Err(MetricError::NoClient("check --prometheus-url".into())),
                );
                continue;
            };
            entry.running = true;
            let inner = self.inner.clone();
            let timeout = config.timeout;
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = source::query(&client, &query, timeout)
                    .await
                    .and_then(|data| source::single(&data));
                metrics.observe_query(
                    started.elapsed(),
                    result
                        .as_ref()
                        .err()
                        .map(|e| (ns.as_str(), name.as_str(), e.reason())),
                );
                let mut map = inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = map.get_mut(&key)
                    && entry.query == query
                {
                    entry.running = false;
                    entry.result = Some((Instant::now(), result));
                }
            });
        }
        out
    }
}

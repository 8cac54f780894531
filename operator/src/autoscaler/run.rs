//! The metrics loop: each tick reads the metrics of every Shoal-engine Microservice in a
//! few batched queries, decides per Microservice (pure, in memory), then writes the scale
//! subresource and status where they changed, all Microservices concurrently.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::decision::{self, Behavior, Decision, Inputs, MetricInput, MetricKind, State};
use super::source::{self, Batch, MetricsConfig};
use crate::AUTOSCALER_FIELD_MANAGER;
use crate::conditions;
use crate::crd::{AutoscalerStatus, MetricStatus, Microservice};
use crate::kube_ext::{EventSink, scoped, spawn_cache};
use crate::validate::{self, Engine, ValidatedMicroservice, parse_quantity};
use crate::vocabulary::{INSTANCE_LABEL, MANAGED_SELECTOR};

/// Condition types the autoscaler owns in a Microservice's status.
pub const AUTOSCALER_CONDITIONS: [&str; 3] = [
    decision::ABLE_TO_SCALE,
    decision::SCALING_ACTIVE,
    decision::SCALING_LIMITED,
];

/// Settings of the metrics loop.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time between ticks.
    pub tick: Duration,
    /// Where and how to read metrics.
    pub metrics: MetricsConfig,
    /// Default scale-down stabilization window in seconds (300 like the HPA).
    pub scale_down_window_seconds: i64,
    /// Watch only this namespace.
    pub namespace: Option<String>,
}

/// Counters of the loop, readable by telemetry and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// PromQL queries sent.
    pub queries: AtomicU64,
    /// Queries that failed.
    pub query_errors: AtomicU64,
    /// Scale writes.
    pub scale_writes: AtomicU64,
}

struct Tracked {
    state: State,
    last_scale_time: Option<Time>,
}

struct Caches {
    microservices: Store<Microservice>,
    deployments: Store<Deployment>,
    pods: Store<Pod>,
}

/// Runs the metrics loop until `shutdown` completes.
pub async fn run(
    client: Client,
    config: Config,
    stats: Arc<Stats>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let ns = config.namespace.as_deref();
    let caches = Caches {
        microservices: spawn_cache(scoped::<Microservice>(&client, ns), None),
        deployments: spawn_cache(scoped::<Deployment>(&client, ns), Some(MANAGED_SELECTOR)),
        pods: spawn_cache(scoped::<Pod>(&client, ns), Some(MANAGED_SELECTOR)),
    };
    let _ = futures::join!(
        caches.microservices.wait_until_ready(),
        caches.deployments.wait_until_ready(),
        caches.pods.wait_until_ready()
    );
    let prometheus = source::client(&config.metrics);
    if let Err(err) = &prometheus {
        warn!(error = %err, "no Prometheus client: every tick will report FailedGetMetrics");
    }
    let recorder = EventSink::new(
        client.clone(),
        crate::kube_ext::reporter("shoal-autoscaler"),
    );
    let mut tracked: HashMap<ObjectRef<Microservice>, Tracked> = HashMap::new();
    let mut interval = tokio::time::interval(config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(tick = ?config.tick, prometheus = %config.metrics.url, "starting the metrics loop");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            scheduled = interval.tick() => {
                let lag = scheduled.elapsed();
                metrics.observe_tick_lag(lag);
                let started = Instant::now();
                let count = tick(&client, &config, &caches, prometheus.as_ref().ok(), &recorder, &mut tracked, &stats, &metrics).await;
                stats.ticks.fetch_add(1, Ordering::Relaxed);
                debug!(services = count, took_ms = started.elapsed().as_millis() as u64, lag_ms = lag.as_millis() as u64, "tick");
            }
        }
    }
    info!("metrics loop stopped");
}

async fn batch(
    prometheus: Option<&prometheus_http_query::Client>,
    wanted: bool,
    promql: String,
    labels: (&str, &str),
    stats: &Stats,
    metrics: &crate::metrics::Metrics,
) -> Batch {
    if !wanted {
        return Ok(HashMap::new());
    }
    let Some(prometheus) = prometheus else {
        return Err("no Prometheus client (check --prometheus-url)".to_string());
    };
    stats.queries.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result = source::query(prometheus, &promql)
        .await
        .and_then(|data| source::by_labels(&data, labels.0, labels.1));
    metrics.observe_query(started.elapsed());
    if result.is_err() {
        stats.query_errors.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// One Microservice's inputs and what the loop must do for it.
struct Plan {
    ms: Arc<Microservice>,
    valid: ValidatedMicroservice,
    decision: Decision,
    current: i32,
    status: AutoscalerStatus,
    conditions: Vec<Condition>,
}

// The loop's long-lived parts are passed one by one rather than bundled: each is borrowed
// for the tick only, and `tracked` mutably.
#[allow(clippy::too_many_arguments)]
async fn tick(
    client: &Client,
    config: &Config,
    caches: &Caches,
    prometheus: Option<&prometheus_http_query::Client>,
    recorder: &EventSink,
    tracked: &mut HashMap<ObjectRef<Microservice>, Tracked>,
    stats: &Stats,
    metrics: &crate::metrics::Metrics,
) -> usize {
    let targets: Vec<(Arc<Microservice>, ValidatedMicroservice)> = caches
        .microservices
        .state()
        .into_iter()
        .filter(|ms| ms.metadata.deletion_timestamp.is_none())
        .filter_map(|ms| {
            let valid = validate::validate(&ms).ok()?;
            (valid.engine() == Engine::Shoal).then_some((ms, valid))
        })
        .collect();
    // Forget Microservices that left the Shoal engine (or were deleted), and release the
    // status fields the autoscaler owned on them.
    let keep: std::collections::HashSet<ObjectRef<Microservice>> = targets
        .iter()
        .map(|(ms, _)| ObjectRef::from_obj(&**ms))
        .collect();
    let gone: Vec<ObjectRef<Microservice>> = tracked
        .keys()
        .filter(|k| !keep.contains(k))
        .cloned()
        .collect();
    for key in gone {
        tracked.remove(&key);
        if let Some(ms) = caches.microservices.get(&key)
            && let Some(ns) = ms.namespace()
        {
            let api: Api<Microservice> = Api::namespaced(client.clone(), &ns);
            let body = serde_json::json!({"apiVersion": "shoal.dev/v1alpha1", "kind": "Microservice", "status": {}});
            if let Err(err) = api
                .patch_status(
                    &ms.name_any(),
                    &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                warn!(name = %ms.name_any(), error = %err, "could not release the autoscaler's status");
            }
        }
    }
    if targets.is_empty() {
        return 0;
    }

    let rate_spec = |v: &ValidatedMicroservice| {
        v.spec
            .autoscaling
            .as_ref()
            .and_then(|a| a.request_rate.clone())
    };
    // A Microservice with a query, metric or selector of its own is queried on its own.
    let own_query = |v: &ValidatedMicroservice| -> Option<String> {
        let rr = rate_spec(v)?;
        rr.query.clone().or_else(|| {
            (rr.metric.is_some() || rr.selector.is_some()).then(|| {
                config.metrics.request_rate_query_for(
                    &v.namespace,
                    &v.name,
                    rr.metric.as_deref(),
                    rr.selector.as_deref(),
                )
            })
        })
    };
    let need_rps = targets
        .iter()
        .any(|(_, v)| rate_spec(v).is_some() && own_query(v).is_none());
    let need_cpu = targets
        .iter()
        .any(|(_, v)| v.spec.autoscaling.as_ref().is_some_and(|a| a.cpu.is_some()));
    let m = &config.metrics;
    let (rps, burst, cpu) = futures::join!(
        batch(
            prometheus,
            need_rps,
            m.request_rate_query(),
            (&m.namespace_label, &m.service_label),
            stats,
            metrics
        ),
        batch(
            prometheus,
            need_rps,
            m.burst_query(),
            (&m.namespace_label, &m.service_label),
            stats,
            metrics
        ),
        batch(
            prometheus,
            need_cpu,
            m.cpu_query(),
            (&m.namespace_label, &m.pod_label),
            stats,
            metrics
        ),
    );
    // A Microservice's own query cannot be batched: one query each.
    let custom: HashMap<ObjectRef<Microservice>, Result<f64, String>> =
        futures::future::join_all(targets.iter().filter_map(|(ms, v)| {
            let query = own_query(v)?;
            let key = ObjectRef::from_obj(&**ms);
            Some(async move {
                let value = match prometheus {
                    None => Err("no Prometheus client (check --prometheus-url)".to_string()),
                    Some(p) => {
                        stats.queries.fetch_add(1, Ordering::Relaxed);
                        source::query(p, &query)
                            .await
                            .and_then(|d| source::single(&d))
                    }
                };
                (key, value)
            })
        }))
        .await
        .into_iter()
        .collect();

    // Ready pods by (namespace, Microservice), indexed once per tick.
    let mut pods: HashMap<(String, String), Vec<Arc<Pod>>> = HashMap::new();
    for pod in caches.pods.state() {
        if let (Some(ns), Some(instance)) =
            (pod.namespace(), pod.labels().get(INSTANCE_LABEL).cloned())
            && is_ready(&pod)
        {
            pods.entry((ns, instance)).or_default().push(pod);
        }
    }

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let now_ms = now.0.as_millisecond();
    let mut plans = Vec::new();
    for (ms, valid) in targets {
        let Some(deployment) = caches
            .deployments
            .get(&ObjectRef::new(&valid.name).within(&valid.namespace))
        else {
            continue;
        };
        let Some(autoscaling) = valid.spec.autoscaling.clone() else {
            continue;
        };
        let key = ObjectRef::from_obj(&*ms);
        let ready_pods = pods
            .remove(&(valid.namespace.clone(), valid.name.clone()))
            .unwrap_or_default();
        let current = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let rollout_in_progress = status.observed_generation.unwrap_or(0)
            < deployment.metadata.generation.unwrap_or(0)
            || status.replicas.unwrap_or(0) > status.updated_replicas.unwrap_or(0);

        let mut metrics = Vec::new();
        let mut queries = Vec::new();
        if let Some(rr) = &autoscaling.request_rate {
            let service_key = (valid.namespace.clone(), valid.name.clone());
            let (value, burst_value, query) = match own_query(&valid) {
                Some(q) => (
                    custom
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| Err("not queried".into())),
                    None,
                    q,
                ),
                None => (
                    source::lookup(&rps, &service_key, "request-rate"),
                    source::lookup(&burst, &service_key, "request-rate").ok(),
                    m.request_rate_query_for(&valid.namespace, &valid.name, None, None),
                ),
            };
            metrics.push(MetricInput {
                kind: MetricKind::RequestRate,
                target: rr.target_per_replica,
                value,
                burst: burst_value,
            });
            queries.push(query);
        }
        if let Some(cpu_target) = &autoscaling.cpu {
            metrics.push(MetricInput {
                kind: MetricKind::Cpu,
                target: f64::from(cpu_target.target_utilization),
                value: cpu_utilization(&cpu, &valid.namespace, &ready_pods),
                burst: None,
            });
            queries.push(m.cpu_query());
        }
        let inputs = Inputs {
            current,
            ready: ready_pods.len() as i32,
            min: autoscaling.min_replicas,
            max: autoscaling.max_replicas,
            behavior: Behavior::resolve(
                autoscaling.behavior.as_ref(),
                config.scale_down_window_seconds,
            ),
            metrics: metrics.clone(),
            rollout_in_progress,
            paused: autoscaling.paused == Some(true),
            fallback: autoscaling
                .fallback
                .as_ref()
                .map(|f| (f.replicas, f.after_failures.unwrap_or(3).max(1) as u32)),
        };
        let entry = tracked.entry(key).or_insert_with(|| Tracked {
            state: State::default(),
            last_scale_time: ms
                .status
                .as_ref()
                .and_then(|s| s.autoscaler.as_ref())
                .and_then(|a| a.last_scale_time.clone()),
        });
        let (decision, state) = decision::decide(&inputs, &entry.state, now_ms);
        entry.state = state;
        if decision.desired != current {
            entry.last_scale_time = Some(now.clone());
        }
        let metric_status = |kind: MetricKind| -> Option<MetricStatus> {
            let i = metrics.iter().position(|x| x.kind == kind)?;
            Some(MetricStatus {
                current: metrics[i]
                    .value
                    .as_ref()
                    .ok()
                    .map(|v| (v * 1000.0).round() / 1000.0),
                target: metrics[i].target,
                proposed_replicas: decision.proposals.get(i).and_then(|p| p.1),
                query: queries.get(i).cloned(),
                error: metrics[i].value.as_ref().err().cloned(),
            })
        };
        let autoscaler = AutoscalerStatus {
            current_replicas: Some(current),
            desired_replicas: Some(decision.desired),
            raw_desired_replicas: decision.raw_desired,
            limited_by: decision.limited_by().map(str::to_string),
            last_scale_time: entry.last_scale_time.clone(),
            request_rate: metric_status(MetricKind::RequestRate),
            cpu: metric_status(MetricKind::Cpu),
        };
        let existing = ms
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let wanted = [
            decision.able_to_scale.clone(),
            decision.scaling_active.clone(),
            decision.scaling_limited.clone(),
        ];
        let conditions: Vec<Condition> =
            conditions::merge(existing, &wanted, valid.generation, &now)
                .into_iter()
                .filter(|c| AUTOSCALER_CONDITIONS.contains(&c.type_.as_str()))
                .collect();
        plans.push(Plan {
            ms,
            valid,
            decision,
            current,
            status: autoscaler,
            conditions,
        });
    }
    let count = plans.len();
    futures::future::join_all(
        plans
            .into_iter()
            .map(|plan| act(client, recorder, plan, stats, metrics)),
    )
    .await;
    count
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Average CPU utilization of the ready pods that have data, in percent of their requests.
fn cpu_utilization(batch: &Batch, namespace: &str, pods: &[Arc<Pod>]) -> Result<f64, String> {
    let map = batch.as_ref().map_err(Clone::clone)?;
    let (mut used, mut requested, mut missing) = (0.0, 0.0, 0);
    for pod in pods {
        let request: f64 = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
            .filter_map(|q| parse_quantity(&q.0))
            .sum();
        match map.get(&(namespace.to_string(), pod.name_any())) {
            Some(Ok(value)) if request > 0.0 => {
                used += value;
                requested += request;
            }
            _ => missing += 1,
        }
    }
    if requested == 0.0 {
        return Err(format!(
            "no CPU usage series for the {} ready pods",
            pods.len()
        ));
    }
    if missing > 0 {
        debug!(
            namespace,
            missing, "pods without CPU data are left out of the average"
        );
    }
    source::strict(used / requested * 100.0)
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
    let moved = |a: Option<&MetricStatus>, b: Option<&MetricStatus>| match (
        a.and_then(|m| m.current),
        b.and_then(|m| m.current),
    ) {
        (Some(x), Some(y)) => {
            (x - y).abs() > decision::TOLERANCE * x.abs().max(y.abs()).max(1e-9)
                && (x - y).abs() > 0.01
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

async fn act(
    client: &Client,
    recorder: &EventSink,
    plan: Plan,
    stats: &Stats,
    metrics: &crate::metrics::Metrics,
) {
    let Plan {
        ms,
        valid,
        decision,
        current,
        mut status,
        mut conditions,
    } = plan;
    let reference = ms.object_ref(&());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &valid.namespace);
    if decision.desired != current {
        stats.scale_writes.fetch_add(1, Ordering::Relaxed);
        metrics.scale_decision(current, decision.desired);
        let body = serde_json::json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": valid.name},
            "spec": {"replicas": decision.desired},
        });
        let explanation = explain(&status);
        match deployments
            .patch_scale(
                &valid.name,
                &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                info!(namespace = %valid.namespace, name = %valid.name, from = current, to = decision.desired, %explanation, "scaled");
                publish(
                    recorder,
                    &reference,
                    EventType::Normal,
                    "SuccessfulRescale",
                    format!("New size: {}; reason: {explanation}", decision.desired),
                )
                .await;
            }
            Err(err) => {
                warn!(name = %valid.name, error = %err, "scale write failed");
                publish(
                    recorder,
                    &reference,
                    EventType::Warning,
                    "FailedRescale",
                    format!("New size: {}; error: {err}", decision.desired),
                )
                .await;
                status.desired_replicas = Some(current);
                let failed = conditions::ConditionSpec::new(
                    decision::ABLE_TO_SCALE,
                    false,
                    decision::reason::FAILED_UPDATE_SCALE,
                    format!("the autoscaler could not update the scale: {err}"),
                );
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                conditions = conditions::merge(&conditions, &[failed], valid.generation, &now);
            }
        }
    }
    let old = ms.status.as_ref();
    if !status_changed(
        old.and_then(|s| s.autoscaler.as_ref()),
        old.map(|s| s.conditions.as_slice()).unwrap_or_default(),
        &status,
        &conditions,
    ) {
        return;
    }
    let api: Api<Microservice> = Api::namespaced(client.clone(), &valid.namespace);
    let body = serde_json::json!({
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "Microservice",
        "status": {"autoscaler": status, "conditions": conditions},
    });
    if let Err(err) = api
        .patch_status(
            &valid.name,
            &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        warn!(name = %valid.name, error = %err, "autoscaler status write failed");
    }
}

/// "requestRate 412.3/s (target 50/s per replica) wants 9; cpu 45% (target 70%) wants 3"
pub fn explain(status: &AutoscalerStatus) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &status.request_rate {
        parts.push(match r.current {
            Some(v) => format!(
                "requestRate {v:.1}/s (target {}/s per replica) wants {}",
                r.target,
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

async fn publish(
    recorder: &EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    recorder
        .publish(reference, type_, reason, "Scale", note)
        .await;
}

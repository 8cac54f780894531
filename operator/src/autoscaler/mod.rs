//! The autoscaler: a loop, separate from the reconcile loop, that scales Microservices
//! whose engine is Shoal through their Deployment's scale subresource (field manager
//! `shoal-autoscaler`). Each tick: [`inputs`] gathers one `Observed` per Microservice from
//! the watch caches and a fixed number of batched queries ([`source`]); [`decision`]
//! decides, purely; [`status`] turns the decision into status, purely; [`act`] writes.

pub mod act;
pub mod decision;
pub mod inputs;
pub mod source;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use self::act::{Outcome, Plan};
use self::decision::{Behavior, Inputs, State};
use self::inputs::{OwnQueries, Target};
use self::source::MetricsConfig;
use crate::AUTOSCALER_FIELD_MANAGER;
use crate::caches::PackedMicroservice;
use crate::crd::Microservice;
use crate::kube_ext::{self, EventSink, scoped, spawn_cache};
use crate::metrics::Metrics;
use crate::projection;
use crate::vocabulary::MANAGED_SELECTOR;

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

/// What the loop remembers per Microservice.
struct Tracked {
    state: State,
    last_scale_time: Option<Time>,
    behavior: Behavior,
}

struct Caches {
    microservices: Store<PackedMicroservice>,
    deployments: crate::packed::PackedStore<Deployment>,
    pods: Store<Pod>,
}

/// The loop's long-lived parts.
struct Loop {
    client: Client,
    config: Config,
    caches: Caches,
    prometheus: Option<prometheus_http_query::Client>,
    recorder: EventSink,
    metrics: Arc<Metrics>,
    own: OwnQueries,
    /// The (uid, resourceVersion) of every Microservice the previous tick found not to be
    /// one of the loop's (another engine, invalid): skipped without unpacking until it
    /// changes. Unpacking all 10,000 Microservices took ~0.4 s of CPU per tick.
    /// Kept as [`crate::packed::version_of`]: eight bytes each.
    not_targets: std::sync::Mutex<HashSet<u64>>,
}

/// Runs the metrics loop until `shutdown` completes.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    shared: Option<futures::channel::oneshot::Receiver<crate::caches::SharedCaches>>,
) {
    let ns = config.namespace.as_deref();
    // The controller's caches when it runs in this process (each object held once), else
    // caches of its own.
    let shared = match shared {
        Some(receiver) => receiver.await.ok(),
        None => None,
    };
    let (microservices, deployments, ready) = match shared {
        // The controller's readiness future (see `SharedCaches::ready`).
        Some(shared) => (
            shared.microservices,
            shared.deployments,
            shared.ready.clone().boxed(),
        ),
        None => {
            let microservices = spawn_cache(scoped::<PackedMicroservice>(&client, ns), None);
            let deployments = crate::packed::spawn(
                scoped::<Deployment>(&client, ns),
                Some(MANAGED_SELECTOR),
                crate::packed::PackedStore::projecting(projection::DEPLOYMENT),
            );
            let (m, d) = (microservices.clone(), deployments.clone());
            let ready = async move {
                let _ = futures::join!(m.wait_until_ready(), d.wait_until_ready());
            };
            (microservices, deployments, ready.boxed())
        }
    };
    let caches = Caches {
        microservices,
        deployments,
        pods: kube_ext::spawn_shaped_cache(
            scoped::<Pod>(&client, ns),
            Some(MANAGED_SELECTOR),
            projection::keeping(projection::POD),
        ),
    };
    let _ = futures::join!(ready, caches.pods.wait_until_ready());
    let prometheus = match source::client(&config.metrics) {
        Ok(p) => Some(p),
        Err(err) => {
            warn!(error = %err, "no Prometheus client: every tick will report FailedGetMetrics");
            None
        }
    };
    let recorder = EventSink::new(client.clone(), kube_ext::reporter("shoal-autoscaler"));
    let this = Loop {
        client,
        config,
        caches,
        prometheus,
        recorder,
        metrics,
        own: OwnQueries::default(),
        not_targets: Default::default(),
    };
    let mut tracked: HashMap<ObjectRef<Microservice>, Tracked> = HashMap::new();
    let mut interval = tokio::time::interval(this.config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(tick = ?this.config.tick, prometheus = %this.config.metrics.url, "starting the metrics loop");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            scheduled = interval.tick() => {
                let lag = scheduled.elapsed();
                this.metrics.observe_tick_lag(lag);
                let started = Instant::now();
                let count = this.tick(&mut tracked).await;
                this.metrics.tick();
                debug!(services = count, took_ms = started.elapsed().as_millis() as u64, lag_ms = lag.as_millis() as u64, "tick");
            }
        }
    }
    info!("metrics loop stopped");
}

/// The targets among `state` (valid, not being deleted, engine Shoal). `skipped` holds the
/// versions ([`crate::packed::version_of`]) found not to be targets at the previous call:
/// those are passed over without unpacking; it is replaced by this call's.
fn select_targets(
    state: Vec<Arc<crate::caches::PackedMicroservice>>,
    skipped: &mut HashSet<u64>,
) -> Vec<Target> {
    let mut still = HashSet::with_capacity(skipped.len());
    let mut targets = Vec::new();
    for packed in state {
        let meta = packed.meta();
        if meta.deletion_timestamp.is_some() {
            continue;
        }
        let version = packed.version_hash();
        if let Some(version) = version
            && skipped.contains(&version)
        {
            still.insert(version);
            continue;
        }
        let target = packed.unpack().map(Arc::new).and_then(|ms| {
            let valid = crate::validate::validate(&ms).ok()?;
            let settings = inputs::settings(&valid)?;
            Some(Target {
                ms,
                valid,
                settings,
            })
        });
        match target {
            Some(target) => targets.push(target),
            None => still.extend(version),
        }
    }
    *skipped = still;
    targets
}

impl Loop {
    /// The Microservices the loop scales: valid, not being deleted, engine Shoal.
    fn targets(&self) -> Vec<Target> {
        let mut skipped = self.not_targets.lock().unwrap_or_else(|e| e.into_inner());
        select_targets(self.caches.microservices.state(), &mut skipped)
    }

    /// Forgets Microservices that left the Shoal engine (or were deleted), and releases the
    /// status fields the autoscaler owned on them.
    async fn release_gone(
        &self,
        targets: &[Target],
        tracked: &mut HashMap<ObjectRef<Microservice>, Tracked>,
    ) {
        let keep: HashSet<ObjectRef<Microservice>> = targets.iter().map(Target::key).collect();
        let gone: Vec<ObjectRef<Microservice>> = tracked
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            tracked.remove(&key);
            let at = ObjectRef::new(&key.name).within(key.namespace.as_deref().unwrap_or_default());
            if let Some(ms) = self.caches.microservices.get(&at)
                && let Some(ns) = ms.namespace()
            {
                let api: Api<Microservice> = Api::namespaced(self.client.clone(), &ns);
                let body = serde_json::json!({
                    "apiVersion": Microservice::api_version(&()),
                    "kind": Microservice::kind(&()),
                    "status": {},
                });
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
    }

    async fn tick(&self, tracked: &mut HashMap<ObjectRef<Microservice>, Tracked>) -> usize {
        let targets = self.targets();
        self.release_gone(&targets, tracked).await;
        if targets.is_empty() {
            return 0;
        }
        let batches = inputs::fetch_batches(
            self.prometheus.as_ref(),
            &self.config.metrics,
            &targets,
            &self.own,
            &self.metrics,
        )
        .await;
        let pods = self.caches.pods.state();
        let deployments = &self.caches.deployments;
        let mut observed = inputs::observe(
            &self.config.metrics,
            targets,
            |t| deployments.get(&ObjectRef::new(&t.valid.name).within(&t.valid.namespace)),
            &pods,
            &batches,
        );
        for o in &mut observed {
            let name = crate::tracks::canary_name(&o.target.valid.name);
            let canary = deployments.get(&ObjectRef::new(&name).within(&o.target.valid.namespace));
            inputs::with_canary(o, canary.as_deref());
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let now_ms = now.0.as_millisecond();
        let mut plans = Vec::new();
        for observed in observed {
            let key = observed.target.key();
            let settings = &observed.target.settings;
            let behavior = Behavior::resolve(
                settings.behavior.as_ref(),
                self.config.scale_down_window_seconds,
            );
            let entry = tracked.entry(key.clone()).or_insert_with(|| Tracked {
                state: State::default(),
                last_scale_time: observed
                    .target
                    .ms
                    .status
                    .as_ref()
                    .and_then(|s| s.autoscaler.as_ref())
                    .and_then(|a| a.last_scale_time.clone()),
                behavior: behavior.clone(),
            });
            entry.behavior = behavior.clone();
            let decision_inputs = Inputs {
                current: observed.current,
                min: settings.min,
                max: settings.max,
                behavior,
                metrics: observed.metrics.clone(),
                rollout_in_progress: observed.rollout_in_progress,
                paused: settings.paused,
                fallback: settings.fallback.map(|f| (f.replicas, f.after_failures)),
            };
            let (decision, state) = decision::decide(&decision_inputs, &entry.state, now_ms);
            entry.state = state;
            let status =
                status::autoscaler_status(&observed, &decision, entry.last_scale_time.clone());
            let existing = observed
                .target
                .ms
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let conditions = status::conditions(
                existing,
                &[
                    decision.able_to_scale.clone(),
                    decision.scaling_active.clone(),
                    decision.scaling_limited.clone(),
                ],
                observed.target.valid.generation,
                &now,
            );
            plans.push((
                key,
                Plan {
                    observed,
                    decision,
                    status,
                    conditions,
                },
            ));
        }
        let count = plans.len();
        let outcomes = futures::future::join_all(plans.into_iter().map(|(key, plan)| {
            let now = now.clone();
            async move {
                (
                    key,
                    act::act(&self.client, &self.recorder, plan, &self.metrics, &now).await,
                )
            }
        }))
        .await;
        for (key, outcome) in outcomes {
            if let Outcome::Scaled { from, to } = outcome
                && let Some(entry) = tracked.get_mut(&key)
            {
                decision::limits::record_scale(
                    &mut entry.state.scale_events,
                    &entry.behavior,
                    from,
                    to,
                    now_ms,
                );
                entry.last_scale_time = Some(now.clone());
            }
        }
        count
    }
}

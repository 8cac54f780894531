//! The Microservice controller: its runtime (watch caches, context, retries) around the
//! reconcile pipeline of [`reconcile`]:
//! `validate -> render -> rollout -> apply -> status`.
//!
//! Reads come from watch caches (reflector stores), never a GET or LIST inside a
//! reconcile. A child is applied (server-side apply, field manager `shoal`) only when it
//! differs from the live object, and status is written only when it changed, so a
//! reconcile with nothing to do writes nothing.

pub mod apply;
mod burst;
pub mod canary;
pub mod diff;
pub mod index;
pub mod pod_monitors;
pub mod reclaim;
pub mod reconcile;
pub mod render;
pub mod resync;
pub mod rollout;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource as _;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::caches::PackedMicroservice;
use crate::crd::{CRD_NAME, Microservice, MicroserviceStatus};
use crate::error::{Error, Result};
use crate::kube_ext::{self, EventSink, scoped};
use crate::metrics::Metrics;
use crate::packed::PackedStore;
use crate::projection;

pub use crate::vocabulary::MANAGED_SELECTOR;

/// First retry delay after a failed reconcile; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest a reconcile may take: a request that never answers must not hold one of the
/// controller's reconcile slots (and graceful shutdown) forever.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Periodic re-check of every Microservice.
    pub resync: Duration,
    /// Most reconciles at once.
    pub concurrency: u16,
    /// Watch only this namespace; all namespaces when None.
    pub namespace: Option<String>,
    /// Time between two discovery checks for the Prometheus Operator's PodMonitor CRD.
    pub pod_monitor_recheck: Duration,
    /// Where canary analyses read their metrics.
    pub analysis: Option<crate::analysis::MetricsConfig>,
}

/// Watch caches of the children.
#[derive(Clone)]
pub struct Stores {
    /// Deployments Shoal manages.
    pub deployments: PackedStore<Deployment>,
    /// Services Shoal manages.
    pub services: PackedStore<Service>,
    /// Ingresses Shoal manages.
    pub ingresses: PackedStore<Ingress>,
    /// HPAs Shoal manages.
    pub hpas: PackedStore<HorizontalPodAutoscaler>,
    /// PodDisruptionBudgets Shoal manages.
    pub pod_disruption_budgets: PackedStore<PodDisruptionBudget>,
    /// CronJobs Shoal manages (the scheduled tasks).
    pub cron_jobs: PackedStore<CronJob>,
    /// Config ConfigMaps (metadata only: they are content-addressed).
    pub config_maps: PackedStore<PartialObjectMeta<ConfigMap>>,
    /// ReplicaSets of Shoal's Deployments (the revisions kept for rollbacks).
    pub replica_sets: PackedStore<ReplicaSet>,
    /// ReplicaSets by owning Deployment's uid.
    pub replica_sets_by_owner: index::OwnerIndex<ReplicaSet>,
    /// CronJobs by owning Microservice's uid.
    pub cron_jobs_by_owner: index::OwnerIndex<CronJob>,
    /// Config ConfigMaps by owning Microservice's uid.
    pub config_maps_by_owner: index::OwnerIndex<PartialObjectMeta<ConfigMap>>,
}

impl Stores {
    /// Completes when every cache holds its first full list, so that a reconcile after a
    /// restart sees what exists (and writes nothing when nothing changed).
    ///
    /// One future for all reconciles, awaited by each through a clone: a store's own
    /// readiness wait (kube-runtime's `Store::wait_until_ready`) wakes only the last task
    /// that polled it, so concurrent reconciles waiting on it directly would sleep until
    /// their timeout. A [`Shared`] future wakes every waiter.
    pub fn readiness(&self) -> Readiness {
        let stores = self.clone();
        async move {
            // A store's writer lives in its watch stream, which lives as long as the
            // controller.
            let _ = futures::join!(
                stores.deployments.wait_until_ready(),
                stores.services.wait_until_ready(),
                stores.ingresses.wait_until_ready(),
                stores.hpas.wait_until_ready(),
                stores.pod_disruption_budgets.wait_until_ready(),
                stores.cron_jobs.wait_until_ready(),
                stores.config_maps.wait_until_ready(),
                stores.replica_sets.wait_until_ready(),
            );
        }
        .boxed()
        .shared()
    }
}

/// Completes once every watch cache of [`Stores`] is filled; clone it to wait.
pub type Readiness = Shared<BoxFuture<'static, ()>>;

/// Shared state of all reconciles.
pub struct Context {
    client: Client,
    stores: Stores,
    /// Completes once the caches of `stores` are filled: no reconcile runs before.
    ready: Readiness,
    events: EventSink,
    resync: Duration,
    failures: Mutex<HashMap<ObjectRef<Microservice>, u32>>,
    /// The Microservice as our last status write returned it, until the cache shows it;
    /// packed (a few hundred bytes): while a burst keeps the controller's queue long, the
    /// reconcile that drops it may come minutes later, and 10,000 typed copies held ~100 MB.
    latest: Mutex<HashMap<ObjectRef<Microservice>, crate::caches::PackedMicroservice>>,
    metrics: Arc<Metrics>,
    /// The PodMonitor watch cache, while the Prometheus Operator's CRD is installed.
    pod_monitors: Arc<pod_monitors::PodMonitors>,
    /// When this process last wrote each Microservice's status (for
    /// [`Context::status_write_delay`]).
    status_written: Mutex<StatusWrites>,
    /// The children written in the last seconds, so that a cache behind our own write does
    /// not make a pass write the same again.
    written: Arc<apply::Written>,
    /// The canary analysis, when the operator has a Prometheus to ask.
    analyzer: Option<Arc<crate::analysis::Analyzer>>,
    /// New Microservices' children being created (a burst holds status writes and Events).
    burst: Arc<burst::Burst>,
}

/// How long a status write that only reports a rollout's progress may wait after the
/// previous write ([`status::Urgency::Progress`]), and a new Microservice's first status
/// after its creation ([`status::Urgency::First`]).
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a status write of details only may wait after the previous write
/// ([`status::Urgency::Detail`]).
pub const DETAIL_WRITE_INTERVAL: Duration = Duration::from_secs(300);

/// During a burst a new Microservice's first status waits for it to end, up to this age (and
/// a held Event up to this long). 10,000 new Microservices make a burst of about 19 minutes
/// on the test bed's two cores: with 60 s most first statuses went out during it, and with
/// 300 s every Microservice created in the first seconds came back at once when it turned
/// 300 s old (774 status writes in 5 s, no child write), after which each status and Event
/// went out beside its children, at half the child rate. The limit is a safety valve for a
/// burst that never ends, not the way held writes normally go out: they follow the burst's
/// end ([`burst::Burst::hold_status`]).
pub const FIRST_WRITE_BURST_LIMIT: Duration = Duration::from_secs(30 * 60);

impl Context {
    /// A context on `client` reading the children from `stores` (filled by [`run`]'s
    /// watches, or by hand in tests).
    pub fn new(client: Client, stores: Stores, resync: Duration, metrics: Arc<Metrics>) -> Context {
        Context {
            events: EventSink::new(client.clone(), kube_ext::reporter(crate::FIELD_MANAGER)),
            client,
            ready: stores.readiness(),
            stores,
            resync,
            failures: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            metrics,
            pod_monitors: Arc::default(),
            status_written: Mutex::default(),
            written: Arc::default(),
            analyzer: None,
            burst: Arc::default(),
        }
    }

    /// Reads canary analyses from `analyzer` (whose task [`crate::analysis::Analyzer::run`]
    /// queries Prometheus); without one a canary finds no data and is aborted after its
    /// `noDataTimeout`.
    pub fn with_analyzer(mut self, analyzer: Arc<crate::analysis::Analyzer>) -> Context {
        self.analyzer = Some(analyzer);
        self
    }

    /// Notes the children this context writes in `written`, which the child watches also
    /// read to tell the echoes of those writes from other changes ([`owner_triggers`]).
    pub fn with_written(mut self, written: Arc<apply::Written>) -> Context {
        self.written = written;
        self
    }

    /// Notes bursts of new Microservices in `burst`, which the child watches also read
    /// ([`owner_triggers`]); made with [`burst::Burst::releasing_to`], it sends the
    /// Microservices whose first status it held to the controller when it is over.
    pub fn with_burst(mut self, burst: Arc<burst::Burst>) -> Context {
        self.burst = burst;
        self
    }

    /// Reads PodMonitors from `pod_monitors` (filled by [`pod_monitors::watch`]); without
    /// it the context leaves PodMonitors alone, as when their CRD is not installed.
    pub fn with_pod_monitors(mut self, pod_monitors: Arc<pod_monitors::PodMonitors>) -> Context {
        self.pod_monitors = pod_monitors;
        self
    }

    fn forget_failures(&self, ms: &Microservice) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(ms));
    }

    /// How long to hold back the status write from the Microservice's `ms.status` to `new`
    /// ([`status::urgency`]); None: write now.
    fn status_write_delay(&self, ms: &Microservice, new: &MicroserviceStatus) -> Option<Duration> {
        let since_last_write = || {
            self.status_written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .since(ms)
        };
        let rest = |interval: Duration, elapsed: Duration| {
            interval.checked_sub(elapsed).filter(|d| !d.is_zero())
        };
        // Age on the apiserver's clock; a skew only moves when within 5 s it is written.
        let age = || {
            let created = ms.metadata.creation_timestamp.as_ref()?.0;
            Some(
                k8s_openapi::jiff::Timestamp::now()
                    .duration_since(created)
                    .unsigned_abs(),
            )
        };
        match status::urgency(ms.status.as_ref(), new) {
            status::Urgency::Now => None,
            status::Urgency::First => {
                let age = age()?;
                if let Some(hold) = self.hold_in_burst(ms, age) {
                    return Some(hold);
                }
                // After a burst the Microservices it held are old: their rollouts get the
                // same few seconds from its end, or each would cost a status write while
                // under way and another when Ready.
                let since = self.burst.since_burst().map_or(age, |s| s.min(age));
                rest(PROGRESS_WRITE_INTERVAL, since)
            }
            status::Urgency::FirstReady => self.hold_in_burst(ms, age()?),
            status::Urgency::Progress => rest(PROGRESS_WRITE_INTERVAL, since_last_write()?),
            status::Urgency::Detail => rest(DETAIL_WRITE_INTERVAL, since_last_write()?),
            // Back at the resync, or earlier when the rollout moves (a child changes).
            status::Urgency::WithNext => Some(self.resync),
        }
    }

    /// During a burst, how long a new Microservice (`age` old) holds its first status, and
    /// notes it with the burst, which sends it back to the controller when it is over
    /// ([`burst::Burst::hold_status`]); a child's change (the Deployment controller's status
    /// updates) or the periodic re-check may bring it back earlier. No polling, which at
    /// 10,000 new Microservices took the reconcile slots from the creates. None outside a
    /// burst, or once the Microservice is older than the limit.
    fn hold_in_burst(&self, ms: &Microservice, age: Duration) -> Option<Duration> {
        if !self.burst.busy() || age >= FIRST_WRITE_BURST_LIMIT {
            return None;
        }
        let name = ms.metadata.name.as_deref()?;
        let held = ObjectRef::new(name);
        self.burst
            .hold_status(match ms.metadata.namespace.as_deref() {
                Some(ns) => held.within(ns),
                None => held,
            });
        Some(FIRST_WRITE_BURST_LIMIT - age)
    }

    /// Forgets a deleted Microservice's last status write.
    fn forget_status_write(&self, ms: &Microservice) {
        self.status_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ms);
    }

    /// Remembers the Microservice our status write returned, for [`freshest`] (packed, as
    /// the cache's copies are: it may stay until the next reconcile).
    fn remember_written(&self, written: Microservice) {
        // Name and namespace only: the uid and resourceVersion `from_obj` would add are two
        // more strings per Microservice that no lookup compares.
        let mut key = ObjectRef::from_obj(&written);
        key.extra = Default::default();
        self.status_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wrote(&written);
        if let Some(packed) = crate::caches::PackedMicroservice::pack(&written) {
            self.latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, packed);
        }
    }
}

/// When this process last wrote each Microservice's status, for as long as a status write
/// may wait on it ([`DETAIL_WRITE_INTERVAL`]): a Microservice not written for longer is
/// forgotten, and one not found here is written at once. Keyed by a hash of its namespace
/// and name: 24 bytes per recent write where an `ObjectRef` key and its strings took ~250
/// for every Microservice, forever.
#[derive(Debug, Default)]
struct StatusWrites {
    at: HashMap<u64, Instant>,
    /// When entries older than [`DETAIL_WRITE_INTERVAL`] were last dropped.
    purged: Option<Instant>,
}

impl StatusWrites {
    fn key(ms: &Microservice) -> u64 {
        crate::packed::name_hash(
            ms.metadata.namespace.as_deref(),
            ms.metadata.name.as_deref(),
        )
    }

    /// How long ago `ms`'s status was last written, if within [`DETAIL_WRITE_INTERVAL`].
    fn since(&self, ms: &Microservice) -> Option<Duration> {
        self.at
            .get(&Self::key(ms))
            .map(Instant::elapsed)
            .filter(|elapsed| *elapsed < DETAIL_WRITE_INTERVAL)
    }

    fn wrote(&mut self, ms: &Microservice) {
        self.at.insert(Self::key(ms), Instant::now());
        self.purge();
    }

    fn forget(&mut self, ms: &Microservice) {
        self.at.remove(&Self::key(ms));
    }

    /// Drops what no delay reads any more, at most once a minute.
    fn purge(&mut self) {
        if self
            .purged
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.at.retain(|_, at| at.elapsed() < DETAIL_WRITE_INTERVAL);
        if self.at.capacity() > 64 && self.at.len() * 4 < self.at.capacity() {
            self.at.shrink_to_fit();
        }
        self.purged = Some(Instant::now());
    }
}

/// Fails with the install command when the CRD is not installed.
pub async fn check_crd_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<Microservice> = scoped(client, namespace);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => anyhow::bail!(
            "the Microservice CRD ({CRD_NAME}) is not installed in this cluster; install it with \
             `kubectl apply -f crds/microservice.yaml` (or `shoal crd | kubectl apply -f -`, or `helm install shoal charts/shoal`)"
        ),
        Err(err) => {
            Err(anyhow::Error::new(err).context("checking that the Microservice CRD is installed"))
        }
    }
}

/// Runs the controller until SIGTERM or Ctrl-C; sends its caches to `share` once built.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    share: Option<futures::channel::oneshot::Sender<crate::caches::SharedCaches>>,
) {
    let ns = config.namespace.as_deref();
    let managed = Some(MANAGED_SELECTOR);
    // The children's caches hold each object packed (`crate::packed`): its projection's
    // JSON, compressed.
    let deployments = PackedStore::projecting(projection::DEPLOYMENT);
    let services = PackedStore::projecting(projection::SERVICE);
    let ingresses = PackedStore::projecting(projection::OWNED_ONLY);
    let hpas = PackedStore::projecting(projection::OWNED_ONLY);
    let pod_disruption_budgets = PackedStore::projecting(projection::OWNED_ONLY);
    let cron_jobs = PackedStore::projecting(projection::OWNED_ONLY);
    let config_maps = PackedStore::whole();
    let replica_sets = PackedStore::projecting(projection::REPLICA_SET);
    let replica_sets_by_owner = index::OwnerIndex::default();
    let cron_jobs_by_owner = index::OwnerIndex::default();
    let config_maps_by_owner = index::OwnerIndex::default();
    // PodMonitors exist only where the Prometheus Operator's CRD is installed: a separate
    // task watches them while it is, waking their owners, and wakes every Microservice
    // when the CRD appears.
    let (touched_pod_monitors, touched_rx) = futures::channel::mpsc::channel(64);
    let (pod_monitors_available, available_rx) = futures::channel::mpsc::channel(1);
    let pod_monitors = Arc::new(pod_monitors::PodMonitors::default());
    // Every watch runs on a task of its own and backs off on its own (`detached_watch`).
    let mut watch_tasks = Vec::new();
    let (microservices, microservices_w) = reflector::store();
    // Says when the Microservice store holds its first list, for the metrics loop: the
    // controller's runtime already waits on the store's own readiness, which wakes one
    // waiter only.
    let (listed_tx, listed_rx) = futures::channel::oneshot::channel::<()>();
    let mut listed_tx = Some(listed_tx);
    let microservices_listed = listed_rx.map(|_| ()).boxed().shared();
    let microservice_triggers = detached_watch(
        &mut watch_tasks,
        // Each Microservice is packed as it arrives (`crate::packed::Packed`), without its
        // managedFields and `kubectl apply`'s copy of the whole object, which nothing reads.
        watcher(
            scoped::<PackedMicroservice>(&client, ns),
            kube_ext::watch_config(),
        )
        .default_backoff()
        .reflect(microservices_w)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(tx) = listed_tx.take()
            {
                let _ = tx.send(());
            }
        })
        .scan(Vec::new(), |listed, event| {
            futures::future::ready(Some(futures::stream::iter(stored_once(listed, event))))
        })
        .flatten(),
    );
    // A change to a child (applied or deleted) wakes its owner, unless it is the echo of
    // the write that pass made, or, during a burst, a Deployment's status report while its
    // owner's first status is held anyway (`owner_triggers`).
    let written = Arc::new(apply::Written::default());
    // The Microservices whose first status a burst held, once it is over.
    let (burst_release, released) = futures::channel::mpsc::unbounded();
    let burst = Arc::new(burst::Burst::releasing_to(burst_release));
    let deployment_triggers = detached_watch(
        &mut watch_tasks,
        owner_triggers(
            &written,
            Some((burst.clone(), reports_status_only)),
            crate::packed::watch(scoped(&client, ns), managed, deployments.clone()),
        ),
    );
    let controller = Controller::for_stream(microservice_triggers, microservices)
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
        .trigger_backoff(NoTriggerBackoff)
        .owns_stream(deployment_triggers)
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                crate::packed::watch(scoped(&client, ns), managed, services.clone()),
            ),
        ))
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                crate::packed::watch(scoped(&client, ns), managed, ingresses.clone()),
            ),
        ))
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                crate::packed::watch(scoped(&client, ns), managed, hpas.clone()),
            ),
        ))
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                crate::packed::watch(scoped(&client, ns), managed, pod_disruption_budgets.clone()),
            ),
        ))
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                cron_jobs_by_owner.follow(crate::packed::watch(
                    scoped(&client, ns),
                    managed,
                    cron_jobs.clone(),
                )),
            ),
        ))
        // ConfigMaps are content-addressed: their metadata says all the controller needs.
        .owns_stream(detached_watch(
            &mut watch_tasks,
            owner_triggers(
                &written,
                None,
                config_maps_by_owner.follow(crate::packed::watch(
                    scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
                    managed,
                    config_maps.clone(),
                )),
            ),
        ))
        .owns_stream(touched_rx)
        .reconcile_all_on(available_rx)
        .shutdown_on_signal();
    metrics.microservices.attach(controller.store());
    let shared_microservices = controller.store();
    let resyncs = resync::triggers(controller.store(), config.resync);
    let controller = controller.reconcile_on(resyncs).reconcile_on(released);

    // ReplicaSets are only read (which old ConfigMaps a retained revision still uses); they
    // are owned by Deployments, so they trigger nothing themselves.
    let replica_set_watch = replica_sets_by_owner.follow(crate::packed::watch(
        scoped::<ReplicaSet>(&client, ns),
        managed,
        replica_sets.clone(),
    ));
    let stores = Stores {
        deployments,
        services,
        ingresses,
        hpas,
        pod_disruption_budgets,
        cron_jobs,
        config_maps,
        replica_sets,
        replica_sets_by_owner,
        cron_jobs_by_owner,
        config_maps_by_owner,
    };
    let pod_monitor_task = tokio::spawn(pod_monitors::watch(
        client.clone(),
        config.namespace.clone(),
        config.pod_monitor_recheck,
        pod_monitors.clone(),
        pod_monitors::Triggers {
            touched: touched_pod_monitors,
            available: pod_monitors_available,
        },
    ));
    let analyzer = config
        .analysis
        .map(|m| Arc::new(crate::analysis::Analyzer::new(m, metrics.clone())));
    let analysis_task = analyzer.clone().map(|a| tokio::spawn(a.run()));
    let mut ctx = Context::new(client, stores, config.resync, metrics)
        .with_pod_monitors(pod_monitors)
        .with_written(written)
        .with_burst(burst);
    if let Some(analyzer) = analyzer {
        ctx = ctx.with_analyzer(analyzer);
    }
    if let Some(share) = share {
        // The metrics loop waits on the controller's readiness future, which wakes every
        // waiter; a second waiter on a store's own readiness would take the wake-up from
        // the first (see `Stores::readiness`).
        let _ = share.send(crate::caches::SharedCaches {
            microservices: shared_microservices,
            deployments: ctx.stores.deployments.clone(),
            ready: futures::future::join(ctx.ready.clone(), microservices_listed)
                .map(|_| ())
                .boxed()
                .shared(),
        });
    }
    let ctx = Arc::new(ctx);
    let replica_set_task = tokio::spawn(replica_set_watch.for_each(|_| futures::future::ready(())));
    info!("starting the Microservice controller");
    controller
        .run(reconcile_in_time, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(error = %err, "reconcile failed");
            }
        })
        .await;
    replica_set_task.abort();
    for task in watch_tasks {
        task.abort();
    }
    pod_monitor_task.abort();
    if let Some(task) = analysis_task {
        task.abort();
    }
    info!("controller stopped");
}

/// The objects of a reflected watch once the store holds them. A relist's objects
/// (`InitApply`) reach the store only at its `InitDone`: yielded earlier, one first seen in
/// that relist (created while the watch was down) would be reconciled before the store has
/// it, fail with "not found in local store" and never come back. So they wait in `listed`
/// until `InitDone`.
fn stored_once<K>(
    listed: &mut Vec<K>,
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Vec<Result<K, watcher::Error>> {
    match event {
        Ok(watcher::Event::Apply(object)) => vec![Ok(object)],
        Ok(watcher::Event::Init) => {
            listed.clear();
            Vec::new()
        }
        Ok(watcher::Event::InitApply(object)) => {
            listed.push(object);
            Vec::new()
        }
        Ok(watcher::Event::InitDone) => std::mem::take(listed).into_iter().map(Ok).collect(),
        Ok(watcher::Event::Delete(_)) => Vec::new(),
        Err(err) => vec![Err(err)],
    }
}

/// A burst and what says that a version of a child reports status only, for
/// [`owner_triggers`].
type HeldStatusReports<K> = (Arc<burst::Burst>, fn(&K) -> bool);

/// The objects of a child watch's `events` whose change should wake their owner: every
/// deletion and listed object, and every applied version but
/// - the echo of our own write ([`apply::Written::is_echo`]): the pass that wrote the child
///   goes on with what its write returned, so the event that brings the same version need
///   not wake the owner again;
/// - with `held`, a version that `status_only` says reports status only (a Deployment's
///   status update by the Deployment controller) of a child whose owner's first status the
///   burst holds: the reconcile it wakes could only hold the status again, and the burst
///   sends every Microservice it held back to the controller when it is over. A change to
///   the child's spec by another writer still wakes the owner at once.
///
/// During a burst of new Microservices these were one or two more reconciles of each.
/// kube-runtime's `predicate_filter` is not used: it tells a change by the hash of a field,
/// not by whose write it was, and keeps an entry per object for an hour (its default TTL),
/// memory at 40,000 children where this needs 10 s per write.
fn owner_triggers<K, S>(
    written: &Arc<apply::Written>,
    held: Option<HeldStatusReports<K>>,
    events: S,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let written = written.clone();
    events
        .try_filter(move |event| {
            let wakes = match event {
                watcher::Event::Apply(object) => {
                    !written.is_echo(object)
                        && !held.as_ref().is_some_and(|(burst, status_only)| {
                            status_only(object) && burst.holds_status_of(object)
                        })
                }
                _ => true,
            };
            futures::future::ready(wakes)
        })
        .touched_objects()
}

/// A Deployment whose status reports on its current spec (its controller's status
/// updates; a change of its spec by another writer is not, until the controller saw it).
fn reports_status_only(deployment: &Deployment) -> bool {
    deployment.metadata.generation.is_some()
        && deployment
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            == deployment.metadata.generation
}

/// Runs a watch on a task of its own and returns what it yields, for the controller's
/// triggers: the watch (its cache, its backoff, its relist after `410 Gone`) goes on
/// whatever the controller does with its triggers.
fn detached_watch<T: Send + 'static>(
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    stream: impl futures::Stream<Item = T> + Send + 'static,
) -> futures::channel::mpsc::UnboundedReceiver<T> {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tasks.push(tokio::spawn(stream.for_each(move |item| {
        let _ = tx.unbounded_send(item);
        futures::future::ready(())
    })));
    rx
}

/// The controller's backoff over its merged triggers: none. kube-runtime's default puts
/// every trigger to sleep when any one of them yields an error (up to 30 s, and again at
/// each error), the Microservice watch included: after an apiserver restart the controller
/// heard nothing, listed nothing and reconciled nothing for minutes (`desync` end-to-end
/// test). Each watch backs off on its own instead (`default_backoff` on each).
struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
}

fn error_policy(ms: Arc<PackedMicroservice>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failure(err);
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = ObjectRef::new(&ms.name_any()).within(&ms.namespace().unwrap_or_default());
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX);
    warn!(name = %ms.name_any(), stage = err.metric_label(), error = %err, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_in_time(packed: Arc<PackedMicroservice>, ctx: Arc<Context>) -> Result<Action> {
    // Outside the timeout: the first list of a large cluster may take longer than one
    // reconcile may, and no reconcile must read a cold cache.
    ctx.ready.clone().await;
    ctx.written.purge();
    let Some(ms) = packed.unpack() else {
        // Damaged bytes (never seen): the next event or resync packs it again.
        return Ok(Action::await_change());
    };
    let ms = freshest(&ctx, Arc::new(ms));
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile::reconcile(ms, ctx))
        .await
        .unwrap_or(Err(Error::Timeout(RECONCILE_TIMEOUT)))
}

/// The cached Microservice, or the one our last status write returned while the cache has
/// not shown that write yet. The watch cache may lag behind our own status write when the
/// next reconcile runs; a rollout decided on that stale status (say, without the hold set by
/// an automatic rollback) would undo what the previous pass did.
///
/// resourceVersions are opaque: they are compared for equality only. Ours is dropped once
/// the cache shows an object with its resourceVersion or with the controller's part of the
/// status we wrote (the cache saw our write, perhaps followed by others), a newer
/// generation, or another uid.
fn freshest(ctx: &Context, ms: Arc<Microservice>) -> Arc<Microservice> {
    let key = ObjectRef::from_obj(&*ms);
    let mut latest = ctx.latest.lock().unwrap_or_else(|e| e.into_inner());
    let pick = latest.get(&key).and_then(|mine| prefer_written(mine, &ms));
    match pick {
        Some(mine) => mine,
        None => {
            latest.remove(&key);
            // A burst's status writes grew the table to thousands of entries: give the
            // room back once the cache has caught up with them (~2 MB at 10,000).
            if latest.capacity() > 64 && latest.len() * 4 < latest.capacity() {
                latest.shrink_to_fit();
            }
            ms
        }
    }
}

/// `written` (unpacked) when the cache has not caught up with it yet, None when `cached` is
/// current.
fn prefer_written(
    written: &crate::caches::PackedMicroservice,
    cached: &Microservice,
) -> Option<Arc<Microservice>> {
    if written.version_hash() == crate::packed::version_of(&cached.metadata)
        || cached.metadata.generation > written.meta().generation
    {
        return None;
    }
    let written = written.unpack()?;
    if written.metadata.uid != cached.metadata.uid {
        return None;
    }
    let ours = |ms: &Microservice| ms.status.as_ref().map(status::controller_view);
    (ours(&written) != ours(cached)).then(|| Arc::new(written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::microservice_at;

    /// A status write is remembered by namespace and name (not uid or generation), until
    /// the Microservice is deleted; another Microservice is not found.
    #[test]
    fn status_write_times_are_kept_by_name_and_forgotten_on_delete() {
        let mut writes = StatusWrites::default();
        let ms = microservice_at(1, "  image: app:1\n");
        let mut later = microservice_at(2, "  image: app:2\n");
        later.metadata.uid = Some("another".into());
        let mut other = microservice_at(1, "  image: app:1\n");
        other.metadata.name = Some("other".into());
        assert!(writes.since(&ms).is_none(), "never written");
        writes.wrote(&ms);
        assert!(writes.since(&ms).is_some_and(|d| d < DETAIL_WRITE_INTERVAL));
        assert!(writes.since(&later).is_some(), "same namespace and name");
        assert!(writes.since(&other).is_none());
        writes.forget(&later);
        assert!(writes.since(&ms).is_none());
        assert!(writes.at.is_empty());
    }

    fn at(generation: i64, resource_version: &str) -> Microservice {
        let mut ms = microservice_at(generation, "  image: app:1\n");
        ms.metadata.resource_version = Some(resource_version.into());
        ms
    }

    #[test]
    fn a_relists_objects_are_triggers_only_once_the_store_has_them() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let mut listed = Vec::new();
        let names = |out: Vec<Result<Microservice, watcher::Error>>| -> Vec<String> {
            out.into_iter()
                .map(|r| {
                    r.expect("no error")
                        .metadata
                        .resource_version
                        .unwrap_or_default()
                })
                .collect()
        };
        assert!(names(stored_once(&mut listed, Ok(Init))).is_empty());
        assert!(names(stored_once(&mut listed, Ok(InitApply(at(1, "a"))))).is_empty());
        assert!(names(stored_once(&mut listed, Ok(InitApply(at(1, "b"))))).is_empty());
        assert_eq!(names(stored_once(&mut listed, Ok(InitDone))), ["a", "b"]);
        assert_eq!(
            names(stored_once(&mut listed, Ok(Apply(at(2, "c"))))),
            ["c"]
        );
        assert!(names(stored_once(&mut listed, Ok(Delete(at(2, "c"))))).is_empty());
        // A relist cut short by another starts over.
        stored_once(&mut listed, Ok(Init));
        stored_once(&mut listed, Ok(InitApply(at(1, "d"))));
        stored_once(&mut listed, Ok(Init));
        assert_eq!(
            names(stored_once(&mut listed, Ok(InitDone))),
            Vec::<String>::new()
        );
    }

    /// A child's change wakes its owner unless it is the echo of our own write or, while a
    /// burst holds the owner's first status, a status report of its Deployment; deletions,
    /// relists and spec changes by another writer always do.
    #[tokio::test]
    async fn child_events_wake_the_owner_unless_they_echo_our_write_or_report_to_a_held_status() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        use watcher::Event::{Apply, Delete, InitApply};
        let deployment = |owner: &str, version: &str, generation: i64, observed: Option<i64>| {
            let mut d = Deployment::default();
            d.metadata.namespace = Some("shop".into());
            d.metadata.name = Some(owner.into());
            d.metadata.resource_version = Some(version.into());
            d.metadata.generation = Some(generation);
            d.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "shoal.dev/v1alpha1".into(),
                kind: "Microservice".into(),
                name: owner.into(),
                uid: format!("uid-{owner}"),
                controller: Some(true),
                block_owner_deletion: None,
            }]);
            d.status = observed.map(|o| DeploymentStatus {
                observed_generation: Some(o),
                ..DeploymentStatus::default()
            });
            d
        };
        let written = Arc::new(apply::Written::default());
        written.remember(
            ("Deployment".into(), "shop".into(), "web".into()),
            None,
            &deployment("web", "5", 1, None),
        );
        let (release, _released) = futures::channel::mpsc::unbounded();
        let burst = Arc::new(burst::Burst::releasing_to(release));
        for _ in 0..100 {
            burst.created(); // busy for the next two seconds
        }
        burst.hold_status(ObjectRef::new("held").within("shop"));
        let events = vec![
            Ok(Apply(deployment("web", "5", 1, None))), // our write's echo
            Ok(Apply(deployment("web", "6", 1, Some(1)))), // status report, owner not held
            Ok(Apply(deployment("held", "7", 1, Some(1)))), // status report, owner held
            Ok(Apply(deployment("held", "8", 2, Some(1)))), // another writer's spec change
            Ok(Delete(deployment("held", "9", 2, Some(2)))),
            Ok(InitApply(deployment("held", "7", 1, Some(1)))), // a relist
            Ok(Apply(deployment("web", "5", 1, None))),         // an echo is recognized once
        ];
        // The resourceVersions of the objects that woke their owner.
        let woke = |held, events: Vec<Result<watcher::Event<Deployment>, watcher::Error>>| {
            owner_triggers(&written, held, futures::stream::iter(events))
                .map(|object| {
                    object
                        .expect("no error")
                        .metadata
                        .resource_version
                        .unwrap_or_default()
                })
                .collect::<Vec<String>>()
        };
        let held = Some((
            burst.clone(),
            reports_status_only as fn(&Deployment) -> bool,
        ));
        assert_eq!(woke(held, events).await, ["6", "8", "9", "7", "5"]);
        // Without a burst to consult (the other children), only echoes are dropped.
        written.remember(
            ("Deployment".into(), "shop".into(), "held".into()),
            Some("9".into()),
            &deployment("held", "10", 3, Some(2)),
        );
        let events = vec![
            Ok(Apply(deployment("held", "10", 3, Some(2)))),
            Ok(Apply(deployment("held", "11", 3, Some(3)))),
        ];
        assert_eq!(woke(None, events).await, ["11"]);
    }

    #[test]
    fn our_write_wins_until_the_cache_shows_it() {
        let mut written = at(3, "abc-2");
        written.status = Some(crate::crd::MicroserviceStatus {
            observed_generation: Some(3),
            ..Default::default()
        });
        let status = written.status.clone();
        let written = crate::caches::PackedMicroservice::pack(&written).expect("packs");
        // The cache still has the object from before our write: ours, unpacked.
        let mine = prefer_written(&written, &at(3, "abc-1")).expect("ours");
        assert_eq!(mine.status, status);
        // Same version: the cache caught up.
        assert!(prefer_written(&written, &at(3, "abc-2")).is_none());
        // Another write after ours (the autoscaler's): our part of the status is there.
        let mut later = at(3, "abc-3");
        later.status = status;
        assert!(prefer_written(&written, &later).is_none());
        // A spec change since: the cached object is newer.
        assert!(prefer_written(&written, &at(4, "zzz")).is_none());
        // Deleted and re-created under the same name.
        let mut recreated = at(3, "abc-1");
        recreated.metadata.uid = Some("u-2".into());
        assert!(prefer_written(&written, &recreated).is_none());
    }
}

//! The reconcile loop: the one module where the controller writes to the cluster.
//!
//! Pipeline per Microservice: `validate -> build -> apply -> update_status`. Reads come
//! from watch caches (reflector stores), never a GET or LIST inside a reconcile. A child is
//! applied (server-side apply, field manager `shoal`) only when it differs from the live
//! object, and status is written only when it changed, so a reconcile with nothing to do
//! writes nothing.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, instrument, warn};

use crate::build::{self, Children, INSTANCE_LABEL, MANAGED_BY_LABEL};
use crate::crd::{CRD_NAME, Microservice};
use crate::error::{Error, Result};
use crate::validate::{self, ValidatedMicroservice};
use crate::{AUTOSCALER_FIELD_MANAGER, FIELD_MANAGER, diff, rollout, status};

/// Label selector of every child Shoal manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=shoal";

/// First retry delay after a failed reconcile; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Periodic re-check of every Microservice.
    pub resync: Duration,
    /// Most reconciles at once.
    pub concurrency: u16,
    /// Watch only this namespace; all namespaces when None.
    pub namespace: Option<String>,
}

/// An API handle for one namespace, or all of them.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watch caches of the children.
#[derive(Clone)]
pub struct Stores {
    deployments: Store<Deployment>,
    services: Store<Service>,
    ingresses: Store<Ingress>,
    hpas: Store<HorizontalPodAutoscaler>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    replica_sets: Store<ReplicaSet>,
}

impl Stores {
    /// Waits until every cache holds its first full list, so that a reconcile after a
    /// restart sees what exists (and writes nothing when nothing changed).
    async fn wait_until_ready(&self) {
        // A store's writer lives in its watch stream, which lives as long as the controller.
        let _ = futures::join!(
            self.deployments.wait_until_ready(),
            self.services.wait_until_ready(),
            self.ingresses.wait_until_ready(),
            self.hpas.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.replica_sets.wait_until_ready(),
        );
    }
}

/// Shared state of all reconciles.
pub struct Context {
    client: Client,
    stores: Stores,
    reporter: Reporter,
    resync: Duration,
    failures: Mutex<HashMap<ObjectRef<Microservice>, u32>>,
    /// The Microservice as our last status write returned it, until the cache catches up.
    latest: Mutex<HashMap<ObjectRef<Microservice>, Arc<Microservice>>>,
    metrics: Arc<crate::metrics::Metrics>,
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

/// A watch of one child kind, feeding a cache; yields the touched objects (applied or
/// deleted) so that a change to a child wakes its owner.
fn cached_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(client: Client, config: Config, metrics: Arc<crate::metrics::Metrics>) {
    let ns = config.namespace.as_deref();
    let (deployments, deployments_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (ingresses, ingresses_w) = reflector::store();
    let (hpas, hpas_w) = reflector::store();
    let (config_maps, config_maps_w) = reflector::store();
    let (replica_sets, replica_sets_w) = reflector::store();
    // ConfigMaps are content-addressed: their metadata says all the controller needs.
    let config_map_stream = cached_watch(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
        config_maps_w,
    );
    let controller = Controller::new(
        scoped::<Microservice>(&client, ns),
        watcher::Config::default(),
    )
    .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
    .owns_stream(cached_watch(
        scoped::<Deployment>(&client, ns),
        deployments_w,
    ))
    .owns_stream(cached_watch(scoped::<Service>(&client, ns), services_w))
    .owns_stream(cached_watch(scoped::<Ingress>(&client, ns), ingresses_w))
    .owns_stream(cached_watch(
        scoped::<HorizontalPodAutoscaler>(&client, ns),
        hpas_w,
    ))
    .owns_stream(config_map_stream)
    .shutdown_on_signal();
    metrics.microservices.attach(controller.store());
    // ReplicaSets are only read (which old ConfigMaps a retained revision still uses); they
    // are owned by Deployments, so they trigger nothing themselves.
    let replica_set_watch = cached_watch(scoped::<ReplicaSet>(&client, ns), replica_sets_w);
    let stores = Stores {
        deployments,
        services,
        ingresses,
        hpas,
        config_maps,
        replica_sets,
    };
    let ctx = Arc::new(Context {
        client,
        stores: stores.clone(),
        reporter: Reporter {
            controller: "shoal".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
        resync: config.resync,
        failures: Mutex::new(HashMap::new()),
        latest: Mutex::new(HashMap::new()),
        metrics,
    });
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
    info!("controller stopped");
}

fn error_policy(ms: Arc<Microservice>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failure(err);
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ObjectRef::from_obj(&*ms)).or_insert(0);
        *n += 1;
        *n
    };
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX);
    warn!(name = %ms.name_any(), error = %err, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn lookup<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// Longest a reconcile may take: a request that never answers must not hold one of the
/// controller's reconcile slots (and graceful shutdown) forever.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

async fn reconcile_in_time(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action> {
    let ms = freshest(&ctx, ms);
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(ms, ctx))
        .await
        .unwrap_or(Err(Error::Timeout(RECONCILE_TIMEOUT)))
}

/// The newer of the cached Microservice and the one our last status write returned. The
/// watch cache may not have seen our own status write yet when the next reconcile runs; a
/// rollout decided on that stale status (say, without the hold set by an automatic rollback)
/// would undo what the previous pass did.
fn freshest(ctx: &Context, ms: Arc<Microservice>) -> Arc<Microservice> {
    // resourceVersions are opaque in general; with one apiserver and etcd they are etcd
    // revisions, and a newer write always has a larger one.
    let version = |m: &Microservice| -> u64 {
        m.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let key = ObjectRef::from_obj(&*ms);
    let mut latest = ctx.latest.lock().unwrap_or_else(|e| e.into_inner());
    match latest.get(&key) {
        Some(mine) if version(mine) > version(&ms) && mine.metadata.uid == ms.metadata.uid => {
            mine.clone()
        }
        _ => {
            latest.remove(&key);
            ms
        }
    }
}

#[instrument(skip(ms, ctx), fields(namespace = ms.namespace().unwrap_or_default(), name = %ms.name_any(), generation = ms.metadata.generation))]
async fn reconcile(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action> {
    if ms.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the children through their owner references.
        return Ok(Action::await_change());
    }
    ctx.stores.wait_until_ready().await;
    let _measure = ctx.metrics.count_and_measure();
    let recorder = crate::events::EventSink::new(ctx.client.clone(), ctx.reporter.clone());
    let reference = ms.object_ref(&());
    let name = ms
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let namespace = ms.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<Microservice> = Api::namespaced(ctx.client.clone(), &namespace);

    let valid = match validate::validate(&ms) {
        Ok(valid) => valid,
        Err(invalid) => {
            let new = status::invalid_status(&ms, &invalid, &now());
            if status::needs_write(ms.status.as_ref(), &new) {
                write_status(&ctx, &api, &name, &new).await?;
                publish(
                    &recorder,
                    &reference,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    invalid.to_string(),
                )
                .await;
            }
            ctx.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ObjectRef::from_obj(&*ms));
            // Nothing to retry until the spec changes.
            return Ok(Action::await_change());
        }
    };

    let children = build::render(&valid);
    let live_deployment = lookup(&ctx.stores.deployments, &valid.namespace, &valid.name);
    let replica_sets = replica_sets_of(&ctx.stores.replica_sets, live_deployment.as_deref());
    let desired_hash = children
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(build::TEMPLATE_HASH_ANNOTATION).cloned())
        .unwrap_or_default();
    let rs_refs: Vec<&ReplicaSet> = replica_sets.iter().map(|r| &**r).collect();
    let mut transition = rollout::transition(&rollout::Observed {
        generation: valid.generation,
        desired_template_hash: &desired_hash,
        auto_rollback: valid
            .spec
            .rollout
            .as_ref()
            .and_then(|r| r.auto_rollback)
            .unwrap_or(true),
        previous: ms.status.as_ref().and_then(|s| s.rollout.as_ref()),
        deployment: live_deployment.as_deref(),
        replica_sets: &rs_refs,
    });
    let deployment = apply_children(
        &ctx,
        &valid,
        &children,
        &mut transition,
        &recorder,
        &reference,
    )
    .await?;
    prune_config_maps(&ctx, &valid).await?;

    let new = status::valid_status(&ms, &valid, deployment.as_deref(), &transition, &now());
    if status::needs_write(ms.status.as_ref(), &new) {
        publish_transitions(&recorder, &reference, ms.status.as_ref(), &new).await;
        write_status(&ctx, &api, &name, &new).await?;
    }
    ctx.failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ObjectRef::from_obj(&*ms));
    Ok(Action::requeue(ctx.resync))
}

/// Applies every child that differs from its live copy and deletes optional children the
/// spec no longer asks for. Returns the freshest view of the Deployment.
async fn apply_children(
    ctx: &Context,
    ms: &ValidatedMicroservice,
    children: &Children,
    transition: &mut rollout::Transition,
    recorder: &crate::events::EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<Option<Arc<Deployment>>> {
    let client = &ctx.client;
    let ns = ms.namespace.as_str();
    let stores = &ctx.stores;

    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm_name = ms.config_map_name();
    if lookup(&stores.config_maps, ns, &cm_name).is_none() {
        // Immutable and content-addressed: it exists with the right content, or not at all.
        apply(&cm_api, &children.config_map).await?;
        publish(
            recorder,
            reference,
            EventType::Normal,
            "Created",
            "Apply",
            format!("Created ConfigMap {cm_name}"),
        )
        .await;
    }

    let deploy_api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let live_deployment = lookup(&stores.deployments, ns, &ms.name);
    let mut deployment = live_deployment.clone();
    if let Some(live) = &live_deployment
        && let Some(replicas) = build::replicas_handoff(ms, live)
    {
        scale(&deploy_api, &ms.name, replicas).await?;
        publish(
            recorder,
            reference,
            EventType::Normal,
            "AutoscalingEnabled",
            "HandOver",
            format!(
                "Autoscaling now owns the replica count of Deployment {} (kept at {replicas})",
                ms.name
            ),
        )
        .await;
    }
    // What to apply depends on the rollout: the desired template, an older one to roll
    // back to, or nothing while a failed or manually undone generation is held.
    let wanted = match &transition.template {
        rollout::Template::Desired => Some(children.deployment.clone()),
        rollout::Template::Keep => None,
        rollout::Template::Restore(template) => {
            let mut restored = children.deployment.clone();
            if let Some(spec) = restored.spec.as_mut() {
                spec.template = (**template).clone();
            }
            Some(restored)
        }
    };
    if let Some(wanted) = wanted {
        let restoring = matches!(transition.template, rollout::Template::Restore(_));
        if restoring || needs_apply(&wanted, live_deployment.as_deref()) {
            let applied = apply(&deploy_api, &wanted).await?;
            let verb = if live_deployment.is_some() {
                "Updated"
            } else {
                "Created"
            };
            publish(
                recorder,
                reference,
                EventType::Normal,
                verb,
                "Apply",
                format!("{verb} Deployment {}", ms.name),
            )
            .await;
            let mut applied = applied;
            if live_deployment.is_none()
                && let Some(replicas) = build::initial_replicas(ms, &applied)
            {
                scale(&deploy_api, &ms.name, replicas).await?;
                if let Some(spec) = applied.spec.as_mut() {
                    spec.replicas = Some(replicas);
                }
            }
            deployment = Some(Arc::new(applied));
        }
        if !restoring {
            // As of this generation the Deployment runs Shoal's template; a later change of
            // its generation that brings back an older template is a `kubectl rollout undo`.
            transition.status.applied_generation = Some(ms.generation);
            transition.status.applied_deployment_generation =
                deployment.as_ref().and_then(|d| d.metadata.generation);
        }
    }

    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    let live_service = lookup(&stores.services, ns, &ms.name);
    if needs_apply(&children.service, live_service.as_deref()) {
        apply(&svc_api, &children.service).await?;
        let verb = if live_service.is_some() {
            "Updated"
        } else {
            "Created"
        };
        publish(
            recorder,
            reference,
            EventType::Normal,
            verb,
            "Apply",
            format!("{verb} Service {}", ms.name),
        )
        .await;
    }

    let ing_api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let live_ingress = lookup(&stores.ingresses, ns, &ms.name);
    sync_optional(
        &ing_api,
        ms,
        children.ingress.as_ref(),
        live_ingress.as_deref(),
        "Ingress",
        recorder,
        reference,
    )
    .await?;

    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let live_hpa = lookup(&stores.hpas, ns, &ms.name);
    sync_optional(
        &hpa_api,
        ms,
        children.hpa.as_ref(),
        live_hpa.as_deref(),
        "HorizontalPodAutoscaler",
        recorder,
        reference,
    )
    .await?;

    Ok(deployment)
}

/// Applies an optional child when wanted and different, deletes it (if Shoal owns it) when not wanted.
async fn sync_optional<K>(
    api: &Api<K>,
    ms: &ValidatedMicroservice,
    desired: Option<&K>,
    live: Option<&K>,
    kind: &str,
    recorder: &crate::events::EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<()>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    match (desired, live) {
        (Some(desired), live) => {
            if needs_apply(desired, live) {
                apply(api, desired).await?;
                let verb = if live.is_some() { "Updated" } else { "Created" };
                publish(
                    recorder,
                    reference,
                    EventType::Normal,
                    verb,
                    "Apply",
                    format!("{verb} {kind} {}", ms.name),
                )
                .await;
            }
        }
        (None, Some(live)) if owned_by(live, ms) => {
            match api.delete(&ms.name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(Error::kube(format!("deleting {kind} {}", ms.name), err)),
            }
            publish(
                recorder,
                reference,
                EventType::Normal,
                "Deleted",
                "Delete",
                format!("Deleted {kind} {}: no longer in the spec", ms.name),
            )
            .await;
        }
        (None, _) => {}
    }
    Ok(())
}

fn owned_by<K: Resource>(object: &K, ms: &ValidatedMicroservice) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.uid == ms.uid && o.controller == Some(true))
}

fn needs_apply<K: Serialize>(desired: &K, live: Option<&K>) -> bool {
    let desired = serde_json::to_value(desired).unwrap_or_default();
    let live = live.map(|l| serde_json::to_value(l).unwrap_or_default());
    diff::needs_apply(&desired, live.as_ref())
}

async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!(
                "applying {} {name}",
                std::any::type_name::<K>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("object")
            ),
            e,
        )
    })
}

/// Sets the replica count through the scale subresource under the autoscaler's field manager.
async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch_scale(
        name,
        &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube(format!("scaling Deployment {name} to {replicas}"), e))?;
    Ok(())
}

async fn write_status(
    ctx: &Context,
    api: &Api<Microservice>,
    name: &str,
    status: &crate::crd::MicroserviceStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "Microservice",
        "status": status::controller_view(status),
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| Error::kube(format!("writing status of Microservice {name}"), e))?;
    ctx.latest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ObjectRef::from_obj(&written), Arc::new(written));
    Ok(())
}

/// Deletes this Microservice's config ConfigMaps that are neither current nor used by a
/// ReplicaSet the Deployment keeps for rollbacks.
async fn prune_config_maps(ctx: &Context, ms: &ValidatedMicroservice) -> Result<()> {
    let current = ms.config_map_name();
    let in_use: BTreeSet<String> = ctx
        .stores
        .replica_sets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ms.namespace.as_str()))
        .filter(|rs| rs.labels().get(INSTANCE_LABEL) == Some(&ms.name))
        .flat_map(|rs| referenced_config_maps(rs))
        .collect();
    let stale: Vec<String> = ctx
        .stores
        .config_maps
        .state()
        .iter()
        .filter(|cm| cm.namespace().as_deref() == Some(ms.namespace.as_str()))
        .filter(|cm| cm.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some("shoal"))
        .filter(|cm| cm.owner_references().iter().any(|o| o.uid == ms.uid))
        .map(|cm| cm.name_any())
        .filter(|name| *name != current && !in_use.contains(name))
        .collect();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ms.namespace);
    for name in stale {
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => info!(configmap = %name, "pruned a config no retained revision uses"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(Error::kube(format!("deleting ConfigMap {name}"), err)),
        }
    }
    Ok(())
}

/// The ReplicaSets a Deployment owns (its revisions), from the cache.
fn replica_sets_of(
    store: &Store<ReplicaSet>,
    deployment: Option<&Deployment>,
) -> Vec<Arc<ReplicaSet>> {
    let Some(uid) = deployment.and_then(|d| d.metadata.uid.as_deref()) else {
        return Vec::new();
    };
    store
        .state()
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid))
        .collect()
}

/// Events for every rollout condition that changed (status or reason).
async fn publish_transitions(
    recorder: &crate::events::EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    old: Option<&crate::crd::MicroserviceStatus>,
    new: &crate::crd::MicroserviceStatus,
) {
    for type_ in [
        rollout::PROGRESSING,
        rollout::DEGRADED,
        rollout::ROLLED_BACK,
    ] {
        let Some(now) = crate::conditions::find(&new.conditions, type_) else {
            continue;
        };
        let before = old.and_then(|o| crate::conditions::find(&o.conditions, type_));
        if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
            continue;
        }
        let warning = (type_ != rollout::PROGRESSING && now.status == "True")
            || now.reason == rollout::reason::PROGRESS_DEADLINE_EXCEEDED;
        // The first Progressing of a new object is not news; failures and rollbacks are.
        if before.is_none() && !warning && type_ != rollout::PROGRESSING {
            continue;
        }
        let type_event = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let reason = if type_ == rollout::PROGRESSING {
            now.reason.clone()
        } else {
            format!(
                "{type_}{}",
                if now.status == "True" { "" } else { "Cleared" }
            )
        };
        publish(
            recorder,
            reference,
            type_event,
            &reason,
            "Rollout",
            now.message.clone(),
        )
        .await;
    }
}

/// Names of the ConfigMaps a ReplicaSet's pod template takes its environment from.
pub fn referenced_config_maps(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .iter()
        .flat_map(|s| s.template.iter())
        .flat_map(|t| t.spec.iter())
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.env_from.iter().flatten())
        .filter_map(|e| e.config_map_ref.as_ref().map(|r| r.name.clone()))
        .collect()
}

async fn publish(
    recorder: &crate::events::EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, reference).await {
        // An event that cannot be written is logged, never a reason to fail the reconcile.
        warn!(error = %err, reason, "could not publish an event");
    }
}

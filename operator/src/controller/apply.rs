//! The apply step: server-side applies the rendered children that differ from the live
//! ones, hands the replica count over to autoscaling, deletes optional children the spec
//! dropped and prunes configs no revision uses. Every write is followed by one Event.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::render::{self, Children};
use super::rollout::{self, Template};
use super::{Context, Stores, diff, reclaim};
use crate::crd::Microservice;
use crate::error::{Error, Result};
use crate::kube_ext;
use crate::packed::PackedStore;
use crate::validate::ValidatedMicroservice;
use crate::vocabulary::{EventAction, EventReason};
use crate::{AUTOSCALER_FIELD_MANAGER, FIELD_MANAGER};

/// The live children of one Microservice, from the watch caches.
pub struct Live {
    /// The current config's ConfigMap (metadata only), when it exists.
    pub config_map: Option<Arc<PartialObjectMeta<ConfigMap>>>,
    /// The Deployment.
    pub deployment: Option<Arc<Deployment>>,
    /// The canary Deployment (`<name>-canary`).
    pub canary: Option<Arc<Deployment>>,
    /// The Service.
    pub service: Option<Arc<Service>>,
    /// The Ingress.
    pub ingress: Option<Arc<Ingress>>,
    /// The HPA.
    pub hpa: Option<Arc<HorizontalPodAutoscaler>>,
    /// The PodDisruptionBudget.
    pub pod_disruption_budget: Option<Arc<PodDisruptionBudget>>,
    /// The CronJobs owned by this Microservice.
    pub cron_jobs: Vec<Arc<CronJob>>,
    /// The Deployment's ReplicaSets (its revisions).
    pub replica_sets: Vec<Arc<ReplicaSet>>,
}

fn lookup<K>(store: &PackedStore<K>, ms: &ValidatedMicroservice, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + Serialize + DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    store.get(&ObjectRef::new(name).within(&ms.namespace))
}

impl Live {
    /// Reads the caches.
    pub fn from_stores(stores: &Stores, ms: &ValidatedMicroservice) -> Live {
        let deployment = lookup(&stores.deployments, ms, &ms.name);
        let replica_sets = match deployment.as_ref().and_then(|d| d.metadata.uid.clone()) {
            Some(uid) => stores
                .replica_sets_by_owner
                .owned_by(&stores.replica_sets, &uid),
            None => Vec::new(),
        };
        Live {
            config_map: lookup(&stores.config_maps, ms, &ms.config_map_name()),
            deployment,
            canary: lookup(&stores.deployments, ms, &render::canary_name(&ms.name)),
            service: lookup(&stores.services, ms, &ms.name),
            ingress: lookup(&stores.ingresses, ms, &ms.name),
            hpa: lookup(&stores.hpas, ms, &ms.name),
            pod_disruption_budget: lookup(&stores.pod_disruption_budgets, ms, &ms.name),
            cron_jobs: stores
                .cron_jobs_by_owner
                .owned_by(&stores.cron_jobs, &ms.uid)
                .into_iter()
                .filter(|c| c.namespace().as_deref() == Some(ms.namespace.as_str()))
                .collect(),
            replica_sets,
        }
    }

    /// What the rollout transition looks at.
    pub fn observed<'a>(
        &'a self,
        ms: &'a Microservice,
        valid: &'a ValidatedMicroservice,
        children: &'a Children,
        sample: Option<&'a crate::analysis::Sample>,
        now: k8s_openapi::jiff::Timestamp,
    ) -> rollout::Observed<'a> {
        let promote_annotation = ms
            .annotations()
            .get(super::canary::PROMOTE_ANNOTATION)
            .is_some_and(|v| v == "true");
        rollout::Observed {
            canary: valid
                .rollout
                .canary
                .as_ref()
                .map(|policy| rollout::CanaryView {
                    policy,
                    desired_image: &valid.app.image,
                    deployment: self.canary.as_deref(),
                    promote: policy.promote || promote_annotation,
                    sample,
                    now,
                }),
            generation: valid.generation,
            desired_template_hash: &children.template_hash,
            auto_rollback: valid.rollout.auto_rollback,
            previous: ms.status.as_ref().and_then(|s| s.rollout.as_ref()),
            deployment: self.deployment.as_deref(),
            replica_sets: &self.replica_sets,
        }
    }
}

/// What the apply step did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The freshest view of the Deployment: as applied, else as cached.
    pub deployment: Option<Arc<Deployment>>,
    /// One line per write, as in its Event ("Created Service shop").
    pub writes: Vec<String>,
    /// Why the canary's traffic router does not split the traffic, for its status message.
    pub routing_note: Option<String>,
}

impl Applied {
    /// The freshest view of the Deployment.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.deployment.as_deref()
    }
}

/// Applies every child that differs from its live copy (the Deployment as the rollout's
/// `template` says) and deletes optional children the spec no longer asks for.
pub async fn apply(
    ctx: &Context,
    ms: &Microservice,
    valid: &ValidatedMicroservice,
    children: Children,
    live: &Live,
    transition: &rollout::Transition,
) -> Result<Applied> {
    let mut step = Step {
        ctx,
        ms,
        valid,
        applied: Applied {
            deployment: live.deployment.clone(),
            writes: Vec::new(),
            routing_note: None,
        },
        applies: Vec::new(),
    };
    let result = step.children(children, live, transition).await;
    // One Event for what was created and one for what was updated, however many children
    // (a new Microservice: one Event, not one per child), also when a later child failed.
    step.publish_applies().await;
    result.map(|()| step.applied)
}

impl Step<'_> {
    /// Applies the children in order (the ConfigMap before the Deployment that uses it).
    async fn children(
        &mut self,
        children: Children,
        live: &Live,
        transition: &rollout::Transition,
    ) -> Result<()> {
        let step = self;
        let (ctx, valid) = (step.ctx, step.valid);
        // Destructured without `..`: a new child that nobody applies fails to compile.
        let Children {
            config_map,
            deployment,
            service,
            ingress,
            hpa,
            pod_monitor,
            pod_disruption_budget,
            cron_jobs,
            template_hash: _,
        } = children;
        // Immutable and content-addressed: it exists with the right content, or not at all.
        // It is applied when missing, and when not owned by this Microservice (left behind by
        // `kubectl delete --cascade=orphan` of an earlier one of the same name): applying it
        // adopts it, as applying the other children does; and when another writer changed a
        // label or an annotation Shoal sets (its data cannot change).
        match &live.config_map {
            None => {
                step.apply(&config_map, None::<&ConfigMap>).await?;
            }
            Some(live) if !owned_by(&**live, valid) || metadata_drift(&config_map, live) => {
                step.apply(&config_map, Some(&**live)).await?;
            }
            Some(_) => {}
        }
        step.deployment(&deployment, live, &transition.template)
            .await?;
        let routing = step.routing_plan(live, transition); // the traffic router's, no client
        step.canary(&deployment, live, transition, &routing).await?;
        let live_service = step.reclaim(&service, live.service.clone()).await?;
        if needs_apply(&service, live_service.as_deref()) {
            step.apply(&service, live_service.as_deref()).await?;
        }
        // While a router splits the traffic, the Ingress sends to `<name>-stable`.
        let ingress = routing.main_ingress(valid, ingress);
        step.optional(ingress.as_ref(), live.ingress.as_deref())
            .await?;
        step.optional(hpa.as_ref(), live.hpa.as_deref()).await?;
        step.optional(
            pod_disruption_budget.as_ref(),
            live.pod_disruption_budget.as_deref(),
        )
        .await?;
        step.cron_jobs(&cron_jobs, &live.cron_jobs).await?;
        // Only where the Prometheus Operator's CRD is installed (and its cache filled).
        if let Some(pod_monitors) = ctx.pod_monitors.store() {
            let live = pod_monitors.get(&ObjectRef::new(&valid.name).within(&valid.namespace));
            match step.optional(pod_monitor.as_ref(), live.as_deref()).await {
                // The CRD is going or gone since the last discovery check, which will notice:
                // an apply creates, so a 404 means the kind itself is gone, and while the CRD
                // is being deleted the apiserver refuses creates with this 403.
                Err(Error::Apply {
                    source: kube::Error::Api(status),
                    ..
                }) if status.code == 404
                    || (status.code == 403
                        && status
                            .message
                            .contains("custom resource definition is terminating")) => {}
                result => result?,
            }
        }
        prune_config_maps(ctx, valid).await?;
        Ok(())
    }
}

/// A namespaced child kind Shoal applies.
trait Child:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + 'static
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
        + 'static
{
}

struct Step<'a> {
    ctx: &'a Context,
    ms: &'a Microservice,
    valid: &'a ValidatedMicroservice,
    applied: Applied,
    /// The children applied so far, for [`Step::publish_applies`]: `Created` or
    /// `Updated`, and `<Kind> <name>`.
    applies: Vec<(EventReason, String)>,
}

impl Step<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), &self.valid.namespace)
    }

    async fn publish(
        &mut self,
        type_: EventType,
        reason: EventReason,
        action: EventAction,
        note: String,
    ) {
        self.applied.writes.push(note.clone());
        self.ctx
            .events
            .publish(
                &self.ms.object_ref(&()),
                type_,
                reason.as_str(),
                action.as_str(),
                note,
            )
            .await;
    }

    /// Applies `object` (whose cached copy is `live`) and notes it for the pass's Event
    /// ("Created <Kind> <name>"). When the cache still shows the object as it was before our
    /// last write to it, a few seconds ago, the write is not repeated: the cache is behind
    /// (a relist's snapshot taken before that write, say), and what that write returned
    /// stands in for the applied object.
    async fn apply<K: Child, L: Resource>(&mut self, object: &K, live: Option<&L>) -> Result<K> {
        let key = (
            K::kind(&()).into_owned(),
            self.valid.namespace.clone(),
            object.name_any(),
        );
        let seen = live.map(|l| l.resource_version().unwrap_or_default());
        if let Some(ours) = self.ctx.written.behind(&key, seen.as_deref()) {
            tracing::debug!(kind = %key.0, name = %key.2, "the cache does not show our last write yet: not writing again");
            return Ok(ours);
        }
        let applied = kube_ext::apply(&self.api::<K>(), object, FIELD_MANAGER).await?;
        self.ctx.written.remember(key, seen, &applied);
        let verb = if live.is_some() {
            EventReason::Updated
        } else {
            self.ctx.burst.created();
            EventReason::Created
        };
        let child = format!("{} {}", K::kind(&()), object.name_any());
        self.applied.writes.push(format!("{verb} {child}"));
        self.applies.push((verb, child));
        Ok(applied)
    }

    /// Publishes the children applied in this pass: one Event per verb, "Created ConfigMap
    /// shop-config-1a2b3c4d, Deployment shop, Service shop".
    async fn publish_applies(&mut self) {
        for verb in [EventReason::Created, EventReason::Updated] {
            let children: Vec<String> = self
                .applies
                .iter()
                .filter(|(v, _)| *v == verb)
                .map(|(_, child)| child.clone())
                .collect();
            if children.is_empty() {
                continue;
            }
            let note = format!("{verb} {}", children.join(", "));
            let reference = self.ms.object_ref(&());
            let (type_, reason, action) = (
                EventType::Normal,
                verb.as_str(),
                EventAction::Apply.as_str(),
            );
            if self.ctx.burst.busy() {
                // During a burst the Event follows the child writes (see `burst`).
                let event = super::burst::HeldEvent {
                    reference,
                    type_,
                    reason,
                    action,
                    note,
                };
                self.ctx.burst.hold(self.ctx.events.clone(), event);
            } else {
                self.ctx
                    .events
                    .publish(&reference, type_, reason, action, note)
                    .await;
            }
        }
        self.applies.clear();
    }

    async fn deployment(
        &mut self,
        rendered: &Deployment,
        live: &Live,
        template: &Template,
    ) -> Result<()> {
        let name = &self.valid.name;
        let api = self.api::<Deployment>();
        if let Some(current) = &live.deployment
            && let Some(replicas) = render::replicas_handoff(self.valid, current)
        {
            kube_ext::scale(&api, name, replicas, AUTOSCALER_FIELD_MANAGER).await?;
            let note = format!(
                "Autoscaling now owns the replica count of Deployment {name} (kept at {replicas})"
            );
            self.publish(
                EventType::Normal,
                EventReason::AutoscalingEnabled,
                EventAction::HandOver,
                note,
            )
            .await;
        }
        // What to apply depends on the rollout: the desired template, an older one to roll
        // back to, or nothing while a failed or manually undone generation is held.
        let template = self.whole_template(template, live).await?;
        let template = &template;
        let Some(wanted) = rollout::deployment_to_apply(template, rendered) else {
            return Ok(());
        };
        let restoring = matches!(template, Template::Restore(_));
        let live_deployment = self.reclaim(&wanted, live.deployment.clone()).await?;
        if live_deployment.as_ref().map(Arc::as_ptr) != live.deployment.as_ref().map(Arc::as_ptr) {
            self.applied.deployment = live_deployment.clone();
        }
        if restoring || needs_apply(&wanted, live_deployment.as_deref()) {
            let mut applied = self.apply(&wanted, live_deployment.as_deref()).await?;
            if live.deployment.is_none()
                && let Some(replicas) = render::initial_replicas(self.valid, &applied)
            {
                kube_ext::scale(&api, name, replicas, AUTOSCALER_FIELD_MANAGER).await?;
                if let Some(spec) = applied.spec.as_mut() {
                    spec.replicas = Some(replicas);
                }
            }
            self.applied.deployment = Some(Arc::new(applied));
        }
        Ok(())
    }

    /// The template to restore, read whole: the cache keeps of a ReplicaSet only what names
    /// its revision ([`crate::projection::REPLICA_SET`]), so a rollback reads the ReplicaSet
    /// whose template the transition chose with one GET (rare: a failed rollout).
    async fn whole_template(&self, template: &Template, live: &Live) -> Result<Template> {
        let Template::Restore(projected) = template else {
            return Ok(template.clone());
        };
        let hash = |t: Option<&PodTemplateSpec>| {
            t.and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(render::TEMPLATE_HASH_ANNOTATION))
                .cloned()
        };
        let wanted = hash(Some(projected));
        let Some(name) = live
            .replica_sets
            .iter()
            .find(|rs| hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted)
            .map(|rs| rs.name_any())
        else {
            // Never apply the cache's partial template: leave the Deployment alone until the
            // next pass finds the revision again (the transition found it in the same list).
            tracing::warn!(name = %self.valid.name, "the revision to roll back to is gone: not rolling back");
            return Ok(Template::Keep);
        };
        let rs = self
            .api::<ReplicaSet>()
            .get(&name)
            .await
            .map_err(|source| Error::Query {
                action: format!("reading ReplicaSet {name} to roll back to"),
                source,
            })?;
        let Some(mut whole) = rs.spec.and_then(|s| s.template) else {
            tracing::warn!(name = %self.valid.name, replica_set = %name, "the revision to roll back to has no template: not rolling back");
            return Ok(Template::Keep);
        };
        // The deployment controller adds pod-template-hash to a ReplicaSet's template.
        if let Some(labels) = whole.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        Ok(Template::Restore(Box::new(whole)))
    }

    /// Takes back the list entries of `live` (Service ports; a Deployment's volumes and
    /// its containers' ports, env and mounts) that another field manager changed in a way
    /// server-side apply cannot heal (see [`reclaim`]): one JSON patch; returns the child
    /// as it is now.
    async fn reclaim<K: Child>(
        &mut self,
        desired: &K,
        live: Option<Arc<K>>,
    ) -> Result<Option<Arc<K>>> {
        let Some(current) = live else {
            return Ok(None);
        };
        let ops = reclaim::ops(
            &serde_json::to_value(&*current).unwrap_or_default(),
            &serde_json::to_value(desired).unwrap_or_default(),
        );
        if ops.is_empty() {
            return Ok(Some(current));
        }
        let name = current.name_any();
        let patched = self
            .api::<K>()
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PatchParams::default()
                },
                &Patch::<()>::Json(json_patch::Patch(
                    serde_json::from_value(Value::Array(ops)).unwrap_or_default(),
                )),
            )
            .await
            .map_err(|source| Error::Apply {
                kind: kube_ext::kind_of::<K>(),
                name: name.clone(),
                source,
            })?;
        let note = format!(
            "Updated {} {name}: took back what another field manager changed",
            K::kind(&())
        );
        self.publish(
            EventType::Normal,
            EventReason::Updated,
            EventAction::Apply,
            note,
        )
        .await;
        Ok(Some(Arc::new(patched)))
    }

    /// Applies an optional child when wanted and different, deletes it (if Shoal owns it)
    /// when not wanted.
    async fn optional<K: Child>(&mut self, desired: Option<&K>, live: Option<&K>) -> Result<()> {
        match (desired, live) {
            (Some(desired), live) => {
                if needs_apply(desired, live) {
                    self.apply(desired, live).await?;
                }
            }
            (None, Some(live)) if owned_by(live, self.valid) => {
                let name = self.valid.name.clone();
                self.delete_child::<K>(&name, "no longer in the spec")
                    .await?;
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// Deletes child `name` of kind `K` and publishes "Deleted <Kind> <name>: <why>"; one
    /// already gone is no error and no Event.
    async fn delete_child<K: Child>(&mut self, name: &str, why: &str) -> Result<()> {
        match self
            .api::<K>()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(source) => {
                return Err(Error::Delete {
                    kind: kube_ext::kind_of::<K>(),
                    name: name.to_string(),
                    source,
                });
            }
        }
        let note = format!("Deleted {} {name}: {why}", K::kind(&()));
        self.publish(
            EventType::Normal,
            EventReason::Deleted,
            EventAction::Delete,
            note,
        )
        .await;
        Ok(())
    }
}

fn owned_by<K: Resource>(object: &K, ms: &ValidatedMicroservice) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.uid == ms.uid && o.controller == Some(true))
}

/// True when a label or an annotation Shoal sets on `desired` differs on `live`.
fn metadata_drift<K: Resource>(desired: &K, live: &PartialObjectMeta<ConfigMap>) -> bool {
    let pick = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| serde_json::json!({"labels": meta.labels, "annotations": meta.annotations});
    !diff::contains(&pick(&live.metadata), &pick(desired.meta()))
}

fn needs_apply<K: Serialize>(desired: &K, live: Option<&K>) -> bool {
    let desired = serde_json::to_value(desired).unwrap_or_default();
    let live = live.map(|l| serde_json::to_value(l).unwrap_or_default());
    diff::needs_apply(&desired, live.as_ref())
}

mod canary;
mod prune;
mod routing;
mod schedules;

use prune::prune_config_maps;
pub use prune::{cron_job_config_maps, referenced_config_maps};
pub use routing::note_routing;
#[cfg(test)]
mod tests;
mod written;

pub use written::Written;

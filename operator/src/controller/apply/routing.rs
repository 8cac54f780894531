//! The traffic router's part of the apply step ([`render::routing`] decides, purely): the
//! track Services and the router's Ingress applied while the traffic is split and deleted
//! (those Shoal owns) after; the user's route read and, where it differs, patched.
//!
//! The route is the one object a reconcile GETs instead of reading a watch cache: it is the
//! user's, not labelled as Shoal's, its kind may not even be installed, and it is read only
//! while a canary splits the traffic through it or its split is being undone.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::Value;

use super::{Child, Live, Step, lookup, needs_apply, owned_by};
use crate::FIELD_MANAGER;
use crate::controller::render::routing::{
    self, FALLBACK_NOTE, LiveRouting, Plan, RouteRef, RouteUpdate, Router, with_note,
};
use crate::controller::render::{canary_name, stable_name};
use crate::controller::rollout::Transition;
use crate::error::{Error, Result};
use crate::vocabulary::{EventAction, EventReason};

/// What became of the user's route.
enum RouteOutcome {
    /// It already said what it must (or was not there to say anything).
    Settled,
    /// Patched in this pass: what it sent to may still receive traffic for a moment.
    Patched,
    /// The router cannot split through it (why, in words).
    Unusable(String),
}

impl Step<'_> {
    /// The router's plan for this pass, from the watch caches (no client).
    pub(super) fn routing_plan(&self, live: &Live, transition: &Transition) -> Plan {
        let stores = &self.ctx.stores;
        let owned_service = |name: String| {
            lookup(&stores.services, self.valid, &name).filter(|s| owned_by(&**s, self.valid))
        };
        let stable_service = owned_service(stable_name(&self.valid.name));
        let canary_service = owned_service(canary_name(&self.valid.name));
        let canary_ingress = lookup(
            &stores.ingresses,
            self.valid,
            &canary_name(&self.valid.name),
        )
        .filter(|i| owned_by(&**i, self.valid));
        routing::plan(
            self.valid,
            transition.status.canary.as_ref(),
            transition.canary_replicas.is_some(),
            LiveRouting {
                stable: live.deployment.as_deref(),
                ingress: live.ingress.as_deref(),
                stable_service: stable_service.as_deref(),
                canary_service: canary_service.as_deref(),
                canary_ingress: canary_ingress.as_deref(),
                canary: live.canary.as_deref(),
            },
        )
    }

    /// Carries out `plan`: the track Services and the router's Ingresses applied, stale
    /// ones deleted, the route set; a router that cannot split the traffic is noted for the
    /// canary's status (and told once in a Warning Event).
    pub(super) async fn routing(&mut self, plan: &Plan) -> Result<()> {
        let ctx = self.ctx;
        let stores = &ctx.stores;
        for service in &plan.services {
            self.apply_routed(service, &stores.services).await?;
        }
        for ingress in &plan.ingresses {
            self.apply_routed(ingress, &stores.ingresses).await?;
        }
        for name in &plan.stale_ingresses {
            self.delete_routed::<Ingress>(name).await?;
        }
        let mut fallback = plan.fallback.clone();
        let mut settled = true;
        if let Some((router, target, split)) = &plan.route {
            match self.route(router.as_ref(), target, *split).await? {
                RouteOutcome::Settled => {}
                RouteOutcome::Patched => settled = false,
                RouteOutcome::Unusable(why) if split.is_some() => fallback = Some(why),
                // Nothing to put back.
                RouteOutcome::Unusable(_) => {}
            }
        }
        // A route just put back may still send to the track Services for a moment: they go
        // in a later pass.
        if settled {
            for name in &plan.stale_services {
                self.delete_routed::<Service>(name).await?;
            }
        }
        let note = fallback.map(|why| format!("{FALLBACK_NOTE}: {why}"));
        if let Some(note) = &note {
            self.warn_routing(note).await;
        }
        self.applied.routing_note = note;
        Ok(())
    }

    /// Applies a router's object when it differs from its cached copy.
    async fn apply_routed<K: Child>(
        &mut self,
        object: &K,
        store: &crate::packed::PackedStore<K>,
    ) -> Result<()> {
        let name = object.meta().name.clone().unwrap_or_default();
        let live: Option<Arc<K>> = lookup(store, self.valid, &name);
        if needs_apply(object, live.as_deref()) {
            self.apply(object, live.as_deref()).await?;
        }
        Ok(())
    }

    /// Deletes a router's object Shoal owns (the plan names only those), with one Event.
    async fn delete_routed<K: Child>(&mut self, name: &str) -> Result<()> {
        self.delete_child::<K>(name, "the canary's traffic split ended")
            .await
    }

    /// Reads the user's route and patches what differs from `split`.
    async fn route(
        &mut self,
        router: &dyn Router,
        target: &RouteRef,
        split: Option<i32>,
    ) -> Result<RouteOutcome> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.ctx.client.clone(),
            &self.valid.namespace,
            &target.resource,
        );
        let what = target.describe();
        let route = match api.get(&target.name).await {
            Ok(route) => route,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(RouteOutcome::Unusable(format!(
                    "{what} was not found in namespace {} (or its kind is not installed: {})",
                    self.valid.namespace, status.message
                )));
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Ok(RouteOutcome::Unusable(format!(
                    "Shoal may not read {what}: {}",
                    status.message
                )));
            }
            Err(source) => {
                return Err(Error::Query {
                    action: format!("reading {what}"),
                    source,
                });
            }
        };
        let value = serde_json::to_value(&route).unwrap_or_default();
        let (ops, summary) = match router.route_update(self.valid, &value, split) {
            RouteUpdate::Unchanged => return Ok(RouteOutcome::Settled),
            RouteUpdate::NotHere(why) => return Ok(RouteOutcome::Unusable(why)),
            RouteUpdate::Patch { ops, summary } => (ops, summary),
        };
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).unwrap_or_else(|_| json_patch::Patch(vec![]));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        match api
            .patch(&target.name, &params, &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(RouteOutcome::Unusable(format!(
                    "{what} was deleted while Shoal set its weights"
                )));
            }
            Err(source) => {
                return Err(Error::Apply {
                    kind: target.kind,
                    name: target.name.clone(),
                    source,
                });
            }
        }
        self.publish(
            EventType::Normal,
            EventReason::Updated,
            EventAction::Apply,
            format!("Updated {what}: {summary}"),
        )
        .await;
        Ok(RouteOutcome::Patched)
    }

    /// A Warning Event for a router that cannot split the traffic, unless the stored
    /// status already tells it (so that it is told once, not every pass).
    async fn warn_routing(&mut self, note: &str) {
        let told = self
            .ms
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref()?.canary.as_ref()?.message.as_deref())
            .is_some_and(|m| m.ends_with(note));
        if told {
            return;
        }
        let note = format!("Canary: {note}");
        self.publish(
            EventType::Warning,
            EventReason::TrafficRoutingUnavailable,
            EventAction::Route,
            note,
        )
        .await;
    }
}

/// The canary's message with the routing note of the apply step, if any (the status shows
/// why the traffic is split by replica ratio although a router is set).
pub fn note_routing(transition: &mut Transition, note: Option<&str>) {
    if let (Some(note), Some(canary)) = (note, transition.status.canary.as_mut()) {
        canary.message = Some(with_note(canary.message.take(), note));
    }
}

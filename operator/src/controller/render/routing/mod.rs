//! Traffic routers of canary releases (`spec.rollout.canary.trafficRouting`): what splits
//! the traffic at the step's exact weight instead of by replica ratio. Pure: from the
//! validated Microservice, the canary's status and the live objects (watch caches) to the
//! objects to apply and to delete, and the user's route to set ([`plan`]).
//!
//! One file per router, each an implementation of [`Router`] that [`router`] picks. Every
//! router sends to two Services of Shoal's while the traffic is split: `<name>-stable` (pods
//! labelled `shoal.dev/track: stable`, which the stable Deployment's pods carry whenever a
//! router is set) and `<name>-canary`. Make before break: the Services are created in one
//! pass and traffic is sent to them only by a later pass that sees them in the cache; they
//! are deleted only once nothing Shoal set sends to them any more.

mod gateway;
mod nginx;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::ApiResource;
use serde_json::Value;

use super::canary::{CANARY_TRACK, STABLE_TRACK, TRACK_LABEL, canary_name, stable_name};
use super::meta::{APPLIED_HASH_ANNOTATION, object_meta, selector_labels, with_applied_hash};
use crate::crd::{CanaryPhase, CanaryStatus};
use crate::progress::Progress;
use crate::validate::{Routing, ValidatedMicroservice};

pub use gateway::{HTTP_ROUTE_ANNOTATION, http_route_resource};
pub use nginx::{CANARY_ANNOTATION, CANARY_WEIGHT_ANNOTATION};

/// Component label of the objects a router owns.
pub const ROUTING_COMPONENT: &str = "routing";

/// A user's object (not Shoal's) whose backends a router sets, such as an HTTPRoute.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRef {
    /// Its kind, as errors name it.
    pub kind: &'static str,
    /// Its kind's API resource.
    pub resource: ApiResource,
    /// Its name, in the Microservice's namespace.
    pub name: String,
}

impl RouteRef {
    /// "HTTPRoute web".
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// What must change in a user's route.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteUpdate {
    /// It already says what it must.
    Unchanged,
    /// A JSON patch (with `test` guards) and what it does, in words.
    Patch {
        /// The JSON patch operations.
        ops: Vec<Value>,
        /// "rule 0 sends 80% to shop-stable and 20% to shop-canary".
        summary: String,
    },
    /// No part of the route sends to this service: nothing to set (why, in words).
    NotHere(String),
}

/// One traffic router. Every method has a default that does nothing, so a router states
/// only what it adds to the two track Services.
pub trait Router: Send + Sync {
    /// Ingresses Shoal owns while the canary gets `weight` percent of the traffic.
    fn ingresses(&self, _ms: &ValidatedMicroservice, _weight: i32) -> Vec<Ingress> {
        Vec::new()
    }

    /// Whether the Microservice's own Ingress sends to `<name>-stable` while split.
    fn stable_ingress(&self) -> bool {
        false
    }

    /// Annotations of the track Services: how a route the router changed is found again to
    /// be put back after the router is switched off during a canary.
    fn service_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// The user's object whose backends the router sets, if any.
    fn route(&self) -> Option<RouteRef> {
        None
    }

    /// What must change in the user's route (`route`, as read) so that it sends `split`
    /// percent to the canary, or (None) only to the Microservice's Service again.
    fn route_update(
        &self,
        _ms: &ValidatedMicroservice,
        _route: &Value,
        _split: Option<i32>,
    ) -> RouteUpdate {
        RouteUpdate::Unchanged
    }
}

/// The router of `routing`; None for the replica ratio, which needs no object.
pub fn router(routing: &Routing) -> Option<Box<dyn Router>> {
    match routing {
        Routing::Replicas => None,
        Routing::Nginx => Some(Box::new(nginx::Nginx)),
        Routing::GatewayApi(route) => Some(Box::new(gateway::GatewayApi::new(route))),
    }
}

/// Whether the stable Deployment's pods carry `shoal.dev/track: stable` (a router is set).
pub fn labels_stable_track(ms: &ValidatedMicroservice) -> bool {
    ms.rollout
        .canary
        .as_ref()
        .is_some_and(|c| c.routing != Routing::Replicas)
}

/// The live objects a plan looks at, from the watch caches. The track Services and the
/// canary Ingress only when Shoal owns them.
#[derive(Clone, Copy, Default)]
pub struct LiveRouting<'a> {
    /// The stable Deployment.
    pub stable: Option<&'a Deployment>,
    /// The Microservice's own Ingress.
    pub ingress: Option<&'a Ingress>,
    /// `<name>-stable`.
    pub stable_service: Option<&'a Service>,
    /// `<name>-canary`.
    pub canary_service: Option<&'a Service>,
    /// `<name>-canary`.
    pub canary_ingress: Option<&'a Ingress>,
    /// The canary Deployment.
    pub canary: Option<&'a Deployment>,
}

/// What the router of a Microservice needs now.
pub struct Plan {
    /// Percent of the traffic the router sends to the canary; None: the router does not
    /// split the traffic (no canary in its steps, or not yet).
    pub split: Option<i32>,
    /// Services to apply: the two track Services while a router is to split.
    pub services: Vec<Service>,
    /// Ingresses to apply (the router's own, while split).
    pub ingresses: Vec<Ingress>,
    /// Ingresses Shoal owns that must go.
    pub stale_ingresses: Vec<String>,
    /// Services Shoal owns that must go, once the route no longer sends to them.
    pub stale_services: Vec<String>,
    /// Whether the Microservice's own Ingress sends to `<name>-stable`.
    pub stable_ingress: bool,
    /// The user's route to read and set, with the router that sets it and the split it must
    /// show.
    pub route: Option<(Box<dyn Router>, RouteRef, Option<i32>)>,
    /// Why a router that is set does not split the traffic during a canary, which then goes
    /// by replica ratio.
    pub fallback: Option<String>,
}

impl Plan {
    /// The Microservice's own Ingress as it must be applied: sending to `<name>-stable`
    /// while split, as rendered otherwise.
    pub fn main_ingress(
        &self,
        ms: &ValidatedMicroservice,
        ingress: Option<Ingress>,
    ) -> Option<Ingress> {
        let ingress = ingress?;
        Some(if self.stable_ingress {
            with_backend(ingress, &ms.name, &stable_name(&ms.name))
        } else {
            ingress
        })
    }
}

/// The canary's weight while it is in its steps (the phases in which the traffic is
/// split) and its Deployment is wanted.
fn steps_weight(canary: Option<&CanaryStatus>, canary_wanted: bool) -> Option<i32> {
    canary
        .filter(|c| {
            canary_wanted && matches!(c.phase, CanaryPhase::Progressing | CanaryPhase::Paused)
        })
        .map(|c| c.weight.clamp(0, 100))
}

/// Whether every pod of a Deployment carries `shoal.dev/track: stable`: its template does,
/// and no pod of an older template is left.
fn stable_labelled(deployment: Option<&Deployment>) -> bool {
    deployment.is_some_and(|d| {
        let labelled = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref()?.labels.as_ref())
            .and_then(|l| l.get(TRACK_LABEL))
            .is_some_and(|t| t == STABLE_TRACK);
        labelled && !Progress::of(d).rollout_in_progress()
    })
}

/// Whether an Ingress sends anything to the Service `service`.
fn sends_to(ingress: Option<&Ingress>, service: &str) -> bool {
    ingress
        .and_then(|i| i.spec.as_ref()?.rules.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
        .any(|p| {
            p.backend
                .service
                .as_ref()
                .is_some_and(|s| s.name == service)
        })
}

/// Why a canary goes by replica ratio although a router is set: the stable pods cannot be
/// told apart yet.
pub const UNLABELLED: &str = "not every stable pod carries shoal.dev/track=stable yet (the stable Deployment's pods get it with its next rollout)";

/// The words before why a router does not split the traffic, in the canary's message.
pub const FALLBACK_NOTE: &str = "traffic split by replica ratio";

/// What the router of `ms` needs now, given `canary` (the new `status.rollout.canary`),
/// whether the canary Deployment is wanted, and the live objects.
pub fn plan(
    ms: &ValidatedMicroservice,
    canary: Option<&CanaryStatus>,
    canary_wanted: bool,
    live: LiveRouting,
) -> Plan {
    let router = ms.rollout.canary.as_ref().and_then(|c| router(&c.routing));
    let weight = router.as_ref().and(steps_weight(canary, canary_wanted));
    // `<name>-stable` selects pods by the track label: without it on the stable pods it
    // would select none, so the canary goes on by replica ratio.
    let labelled = stable_labelled(live.stable);
    let wanted = weight.filter(|_| labelled);
    let fallback = (weight.is_some() && !labelled).then(|| UNLABELLED.to_string());
    // Traffic goes to the track Services once they exist and a canary pod can take it.
    let services_live = live.stable_service.is_some() && live.canary_service.is_some();
    let canary_available = live.canary.is_some_and(|c| Progress::of(c).available > 0);
    let split = wanted.filter(|_| services_live && canary_available);

    let services = match (&router, wanted) {
        (Some(r), Some(_)) => track_services(ms, &r.service_annotations()),
        _ => Vec::new(),
    };
    let ingresses = match (&router, split) {
        (Some(r), Some(w)) => r.ingresses(ms, w),
        _ => Vec::new(),
    };
    let stale_ingresses: Vec<String> = live
        .canary_ingress
        .iter()
        .filter_map(|i| i.metadata.name.clone())
        .filter(|n| {
            !ingresses
                .iter()
                .any(|i| i.metadata.name.as_ref() == Some(n))
        })
        .collect();
    let stable_ingress = split.is_some() && router.as_ref().is_some_and(|r| r.stable_ingress());

    // The route: set while split; otherwise put back while a track Service exists, which it
    // may send to (the canary ended, or lost its last available pod; also after the router
    // was switched off: the Services name the route they were for).
    let route_router = match router {
        Some(r) if r.route().is_some() => Some(r),
        _ => gateway::left_behind(&[live.stable_service, live.canary_service]),
    };
    let any_service_live = live.stable_service.is_some() || live.canary_service.is_some();
    let route = route_router.and_then(|r| {
        let target = r.route()?;
        match split {
            Some(w) => Some((r, target, Some(w))),
            None => any_service_live.then_some((r, target, None)),
        }
    });

    // The track Services go once no Ingress of Shoal's sends to them.
    let in_use = sends_to(live.ingress, &stable_name(&ms.name)) || live.canary_ingress.is_some();
    let stale_services = if wanted.is_none() && !in_use {
        [live.stable_service, live.canary_service]
            .into_iter()
            .flatten()
            .filter_map(|s| s.metadata.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    Plan {
        split,
        services,
        ingresses,
        stale_ingresses,
        stale_services,
        stable_ingress,
        route,
        fallback,
    }
}

/// The Services `<name>-stable` and `<name>-canary`: the ports of the Microservice's
/// Service, selecting one track each. ClusterIP whatever the main Service's type: only
/// the router sends to them.
pub fn track_services(
    ms: &ValidatedMicroservice,
    annotations: &BTreeMap<String, String>,
) -> Vec<Service> {
    let main = super::render_service(ms);
    [
        (stable_name(&ms.name), STABLE_TRACK),
        (canary_name(&ms.name), CANARY_TRACK),
    ]
    .into_iter()
    .map(|(name, track)| {
        let mut metadata = object_meta(ms, name, ROUTING_COMPONENT);
        if !annotations.is_empty() {
            metadata.annotations = Some(annotations.clone());
        }
        let mut spec = main.spec.clone().unwrap_or_default();
        spec.type_ = Some("ClusterIP".to_string());
        let mut selector = selector_labels(ms);
        selector.insert(TRACK_LABEL.to_string(), track.to_string());
        spec.selector = Some(selector);
        with_applied_hash(Service {
            metadata,
            spec: Some(spec),
            ..Service::default()
        })
    })
    .collect()
}

/// `ingress` with every backend that sends to the Service `from` sending to `to`, and its
/// applied hash stamped again.
pub fn with_backend(mut ingress: Ingress, from: &str, to: &str) -> Ingress {
    let paths = ingress
        .spec
        .iter_mut()
        .flat_map(|s| s.rules.iter_mut().flatten())
        .filter_map(|r| r.http.as_mut())
        .flat_map(|h| h.paths.iter_mut());
    for path in paths {
        if let Some(service) = path.backend.service.as_mut().filter(|s| s.name == from) {
            service.name = to.to_string();
        }
    }
    if let Some(annotations) = ingress.metadata.annotations.as_mut() {
        annotations.remove(APPLIED_HASH_ANNOTATION);
        if annotations.is_empty() {
            ingress.metadata.annotations = None;
        }
    }
    with_applied_hash(ingress)
}

/// `message` with the routing `note` after it (once): `"<message>; <note>"`.
pub fn with_note(message: Option<String>, note: &str) -> String {
    match message {
        Some(m) if m.ends_with(note) => m,
        Some(m) if !m.is_empty() => format!("{m}; {note}"),
        _ => note.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! The Gateway API router (`trafficRouting: {gatewayAPI: {httpRoute: <name>}}`): backend
//! weights on the user's HTTPRoute. Only the rules with a backendRef to this service (to
//! `<name>`, `<name>-stable` or `<name>-canary`) change, and in them only those backendRefs:
//! `<name>-stable` at 100-w and `<name>-canary` at w while split, `<name>` again after.
//! Other rules, other backendRefs and every other field of the route stay as the user set
//! them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{RouteRef, RouteUpdate, Router};
use crate::controller::render::canary::{canary_name, stable_name};
use crate::validate::ValidatedMicroservice;

/// Annotation of the track Services naming the HTTPRoute they were made for, so that the
/// route is put back even when the router is switched off during a canary.
pub const HTTP_ROUTE_ANNOTATION: &str = "shoal.dev/http-route";

/// The API resource of Gateway API's `HTTPRoute` (`gateway.networking.k8s.io/v1`): no
/// typed struct in k8s-openapi, so it is read and patched as a dynamic object.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// The Gateway API router for the HTTPRoute `route`.
pub struct GatewayApi {
    route: String,
}

impl GatewayApi {
    /// The router of the HTTPRoute named `route`.
    pub fn new(route: &str) -> GatewayApi {
        GatewayApi {
            route: route.to_string(),
        }
    }
}

/// The router of the route a track Service names, if one does (see
/// [`HTTP_ROUTE_ANNOTATION`]).
pub fn left_behind(services: &[Option<&Service>]) -> Option<Box<dyn Router>> {
    services
        .iter()
        .flatten()
        .find_map(|s| s.metadata.annotations.as_ref()?.get(HTTP_ROUTE_ANNOTATION))
        .map(|route| Box::new(GatewayApi::new(route)) as Box<dyn Router>)
}

impl Router for GatewayApi {
    fn service_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(HTTP_ROUTE_ANNOTATION.to_string(), self.route.clone())])
    }

    fn route(&self) -> Option<RouteRef> {
        Some(RouteRef {
            kind: "HTTPRoute",
            resource: http_route_resource(),
            name: self.route.clone(),
        })
    }

    fn route_update(
        &self,
        ms: &ValidatedMicroservice,
        route: &Value,
        split: Option<i32>,
    ) -> RouteUpdate {
        let rules = route
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut ops = Vec::new();
        let mut changed = Vec::new();
        let mut here = false;
        for (i, rule) in rules.iter().enumerate() {
            let Some(refs) = rule.get("backendRefs").and_then(Value::as_array) else {
                continue;
            };
            if !refs.iter().any(|r| is_ours(ms, r)) {
                continue;
            }
            here = true;
            let Some(wanted) = backend_refs(ms, refs, split) else {
                continue;
            };
            let path = format!("/spec/rules/{i}/backendRefs");
            // Guarded: a rule the user changed since it was read is not overwritten.
            ops.push(json!({"op": "test", "path": path, "value": refs}));
            ops.push(json!({"op": "replace", "path": path, "value": wanted}));
            changed.push(i.to_string());
        }
        if !here {
            return RouteUpdate::NotHere(format!(
                "HTTPRoute {} has no rule with a backendRef to Service {}",
                self.route, ms.name
            ));
        }
        if ops.is_empty() {
            return RouteUpdate::Unchanged;
        }
        let rules = match changed.as_slice() {
            [one] => format!("rule {one}"),
            many => format!("rules {}", many.join(", ")),
        };
        let summary = match split {
            Some(w) => format!(
                "{rules} sends {}% to {} and {w}% to {}",
                100 - w,
                stable_name(&ms.name),
                canary_name(&ms.name)
            ),
            None => format!("{rules} sends to {} again", ms.name),
        };
        RouteUpdate::Patch { ops, summary }
    }
}

/// Whether a backendRef points at one of this service's Services (in its namespace).
fn is_ours(ms: &ValidatedMicroservice, r: &Value) -> bool {
    let field = |k: &str| r.get(k).and_then(Value::as_str);
    let names = [
        ms.name.clone(),
        stable_name(&ms.name),
        canary_name(&ms.name),
    ];
    field("group").is_none_or(str::is_empty)
        && field("kind").is_none_or(|k| k == "Service")
        && field("namespace").is_none_or(|n| n == ms.namespace)
        && field("name").is_some_and(|n| names.iter().any(|x| x == n))
}

/// The backendRefs a rule must have, or None when `refs` already are right: the refs to
/// other backends unchanged and in place, this service's replaced where the first of them
/// was. Not split, a rule that sends only to `<name>` is left as it is (its port, weight
/// and filters are the user's).
fn backend_refs(
    ms: &ValidatedMicroservice,
    refs: &[Value],
    split: Option<i32>,
) -> Option<Vec<Value>> {
    let first = refs.iter().position(|r| is_ours(ms, r))?;
    let ours: Vec<&Value> = refs.iter().filter(|r| is_ours(ms, r)).collect();
    // The user's fields of the first ref (filters, group, kind) are kept on Shoal's.
    let mut template = refs[first].clone();
    if let Some(fields) = template.as_object_mut() {
        for key in ["name", "port", "weight", "namespace"] {
            fields.remove(key);
        }
    }
    let with = |name: String, weight: Option<i32>| {
        let mut r = template.clone();
        r["name"] = json!(name);
        r["port"] = json!(ms.ports.service);
        if let Some(w) = weight {
            r["weight"] = json!(w);
        }
        r
    };
    let wanted: Vec<Value> = match split {
        Some(w) => vec![
            with(stable_name(&ms.name), Some(100 - w)),
            with(canary_name(&ms.name), Some(w)),
        ],
        None => {
            let plain = ours
                .iter()
                .all(|r| r.get("name").and_then(Value::as_str) == Some(ms.name.as_str()));
            if plain {
                return None;
            }
            vec![with(ms.name.clone(), None)]
        }
    };
    if ours.len() == wanted.len() && ours.iter().zip(&wanted).all(|(l, w)| same_ref(l, w)) {
        return None;
    }
    let mut out: Vec<Value> = Vec::with_capacity(refs.len() + 1);
    for (i, r) in refs.iter().enumerate() {
        if i == first {
            out.extend(wanted.iter().cloned());
        } else if !is_ours(ms, r) {
            out.push(r.clone());
        }
    }
    Some(out)
}

/// Whether a live backendRef is the wanted one, defaults aside (the apiserver sets `group:
/// ""`, `kind: Service` and `weight: 1` when they are missing).
fn same_ref(live: &Value, wanted: &Value) -> bool {
    let normal = |v: &Value| {
        let mut v = v.clone();
        if let Some(fields) = v.as_object_mut() {
            fields.entry("group").or_insert(json!(""));
            fields.entry("kind").or_insert(json!("Service"));
            fields.entry("weight").or_insert(json!(1));
            fields.remove("namespace");
        }
        v
    };
    normal(live) == normal(wanted)
}

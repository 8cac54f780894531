//! Tests of the traffic routers, from YAML specs and JSON routes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::*;
use crate::controller::render::{
    APPLIED_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL, render,
    render_canary_deployment,
};
use crate::crd::CanaryStatus;
use crate::test_support::{DeploymentAt, deployment, valid};
use crate::validate::ValidatedMicroservice;

const BASE: &str = "  image: app:1\n  replicas: 4\n  service: {type: NodePort}\n  ingress: {host: shop.example.com, className: nginx, tlsSecretName: shop-tls}\n";

fn spec(routing: &str) -> String {
    format!(
        "{BASE}  rollout:\n    strategy: Canary\n    canary:\n      steps: [{{weight: 20}}, {{pause: {{}}}}]\n{routing}"
    )
}

fn nginx() -> ValidatedMicroservice {
    valid(&spec("      trafficRouting: {nginx: {}}\n"))
}

fn gateway() -> ValidatedMicroservice {
    valid(&spec(
        "      trafficRouting: {gatewayAPI: {httpRoute: web}}\n",
    ))
}

fn replicas() -> ValidatedMicroservice {
    valid(&spec(""))
}

fn canary(phase: &str, weight: i32) -> CanaryStatus {
    serde_json::from_value(json!({
        "phase": phase, "templateHash": "new", "generation": 3, "step": 0, "steps": 2,
        "weight": weight, "startedAt": "2025-01-01T00:00:00Z", "stepStartedAt": "2025-01-01T00:00:00Z",
    }))
    .expect("a canary status")
}

/// The stable Deployment as rendered for `ms`, rolled out to all of its 4 pods.
fn stable(ms: &ValidatedMicroservice) -> Deployment {
    let mut d = render(ms).deployment;
    let done = deployment(DeploymentAt::complete(1, 4));
    d.metadata.generation = done.metadata.generation;
    d.status = done.status;
    d
}

fn canary_deployment(ms: &ValidatedMicroservice, available: i32) -> Deployment {
    let mut d = render_canary_deployment(ms, &render(ms).deployment, 1);
    let at = DeploymentAt {
        available,
        ..DeploymentAt::complete(1, 1)
    };
    d.status = deployment(at).status;
    d
}

/// What the caches hold mid-canary once the track Services exist.
struct World {
    stable: Deployment,
    canary: Deployment,
    services: Vec<Service>,
    ingress: Option<Ingress>,
    canary_ingress: Option<Ingress>,
}

impl World {
    fn of(ms: &ValidatedMicroservice) -> World {
        World {
            stable: stable(ms),
            canary: canary_deployment(ms, 1),
            services: track_services(ms, &BTreeMap::new()),
            ingress: render(ms).ingress,
            canary_ingress: None,
        }
    }

    fn live(&self) -> LiveRouting<'_> {
        LiveRouting {
            stable: Some(&self.stable),
            ingress: self.ingress.as_ref(),
            stable_service: self.services.first(),
            canary_service: self.services.get(1),
            canary_ingress: self.canary_ingress.as_ref(),
            canary: Some(&self.canary),
        }
    }
}

fn template_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.labels.clone())
        .unwrap_or_default()
}

fn annotations(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

fn backends(ingress: &Ingress) -> Vec<String> {
    ingress
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
        .filter_map(|p| p.backend.service.as_ref().map(|s| s.name.clone()))
        .collect()
}

#[test]
fn a_router_labels_the_stable_pods_without_changing_the_revision() {
    let (plain, routed) = (render(&replicas()), render(&nginx()));
    assert_eq!(
        plain.template_hash, routed.template_hash,
        "setting a router must not start a canary"
    );
    assert!(!template_labels(&plain.deployment).contains_key(TRACK_LABEL));
    assert_eq!(
        template_labels(&routed.deployment)[TRACK_LABEL],
        STABLE_TRACK
    );
    assert_ne!(
        plain.deployment, routed.deployment,
        "the stable Deployment takes the label in an ordinary rolling update"
    );
    // The selector is immutable: it stays as it was.
    assert_eq!(
        plain.deployment.spec.as_ref().map(|s| &s.selector),
        routed.deployment.spec.as_ref().map(|s| &s.selector)
    );
    // The canary Deployment's pods carry `canary`, not the stable pods' label.
    let canary = render_canary_deployment(&nginx(), &routed.deployment, 1);
    assert_eq!(template_labels(&canary)[TRACK_LABEL], CANARY_TRACK);
    let selector = canary
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone());
    assert_eq!(selector.unwrap_or_default()[TRACK_LABEL], CANARY_TRACK);
}

#[test]
fn the_track_services_select_one_track_each_on_the_services_port() {
    let ms = nginx();
    let main = render(&ms).service;
    let services = track_services(&ms, &BTreeMap::new());
    let names: Vec<_> = services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["shop-stable", "shop-canary"]);
    for (service, track) in services.iter().zip([STABLE_TRACK, CANARY_TRACK]) {
        let spec = service.spec.as_ref().unwrap();
        let selector = spec.selector.clone().unwrap();
        assert_eq!(selector.len(), 3, "{selector:?}");
        assert_eq!(selector[NAME_LABEL], "shop");
        assert_eq!(selector[INSTANCE_LABEL], "shop");
        assert_eq!(selector[TRACK_LABEL], track);
        assert_eq!(spec.ports, main.spec.as_ref().unwrap().ports);
        assert_eq!(
            spec.type_.as_deref(),
            Some("ClusterIP"),
            "only the router sends to it"
        );
        let meta = &service.metadata;
        assert_eq!(meta.labels.as_ref().unwrap()[MANAGED_BY_LABEL], "shoal");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
        assert!(annotations(meta).contains_key(APPLIED_HASH_ANNOTATION));
    }
    // Gateway API's Services name the route they were made for.
    let routed = track_services(
        &gateway(),
        &router(&Routing::GatewayApi("web".into()))
            .unwrap()
            .service_annotations(),
    );
    assert_eq!(
        annotations(&routed[0].metadata)[HTTP_ROUTE_ANNOTATION],
        "web"
    );
}

#[test]
fn nginx_at_weight_20_adds_a_canary_ingress_and_sends_the_own_one_to_stable() {
    let ms = nginx();
    let world = World::of(&ms);
    let status = canary("Progressing", 20);
    let plan = plan(&ms, Some(&status), true, world.live());
    assert_eq!(plan.split, Some(20));
    assert_eq!(plan.fallback, None);
    assert_eq!(plan.services.len(), 2);
    assert!(plan.route.is_none(), "ingress-nginx needs no route");
    let [canary_ingress] = plan.ingresses.as_slice() else {
        panic!("one canary Ingress: {:?}", plan.ingresses)
    };
    assert_eq!(canary_ingress.metadata.name.as_deref(), Some("shop-canary"));
    let a = annotations(&canary_ingress.metadata);
    assert_eq!(a[CANARY_ANNOTATION], "true");
    assert_eq!(a[CANARY_WEIGHT_ANNOTATION], "20");
    assert_eq!(backends(canary_ingress), ["shop-canary"]);
    // Same host, path, class and TLS as the own Ingress.
    let main = render(&ms).ingress.unwrap();
    let (c, m) = (
        canary_ingress.spec.clone().unwrap(),
        main.spec.clone().unwrap(),
    );
    assert_eq!(c.ingress_class_name, m.ingress_class_name);
    assert_eq!(c.tls, m.tls);
    let host_path = |s: &k8s_openapi::api::networking::v1::IngressSpec| {
        let rule = &s.rules.as_ref().unwrap()[0];
        let path = &rule.http.as_ref().unwrap().paths[0];
        (rule.host.clone(), path.path.clone(), path.path_type.clone())
    };
    assert_eq!(host_path(&c), host_path(&m));
    // The own Ingress sends to shop-stable, with its applied hash stamped again.
    let own = plan.main_ingress(&ms, Some(main.clone())).unwrap();
    assert_eq!(backends(&own), ["shop-stable"]);
    assert_ne!(
        annotations(&own.metadata)[APPLIED_HASH_ANNOTATION],
        annotations(&main.metadata)[APPLIED_HASH_ANNOTATION]
    );
    // The weight moves: the canary Ingress changes with it.
    let at_50 = plan_at(&ms, &world, "Progressing", 50);
    assert_eq!(
        annotations(&at_50.ingresses[0].metadata)[CANARY_WEIGHT_ANNOTATION],
        "50"
    );
    // Not split: the own Ingress is as rendered.
    let ended = plan_at(&ms, &world, "Promoting", 50);
    assert_eq!(ended.main_ingress(&ms, Some(main.clone())), Some(main));
}

fn plan_at(ms: &ValidatedMicroservice, world: &World, phase: &str, weight: i32) -> Plan {
    plan(ms, Some(&canary(phase, weight)), true, world.live())
}

#[test]
fn the_routed_ingress_keeps_its_hash_when_nothing_changes() {
    let main = render(&nginx()).ingress.unwrap();
    assert_eq!(with_backend(main.clone(), "shop", "shop"), main);
}

#[test]
fn no_split_while_a_stable_pod_lacks_the_track_label() {
    let ms = nginx();
    let mut world = World::of(&ms);
    // The stable Deployment as it was before the router was set (a canary began at once).
    world.stable = stable(&replicas());
    let plan = plan_at(&ms, &world, "Progressing", 20);
    assert_eq!(plan.split, None);
    assert_eq!(plan.fallback.as_deref(), Some(UNLABELLED));
    assert!(plan.services.is_empty() && plan.ingresses.is_empty() && !plan.stable_ingress);
    // Labelled template, but old pods still running: the same.
    let mut world = World::of(&ms);
    world.stable.status.as_mut().unwrap().replicas = Some(6);
    let plan = plan_at(&ms, &world, "Progressing", 20);
    assert_eq!(
        (plan.split, plan.fallback.as_deref()),
        (None, Some(UNLABELLED))
    );
    // With the default routing there is nothing to say.
    let ms = replicas();
    let world = World::of(&ms);
    let plan = plan_at(&ms, &world, "Progressing", 20);
    assert_eq!((plan.split, plan.fallback), (None, None));
    assert!(plan.services.is_empty() && plan.route.is_none());
}

#[test]
fn the_services_come_first_and_traffic_waits_for_them_and_for_a_canary_pod() {
    let ms = gateway();
    let mut world = World::of(&ms);
    world.services.clear();
    let plan = plan_at(&ms, &world, "Progressing", 20);
    assert_eq!(plan.split, None);
    assert_eq!(plan.services.len(), 2, "the Services are applied");
    assert!(plan.route.is_none(), "the route waits for them");
    assert_eq!(plan.fallback, None);
    let mut world = World::of(&ms);
    world.canary = canary_deployment(&ms, 0);
    let plan = plan_at(&ms, &world, "Progressing", 20);
    assert_eq!(plan.split, None, "no canary pod is available yet");
    assert_eq!(plan.services.len(), 2);
    assert!(
        plan.stale_services.is_empty(),
        "the Services stay while wanted"
    );
    let (_, _, split) = plan.route.as_ref().expect("the route is read");
    assert_eq!(
        *split, None,
        "and sends to shop alone (again, if it was split)"
    );
    let world = World::of(&ms);
    let plan = plan_at(&ms, &world, "Paused", 20);
    let (_, target, split) = plan.route.as_ref().expect("the route is set");
    assert_eq!((target.name.as_str(), *split), ("web", Some(20)));
    assert_eq!(target.resource.plural, "httproutes");
    assert_eq!(target.resource.api_version, "gateway.networking.k8s.io/v1");
    assert!(!plan.stable_ingress, "Gateway API leaves the Ingress alone");
    assert!(plan.ingresses.is_empty());
}

#[test]
fn after_the_canary_the_objects_go_once_nothing_sends_to_them() {
    let ms = nginx();
    let mut world = World::of(&ms);
    let split = plan_at(&ms, &world, "Progressing", 20);
    world.canary_ingress = split.ingresses.first().cloned();
    world.ingress = split.main_ingress(&ms, world.ingress.take());
    for phase in ["Promoting", "Promoted", "Aborted", "Superseded"] {
        let plan = plan_at(&ms, &world, phase, 20);
        assert_eq!(plan.split, None, "{phase}");
        assert!(
            plan.services.is_empty() && plan.ingresses.is_empty(),
            "{phase}"
        );
        assert_eq!(plan.stale_ingresses, ["shop-canary"], "{phase}");
        assert!(
            plan.stale_services.is_empty(),
            "{phase}: the own Ingress still sends to shop-stable"
        );
    }
    // A canary Deployment no longer wanted ends the split whatever the phase says.
    let unwanted = super::plan(&ms, Some(&canary("Progressing", 20)), false, world.live());
    assert_eq!(unwanted.stale_ingresses, ["shop-canary"]);
    // Once the caches show the own Ingress back on `shop` and the canary Ingress gone.
    world.canary_ingress = None;
    world.ingress = render(&ms).ingress;
    let plan = plan_at(&ms, &world, "Promoted", 20);
    assert_eq!(plan.stale_services, ["shop-stable", "shop-canary"]);
    assert!(plan.stale_ingresses.is_empty());
    // No canary at all, nothing live: nothing to do.
    let quiet = super::plan(&ms, None, false, LiveRouting::default());
    assert!(quiet.services.is_empty() && quiet.stale_services.is_empty() && quiet.route.is_none());
}

#[test]
fn a_route_left_weighted_is_put_back_even_when_the_router_was_switched_off() {
    let ms = gateway();
    let mut world = World::of(&ms);
    world.services = track_services(
        &ms,
        &router(&Routing::GatewayApi("web".into()))
            .unwrap()
            .service_annotations(),
    );
    // Still Gateway API, canary over: the route goes back to `shop`.
    let plan = plan_at(&ms, &world, "Promoted", 20);
    let (_, target, split) = plan.route.as_ref().expect("put back");
    assert_eq!((target.name.as_str(), *split), ("web", None));
    // The router switched off during the canary: the Services still name the route.
    let ms = replicas();
    let plan = plan_at(&ms, &world, "Progressing", 20);
    let (_, target, split) = plan.route.as_ref().expect("put back");
    assert_eq!((target.name.as_str(), *split), ("web", None));
    assert_eq!(plan.stale_services.len(), 2);
}

fn route(rules: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "web", "namespace": "prod"},
           "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example.com"], "rules": rules}})
}

fn update(ms: &ValidatedMicroservice, live: &Value, split: Option<i32>) -> RouteUpdate {
    gateway::GatewayApi::new("web").route_update(ms, live, split)
}

/// `live` with `ops` applied (the JSON patch the apiserver would apply).
fn patched(live: &Value, ops: &[Value]) -> Value {
    let mut out = live.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
    json_patch::patch(&mut out, &patch.0).expect("the patch applies");
    out
}

#[test]
fn gateway_api_weights_only_this_services_backend_refs() {
    let ms = gateway();
    let live = route(json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
         "backendRefs": [{"name": "api", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x", "value": "1"}]}}],
         "backendRefs": [{"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1}]},
    ]));
    let RouteUpdate::Patch { ops, summary } = update(&ms, &live, Some(20)) else {
        panic!("a patch")
    };
    assert_eq!(
        summary,
        "rule 1 sends 80% to shop-stable and 20% to shop-canary"
    );
    assert_eq!(
        ops,
        vec![
            json!({"op": "test", "path": "/spec/rules/1/backendRefs", "value": live["spec"]["rules"][1]["backendRefs"]}),
            json!({"op": "replace", "path": "/spec/rules/1/backendRefs", "value": [
                {"group": "", "kind": "Service", "name": "shop-stable", "port": 80, "weight": 80},
                {"group": "", "kind": "Service", "name": "shop-canary", "port": 80, "weight": 20},
            ]}),
        ],
        "only rule 1's backendRefs: rule 0, the filters, matches and parents are the user's"
    );
    let split = patched(&live, &ops);
    assert_eq!(split["spec"]["rules"][0], live["spec"]["rules"][0]);
    assert_eq!(
        split["spec"]["rules"][1]["filters"],
        live["spec"]["rules"][1]["filters"]
    );
    assert_eq!(
        update(&ms, &split, Some(20)),
        RouteUpdate::Unchanged,
        "converged"
    );
    // The next step.
    let RouteUpdate::Patch { ops, .. } = update(&ms, &split, Some(50)) else {
        panic!("a patch")
    };
    let at_50 = patched(&split, &ops);
    assert_eq!(at_50["spec"]["rules"][1]["backendRefs"][0]["weight"], 50);
    // Back to the plain Service after the canary; weight and kind as the apiserver defaults.
    let RouteUpdate::Patch { ops, summary } = update(&ms, &at_50, None) else {
        panic!("a patch")
    };
    assert_eq!(summary, "rule 1 sends to shop again");
    let mut back = patched(&at_50, &ops);
    assert_eq!(
        back["spec"]["rules"][1]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "shop", "port": 80}])
    );
    back["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(1);
    assert_eq!(back, live);
    assert_eq!(update(&ms, &back, None), RouteUpdate::Unchanged);
}

#[test]
fn gateway_api_keeps_other_backends_of_a_rule_and_defaults_count_as_equal() {
    let ms = gateway();
    // The user's own split between this service and another, refs without defaults.
    let live = route(json!([{"backendRefs": [
        {"name": "legacy", "port": 80, "weight": 10},
        {"name": "shop", "port": 80, "weight": 90},
    ]}]));
    let RouteUpdate::Patch { ops, .. } = update(&ms, &live, Some(20)) else {
        panic!("a patch")
    };
    let split = patched(&live, &ops);
    assert_eq!(
        split["spec"]["rules"][0]["backendRefs"],
        json!([
            {"name": "legacy", "port": 80, "weight": 10},
            {"name": "shop-stable", "port": 80, "weight": 80},
            {"name": "shop-canary", "port": 80, "weight": 20},
        ])
    );
    // As the apiserver stores it (defaults filled in): nothing to change.
    let mut stored = split.clone();
    for r in stored["spec"]["rules"][0]["backendRefs"]
        .as_array_mut()
        .unwrap()
    {
        r["group"] = json!("");
        r["kind"] = json!("Service");
    }
    assert_eq!(update(&ms, &stored, Some(20)), RouteUpdate::Unchanged);
    // A rule that already sends to `shop` alone is left as the user set it when not split.
    assert_eq!(update(&ms, &live, None), RouteUpdate::Unchanged);
}

#[test]
fn gateway_api_ignores_refs_elsewhere_and_says_when_no_rule_sends_here() {
    let ms = gateway();
    let elsewhere = route(json!([{"backendRefs": [
        {"name": "shop", "namespace": "other", "port": 80},
        {"name": "shop", "kind": "ServiceImport", "group": "multicluster.x-k8s.io", "port": 80},
        {"name": "api", "port": 80},
    ]}, {"matches": [{"path": {"type": "Exact", "value": "/x"}}]}]));
    let RouteUpdate::NotHere(why) = update(&ms, &elsewhere, Some(20)) else {
        panic!("no rule sends to shop")
    };
    assert!(
        why.contains("HTTPRoute web") && why.contains("Service shop"),
        "{why}"
    );
    let no_rules = json!({"spec": {}});
    assert!(matches!(
        update(&ms, &no_rules, None),
        RouteUpdate::NotHere(_)
    ));
}

#[test]
fn a_routing_note_is_added_to_the_message_once() {
    let once = with_note(
        Some("canary at step 1/2".into()),
        "traffic split by replica ratio: x",
    );
    assert_eq!(
        once,
        "canary at step 1/2; traffic split by replica ratio: x"
    );
    assert_eq!(
        with_note(Some(once.clone()), "traffic split by replica ratio: x"),
        once
    );
    assert_eq!(with_note(None, "n"), "n");
}

#[test]
fn a_router_needs_a_name_its_services_can_take() {
    let long = "s".repeat(57);
    let yaml = spec("      trafficRouting: {nginx: {}}\n");
    let mut ms = crate::test_support::microservice(&yaml);
    ms.metadata.name = Some(long.clone());
    let err = crate::validate::validate(&ms).expect_err("57 characters is too long");
    assert!(err.to_string().contains("at most 56"), "{err}");
    ms.metadata.name = Some("s".repeat(56));
    assert!(crate::validate::validate(&ms).is_ok());
    // Without a router the Service name limit (63) is all.
    let mut ms = crate::test_support::microservice(&spec(""));
    ms.metadata.name = Some(long);
    assert!(crate::validate::validate(&ms).is_ok());
}

//! The reconcile against a scripted mock apiserver (kube-rs controller-rs style, with
//! `tower-test`): which requests a pass makes, in which order, and none when nothing changed.
//! The watch caches are filled by hand, as the controller's watches would fill them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::client::Body;
use kube::core::PartialObjectMetaExt;
use kube::runtime::watcher;
use serde_json::{Value, json};
use shoal::controller::{Context, Stores, reconcile::reconcile};
use shoal::crd::Microservice;
use shoal::packed::PackedStore;
use shoal::test_support::{NAME, NAMESPACE, microservice_at};

/// One request the reconcile made: `METHOD path` (without the query) and its body.
#[derive(Clone, Debug)]
struct Call {
    line: String,
    body: Value,
}

/// How the mock answers a request: `None` echoes it as the apiserver would (see [`answer`]).
type Script = Arc<dyn Fn(&Call) -> Option<(StatusCode, Value)> + Send + Sync>;

/// The mock apiserver: records every request and answers it.
struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl ApiServer {
    fn start(ms: Microservice, script: Script) -> (Client, ApiServer) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let line = format!("{} {}", request.method(), request.uri().path());
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .expect("request body");
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let call = Call { line, body };
                recorded.lock().expect("calls").push(call.clone());
                let (status, reply) = script(&call).unwrap_or_else(|| answer(&ms, &call));
                let response = Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
        });
        (Client::new(service, NAMESPACE), ApiServer { calls })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn lines(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.line).collect()
    }
}

/// What the apiserver returns for a write: the applied object with the metadata it sets
/// (uid, generation 1, resourceVersion, our field manager), the Microservice with the
/// written status, or the created Event.
fn answer(ms: &Microservice, call: &Call) -> (StatusCode, Value) {
    let mut body = call.body.clone();
    if call.line.ends_with("/status") {
        let mut written = serde_json::to_value(ms).expect("json");
        written["status"] = body["status"].clone();
        written["metadata"]["resourceVersion"] = json!("2");
        return (StatusCode::OK, written);
    }
    if call.line.starts_with("PATCH") {
        let metadata = &mut body["metadata"];
        metadata["uid"] = json!(format!("uid-{}", metadata["name"].as_str().unwrap_or("")));
        metadata["generation"] = json!(1);
        metadata["resourceVersion"] = json!("1");
        metadata["managedFields"] = json!([{"manager": "shoal", "operation": "Apply"}]);
    }
    (StatusCode::OK, body)
}

/// Writers of the controller's caches, and the stores they fill.
struct Caches {
    deployments: PackedStore<Deployment>,
    services: PackedStore<Service>,
    ingresses: PackedStore<Ingress>,
    hpas: PackedStore<HorizontalPodAutoscaler>,
    pdbs: PackedStore<PodDisruptionBudget>,
    cron_jobs: PackedStore<CronJob>,
    config_maps: PackedStore<PartialObjectMeta<ConfigMap>>,
    replica_sets: PackedStore<ReplicaSet>,
    stores: Stores,
}

fn ready<K>(writer: &PackedStore<K>)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

impl Caches {
    /// Empty caches that have listed once (nothing exists yet).
    fn empty() -> Caches {
        let deployments = PackedStore::whole();
        let deployments_r = deployments.clone();
        let services = PackedStore::whole();
        let services_r = services.clone();
        let ingresses = PackedStore::whole();
        let ingresses_r = ingresses.clone();
        let hpas = PackedStore::whole();
        let hpas_r = hpas.clone();
        let pdbs = PackedStore::whole();
        let pdbs_r = pdbs.clone();
        let cron_jobs = PackedStore::whole();
        let cron_jobs_r = cron_jobs.clone();
        let config_maps = PackedStore::whole();
        let config_maps_r = config_maps.clone();
        let replica_sets = PackedStore::whole();
        let replica_sets_r = replica_sets.clone();
        ready(&deployments);
        ready(&services);
        ready(&ingresses);
        ready(&hpas);
        ready(&pdbs);
        ready(&cron_jobs);
        ready(&config_maps);
        ready(&replica_sets);
        Caches {
            deployments,
            services,
            ingresses,
            hpas,
            pdbs,
            cron_jobs,
            config_maps,
            replica_sets,
            stores: Stores {
                deployments: deployments_r,
                services: services_r,
                ingresses: ingresses_r,
                hpas: hpas_r,
                pod_disruption_budgets: pdbs_r,
                cron_jobs: cron_jobs_r,
                config_maps: config_maps_r,
                replica_sets: replica_sets_r,
                replica_sets_by_owner: Default::default(),
                cron_jobs_by_owner: Default::default(),
                config_maps_by_owner: Default::default(),
            },
        }
    }

    /// Feeds the objects the apiserver returned for applies into the caches, as the
    /// watches would; the Deployment as rolled out completely.
    fn learn(&mut self, calls: &[Call]) {
        for call in calls {
            if !call.line.starts_with("PATCH") || call.line.ends_with("/status") {
                continue;
            }
            let (_, object) = answer(&microservice_at(1, SPEC), call);
            match object["kind"].as_str() {
                Some("ConfigMap") => {
                    let cm: ConfigMap = serde_json::from_value(object).expect("ConfigMap");
                    let meta = cm.metadata.into_response_partial::<ConfigMap>();
                    self.config_maps
                        .apply_watcher_event(&watcher::Event::Apply(meta));
                }
                Some("Deployment") => {
                    let mut d: Deployment = serde_json::from_value(object).expect("Deployment");
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
                        observed_generation: Some(1),
                        replicas: Some(replicas),
                        updated_replicas: Some(replicas),
                        available_replicas: Some(replicas),
                        ready_replicas: Some(replicas),
                        ..Default::default()
                    });
                    self.deployments
                        .apply_watcher_event(&watcher::Event::Apply(d));
                }
                Some("Service") => {
                    let svc = serde_json::from_value(object).expect("Service");
                    self.services
                        .apply_watcher_event(&watcher::Event::Apply(svc));
                }
                Some("Ingress") => {
                    let ing = serde_json::from_value(object).expect("Ingress");
                    self.ingresses
                        .apply_watcher_event(&watcher::Event::Apply(ing));
                }
                Some("HorizontalPodAutoscaler") => {
                    let hpa = serde_json::from_value(object).expect("HPA");
                    self.hpas.apply_watcher_event(&watcher::Event::Apply(hpa));
                }
                Some("PodDisruptionBudget") => {
                    let pdb = serde_json::from_value(object).expect("PodDisruptionBudget");
                    self.pdbs.apply_watcher_event(&watcher::Event::Apply(pdb));
                }
                Some("CronJob") => {
                    let job = serde_json::from_value(object).expect("CronJob");
                    self.cron_jobs
                        .apply_watcher_event(&watcher::Event::Apply(job));
                }
                other => panic!("unexpected apply of {other:?}"),
            }
        }
        let _ = &mut self.replica_sets;
    }
}

fn context(client: Client, stores: Stores) -> Arc<Context> {
    let metrics = Arc::new(shoal::metrics::Metrics::new());
    Arc::new(Context::new(
        client,
        stores,
        Duration::from_secs(300),
        metrics,
    ))
}

const SPEC: &str = "  image: app:1\n  replicas: 2\n  config: {GREETING: hello}\n  ingress: {host: shop.example.com}\n";

fn no_script() -> Script {
    Arc::new(|_| None)
}

fn path(kind: &str) -> String {
    format!("/namespaces/{NAMESPACE}/{kind}")
}

/// Runs one reconcile of `ms` against a fresh mock apiserver.
async fn pass(
    ms: &Microservice,
    stores: &Stores,
    script: Script,
) -> (
    shoal::error::Result<kube::runtime::controller::Action>,
    ApiServer,
) {
    let (client, server) = ApiServer::start(ms.clone(), script);
    let result = reconcile(Arc::new(ms.clone()), context(client, stores.clone())).await;
    (result, server)
}

fn events(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.line.starts_with("POST") && c.line.ends_with("/events"))
        .map(|c| {
            (
                c.body["type"].as_str().unwrap_or("").to_string(),
                c.body["note"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_new_microservice_is_applied_then_converges_to_no_request_at_all() {
    let mut ms = microservice_at(1, SPEC);
    let mut caches = Caches::empty();

    // A new Microservice: the five children (two replicas: a PodDisruptionBudget), one
    // status write, and their Events.
    let (result, server) = pass(&ms, &caches.stores, no_script()).await;
    result.expect("first pass succeeds");
    let calls = server.calls();
    let writes: Vec<&str> = calls
        .iter()
        .filter(|c| !c.line.ends_with("/events"))
        .map(|c| c.line.as_str())
        .collect();
    let config_map = format!(
        "PATCH /api/v1{}/configmaps/{NAME}-config-",
        path("").trim_end_matches('/')
    );
    assert_eq!(writes.len(), 6, "{writes:#?}");
    assert!(writes[0].starts_with(&config_map), "{writes:#?}");
    assert_eq!(
        writes[1..],
        [
            format!("PATCH /apis/apps/v1{}/{NAME}", path("deployments")),
            format!("PATCH /api/v1{}/{NAME}", path("services")),
            format!(
                "PATCH /apis/networking.k8s.io/v1{}/{NAME}",
                path("ingresses")
            ),
            format!(
                "PATCH /apis/policy/v1{}/{NAME}",
                path("poddisruptionbudgets")
            ),
            format!(
                "PATCH /apis/shoal.dev/v1alpha1{}/{NAME}/status",
                path("microservices")
            ),
        ]
    );
    let notes = events(&calls);
    // One Event for the five children (not one each); a new Microservice's first rollout
    // is no news of its own.
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let (created, rest) = notes[0]
        .1
        .split_once(", ")
        .expect("several children in one note");
    assert!(
        created.starts_with("Created ConfigMap shop-config-"),
        "{notes:#?}"
    );
    assert_eq!(
        rest,
        "Deployment shop, Service shop, Ingress shop, PodDisruptionBudget shop"
    );
    let status = calls.last().expect("status write").body["status"].clone();
    assert_eq!(status["scalingEngine"], "None");
    assert_eq!(status["observedGeneration"], 1);

    // The caches show what was applied, the Deployment rolled out, the status as written:
    // the next pass only records the finished rollout...
    caches.learn(&calls);
    ms.status = Some(serde_json::from_value(status).expect("status"));
    let (result, server) = pass(&ms, &caches.stores, no_script()).await;
    result.expect("second pass succeeds");
    let calls = server.calls();
    assert_eq!(
        calls.last().map(|c| c.line.clone()),
        Some(format!(
            "PATCH /apis/shoal.dev/v1alpha1{}/{NAME}/status",
            path("microservices")
        )),
        "{:#?}",
        server.lines()
    );
    assert!(
        calls
            .iter()
            .all(|c| c.line.ends_with("/status") || c.line.ends_with("/events")),
        "nothing but status and events: {:#?}",
        server.lines()
    );

    // ...and then a converged Microservice causes no request at all.
    ms.status = Some(
        serde_json::from_value(calls.last().expect("status").body["status"].clone())
            .expect("status"),
    );
    let (result, server) = pass(&ms, &caches.stores, no_script()).await;
    result.expect("third pass succeeds");
    assert_eq!(server.lines(), Vec::<String>::new());
}

#[tokio::test]
async fn an_invalid_microservice_gets_a_status_write_and_an_event_only() {
    // A CPU target without a CPU request: the schema accepts it, validation does not.
    let ms = microservice_at(
        1,
        "  image: app:1\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}}\n",
    );
    let caches = Caches::empty();
    let (result, server) = pass(&ms, &caches.stores, no_script()).await;
    result.expect("an invalid spec is reported, not an error");
    let calls = server.calls();
    assert_eq!(
        server.lines(),
        [
            format!(
                "PATCH /apis/shoal.dev/v1alpha1{}/{NAME}/status",
                path("microservices")
            ),
            format!("POST /apis/events.k8s.io/v1{}", path("events")),
        ]
    );
    let ready = &calls[0].body["status"]["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["reason"].as_str()),
        (Some("Ready"), Some("InvalidSpec"))
    );
    assert_eq!(calls[1].body["type"], "Warning");
    assert_eq!(calls[1].body["reason"], "InvalidSpec");
}

#[tokio::test]
async fn a_refused_child_fails_the_apply_stage_and_says_why_in_status_and_an_event() {
    let ms = microservice_at(1, SPEC);
    let caches = Caches::empty();
    let field = "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"half\": a valid percent string must be a numeric string followed by an ending '%'";
    let (result, server) = pass(&ms, &caches.stores, refuse(field)).await;
    // Still an error: the error policy retries with backoff.
    let err = result.expect_err("a refused Deployment fails the reconcile");
    assert_eq!(err.metric_label(), "apply");
    assert!(
        err.to_string().starts_with("applying Deployment shop: "),
        "{err}"
    );
    // The ConfigMap, the refused Deployment, the Event of what was created all the same
    // (the ConfigMap), then the status and a Warning.
    let lines = server.lines();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines[1].ends_with(&format!("/deployments/{NAME}")),
        "{lines:#?}"
    );
    assert_eq!(
        lines[2],
        format!("POST /apis/events.k8s.io/v1{}", path("events"))
    );
    assert!(
        server.calls()[2].body["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("Created ConfigMap shop-config-") && !n.contains(',')),
        "{:#?}",
        server.calls()[2].body
    );
    assert_eq!(
        lines[3..],
        [
            format!(
                "PATCH /apis/shoal.dev/v1alpha1{}/{NAME}/status",
                path("microservices")
            ),
            format!("POST /apis/events.k8s.io/v1{}", path("events")),
        ]
    );
    let calls = server.calls();
    let status = &calls[3].body["status"];
    assert_eq!(status["observedGeneration"], 1);
    let ready = &status["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("False"), Some("ApplyFailed"))
    );
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{message}");
    assert!(
        message.starts_with("the apiserver refused Deployment shop: "),
        "{message}"
    );
    let event = &calls[4].body;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("ApplyFailed"))
    );
    assert!(
        event["note"].as_str().unwrap_or_default().contains(field),
        "{event}"
    );

    // The next retry, with the refusal already in the status, writes no status and no Event.
    let mut recorded = ms.clone();
    recorded.status = Some(serde_json::from_value(status.clone()).expect("status"));
    let (result, server) = pass(&recorded, &caches.stores, refuse(field)).await;
    result.expect_err("still refused");
    let calls = server.calls();
    assert!(
        calls.iter().all(|c| !c.line.ends_with("/status")),
        "{:#?}",
        server.lines()
    );
    // Only the ConfigMap's Event (the empty caches do not show it): no second Warning.
    assert!(
        calls.iter().all(|c| c.body["reason"] != "ApplyFailed"),
        "{:#?}",
        server.lines()
    );
}

/// A mock apiserver that refuses the Deployment with a 422 naming `field`.
fn refuse(field: &'static str) -> Script {
    Arc::new(move |call: &Call| {
        call.line.contains("/deployments/").then(|| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("Deployment.apps \"shop\" is invalid: {field}"),
                    "reason": "Invalid", "code": 422
                }),
            )
        })
    })
}

/// A canary of `app:2` paused at 20% beside 4 stable pods of `app:1`, through the
/// HTTPRoute `web`; the caches hold the stable Deployment (labelled with its track, rolled
/// out), the available canary Deployment and the two track Services.
const GATEWAY_SPEC: &str = "  image: app:2\n  replicas: 4\n  rollout:\n    strategy: Canary\n    canary:\n      steps: [{weight: 20}, {pause: {}}]\n      trafficRouting: {gatewayAPI: {httpRoute: web}}\n";

fn paused_canary() -> (Microservice, Caches) {
    use shoal::controller::render::{self, routing};
    let mut ms = microservice_at(1, GATEWAY_SPEC);
    let valid = shoal::validate::validate(&ms).expect("valid");
    let desired = render::render(&valid);
    let old =
        shoal::validate::validate(&microservice_at(1, &GATEWAY_SPEC.replace("app:2", "app:1")))
            .expect("valid");
    let old = render::render(&old);
    let rolled_out = |mut d: Deployment, replicas: i32| {
        d.metadata.uid = Some(format!(
            "uid-{}",
            d.metadata.name.clone().unwrap_or_default()
        ));
        d.metadata.generation = Some(1);
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            ..Default::default()
        });
        d
    };
    let caches = Caches::empty();
    for d in [
        rolled_out(old.deployment.clone(), 4),
        rolled_out(
            render::render_canary_deployment(&valid, &desired.deployment, 1),
            1,
        ),
    ] {
        caches
            .deployments
            .apply_watcher_event(&watcher::Event::Apply(d));
    }
    let annotations = std::collections::BTreeMap::from([(
        routing::HTTP_ROUTE_ANNOTATION.to_string(),
        "web".to_string(),
    )]);
    for s in routing::track_services(&valid, &annotations) {
        caches
            .services
            .apply_watcher_event(&watcher::Event::Apply(s));
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    ms.status = Some(
        serde_json::from_value(json!({"rollout": {"canary": {
            "phase": "Paused", "templateHash": desired.template_hash, "image": "app:2",
            "generation": 1, "stableTemplateHash": old.template_hash, "step": 1, "steps": 2,
            "weight": 20, "startedAt": now, "stepStartedAt": now, "canaryReplicas": 1,
            "stableReplicas": 4, "checks": {"lastCheckAt": now, "passedAtStep": 0, "failed": 0},
        }}}))
        .expect("status"),
    );
    (ms, caches)
}

fn http_route(backend_refs: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "web", "namespace": NAMESPACE, "resourceVersion": "7"},
    "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/other"}}],
         "backendRefs": [{"group": "", "kind": "Service", "name": "other", "port": 80, "weight": 1}]},
        {"backendRefs": backend_refs},
    ]}})
}

/// A mock apiserver that answers a GET of the HTTPRoute `web` with `route` (a 404 when
/// None) and echoes its patch.
fn with_route(route: Option<Value>) -> Script {
    Arc::new(move |call: &Call| {
        if !call.line.contains("/httproutes/") {
            return None;
        }
        Some(match (&route, call.line.starts_with("GET")) {
            (Some(route), true) => (StatusCode::OK, route.clone()),
            (Some(route), false) => (StatusCode::OK, route.clone()),
            (None, _) => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": "httproutes.gateway.networking.k8s.io \"web\" not found",
                       "reason": "NotFound", "code": 404}),
            ),
        })
    })
}

fn route_calls(server: &ApiServer) -> Vec<Call> {
    server
        .calls()
        .into_iter()
        .filter(|c| c.line.contains("/httproutes/"))
        .collect()
}

#[tokio::test]
async fn a_gateway_api_canary_sets_only_its_rules_weights_once_and_falls_back_without_a_route() {
    let (ms, caches) = paused_canary();
    let route_path = format!(
        "/apis/gateway.networking.k8s.io/v1{}/web",
        path("httproutes")
    );
    // The route still sends to `shop`: one GET, one JSON patch of rule 1's backendRefs.
    let plain = json!([{"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1}]);
    let (result, server) = pass(
        &ms,
        &caches.stores,
        with_route(Some(http_route(plain.clone()))),
    )
    .await;
    result.expect("pass succeeds");
    let calls = route_calls(&server);
    let lines: Vec<&str> = calls.iter().map(|c| c.line.as_str()).collect();
    assert_eq!(
        lines,
        [format!("GET {route_path}"), format!("PATCH {route_path}")],
        "{:#?}",
        server.lines()
    );
    assert_eq!(
        calls[1].body,
        json!([
            {"op": "test", "path": "/spec/rules/1/backendRefs", "value": plain},
            {"op": "replace", "path": "/spec/rules/1/backendRefs", "value": [
                {"group": "", "kind": "Service", "name": "shop-stable", "port": 80, "weight": 80},
                {"group": "", "kind": "Service", "name": "shop-canary", "port": 80, "weight": 20},
            ]},
        ])
    );
    let notes = events(&server.calls());
    assert!(
        notes.contains(&(
            "Normal".to_string(),
            "Updated HTTPRoute web: rule 1 sends 80% to shop-stable and 20% to shop-canary"
                .to_string()
        )),
        "{notes:#?}"
    );
    // Nothing of the track Services is written: the caches show them as rendered.
    assert!(
        server
            .lines()
            .iter()
            .all(|l| !l.contains("/services/shop-")),
        "{:#?}",
        server.lines()
    );

    // The route already weighted: read, not written.
    let weighted = json!([
        {"group": "", "kind": "Service", "name": "shop-stable", "port": 80, "weight": 80},
        {"group": "", "kind": "Service", "name": "shop-canary", "port": 80, "weight": 20},
    ]);
    let (result, server) = pass(&ms, &caches.stores, with_route(Some(http_route(weighted)))).await;
    result.expect("pass succeeds");
    let lines: Vec<String> = route_calls(&server).into_iter().map(|c| c.line).collect();
    assert_eq!(lines, [format!("GET {route_path}")]);

    // No such route: a Warning Event, the canary goes by replica ratio and says why.
    let (result, server) = pass(&ms, &caches.stores, with_route(None)).await;
    result.expect("a missing route is not an error");
    let calls = server.calls();
    let warnings: Vec<&Call> = calls
        .iter()
        .filter(|c| c.line.ends_with("/events") && c.body["type"] == "Warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", server.lines());
    assert_eq!(warnings[0].body["reason"], "TrafficRoutingUnavailable");
    let note = warnings[0].body["note"].as_str().unwrap_or_default();
    assert!(note.contains("HTTPRoute web was not found"), "{note}");
    let status = calls
        .iter()
        .rev()
        .find(|c| c.line.ends_with("/status"))
        .expect("a status write")
        .body["status"]
        .clone();
    let message = status["rollout"]["canary"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("; traffic split by replica ratio: HTTPRoute web was not found"),
        "{message}"
    );
    // Once the status says so, the next pass does not warn again.
    let mut told = ms.clone();
    told.status = Some(serde_json::from_value(status).expect("status"));
    let (result, server) = pass(&told, &caches.stores, with_route(None)).await;
    result.expect("pass succeeds");
    assert!(
        server
            .calls()
            .iter()
            .all(|c| !(c.line.ends_with("/events") && c.body["type"] == "Warning")),
        "{:#?}",
        server.lines()
    );
}

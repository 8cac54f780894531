//! Golden files: the rendered children of every example Microservice, committed under
//! `tests/golden/` and regenerated with `UPDATE_GOLDEN=1` (`make generate`).

mod support;

use shoal::controller::render as build;
use shoal::validate;

fn render_yaml(children: &build::Children) -> String {
    let mut docs = vec![
        serde_yaml::to_string(&children.config_map).expect("yaml"),
        serde_yaml::to_string(&children.deployment).expect("yaml"),
        serde_yaml::to_string(&children.service).expect("yaml"),
    ];
    if let Some(ingress) = &children.ingress {
        docs.push(serde_yaml::to_string(ingress).expect("yaml"));
    }
    if let Some(hpa) = &children.hpa {
        docs.push(serde_yaml::to_string(hpa).expect("yaml"));
    }
    if let Some(pdb) = &children.pod_disruption_budget {
        docs.push(serde_yaml::to_string(pdb).expect("yaml"));
    }
    for cron_job in &children.cron_jobs {
        docs.push(serde_yaml::to_string(cron_job).expect("yaml"));
    }
    if let Some(pod_monitor) = &children.pod_monitor {
        docs.push(serde_yaml::to_string(pod_monitor).expect("yaml"));
    }
    docs.join("---\n")
}

#[test]
fn every_example_renders_as_its_golden_file() {
    let examples = support::examples();
    assert!(
        examples.len() >= 4,
        "expected the four examples, found {}",
        examples.len()
    );
    for (stem, yaml) in examples {
        let ms = support::microservice_from_yaml(&yaml);
        let valid =
            validate::validate(&ms).unwrap_or_else(|e| panic!("example {stem} is invalid: {e}"));
        let rendered = render_yaml(&build::render(&valid));
        support::assert_golden(
            support::repo_root().join(format!("tests/golden/{stem}.yaml")),
            &rendered,
        );
    }
}

#[test]
fn examples_pass_the_crd_schema_rules() {
    for (stem, yaml) in support::examples() {
        let ms = support::microservice_from_yaml(&yaml);
        if let Err(errors) = kube::core::cel::validate_cel(&ms) {
            panic!("example {stem} breaks a CEL rule: {errors:?}");
        }
    }
}

/// The canary settings the router cases add to an example: a canary paused at 20%.
fn with_router(example: &str, traffic_routing: &str) -> shoal::crd::Microservice {
    let yaml = std::fs::read_to_string(
        support::repo_root().join(format!("manifests/examples/{example}.yaml")),
    )
    .expect("example");
    let mut ms: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("example YAML");
    let canary: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{steps: [{{weight: 20}}, {{pause: {{}}}}], trafficRouting: {traffic_routing}}}"
    ))
    .expect("canary YAML");
    let rollout = &mut ms["spec"]["rollout"];
    if rollout.is_null() {
        *rollout = serde_yaml::Value::Mapping(Default::default());
    }
    rollout["strategy"] = "Canary".into();
    rollout["canary"] = canary;
    support::microservice_from_yaml(&serde_yaml::to_string(&ms).expect("yaml"))
}

/// The user's HTTPRoute of the Gateway API case: one rule to the service, one elsewhere.
const HTTP_ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: checkout, namespace: default}
spec:
  parentRefs: [{name: shop-gateway}]
  hostnames: [checkout.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: checkout, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /legacy}}]
      backendRefs: [{name: checkout-legacy, port: 8080}]
";

/// The traffic routers' objects mid-canary at 20%: ingress-nginx on the web-with-ingress
/// example (the track Services, the canary Ingress, the own Ingress sent to the stable
/// Service) and Gateway API on the canary example (the track Services, the HTTPRoute as
/// patched: its rule to the service weighted 80/20, the other rule untouched).
#[test]
fn router_objects_mid_canary_render_as_their_golden_files() {
    let route: serde_json::Value = serde_yaml::from_str(HTTP_ROUTE).expect("route YAML");
    for (case, ms, route) in [
        (
            "nginx",
            with_router("web-with-ingress", "{nginx: {}}"),
            None,
        ),
        (
            "gateway-api",
            with_router("canary", "{gatewayAPI: {httpRoute: checkout}}"),
            Some(&route),
        ),
    ] {
        let valid = validate::validate(&ms).unwrap_or_else(|e| panic!("{case} is invalid: {e}"));
        let objects = shoal::test_support::routed_mid_canary(&valid, 20, route);
        let rendered = objects
            .iter()
            .map(|o| serde_yaml::to_string(o).expect("yaml"))
            .collect::<Vec<_>>()
            .join("---\n");
        support::assert_golden(
            support::repo_root().join(format!("tests/golden/routers/{case}.yaml")),
            &rendered,
        );
    }
}

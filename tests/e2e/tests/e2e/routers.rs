//! Issue 12: the canary traffic routers against the real apiserver, with the Gateway API's
//! CRDs (standard channel, `GATEWAY_API_VERSION`, laid out by hack/tools.sh) installed in
//! the test bed. The routers' objects as the golden files hold them pass a server-side dry
//! run; and a canary through a user's HTTPRoute weights only its rule to the service, 80/20,
//! and puts it back after the promote.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_e2e::{GATEWAY_API_KINDS, TestBed, gateway_api_crds, repo_root, testbed, wait_for};

use crate::helpers::*;

/// Installs the Gateway API CRDs (idempotent: tests may do it at once) and waits until
/// HTTPRoutes are served.
fn install_gateway_api(bed: &TestBed) {
    for crd in gateway_api_crds() {
        bed.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &crd.to_string_lossy(),
        ]);
    }
    for kind in GATEWAY_API_KINDS {
        let crd = format!("crd/{kind}.gateway.networking.k8s.io");
        let wait = ["wait", "--for=condition=Established", &crd, "--timeout=60s"];
        // Right after the apply the CRD may have no conditions yet: `kubectl wait` fails on
        // that at once instead of waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !bed.kubectl(&wait).status.success() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        bed.kubectl_ok(&wait);
    }
}

/// The golden file of a router case as a YAML stream for namespace `ns`.
fn golden_in(case: &str, ns: &str) -> String {
    let path = repo_root().join(format!("tests/golden/routers/{case}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): run make generate", path.display()));
    text.split("---\n")
        .map(|doc| {
            let mut object: Value = serde_yaml::from_str(doc).expect("golden YAML");
            object["metadata"]["namespace"] = json!(ns);
            serde_yaml::to_string(&object).expect("yaml")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn dry_run(bed: &TestBed, ns: &str, yaml: &str) -> std::process::Output {
    bed.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            "-",
        ],
        yaml,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routers_objects_pass_a_server_side_dry_run() {
    let bed = testbed();
    install_gateway_api(bed);
    let ns = bed.namespace("routers-dry-run");
    for (case, kinds) in [
        (
            "nginx",
            [
                "service/checkout-stable",
                "service/checkout-canary",
                "ingress.networking.k8s.io/checkout-canary",
                "ingress.networking.k8s.io/checkout",
            ]
            .as_slice(),
        ),
        (
            "gateway-api",
            [
                "service/checkout-stable",
                "service/checkout-canary",
                "httproute.gateway.networking.k8s.io/checkout",
            ]
            .as_slice(),
        ),
    ] {
        let out = dry_run(bed, &ns, &golden_in(case, &ns));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{case}: the apiserver refused: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        for object in kinds {
            assert!(
                stdout.contains(&format!("{object} serverside-applied (server dry run)")),
                "{case}: {object} not in {stdout}"
            );
        }
    }
    // The check has teeth: the HTTPRoute's schema is enforced (a weight above 1,000,000).
    let refused = golden_in("gateway-api", &ns).replace("weight: 80", "weight: 1000001");
    let out = dry_run(bed, &ns, &refused);
    assert!(!out.status.success(), "an invalid HTTPRoute passed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weight"), "{err}");
}

/// A Microservice `web` of `tag` whose canaries go through the HTTPRoute `web`. Without
/// load the analysis has no data and the first step (20%) holds until the promote; the
/// no-data timeout is far beyond the test.
fn microservice(tag: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: web}}\nspec:\n  image: registry.example/web:{tag}\n  replicas: 3\n  resources: {{requests: {{cpu: 100m}}}}\n  rollout:\n    strategy: Canary\n    canary:\n      steps: [{{weight: 20}}, {{pause: {{}}}}]\n      analysis: {{interval: 10s, noDataTimeout: 30m}}\n      trafficRouting: {{gatewayAPI: {{httpRoute: web}}}}\n"
    )
}

/// The user's HTTPRoute: `/` to the service, `/other` to another service.
const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\nspec:\n  parentRefs: [{name: shop-gateway}]\n  rules:\n    - matches: [{path: {type: PathPrefix, value: /}}]\n      backendRefs: [{name: web, port: 80}]\n    - matches: [{path: {type: PathPrefix, value: /other}}]\n      backendRefs: [{name: other, port: 8080, weight: 3}]\n";

fn refs(name: &str, port: i64, weight: Option<i64>) -> Value {
    let mut r = json!({"group": "", "kind": "Service", "name": name, "port": port});
    r["weight"] = json!(weight.unwrap_or(1));
    r
}

fn canary_message(bed: &TestBed, ns: &str) -> String {
    get(bed, ns, "ms", "web")
        .and_then(|ms| {
            ms.pointer("/status/rollout/canary/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_through_an_http_route_weights_its_rule_and_puts_it_back_after_the_promote() {
    let bed = testbed();
    install_gateway_api(bed);
    let ns = bed.namespace("routers-gateway");
    let _op = bed.operator(&ns, &[]);
    apply(bed, &ns, &microservice("1"));
    wait_ready(bed, &ns, "web").await;
    let stable = get(bed, &ns, "deployment", "web").expect("deployment");
    assert_eq!(
        stable.pointer("/spec/template/metadata/labels/shoal.dev~1track"),
        Some(&json!("stable")),
        "with a router the stable pods carry their track"
    );

    // A canary before the route exists: by replica ratio, and a Warning says why.
    apply(bed, &ns, &microservice("2"));
    let warning = wait_for("a Warning about the missing route", TIMEOUT, || async {
        events(bed, &ns, "web", "TrafficRoutingUnavailable")
            .into_iter()
            .next()
    })
    .await;
    assert!(warning.contains("HTTPRoute web was not found"), "{warning}");
    wait_for("the canary's message to say why", TIMEOUT, || async {
        canary_message(bed, &ns)
            .contains("traffic split by replica ratio: HTTPRoute web was not found")
            .then_some(())
    })
    .await;

    // The route appears: its rule to `web` goes 80/20, the other rule stays as it was.
    apply(bed, &ns, ROUTE);
    let created = get(bed, &ns, "httproute", "web").expect("route");
    let other = created["spec"]["rules"][1].clone();
    let weighted = json!([
        refs("web-stable", 80, Some(80)),
        refs("web-canary", 80, Some(20))
    ]);
    let route = wait_for("the route's rule weighted 80/20", TIMEOUT, || async {
        let route = get(bed, &ns, "httproute", "web")?;
        (route["spec"]["rules"][0]["backendRefs"] == weighted).then_some(route)
    })
    .await;
    assert_eq!(
        route["spec"]["rules"][1], other,
        "the other rule is the user's"
    );
    assert_eq!(route["spec"]["parentRefs"], created["spec"]["parentRefs"]);
    assert_eq!(
        route["spec"]["rules"][0]["matches"],
        created["spec"]["rules"][0]["matches"]
    );
    for (service, track) in [("web-stable", "stable"), ("web-canary", "canary")] {
        let svc = get(bed, &ns, "service", service).expect(service);
        assert_eq!(svc["spec"]["selector"]["shoal.dev/track"], track, "{svc}");
    }
    let updates = events(bed, &ns, "web", "Updated");
    assert!(
        updates
            .iter()
            .any(|e| e
                == "Updated HTTPRoute web: rule 0 sends 80% to web-stable and 20% to web-canary"),
        "{updates:?}"
    );
    wait_for("the fallback note to go", TIMEOUT, || async {
        (!canary_message(bed, &ns).contains("replica ratio")).then_some(())
    })
    .await;

    // Promoted: the rule sends to `web` again, the track Services go.
    bed.kubectl_ok(&["annotate", "-n", &ns, "ms", "web", "shoal.dev/promote=true"]);
    let plain = json!([refs("web", 80, None)]);
    let route = wait_for("the route's rule back on web", TIMEOUT, || async {
        let route = get(bed, &ns, "httproute", "web")?;
        (route["spec"]["rules"][0]["backendRefs"] == plain).then_some(route)
    })
    .await;
    assert_eq!(
        route["spec"]["rules"][1], other,
        "the other rule is the user's"
    );
    wait_gone(bed, &ns, "service", "web-stable").await;
    wait_gone(bed, &ns, "service", "web-canary").await;
    wait_for("the canary promoted", TIMEOUT, || async {
        let ms = get(bed, &ns, "ms", "web")?;
        (ms.pointer("/status/rollout/canary/phase") == Some(&json!("Promoted"))).then_some(())
    })
    .await;
    let image = get(bed, &ns, "deployment", "web")
        .and_then(|d| d.pointer("/spec/template/spec/containers/0/image").cloned())
        .unwrap_or_default();
    assert_eq!(image, "registry.example/web:2");
    // Converged: the route is not written again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let now = get(bed, &ns, "httproute", "web").expect("route");
    assert_eq!(
        now["metadata"]["resourceVersion"], route["metadata"]["resourceVersion"],
        "the route was written after the canary ended"
    );
}

/// A Microservice `shop` of `tag` with an Ingress, strategy Canary and `routing` (YAML at
/// `trafficRouting:`, or empty for none).
fn with_ingress(tag: &str, routing: &str) -> String {
    let routing = if routing.is_empty() {
        String::new()
    } else {
        format!("      trafficRouting: {routing}\n")
    };
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: shop}}\nspec:\n  image: registry.example/shop:{tag}\n  replicas: 3\n  resources: {{requests: {{cpu: 100m}}}}\n  ingress: {{host: shop.example.com, className: nginx}}\n  rollout:\n    strategy: Canary\n    canary:\n      steps: [{{weight: 20}}, {{pause: {{}}}}]\n      analysis: {{interval: 10s, noDataTimeout: 30m}}\n{routing}"
    )
}

fn ingress_backend(bed: &TestBed, ns: &str, name: &str) -> Option<String> {
    get(bed, ns, "ingress", name)?
        .pointer("/spec/rules/0/http/paths/0/backend/service/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_routing_rolls_the_stable_pods_once_then_splits_a_canary_with_a_canary_ingress() {
    let bed = testbed();
    let ns = bed.namespace("routers-nginx");
    let _op = bed.operator(&ns, &[]);
    apply(bed, &ns, &with_ingress("1", ""));
    wait_ready(bed, &ns, "shop").await;
    // Setting the router: the stable pods get their track in one rolling update, and no
    // canary starts (the revision is the same).
    apply(bed, &ns, &with_ingress("1", "{nginx: {}}"));
    wait_for("the stable pods labelled", TIMEOUT, || async {
        let d = get(bed, &ns, "deployment", "shop")?;
        let labelled =
            d.pointer("/spec/template/metadata/labels/shoal.dev~1track") == Some(&json!("stable"));
        let done = d.pointer("/status/updatedReplicas") == Some(&json!(3))
            && d.pointer("/status/replicas") == Some(&json!(3));
        (labelled && done).then_some(())
    })
    .await;
    wait_ready(bed, &ns, "shop").await;
    let ms = get(bed, &ns, "ms", "shop").expect("ms");
    assert!(
        ms.pointer("/status/rollout/canary").is_none(),
        "setting a router started a canary: {}",
        ms["status"]["rollout"]
    );
    assert!(get(bed, &ns, "deployment", "shop-canary").is_none());
    assert!(
        get(bed, &ns, "service", "shop-stable").is_none(),
        "no split without a canary"
    );

    // A canary: the canary Ingress at 20%, the own Ingress on the stable Service.
    apply(bed, &ns, &with_ingress("2", "{nginx: {}}"));
    let canary = wait_for("the canary Ingress", TIMEOUT, || async {
        get(bed, &ns, "ingress", "shop-canary")
    })
    .await;
    let annotations = &canary["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(
        ingress_backend(bed, &ns, "shop-canary").as_deref(),
        Some("shop-canary")
    );
    wait_for("the own Ingress on shop-stable", TIMEOUT, || async {
        (ingress_backend(bed, &ns, "shop").as_deref() == Some("shop-stable")).then_some(())
    })
    .await;
    assert!(get(bed, &ns, "service", "shop-stable").is_some());
    assert!(get(bed, &ns, "service", "shop-canary").is_some());

    // Promoted: the canary Ingress goes, the own Ingress comes back to `shop`, then the track
    // Services go.
    bed.kubectl_ok(&[
        "annotate",
        "-n",
        &ns,
        "ms",
        "shop",
        "shoal.dev/promote=true",
    ]);
    wait_gone(bed, &ns, "ingress", "shop-canary").await;
    wait_for("the own Ingress back on shop", TIMEOUT, || async {
        (ingress_backend(bed, &ns, "shop").as_deref() == Some("shop")).then_some(())
    })
    .await;
    wait_gone(bed, &ns, "service", "shop-stable").await;
    wait_gone(bed, &ns, "service", "shop-canary").await;
    let deleted = events(bed, &ns, "shop", "Deleted");
    for object in [
        "Ingress shop-canary",
        "Service shop-stable",
        "Service shop-canary",
    ] {
        assert!(
            deleted
                .iter()
                .any(|e| e == &format!("Deleted {object}: the canary's traffic split ended")),
            "{object}: {deleted:?}"
        );
    }
}

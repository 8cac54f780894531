//! Scraping a Microservice's own metrics (docs/metrics.md), on a test bed of its own (the
//! Prometheus Operator's PodMonitor CRD is cluster-wide, so it must not show up under the
//! main suite): without the CRD Shoal renders only the `prometheus.io/*` pod annotations;
//! once the CRD is installed (the real one, from the Prometheus Operator's Go module) Shoal
//! notices it and applies a PodMonitor the apiserver accepts, removes it when
//! `spec.metrics.enabled` is false, and keeps working when the CRD goes.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_e2e::{TestBed, pod_monitor_crd, testbed, wait_for};

const TIMEOUT: Duration = Duration::from_secs(120);

fn get(bed: &TestBed, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let out = bed.kubectl(&["get", "-n", ns, kind, name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("kubectl json"))
}

fn apply(bed: &TestBed, ns: &str, yaml: &str) {
    let out = bed.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod_annotations(bed: &TestBed, ns: &str, name: &str) -> Value {
    get(bed, ns, "deployment", name).expect("deployment")["spec"]["template"]["metadata"]
        ["annotations"]
        .clone()
}

fn microservice(metrics: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata:\n  name: api\nspec:\n  image: registry.example/api:1\n  port: 8080\n{metrics}"
    )
}

async fn wait_generation_applied(bed: &TestBed, ns: &str) {
    wait_for(
        "Microservice api to observe its generation",
        TIMEOUT,
        || async {
            let ms = get(bed, ns, "microservice", "api")?;
            (ms.pointer("/status/observedGeneration") == ms.pointer("/metadata/generation"))
                .then_some(())
        },
    )
    .await;
}

fn pod_monitor_kind_served(bed: &TestBed) -> bool {
    bed.kubectl_ok(&[
        "api-resources",
        "--api-group=monitoring.coreos.com",
        "-o",
        "name",
    ])
    .lines()
    .any(|l| l.starts_with("podmonitors."))
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_monitor_follows_the_crd_and_the_spec() {
    let bed = testbed();
    let crd = pod_monitor_crd();
    let ns = bed.namespace("pod-monitor");
    let op = bed.operator(&ns, &["--pod-monitor-recheck-seconds", "1"]);

    // Without the CRD: annotations only, and the Microservice becomes ready.
    assert!(
        !pod_monitor_kind_served(bed),
        "the test bed starts without the PodMonitor CRD"
    );
    apply(bed, &ns, &microservice(""));
    wait_generation_applied(bed, &ns).await;
    let annotations = pod_annotations(bed, &ns, "api");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The CRD appears: Shoal notices it without a restart and applies the PodMonitor.
    bed.kubectl_ok(&["apply", "--server-side", "-f", &crd.to_string_lossy()]);
    bed.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/podmonitors.monitoring.coreos.com",
        "--timeout=60s",
    ]);
    let pm = wait_for("PodMonitor api to be created", TIMEOUT, || async {
        get(bed, &ns, "podmonitor", "api")
    })
    .await;
    let ms = get(bed, &ns, "microservice", "api").expect("microservice");
    let owner = &pm["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Microservice");
    assert_eq!(owner["uid"], ms["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(
        pm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "shoal"
    );
    assert_eq!(
        pm["metadata"]["labels"]["app.kubernetes.io/instance"],
        "api"
    );
    // Stored as rendered: a misspelt field would have been pruned by the CRD's schema.
    assert_eq!(
        pm["spec"],
        json!({
            "selector": {"matchLabels": {"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": "api"}},
            "namespaceSelector": {"matchNames": [ns]},
            "podMetricsEndpoints": [{
                "port": "http",
                "path": "/metrics",
                "relabelings": [{
                    "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                    "targetLabel": "service",
                    "action": "replace"
                }]
            }]
        })
    );
    // The selector matches the Microservice's pods.
    let pods = bed.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/name=api,app.kubernetes.io/instance=api",
        "-o",
        "name",
    ]);
    assert!(
        !pods.trim().is_empty(),
        "the PodMonitor's selector matches no pod"
    );

    // A separate metrics port: named, and the PodMonitor follows.
    apply(
        bed,
        &ns,
        &microservice("  metrics: {port: 9090, path: /internal/metrics}\n"),
    );
    wait_for("PodMonitor api to scrape port metrics", TIMEOUT, || async {
        let pm = get(bed, &ns, "podmonitor", "api")?;
        let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
        (endpoint["port"] == "metrics" && endpoint["path"] == "/internal/metrics").then_some(())
    })
    .await;
    let annotations = pod_annotations(bed, &ns, "api");
    assert_eq!(annotations["prometheus.io/port"], "9090");

    // Metrics off: the PodMonitor and the annotations go.
    apply(bed, &ns, &microservice("  metrics: {enabled: false}\n"));
    wait_for("PodMonitor api to be deleted", TIMEOUT, || async {
        get(bed, &ns, "podmonitor", "api").is_none().then_some(())
    })
    .await;
    wait_generation_applied(bed, &ns).await;
    let annotations = pod_annotations(bed, &ns, "api");
    assert!(
        annotations.get("prometheus.io/scrape").is_none(),
        "annotations left with metrics off: {annotations}"
    );

    // Back on, then the CRD goes: the PodMonitor goes with it and Shoal carries on.
    apply(bed, &ns, &microservice(""));
    wait_for("PodMonitor api to be re-created", TIMEOUT, || async {
        get(bed, &ns, "podmonitor", "api")
    })
    .await;
    bed.kubectl_ok(&[
        "delete",
        "crd",
        "podmonitors.monitoring.coreos.com",
        "--wait=true",
    ]);
    wait_for("Shoal to notice the CRD is gone", TIMEOUT, || async {
        op.plain_log_text()
            .contains("the PodMonitor CRD is gone")
            .then_some(())
    })
    .await;
    apply(bed, &ns, &microservice("  replicas: 2\n"));
    wait_for("Deployment api to have 2 replicas", TIMEOUT, || async {
        let d = get(bed, &ns, "deployment", "api")?;
        (d["spec"]["replicas"] == 2).then_some(())
    })
    .await;
    wait_generation_applied(bed, &ns).await;
    let ms = get(bed, &ns, "microservice", "api").expect("microservice");
    let ready = ms["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
    assert!(
        ready
            .as_ref()
            .is_some_and(|c| c["reason"] != "ReconcileError"),
        "Microservice after the CRD went: {ready:?}"
    );
    let log = op.plain_log_text();
    assert!(
        !log.contains("reconcile failed"),
        "reconciles failed along the way:\n{log}"
    );
}

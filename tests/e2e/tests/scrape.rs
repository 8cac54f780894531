//! Scraping a Microservice's own metrics (docs/metrics.md), on a test bed of its own (the
//! Prometheus Operator's PodMonitor CRD is cluster-wide, so it must not show up under the
//! main suite): without the CRD Shoal renders only the `prometheus.io/*` pod annotations;
//! once the CRD is installed (the real one, from the Prometheus Operator's Go module) Shoal
//! notices it and applies a PodMonitor the apiserver accepts, removes it when
//! `spec.metrics.enabled` is false, and keeps working when the CRD goes. And without the
//! Prometheus Operator: a Prometheus with the hand-written `kubernetes_sd_configs` job of
//! docs/metrics.md finds the pods through their `prometheus.io/*` annotations alone, and
//! Shoal scales on what it scrapes.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_e2e::{
    LoadSim, Prometheus, TestBed, fast_loop_flags, pod_monitor_crd, repo_root, testbed, wait_for,
};

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
                }, {
                    "sourceLabels": ["__meta_kubernetes_pod_label_shoal_dev_track"],
                    "targetLabel": "track",
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

/// The hand-written scrape job of docs/metrics.md ("A hand-written Prometheus
/// configuration"), as documented, so the page is what is tested.
fn documented_scrape_job() -> serde_yaml::Value {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    let section = doc
        .split("## A hand-written Prometheus configuration")
        .nth(1)
        .expect("docs/metrics.md has the hand-written configuration section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block in that section");
    let config: serde_yaml::Value = serde_yaml::from_str(yaml).expect("the documented YAML parses");
    config["scrape_configs"][0].clone()
}

/// The documented job, fitted to the test bed: the apiserver is reached through the test
/// bed's kubeconfig, discovery is limited to `ns`, and, since KWOK's pods have IPs nothing
/// listens on, each target is scraped through the load simulator, which answers for the pod
/// named in `?pod=` as that pod would. The target keeps the address the annotations gave
/// (`podIP:port`) as its `instance` label, so the test can check it.
fn test_bed_scrape_job(bed: &TestBed, ns: &str, loadsim: &str) -> String {
    let mut job = documented_scrape_job();
    let sd = &mut job["kubernetes_sd_configs"][0];
    sd["kubeconfig_file"] = bed.kubeconfig.to_string_lossy().into_owned().into();
    sd["namespaces"] = serde_yaml::from_str(&format!("{{names: [{ns}]}}")).expect("yaml");
    let proxy: serde_yaml::Value = serde_yaml::from_str(&format!(
        "- {{source_labels: [__address__], target_label: instance}}\n\
         - {{source_labels: [__meta_kubernetes_pod_name], target_label: __param_pod}}\n\
         - {{target_label: __address__, replacement: '{loadsim}'}}\n"
    ))
    .expect("yaml");
    job["relabel_configs"]
        .as_sequence_mut()
        .expect("relabel_configs")
        .extend(proxy.as_sequence().expect("list").iter().cloned());
    serde_yaml::to_string(&vec![job]).expect("yaml")
}

fn pod_ips(bed: &TestBed, ns: &str, instance: &str) -> Vec<String> {
    bed.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("app.kubernetes.io/instance={instance}"),
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn annotated_pods_are_scraped_and_scaled_on_without_the_prometheus_operator() {
    let bed = testbed();
    let ns = bed.namespace("annotations");
    // The simulator registers itself in a file_sd directory nobody scrapes: the only way
    // to its numbers is the Kubernetes discovery job below.
    let unscraped = bed.dir.join(format!("unscraped-{ns}"));
    std::fs::create_dir_all(&unscraped).expect("dir");
    let sim = LoadSim::start(bed, &ns, &unscraped, 0.0);
    let job = test_bed_scrape_job(bed, &ns, &sim.addr);
    let prometheus = Prometheus::start_with_kubernetes_sd(bed, &ns, &job);
    let flags = fast_loop_flags("5");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _op = bed.operator_with_prometheus(&ns, &prometheus.url(), &flags);

    // `api` autoscales on request rate (50 per replica); `quiet` serves as much, but turns
    // its metrics off, so its pods carry no prometheus.io annotations.
    apply(
        bed,
        &ns,
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api}\nspec:\n  image: registry.example/api:1\n  port: 8080\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 8\n    requestRate: {targetPerReplica: 50}\n---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: quiet}\nspec:\n  image: registry.example/quiet:1\n  replicas: 1\n  metrics: {enabled: false}\n",
    );
    sim.set_load("api", 175.0);
    sim.set_load("quiet", 175.0);

    // 175 requests/s at 50 per replica: 4 replicas, from series only the annotations found.
    let replicas = wait_for("api to scale to 4 replicas", TIMEOUT, || async {
        let d = get(bed, &ns, "deployment", "api")?;
        let r = d["spec"]["replicas"].as_i64()?;
        (r == 4).then_some(r)
    })
    .await;
    assert_eq!(replicas, 4);

    // The series carry the labels of the contract, and the address the annotations name.
    // Counted per pod and address: each pod serves one series per status `code`.
    let series = |selector: &str| {
        prometheus
            .query_value(&format!(
                "count(count by (pod, instance) (http_requests_total{{{selector}}}))"
            ))
            .unwrap_or(0.0)
    };
    wait_for("the 4 pods of api to be scraped", TIMEOUT, || async {
        (series(&format!(
            "job='kubernetes-pods',namespace='{ns}',service='api',pod=~'api-.+'"
        )) == 4.0)
            .then_some(())
    })
    .await;
    for ip in pod_ips(bed, &ns, "api") {
        assert_eq!(
            series(&format!("service='api',instance='{ip}:8080'")),
            1.0,
            "no series with instance {ip}:8080 (the pod IP and the prometheus.io/port annotation)"
        );
    }
    assert_eq!(
        series(&format!("namespace='{ns}',service='quiet'")),
        0.0,
        "pods without the prometheus.io annotations were scraped"
    );
    // What Shoal read, as status shows it: the offered 175 requests/s (the loop's window
    // may still hold a little of the ramp).
    wait_for(
        "status.autoscaler.requestRate.current of api near 175",
        TIMEOUT,
        || async {
            let ms = get(bed, &ns, "microservice", "api")?;
            let current = ms
                .pointer("/status/autoscaler/requestRate/current")?
                .as_f64()?;
            eprintln!("annotations: api reads {current} requests/s");
            (150.0..=200.0).contains(&current).then_some(())
        },
    )
    .await;
}

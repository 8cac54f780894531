//! Running Shoal for real: the Helm chart on the real apiserver (lint, server-side dry run,
//! install under Pod Security `restricted`, upgrade, uninstall), the chart's RBAC proven by
//! running the operator with the ServiceAccount's own token, leader election between two
//! operator processes, and the operator's own /metrics, /healthz and /readyz.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_e2e::{Operator, TestBed, http_request, repo_root, testbed, wait_for};

use crate::helpers::*;

const LEASE: &str = "shoal-leader";

fn helm(bed: &TestBed, args: &[&str]) -> Output {
    Command::new(bed.bin.join("helm"))
        .current_dir(repo_root())
        .env("KUBECONFIG", &bed.kubeconfig)
        .args(args)
        .output()
        .expect("running helm")
}

fn helm_ok(bed: &TestBed, args: &[&str]) -> String {
    let out = helm(bed, args);
    assert!(
        out.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm install shoal charts/shoal` into `ns`, waiting for the Deployment to be ready.
fn install(bed: &TestBed, ns: &str, extra: &[&str]) {
    let mut args = vec![
        "install",
        "shoal",
        "charts/shoal",
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ];
    args.extend_from_slice(extra);
    helm_ok(bed, &args);
}

fn env_value(deployment: &Value, name: &str) -> Option<String> {
    deployment
        .pointer("/spec/template/spec/containers/0/env")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
        .map(str::to_string)
}

/// Lines of the operator's log containing `text`.
fn log_count(op: &Operator, text: &str) -> usize {
    op.plain_log_text()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// The value of one sample of an OpenMetrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// GETs `path` from the operator's metrics address: (status code, whole response).
fn get_path(op: &Operator, path: &str) -> (u16, String) {
    let addr = op
        .metrics_address()
        .unwrap_or_else(|| panic!("no metrics address in {}", op.log.display()));
    let response = http_request(&addr, "GET", path, "");
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

async fn wait_metrics_address(op: &Operator) {
    wait_for("the operator to serve /metrics", TIMEOUT, || async {
        op.metrics_address()
    })
    .await;
}

fn can_i(bed: &TestBed, user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend_from_slice(args);
    let out = bed.kubectl(&all);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {}: {answer} {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_lints_clean_and_the_apiserver_accepts_its_objects() {
    let bed = testbed();
    for extra in [
        &[][..],
        &[
            "--set",
            "replicas=2,networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", "charts/shoal"];
        args.extend_from_slice(extra);
        let out = helm_ok(bed, &args);
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint {extra:?}: {out}"
        );
    }
    let ns = bed.namespace("chart-dry-run");
    // Every object but the ServiceMonitor (its CRD belongs to the Prometheus Operator).
    let rendered = helm_ok(
        bed,
        &[
            "template",
            "shoal",
            "charts/shoal",
            "--namespace",
            &ns,
            "--include-crds",
            "--set",
            "replicas=2,networkPolicy.enabled=true",
        ],
    );
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "{kind} rendered"
        );
    }
    let out = bed.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the apiserver refused the chart: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("(server dry run)").count(),
        10,
        "every object validated: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_passes_pod_security_restricted_and_becomes_ready() {
    let bed = testbed();
    let ns = bed.namespace("chart-install");
    bed.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    // The namespace really enforces: a root pod is refused.
    let refused = bed.kubectl(&[
        "run",
        "root",
        "-n",
        &ns,
        "--image=registry.example/busybox:1",
        "--overrides={\"spec\":{\"securityContext\":{\"runAsUser\":0}}}",
    ]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("violates PodSecurity"),
        "the restricted namespace admitted a root pod: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    install(bed, &ns, &[]);
    let deployment = get(bed, &ns, "deployment", "shoal").expect("Deployment shoal");
    assert_eq!(deployment.pointer("/status/readyReplicas"), Some(&1.into()));
    let pods: Value = serde_json::from_str(&bed.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/name=shoal",
        "-o",
        "json",
    ]))
    .expect("pods");
    let pods = pods["items"].as_array().expect("items");
    assert_eq!(pods.len(), 1, "one operator pod");
    let ready = pods[0]["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "the operator pod is Ready");
    assert_eq!(pods[0]["spec"]["serviceAccountName"], "shoal");
    helm_ok(bed, &["uninstall", "shoal", "--namespace", &ns, "--wait"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_runs_with_nothing_but_the_charts_rbac() {
    let bed = testbed();
    let ns = bed.namespace("chart-rbac");
    install(bed, &ns, &[]);
    let user = format!("system:serviceaccount:{ns}:shoal");
    // What the chart grants, and what it does not.
    assert!(!can_i(bed, &user, &["get", "secrets", "-A"]));
    assert!(!can_i(bed, &user, &["list", "secrets", "-n", &ns]));
    assert!(!can_i(bed, &user, &["delete", "replicasets", "-n", &ns]));
    // Deleting Deployments: only the canary's, when a canary ends (below).
    assert!(can_i(bed, &user, &["delete", "deployments", "-n", &ns]));
    assert!(!can_i(bed, &user, &["patch", "leases", "-n", "default"]));
    assert!(can_i(
        bed,
        &user,
        &["patch", "deployments", "--subresource=scale", "-n", &ns]
    ));
    assert!(can_i(
        bed,
        &user,
        &["patch", "leases/shoal-leader", "-n", &ns]
    ));

    let token = bed
        .kubectl_ok(&["create", "token", "shoal", "-n", &ns, "--duration=1h"])
        .trim()
        .to_string();
    let kubeconfig: PathBuf = bed.dir.join(format!("kubeconfig-{ns}"));
    bed.token_kubeconfig(&token, &kubeconfig);
    let op = bed.operator_with_kubeconfig(
        &ns,
        &kubeconfig,
        &[
            "--leader-election",
            "--leader-election-namespace",
            &ns,
            "--tick-seconds",
            "2",
        ],
    );
    // Every kind of child: ConfigMap, Deployment, Service, Ingress, HPA, and the metrics
    // loop's scale writes for the request-rate example.
    for file in [
        "minimal.yaml",
        "web-with-ingress.yaml",
        "cpu-only.yaml",
        "request-rate.yaml",
    ] {
        apply_example(bed, &ns, file);
    }
    for name in ["hello", "checkout", "worker", "api"] {
        wait_ready(bed, &ns, name).await;
    }
    wait_exists(bed, &ns, "ingress", "checkout").await;
    wait_exists(bed, &ns, "hpa", "worker").await;
    // An optional child dropped from the spec is deleted (delete on ingresses).
    bed.kubectl_ok(&[
        "patch",
        "microservice",
        "checkout",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ingress"}]"#,
    ]);
    wait_gone(bed, &ns, "ingress", "checkout").await;
    assert_eq!(
        replicas(bed, &ns, "api"),
        2,
        "the autoscaler's first scale write"
    );
    // A canary ended by a promote: the canary Deployment deleted and the one-off promote
    // annotation removed, both with the chart's RBAC alone.
    let example = std::fs::read_to_string(repo_root().join("manifests/examples/canary.yaml"))
        .expect("the canary example");
    apply(bed, &ns, &example.replace("name: checkout", "name: cart"));
    wait_ready(bed, &ns, "cart").await;
    bed.kubectl_ok(&[
        "patch",
        "microservice",
        "cart",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"registry.example/checkout:1.5.0"}}"#,
    ]);
    wait_exists(bed, &ns, "deployment", "cart-canary").await;
    bed.kubectl_ok(&[
        "annotate",
        "microservice",
        "cart",
        "-n",
        &ns,
        "shoal.dev/promote=true",
    ]);
    wait_gone(bed, &ns, "deployment", "cart-canary").await;
    wait_for("the promote annotation removed", TIMEOUT, || async {
        get(bed, &ns, "ms", "cart").filter(|ms| {
            ms.pointer("/metadata/annotations/shoal.dev~1promote")
                .is_none()
        })
    })
    .await;
    let log = op.plain_log_text();
    assert_eq!(log_count(&op, "acquired the leader lease"), 1, "{log}");
    for denied in ["forbidden", "Forbidden"] {
        assert!(
            !log.contains(denied),
            "the operator was denied something: {}",
            op.log.display()
        );
    }
    helm_ok(bed, &["uninstall", "shoal", "--namespace", &ns, "--wait"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_of_two_operators_leads_and_hands_over_on_sigterm() {
    let bed = testbed();
    let ns = bed.namespace("leader");
    let election = ["--leader-election", "--leader-election-namespace", &ns];
    let mut ops = vec![bed.operator(&ns, &election), bed.operator(&ns, &election)];
    wait_for("one operator to acquire the lease", TIMEOUT, || async {
        ops.iter()
            .any(|op| log_count(op, "acquired the leader lease") > 0)
            .then_some(())
    })
    .await;
    // Give the other a few retry periods to (wrongly) acquire it too.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leaders: Vec<bool> = ops
        .iter()
        .map(|op| log_count(op, "acquired the leader lease") > 0)
        .collect();
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one leader: {} / {}",
        ops[0].log.display(),
        ops[1].log.display()
    );
    let leader_index = leaders.iter().position(|l| *l).expect("a leader");
    let mut leader = ops.remove(leader_index);
    let follower = ops.remove(0);
    assert_eq!(log_count(&follower, "waiting for the leader lease"), 1);
    assert_eq!(
        log_count(&follower, "starting the Microservice controller"),
        0
    );
    // The follower is Ready (so rolling updates proceed) but does not lead.
    wait_metrics_address(&follower).await;
    assert_eq!(get_path(&follower, "/readyz").0, 200);
    assert_eq!(
        sample(&get_path(&follower, "/metrics").1, "shoal_leader"),
        Some(0.0)
    );
    assert_eq!(
        sample(&get_path(&leader, "/metrics").1, "shoal_leader"),
        Some(1.0)
    );

    apply_example(bed, &ns, "minimal.yaml");
    wait_ready(bed, &ns, "hello").await;
    let lease = get(bed, &ns, "lease", LEASE).expect("the lease");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .expect("a holder")
        .to_string();
    assert!(
        leader
            .plain_log_text()
            .contains(&format!("identity={holder}")),
        "the lease names the leader ({holder})"
    );
    assert_eq!(
        log_count(&follower, "starting the Microservice controller"),
        0
    );

    // SIGTERM to the leader: it releases the lease and the follower takes over.
    let stopped = Instant::now();
    leader.stop();
    let shutdown = stopped.elapsed();
    assert_eq!(
        log_count(&leader, "released the leader lease"),
        1,
        "{}",
        leader.log.display()
    );
    let taken = Instant::now();
    wait_for("the follower to take over", TIMEOUT, || async {
        (log_count(&follower, "acquired the leader lease") > 0).then_some(())
    })
    .await;
    let handover = taken.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "hand-over took {handover:?} after the leader exited ({shutdown:?} to exit)"
    );
    apply_example(bed, &ns, "web-with-ingress.yaml");
    wait_ready(bed, &ns, "checkout").await;
    let lease = get(bed, &ns, "lease", LEASE).expect("the lease");
    assert_ne!(
        lease["spec"]["holderIdentity"].as_str(),
        Some(holder.as_str())
    );
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_changes_the_deployment_and_uninstall_keeps_crd_and_microservices() {
    let bed = testbed();
    let ns = bed.namespace("chart-upgrade");
    install(bed, &ns, &[]);
    let before = get(bed, &ns, "deployment", "shoal").expect("Deployment");
    assert_eq!(before.pointer("/spec/replicas"), Some(&1.into()));
    assert_eq!(env_value(&before, "SHOAL_LOG").as_deref(), Some("info"));
    assert!(
        get(bed, &ns, "pdb", "shoal").is_none(),
        "no PDB for one replica"
    );
    apply_example(bed, &ns, "minimal.yaml");

    helm_ok(
        bed,
        &[
            "upgrade",
            "shoal",
            "charts/shoal",
            "--namespace",
            &ns,
            "--set",
            "replicas=2,log.level=debug",
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    let after = get(bed, &ns, "deployment", "shoal").expect("Deployment");
    assert_eq!(after.pointer("/spec/replicas"), Some(&2.into()));
    assert_eq!(after.pointer("/status/readyReplicas"), Some(&2.into()));
    assert_eq!(env_value(&after, "SHOAL_LOG").as_deref(), Some("debug"));
    let pdb = get(bed, &ns, "pdb", "shoal").expect("a PDB for two replicas");
    assert_eq!(pdb.pointer("/spec/minAvailable"), Some(&1.into()));

    helm_ok(bed, &["uninstall", "shoal", "--namespace", &ns, "--wait"]);
    wait_gone(bed, &ns, "deployment", "shoal").await;
    assert!(
        bed.kubectl(&["get", "clusterrole", &format!("shoal-{ns}")])
            .status
            .code()
            != Some(0),
        "the ClusterRole goes with the release"
    );
    // Helm never deletes what it installed from crds/: the CRD and every Microservice stay.
    bed.kubectl_ok(&["get", "crd", "microservices.shoal.dev"]);
    assert!(get(bed, &ns, "microservice", "hello").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_shows_the_loops_at_work() {
    let bed = testbed();
    let ns = bed.namespace("self-metrics");
    let op = bed.operator(&ns, &[]);
    wait_metrics_address(&op).await;
    assert_eq!(get_path(&op, "/healthz").0, 200);
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (get_path(&op, "/readyz").0 == 200).then_some(())
    })
    .await;
    apply_example(bed, &ns, "request-rate.yaml");
    wait_ready(bed, &ns, "api").await;
    let (code, first) = get_path(&op, "/metrics");
    assert_eq!(code, 200, "{first}");
    assert!(first.contains("application/openmetrics-text"), "{first}");
    // Labelled families (reconcile errors by reason, scale decisions by direction) appear
    // with their first sample.
    for family in [
        "# TYPE shoal_reconciles counter",
        "# TYPE shoal_reconcile_duration_seconds histogram",
        "# TYPE shoal_metric_query_duration_seconds histogram",
        "# TYPE shoal_autoscaler_tick_lag_seconds gauge",
        "# TYPE shoal_metric_query_errors counter",
    ] {
        assert!(first.contains(family), "{family} missing:\n{first}");
    }
    assert_eq!(
        sample(&first, "shoal_leader"),
        Some(1.0),
        "no election: it leads"
    );
    let ticks = sample(&first, "shoal_autoscaler_ticks_total").expect("ticks");
    let queries = sample(&first, "shoal_metric_queries_total").expect("queries");
    assert!(sample(&first, "shoal_autoscaler_scale_writes_total").is_some());
    // Ticks every 2 s: a few more after 5 s, each with its batched queries.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = get_path(&op, "/metrics").1;
    let later_ticks = sample(&second, "shoal_autoscaler_ticks_total").expect("ticks");
    let later_queries = sample(&second, "shoal_metric_queries_total").expect("queries");
    assert!(later_ticks >= ticks + 1.0, "ticks {ticks} -> {later_ticks}");
    assert!(
        later_queries > queries,
        "queries {queries} -> {later_queries}"
    );
}

//! The chart's dashboard and alerts against a running Shoal: every metric a dashboard panel
//! or an alert names (parsed with `promql-parser`) is served on the operator's `/metrics`,
//! or is a Kubernetes metric listed in [`EXTERNAL`], with a sample, not only a description.
//! For that the operator runs the request-rate autoscaler under load (per-Microservice
//! gauges, a scale decision) and a second Microservice whose Deployment a ResourceQuota
//! forbids (a failed reconcile).

use std::collections::BTreeSet;
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;
use shoal_e2e::{LoadSim, http_request, repo_root, testbed, wait_for};

use crate::helpers::*;

/// Metrics the dashboard reads that Shoal does not serve (kube-state-metrics).
const EXTERNAL: [&str; 1] = ["kube_pod_container_status_restarts_total"];

/// Collects the metric names of every selector in an expression.
#[derive(Default)]
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = selector
            .name
            .clone()
            .ok_or_else(|| format!("a selector without a metric name: {selector}"))?;
        self.0.insert(name);
        Ok(true)
    }
}

/// The metric names of a Grafana PromQL expression (its interval variables made concrete).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let concrete = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    let ast = parser::parse(&concrete).unwrap_or_else(|e| panic!("PromQL {expr:?}: {e}"));
    let mut names = Names::default();
    walk_expr(&mut names, &ast).unwrap_or_else(|e| panic!("PromQL {expr:?}: {e}"));
    assert!(!names.0.is_empty(), "{expr:?} names no metric");
    names.0
}

/// Every panel's expressions (rows may nest panels).
fn panel_exprs(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((title.clone(), expr.to_string()));
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_exprs(nested, out);
        }
    }
}

/// (title, expr) of every dashboard panel target and every alert.
fn queries() -> Vec<(String, String)> {
    let root = repo_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("charts/shoal/dashboards/shoal.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut out = Vec::new();
    panel_exprs(dashboard["panels"].as_array().expect("panels"), &mut out);
    assert!(out.len() >= 10, "dashboard targets: {out:?}");
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/shoal/rules/shoal.rules.yaml")).expect("rules"),
    )
    .expect("rules YAML");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((format!("alert {name}"), expr.to_string()));
        }
    }
    out
}

/// (described families expanded to their sample names, names that have a sample).
fn served(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut described = BTreeSet::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                described.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            sampled.insert(line[..end].to_string());
        }
    }
    (described, sampled)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_metric_is_served_by_a_running_shoal() {
    let queries = queries();
    let bed = testbed();
    let ns = bed.namespace("observability");
    let sim = LoadSim::start(bed, &ns, &bed.prometheus_sd_dir, 0.0);
    let op = bed.operator(
        &ns,
        &[
            "--tick-seconds",
            "2",
            "--rate-window",
            "10s",
            "--burst-window",
            "10s",
        ],
    );
    apply_example(bed, &ns, "request-rate.yaml");
    wait_ready(bed, &ns, "api").await;
    // 150 req/s at 50 per replica: the loop scales up, a real scale decision.
    sim.set_load("api", 150.0);
    // No more Deployments in this namespace: the next Microservice's reconciles fail.
    apply(
        bed,
        &ns,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: no-deployments}\nspec:\n  hard: {count/deployments.apps: \"0\"}\n",
    );
    apply_example(bed, &ns, "minimal.yaml");
    let addr = wait_for("the operator's metrics address", TIMEOUT, || async {
        op.metrics_address()
    })
    .await;
    let needed: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .filter(|n| !EXTERNAL.contains(&n.as_str()))
        .collect();
    let mut last = String::new();
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            last = http_request(&addr, "GET", "/metrics", "");
            let (described, sampled) = served(&last);
            let missing: Vec<&String> = needed
                .iter()
                .filter(|n| !described.contains(*n) && !sampled.contains(*n))
                .collect();
            let unsampled: Vec<&String> = needed.iter().filter(|n| !sampled.contains(*n)).collect();
            if missing.is_empty() && unsampled.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    if outcome.is_err() {
        let (described, sampled) = served(&last);
        for (title, expr) in &queries {
            for name in metric_names(expr) {
                if EXTERNAL.contains(&name.as_str()) {
                    continue;
                }
                assert!(
                    described.contains(&name) || sampled.contains(&name),
                    "{title}: {name} is not served by Shoal (nor listed as external):\n{last}"
                );
                assert!(
                    sampled.contains(&name),
                    "{title}: {name} has no sample after 120 s:\n{last}"
                );
            }
        }
    }
    // The gauges the alerts count were computed from the watch cache: api's and hello's
    // Ready states add up to 2 (whether or not the scale-up's pods are ready yet); hello's
    // Deployment is refused by the quota, so it is Ready=False, reason=ApplyFailed, and the
    // failed reconciles are counted under their stage.
    let ready: f64 = last
        .lines()
        .filter(|l| l.starts_with("shoal_microservices{condition=\"Ready\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(ready, 2.0, "{last}");
    assert!(
        last.lines().any(|l| l.starts_with(
            "shoal_microservices{condition=\"Ready\",status=\"False\",reason=\"ApplyFailed\"} 1"
        )),
        "{last}"
    );
    assert!(
        last.lines()
            .any(|l| l.starts_with("shoal_reconcile_errors_total{reason=\"apply\"}")),
        "{last}"
    );
    assert!(
        last.lines().any(|l| l.starts_with(&format!(
            "shoal_microservice_request_rate_target{{microservice_namespace=\"{ns}\",microservice=\"api\"}} 50"
        ))),
        "{last}"
    );
}

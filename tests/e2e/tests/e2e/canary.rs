//! Issue 12: canary releases on the real control plane, with a real Prometheus scraping
//! loadsim's per-track counters (`:bad` images answer 20% 5xx). Each scenario watches
//! `status.rollout.canary` once a second and asserts on what it saw on the way, not only on
//! the end state.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_e2e::recorder::ReplicaRecorder;
use shoal_e2e::{LoadSim, Prometheus, TestBed, testbed, wait_for};

use crate::helpers::*;

/// The test bed's slow-start convention: this tag's pods are Running and unready for 15 s.
const SLOW_2: &str = "2-ready-after-15s";

/// Analysis fast enough for a test: 10 s checks, 2 failures abort, 20 requests a check.
const ANALYSIS: &str = "{interval: 10s, failureLimit: 2, minRequests: 20, noDataTimeout: 40s}";

/// A Microservice `name` with strategy Canary; `scaling` is YAML at spec level
/// (`replicas: 4` or an `autoscaling:` block), `steps` a flow list.
fn microservice(name: &str, tag: &str, scaling: &str, steps: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n  image: registry.example/{name}:{tag}\n  resources: {{requests: {{cpu: 100m}}}}\n{scaling}\n  rollout:\n    strategy: Canary\n    canary:\n      steps: {steps}\n      analysis: {ANALYSIS}\n"
    )
}

/// What one look at the Microservice and its Deployments showed.
#[derive(Clone, Debug)]
struct Look {
    at: f64,
    phase: String,
    step: i64,
    weight: i64,
    stable_spec: i64,
    stable_ready: i64,
    canary_spec: Option<i64>,
}

fn deployment_counts(bed: &TestBed, ns: &str, name: &str) -> Option<(i64, i64)> {
    let d = get(bed, ns, "deployment", name)?;
    Some((
        d.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        d.pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    ))
}

fn look(bed: &TestBed, ns: &str, name: &str, started: Instant) -> Option<Look> {
    let ms = get(bed, ns, "ms", name)?;
    let c = ms.pointer("/status/rollout/canary")?;
    let (stable_spec, stable_ready) = deployment_counts(bed, ns, name)?;
    Some(Look {
        at: started.elapsed().as_secs_f64(),
        phase: c["phase"].as_str().unwrap_or_default().to_string(),
        step: c["step"].as_i64().unwrap_or(-1),
        weight: c["weight"].as_i64().unwrap_or(-1),
        stable_spec,
        stable_ready,
        canary_spec: deployment_counts(bed, ns, &format!("{name}-canary")).map(|c| c.0),
    })
}

/// Looks once a second until `done` holds for a look or `timeout` passes; returns every look.
async fn watch(
    bed: &TestBed,
    ns: &str,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Look) -> bool,
) -> Vec<Look> {
    let started = Instant::now();
    let mut looks: Vec<Look> = Vec::new();
    while started.elapsed() < timeout {
        if let Some(l) = look(bed, ns, name, started) {
            let finished = done(&l);
            looks.push(l);
            if finished {
                return looks;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "{ns}/{name}: the canary did not get there in {timeout:?}; looks: {}",
        describe(&looks)
    );
}

fn describe(looks: &[Look]) -> String {
    let mut out = Vec::new();
    let mut last = String::new();
    for l in looks {
        let text = format!(
            "{} step {} weight {} stable {}/{} canary {:?}",
            l.phase, l.step, l.weight, l.stable_ready, l.stable_spec, l.canary_spec
        );
        if text != last {
            out.push(format!("+{:.0}s {text}", l.at));
            last = text;
        }
    }
    out.join("; ")
}

/// The fewest ready replicas the stable Deployment had in every watch event since the
/// recorder started (the source of truth, not a poll).
fn least_ready(recorder: &ReplicaRecorder) -> i32 {
    recorder
        .samples()
        .iter()
        .map(|s| s.ready)
        .min()
        .unwrap_or(0)
}

fn image_of(bed: &TestBed, ns: &str, deployment: &str) -> String {
    get(bed, ns, "deployment", deployment)
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// A test bed namespace with Prometheus, loadsim and an operator that reads them.
struct Setup {
    ns: String,
    _prometheus: Prometheus,
    sim: LoadSim,
    op: shoal_e2e::Operator,
}

fn setup(label: &str) -> Setup {
    let bed = testbed();
    let ns = bed.namespace(label);
    let prometheus = Prometheus::start(bed, &ns);
    let sim = LoadSim::start(bed, &ns, &prometheus.sd_dir, 0.0);
    let op = bed.operator_with_prometheus(&ns, &prometheus.url(), &["--tick-seconds", "2"]);
    Setup {
        ns,
        _prometheus: prometheus,
        sim,
        op,
    }
}

/// Microservice `name` at `:1` (its spec's `extra` lines and canary `steps`), Ready and
/// offered `load` req/s.
async fn serving(s: &Setup, name: &str, extra: &str, steps: &str, load: f64) {
    let bed = testbed();
    apply(bed, &s.ns, &microservice(name, "1", extra, steps));
    wait_ready(bed, &s.ns, name).await;
    s.sim.set_load(name, load);
}

/// Microservice `shop` at `:1` with 4 replicas, Ready, serving 100 req/s that Prometheus
/// has seen for a few scrapes.
async fn serving_shop(s: &Setup, steps: &str) {
    serving(s, "shop", "  replicas: 4", steps, 100.0).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_goes_through_its_steps_and_becomes_stable() {
    let bed = testbed();
    let s = setup("canary-good");
    let steps = "[{weight: 25}, {pause: {duration: 10s}}, {weight: 50}, {pause: {duration: 10s}}]";
    serving_shop(&s, steps).await;
    apply(
        bed,
        &s.ns,
        &microservice("shop", SLOW_2, "  replicas: 4", steps),
    );
    let looks = watch(bed, &s.ns, "shop", Duration::from_secs(240), |l| {
        l.phase == "Promoted"
    })
    .await;
    eprintln!("good canary: {}", describe(&looks));
    // The canary's pod is unready for its first 15 s: the first step waits for it (a pod
    // that serves nothing yet passes no analysis and fails none).
    let moved = looks
        .iter()
        .find(|l| l.step >= 1)
        .map_or(f64::MAX, |l| l.at);
    assert!(
        moved >= 15.0,
        "the first step ended {moved:.0}s in, before the slow canary pod was ready: {}",
        describe(&looks)
    );
    // Every weight was visible in status at its step, with the canary sized to it.
    let seen: BTreeSet<(i64, i64)> = looks
        .iter()
        .filter(|l| l.phase == "Progressing")
        .map(|l| (l.step, l.weight))
        .collect();
    for expected in [(0, 25), (1, 25), (2, 50), (3, 50)] {
        assert!(
            seen.contains(&expected),
            "step {} at weight {} never showed: {}",
            expected.0,
            expected.1,
            describe(&looks)
        );
    }
    assert!(
        looks
            .iter()
            .any(|l| l.weight == 25 && l.canary_spec == Some(1)),
        "1 canary pod beside 4 at 25%: {}",
        describe(&looks)
    );
    assert!(
        looks
            .iter()
            .any(|l| l.weight == 50 && l.canary_spec == Some(4)),
        "4 canary pods beside 4 at 50%: {}",
        describe(&looks)
    );
    // The stable revision served throughout the steps (the promotion is then a rolling
    // update of its own).
    // The promotion's apply comes before the status write that says Promoting (the status
    // reports what was applied), so a look just before the first Promoting one may already
    // see the stable Deployment rolling: such a look is not "during the steps".
    let promoting_at = looks
        .iter()
        .find(|l| l.phase == "Promoting" || l.phase == "Promoted")
        .map_or(f64::INFINITY, |l| l.at);
    let least = looks
        .iter()
        .filter(|l| l.phase == "Progressing" && l.at < promoting_at - 2.0)
        .map(|l| l.stable_ready)
        .min()
        .unwrap_or(0);
    assert!(
        least >= 4,
        "stable ready dropped to {least} during the steps: {}",
        describe(&looks)
    );
    // Promoted: the stable Deployment runs :2, no canary Deployment is left.
    assert_eq!(
        image_of(bed, &s.ns, "shop"),
        format!("registry.example/shop:{SLOW_2}")
    );
    wait_gone(bed, &s.ns, "deployment", "shop-canary").await;
    let (ms, _) = wait_condition(
        bed,
        &s.ns,
        "shop",
        "Progressing",
        "True",
        "NewRevisionAvailable",
    )
    .await;
    let checks = &ms["status"]["rollout"]["canary"]["checks"];
    assert!(
        checks["successRate"].as_f64().is_some_and(|v| v >= 99.0),
        "the analysis figures are in status: {checks}"
    );
    assert!(!events(bed, &s.ns, "shop", "CanaryStep").is_empty());
    assert!(!events(bed, &s.ns, "shop", "CanaryPromoted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_canary_is_aborted_and_the_stable_revision_never_stops_serving() {
    let bed = testbed();
    let s = setup("canary-bad");
    let steps = "[{weight: 25}, {pause: {duration: 60s}}, {weight: 50}]";
    serving_shop(&s, steps).await;
    // `:bad` answers 20% of its requests with a 500 (loadsim).
    let stable = ReplicaRecorder::start(bed.client().await, &s.ns, "shop");
    apply(
        bed,
        &s.ns,
        &microservice("shop", "bad", "  replicas: 4", steps),
    );
    let looks = watch(bed, &s.ns, "shop", Duration::from_secs(150), |l| {
        l.phase == "Aborted"
    })
    .await;
    eprintln!("bad canary: {}", describe(&looks));
    assert!(
        looks
            .iter()
            .all(|l| l.phase != "Promoting" && l.weight <= 25),
        "a bad canary went on: {}",
        describe(&looks)
    );
    let ms = get(bed, &s.ns, "ms", "shop").expect("ms");
    for type_ in ["Degraded", "RolledBack"] {
        let (status, reason, message) = condition(&ms, type_).expect(type_);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "CanaryAnalysisFailed"),
            "{type_}: {message}"
        );
        assert!(
            message.contains("success rate"),
            "{type_} names the metric: {message}"
        );
    }
    let aborted = events(bed, &s.ns, "shop", "CanaryAborted");
    assert!(
        aborted.iter().any(|m| m.contains("success rate")),
        "the Event names the success rate: {aborted:?}"
    );
    wait_gone(bed, &s.ns, "deployment", "shop-canary").await;
    assert_eq!(image_of(bed, &s.ns, "shop"), "registry.example/shop:1");
    // Held: the failed template is not tried again while the spec stays.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        get(bed, &s.ns, "deployment", "shop-canary").is_none(),
        "the canary came back"
    );
    assert_eq!(image_of(bed, &s.ns, "shop"), "registry.example/shop:1");
    // From the watch: the stable Deployment never had fewer than 4 ready, never changed size.
    let least = least_ready(&stable);
    assert!(
        least >= 4 && stable.samples().iter().all(|s| s.replicas == 4),
        "the stable Deployment dropped to {least} ready: {}",
        shoal_e2e::recorder::describe(&stable.samples())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_without_traffic_waits_and_is_aborted_after_the_no_data_timeout() {
    let bed = testbed();
    let s = setup("canary-nodata");
    let steps = "[{weight: 25}, {pause: {duration: 5s}}]";
    apply(
        bed,
        &s.ns,
        &microservice("shop", "1", "  replicas: 2", steps),
    );
    wait_ready(bed, &s.ns, "shop").await;
    // No load at all: no data is never a success.
    apply(
        bed,
        &s.ns,
        &microservice("shop", "2", "  replicas: 2", steps),
    );
    let looks = watch(bed, &s.ns, "shop", Duration::from_secs(120), |l| {
        l.phase == "Aborted"
    })
    .await;
    eprintln!("no-data canary: {}", describe(&looks));
    assert!(
        looks.iter().all(|l| l.step == 0 && l.phase != "Promoting"),
        "a canary without data moved on: {}",
        describe(&looks)
    );
    let aborted_at = looks.last().map(|l| l.at).unwrap_or_default();
    assert!(
        aborted_at >= 35.0,
        "aborted before the 40 s noDataTimeout: {aborted_at:.0}s"
    );
    let ms = get(bed, &s.ns, "ms", "shop").expect("ms");
    let (_, reason, message) = condition(&ms, "RolledBack").expect("RolledBack");
    assert_eq!(reason, "CanaryAnalysisFailed");
    assert!(message.contains("noDataTimeout"), "{message}");
    assert_eq!(image_of(bed, &s.ns, "shop"), "registry.example/shop:1");
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_by_annotation_and_rollout_undo_during_a_canary() {
    let bed = testbed();
    let s = setup("canary-manual");
    s.sim.set_load("shop", 60.0);
    let steps = "[{weight: 25}, {pause: {}}]";
    // Two revisions under RollingUpdate first, so that the stable Deployment has one to undo to.
    let rolling = |tag: &str| {
        format!(
            "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: shop}}\nspec:\n  image: registry.example/shop:{tag}\n  replicas: 3\n"
        )
    };
    apply(bed, &s.ns, &rolling("1"));
    wait_ready(bed, &s.ns, "shop").await;
    apply(bed, &s.ns, &rolling("2"));
    wait_ready(bed, &s.ns, "shop").await;
    wait_for("revision 2 complete", TIMEOUT, || async {
        (image_of(bed, &s.ns, "shop") == "registry.example/shop:2").then_some(())
    })
    .await;
    // Canary of :3 waits at its pause until promoted by the one-off annotation.
    apply(
        bed,
        &s.ns,
        &microservice("shop", "3", "  replicas: 3", steps),
    );
    watch(bed, &s.ns, "shop", Duration::from_secs(90), |l| {
        l.phase == "Paused"
    })
    .await;
    let (_, message) =
        wait_condition(bed, &s.ns, "shop", "Progressing", "True", "CanaryPaused").await;
    assert!(message.contains("promote"), "{message}");
    bed.kubectl_ok(&[
        "annotate",
        "-n",
        &s.ns,
        "ms",
        "shop",
        "shoal.dev/promote=true",
    ]);
    watch(bed, &s.ns, "shop", Duration::from_secs(90), |l| {
        l.phase == "Promoted"
    })
    .await;
    assert_eq!(image_of(bed, &s.ns, "shop"), "registry.example/shop:3");
    wait_gone(bed, &s.ns, "deployment", "shop-canary").await;
    let ms = get(bed, &s.ns, "ms", "shop").expect("ms");
    assert!(
        ms.pointer("/metadata/annotations/shoal.dev~1promote")
            .is_none(),
        "Shoal removes the promote annotation once acted on"
    );
    // Canary of :4, then `kubectl rollout undo` of the stable Deployment: the canary ends,
    // the Deployment keeps what the user restored (:2), and Shoal does not fight it.
    apply(
        bed,
        &s.ns,
        &microservice("shop", "4", "  replicas: 3", steps),
    );
    watch(bed, &s.ns, "shop", Duration::from_secs(90), |l| {
        l.phase == "Paused"
    })
    .await;
    bed.kubectl_ok(&["rollout", "undo", "-n", &s.ns, "deployment/shop"]);
    let looks = watch(bed, &s.ns, "shop", Duration::from_secs(60), |l| {
        l.phase == "Aborted"
    })
    .await;
    eprintln!("undo during canary: {}", describe(&looks));
    let (_, message) =
        wait_condition(bed, &s.ns, "shop", "RolledBack", "True", "ManualRollback").await;
    assert!(message.contains("rollout undo"), "{message}");
    wait_gone(bed, &s.ns, "deployment", "shop-canary").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(image_of(bed, &s.ns, "shop"), "registry.example/shop:2");
    assert!(get(bed, &s.ns, "deployment", "shop-canary").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_load_step_the_total_follows_the_autoscaler_and_the_split_keeps_the_weight() {
    let bed = testbed();
    let s = setup("canary-load");
    let steps = "[{weight: 20}, {pause: {}}]";
    let scaling = "  autoscaling:\n    minReplicas: 2\n    maxReplicas: 20\n    requestRate: {targetPerReplica: 50}\n    behavior: {scaleDown: {stabilizationWindowSeconds: 0}}";
    serving(&s, "shop", scaling, steps, 200.0).await;
    wait_for(
        "4 replicas at 200 req/s",
        Duration::from_secs(120),
        || async { (replicas(bed, &s.ns, "shop") == 4).then_some(()) },
    )
    .await;
    // A second canary in flight beside it, with the same analysis settings.
    serving(&s, "cart", "  replicas: 2", steps, 100.0).await;
    apply(bed, &s.ns, &microservice("shop", "2", scaling, steps));
    apply(
        bed,
        &s.ns,
        &microservice("cart", "2", "  replicas: 2", steps),
    );
    for name in ["shop", "cart"] {
        watch(bed, &s.ns, name, Duration::from_secs(90), |l| {
            l.phase == "Paused"
        })
        .await;
    }
    // Both canaries share one set of three queries per 10 s interval (six without sharing).
    let queries = || {
        s.op.metric("shoal_canary_analysis_queries_total", &[])
            .expect("the analysis query counter")
    };
    let (q0, t0) = (queries(), Instant::now());
    tokio::time::sleep(Duration::from_secs(40)).await;
    let intervals = (t0.elapsed().as_secs_f64() / 10.0).ceil();
    let sent = queries() - q0;
    eprintln!("two canaries: {sent} analysis queries in {intervals} intervals");
    assert!(
        sent >= 3.0 && sent <= 3.0 * (intervals + 1.0),
        "{sent} queries in {intervals} intervals of 10 s for two canaries: not shared"
    );
    // The load steps up to 500 req/s: 10 replicas in all, 20% of them canary.
    s.sim.set_load("shop", 500.0);
    let looks = watch(bed, &s.ns, "shop", Duration::from_secs(150), |l| {
        l.canary_spec
            .is_some_and(|c| l.stable_spec + c >= 9 && l.stable_spec + c <= 11)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let last = look(bed, &s.ns, "shop", Instant::now()).expect("look");
    eprintln!(
        "load step during canary: {}; then {last:?}",
        describe(&looks)
    );
    let canary = last.canary_spec.expect("canary deployment");
    let total = last.stable_spec + canary;
    assert!((9..=11).contains(&total), "total {total}, want 10 ±1");
    let expected = (f64::from(total as i32) * 0.2).round() as i64;
    assert!(
        (canary - expected).abs() <= 1,
        "canary {canary} of {total}, want {expected} ±1 (20%)"
    );
    assert_eq!(last.phase, "Paused", "still in the canary");
    // The autoscaler never scaled the total below what the load asked for during the canary.
    assert!(
        looks
            .iter()
            .all(|l| l.stable_spec + l.canary_spec.unwrap_or(0) >= 4),
        "the total dropped below 4: {}",
        describe(&looks)
    );
}

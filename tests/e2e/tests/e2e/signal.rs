//! Issue 10's "Done when": the metrics loop decides on a true signal. Each scenario runs the
//! real operator against the real control plane and a real Prometheus, records the
//! Deployment's replica count from a watch and reads the operator's scale writes from the
//! apiserver's audit log. All use `scaleDown.stabilizationWindowSeconds: 0`, so nothing
//! hides a wrong reading.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use shoal_e2e::admission::ScaleWriteBlock;
use shoal_e2e::audit::{self, AuditEvent};
use shoal_e2e::recorder::{ReplicaRecorder, ReplicaSample, decreases, describe};
use shoal_e2e::slowproxy::SlowProxy;
use shoal_e2e::{LoadSim, Prometheus, testbed, wait_for};

use crate::autoscaler::FAST;
use crate::helpers::*;

/// The slow-start convention of the test bed: pods of this image are Running and unready
/// for 20 s after their creation (docs/test-bed.md).
const SLOW: &str = "-ready-after-20s";

/// A Microservice scaled on its request rate; `tag_suffix` goes after the image tag (e.g.
/// [`SLOW`]); `behavior` is the YAML of `spec.autoscaling.behavior` (flow style).
fn microservice(name: &str, tag_suffix: &str, min: i32, max: i32, behavior: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n  image: registry.example/{name}:1{tag_suffix}\n  resources: {{requests: {{cpu: 100m}}}}\n  autoscaling:\n    minReplicas: {min}\n    maxReplicas: {max}\n    requestRate: {{targetPerReplica: 50}}\n    behavior: {behavior}\n"
    )
}

/// `behavior` with no scale-down stabilization (HPA default policies otherwise).
const NO_WINDOW: &str = "{scaleDown: {stabilizationWindowSeconds: 0}}";

/// Seconds from `t0` to `t`.
fn secs(t0: Timestamp, t: Timestamp) -> f64 {
    (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0
}

/// The operator's scale writes of `name`, as text: `+12.3s 200, +14.3s 403, ...`.
fn describe_writes(writes: &[AuditEvent], t0: Timestamp) -> String {
    let list: Vec<String> = writes
        .iter()
        .map(|w| format!("+{:.1}s {}", secs(t0, w.received()), w.code()))
        .collect();
    format!("{} writes: [{}]", writes.len(), list.join(", "))
}

/// Waits until the recorder's last sample satisfies `ok`; returns it.
async fn wait_recorded(
    recorder: &ReplicaRecorder,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&ReplicaSample) -> bool,
) -> ReplicaSample {
    wait_for(what, timeout, || async {
        recorder.last().filter(|s| ok(s))
    })
    .await
}

/// Constant load asking for 8 (375 req/s at 50 per replica; 7 is within tolerance) from 1
/// replica and a Prometheus started with the test: the count rises and never goes down
/// for 2 minutes. Default rate and burst windows (the 10 s windows of [`FAST`] are equal,
/// which hides the lag of the long window).
async fn constant_load_from_one_replica(tag_suffix: &str, label: &str) {
    let bed = testbed();
    let ns = bed.namespace(label);
    let prometheus = Prometheus::start(bed, &ns);
    let sim = LoadSim::start(bed, &ns, &prometheus.sd_dir, 0.0);
    let recorder = ReplicaRecorder::start(bed.client().await, &ns, "api");
    // The operator's default windows (1m rate, 30s burst), 2 s ticks: the long window lags
    // the burst one for a minute after the load appears, as a user sees it.
    let _op = bed.operator_with_prometheus(&ns, &prometheus.url(), &["--tick-seconds", "2"]);
    let t0 = Timestamp::now();
    let started = Instant::now();
    apply(bed, &ns, &microservice("api", tag_suffix, 1, 12, NO_WINDOW));
    sim.set_load("api", 375.0);
    let observe = Duration::from_secs(120);
    let reached = wait_recorded(
        &recorder,
        "7 or more replicas",
        Duration::from_secs(90),
        |s| s.replicas >= 7,
    )
    .await;
    eprintln!(
        "{label}: reached {} replicas {:.1}s after the load",
        reached.replicas,
        reached.instant.duration_since(started).as_secs_f64()
    );
    tokio::time::sleep(observe.saturating_sub(started.elapsed())).await;
    let samples = recorder.samples();
    let writes = audit::scale_writes(&bed.audit_log(), &ns, "api");
    eprintln!("{label}: replicas (spec/ready) {}", describe(&samples));
    eprintln!("{label}: {}", describe_writes(&writes, t0));
    let down = decreases(&samples);
    assert!(
        down.is_empty(),
        "{label}: the count went down under constant load: {:?} (path {:?}; {})",
        down.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        recorder.replica_path(),
        describe_writes(&writes, t0)
    );
    let last = recorder.last().expect("samples").replicas;
    assert!(
        (7..=8).contains(&last),
        "{label}: settled at {last}, want 8 (or 7 within tolerance)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn constant_load_rises_and_never_reverses() {
    constant_load_from_one_replica("", "rise").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn constant_load_rises_and_never_reverses_with_slow_pods() {
    constant_load_from_one_replica(SLOW, "rise-slow").await;
}

/// Steady load at 7-8 replicas with the default 1m rate window; Prometheus paused 90 s,
/// then 20 s: the count never goes below what it was before each pause; once the window is
/// whole again a load change is followed.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_gap_never_scales_down() {
    let bed = testbed();
    let ns = bed.namespace("gap");
    let mut prometheus = Prometheus::start(bed, &ns);
    let sim = LoadSim::start(bed, &ns, &prometheus.sd_dir, 0.0);
    let recorder = ReplicaRecorder::start(bed.client().await, &ns, "api");
    // The default 1m rate window: the defect is a half-empty long window.
    let flags = [
        "--tick-seconds",
        "2",
        "--rate-window",
        "1m",
        "--burst-window",
        "10s",
    ];
    let _op = bed.operator_with_prometheus(&ns, &prometheus.url(), &flags);
    let t0 = Timestamp::now();
    apply(bed, &ns, &microservice("api", "", 1, 12, NO_WINDOW));
    sim.set_load("api", 375.0);
    wait_recorded(&recorder, "7 or 8 replicas", Duration::from_secs(90), |s| {
        (7..=8).contains(&s.replicas)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut floor_violations = Vec::new();
    for (pause, after) in [(90, 20), (20, 20)] {
        let before = recorder.last().expect("samples").replicas;
        let from = Instant::now();
        eprintln!("gap: pausing Prometheus {pause}s at {before} replicas");
        prometheus.pause();
        if pause >= 60 {
            // The failure shows, and the count holds.
            let (_, message) = wait_condition(
                bed,
                &ns,
                "api",
                "ScalingActive",
                "False",
                "FailedGetMetrics",
            )
            .await;
            eprintln!("gap: while paused: {message}");
        }
        tokio::time::sleep(Duration::from_secs(pause).saturating_sub(from.elapsed())).await;
        prometheus.unpause();
        tokio::time::sleep(Duration::from_secs(after)).await;
        let low = recorder
            .since(from)
            .iter()
            .map(|s| s.replicas)
            .min()
            .unwrap_or(before);
        if low < before {
            floor_violations.push(format!(
                "{pause}s pause: {before} -> as low as {low} (path since the pause: {:?})",
                shoal_e2e::recorder::replica_path(&recorder.since(from))
            ));
        }
    }
    let ms = get(bed, &ns, "ms", "api").expect("ms");
    eprintln!(
        "gap: ScalingActive after the gaps: {:?}",
        condition(&ms, "ScalingActive")
    );
    let writes = audit::scale_writes(&bed.audit_log(), &ns, "api");
    eprintln!("gap: replicas {}", describe(&recorder.samples()));
    eprintln!("gap: {}", describe_writes(&writes, t0));
    assert!(
        floor_violations.is_empty(),
        "scaled below the count before a Prometheus pause under steady load: {}",
        floor_violations.join("; ")
    );

    // Scaling resumes once the window is whole: the load halves to 175 req/s -> 4.
    sim.set_load("api", 175.0);
    let changed = Instant::now();
    let down = wait_recorded(&recorder, "4 replicas", Duration::from_secs(100), |s| {
        s.replicas == 4
    })
    .await;
    eprintln!(
        "gap: down to 4 replicas {:.1}s after the load halved",
        down.instant.duration_since(changed).as_secs_f64()
    );
}

/// A scale write refused by an admission policy is retried on the next tick, and the
/// failed write does not spend the scale-up rate budget (1 pod per 60 s).
#[tokio::test(flavor = "multi_thread")]
async fn refused_scale_write_is_retried_next_tick() {
    let bed = testbed();
    let ns = bed.namespace("refused");
    let sim = LoadSim::start(bed, &ns, &bed.prometheus_sd_dir, 0.0);
    let recorder = ReplicaRecorder::start(bed.client().await, &ns, "api");
    let _op = bed.operator(&ns, &FAST);
    let t0 = Timestamp::now();
    let behavior = "{scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1, periodSeconds: 60}]}, scaleDown: {stabilizationWindowSeconds: 0}}";
    apply(bed, &ns, &microservice("api", "", 1, 10, behavior));
    sim.set_load("api", 40.0);
    wait_ready(bed, &ns, "api").await;
    wait_condition(bed, &ns, "api", "ScalingActive", "True", "ValidMetricFound").await;
    assert_eq!(replicas(bed, &ns, "api"), 1);

    let mut block = ScaleWriteBlock::new(bed, &ns, "api");
    let blocked = Timestamp::now();
    sim.set_load("api", 375.0);
    let (_, message) =
        wait_condition(bed, &ns, "api", "AbleToScale", "False", "FailedUpdateScale").await;
    eprintln!("refused: AbleToScale=False FailedUpdateScale: {message}");
    wait_for("a FailedRescale Event", TIMEOUT, || async {
        (!events(bed, &ns, "api", "FailedRescale").is_empty()).then_some(())
    })
    .await;
    // Let a few ticks pass while refused: each one should try again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        replicas(bed, &ns, "api"),
        1,
        "a refused write changed the count"
    );
    let refused: Vec<AuditEvent> = audit::scale_writes(&bed.audit_log(), &ns, "api")
        .into_iter()
        .filter(|w| w.received() >= blocked && !w.succeeded())
        .collect();
    eprintln!("refused: while blocked {}", describe_writes(&refused, t0));
    assert!(
        !refused.is_empty(),
        "the audit log has no refused scale write"
    );

    let lifted = block.lift(&ns, "api");
    let lifted_at = Timestamp::now();
    let up = wait_recorded(
        &recorder,
        "the scale write after the policy is lifted",
        Duration::from_secs(90),
        |s| s.replicas >= 2,
    )
    .await;
    let delay = up.instant.saturating_duration_since(lifted);
    let writes = audit::scale_writes(&bed.audit_log(), &ns, "api");
    eprintln!("refused: {}", describe_writes(&writes, t0));
    let first_ok = writes
        .iter()
        .find(|w| w.succeeded() && w.received() >= blocked)
        .expect("a successful scale write after the block");
    eprintln!(
        "refused: first successful write {:.1}s after the policy was lifted (recorder: {:.1}s), to {}",
        secs(lifted_at, first_ok.received()),
        delay.as_secs_f64(),
        up.replicas
    );
    assert!(
        refused.len() >= 2,
        "the refused write was not retried on the following ticks: {}",
        describe_writes(&refused, t0)
    );
    assert!(
        delay <= Duration::from_secs(10),
        "the next scale write came {:.1}s after the policy was lifted (ticks are 2 s; the \
         failed write must not spend the 60 s rate budget)",
        delay.as_secs_f64()
    );
    assert_eq!(up.replicas, 2, "1 pod per 60 s allows 1 -> 2");
}

/// The label name that makes the test's proxy hold a query back (see
/// `shoal_e2e::slowproxy`); `name=""` matches every series without it, so the query is a
/// valid one that would answer the true rate.
const SLOW_MARKER: &str = "shoal_e2e_delay";

/// One Microservice whose own query never answers within the operator's 2 s timeout among
/// 20 on the batched query: the loop keeps its tick rate (1 s), the others keep scaling,
/// the slow one says "timed out" in its condition and in `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn slow_custom_query_does_not_slow_the_others() {
    let bed = testbed();
    let ns = bed.namespace("slowq");
    let prometheus = Prometheus::start(bed, &ns);
    // The operator reaches Prometheus through a proxy holding the slow query for 30 s.
    let proxy = SlowProxy::start(
        prometheus.url().trim_start_matches("http://"),
        SLOW_MARKER,
        Duration::from_secs(30),
    )
    .await;
    let sim = LoadSim::start(bed, &ns, &prometheus.sd_dir, 0.0);
    let mut yaml: Vec<String> = (0..20)
        .map(|i| microservice(&format!("svc-{i}"), "", 1, 10, NO_WINDOW))
        .collect();
    let query = format!(
        "sum(rate(http_requests_total{{namespace=\"{ns}\", service=\"slow\", {SLOW_MARKER}=\"\"}}[10s]))"
    );
    let slow = microservice("slow", "", 1, 10, NO_WINDOW).replace(
        "requestRate: {targetPerReplica: 50}",
        &format!("requestRate: {{targetPerReplica: 50, query: '{query}'}}"),
    );
    yaml.push(slow);
    apply(bed, &ns, &yaml.join("---\n"));
    for i in 0..20 {
        sim.set_load(&format!("svc-{i}"), 75.0);
    }
    sim.set_load("slow", 75.0);

    // 1 s ticks and a 2 s query timeout: a loop that waits for the slow query, however
    // concurrently, cannot keep its tick rate. (With 2 s ticks and a 2 s timeout today's
    // sequential loop still makes 26 of 30 ticks a minute: too close to tell.)
    let flags = [
        "--tick-seconds",
        "1",
        "--rate-window",
        "10s",
        "--burst-window",
        "10s",
        "--prometheus-timeout-seconds",
        "2",
    ];
    let op = bed.operator_with_prometheus(&ns, &proxy.url(), &flags);
    let recorder = ReplicaRecorder::start(bed.client().await, &ns, "svc-0");
    wait_for(
        "the twenty to have metrics",
        Duration::from_secs(120),
        || async {
            let out = bed.kubectl_ok(&[
                "get",
                "ms",
                "-n",
                &ns,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.autoscaler.requestRate.current}{\"\\n\"}{end}",
            ]);
            let with_metrics = out
                .lines()
                .filter(|l| l.starts_with("svc-") && !l.ends_with('='))
                .count();
            (with_metrics == 20).then_some(())
        },
    )
    .await;
    wait_for("the operator's /metrics", TIMEOUT, || async {
        op.metrics_address()
    })
    .await;

    let window = Duration::from_secs(60);
    let ticks_before = op
        .metric("shoal_autoscaler_ticks_total", &[])
        .expect("ticks counter");
    let from = Instant::now();
    // A load step on one of the twenty in the middle of the window: followed as usual.
    tokio::time::sleep(Duration::from_secs(10)).await;
    sim.set_load("svc-0", 375.0);
    let step = Instant::now();
    let followed = wait_recorded(
        &recorder,
        "svc-0 at 7 or more replicas",
        Duration::from_secs(45),
        |s| s.replicas >= 7,
    )
    .await;
    let reaction = followed.instant.duration_since(step);
    tokio::time::sleep(window.saturating_sub(from.elapsed())).await;
    let ticks = op
        .metric("shoal_autoscaler_ticks_total", &[])
        .expect("ticks counter")
        - ticks_before;
    let elapsed = from.elapsed().as_secs_f64();
    let expected = elapsed / 1.0;
    eprintln!(
        "slowq: {ticks} ticks in {elapsed:.0}s (expected about {expected:.0}); svc-0 followed its load step in {:.1}s",
        reaction.as_secs_f64()
    );

    let ms = get(bed, &ns, "ms", "slow").expect("ms");
    let active = condition(&ms, "ScalingActive");
    eprintln!("slowq: the slow one's ScalingActive: {active:?}");
    let text = op.metrics_text();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shoal_metric_query_errors"))
        .collect();
    eprintln!("slowq: {errors:?}");
    eprintln!(
        "slowq: the proxy held {} slow queries and forwarded {} others",
        proxy.held(),
        proxy.forwarded()
    );
    assert!(proxy.held() >= 1, "the operator never sent the slow query");

    assert!(
        ticks >= 0.8 * expected,
        "the loop ticked {ticks} times in {elapsed:.0}s, want about {expected:.0}: the slow query slows everyone"
    );
    let (status, reason, message) = active.expect("ScalingActive condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedGetMetrics"),
        "{message}"
    );
    assert!(
        message.contains("timed out"),
        "the condition does not say the query timed out: {message}"
    );
    let timeouts = op.metric(
        "shoal_metric_query_errors_total",
        &[
            ("namespace", ns.as_str()),
            ("microservice", "slow"),
            ("reason", "timeout"),
        ],
    );
    assert!(
        timeouts.is_some_and(|v| v >= 1.0),
        "no shoal_metric_query_errors_total{{namespace=\"{ns}\",microservice=\"slow\",reason=\"timeout\"}} in /metrics: {errors:?}"
    );
}

/// Load steps with pods that take 20 s to become Ready: while the new pods warm up (and
/// serve nothing) the count never goes down.
#[tokio::test(flavor = "multi_thread")]
async fn slow_pods_no_scale_down_while_warming() {
    let bed = testbed();
    let ns = bed.namespace("warming");
    let prometheus = Prometheus::start(bed, &ns);
    let sim = LoadSim::start(bed, &ns, &prometheus.sd_dir, 0.0);
    let recorder = ReplicaRecorder::start(bed.client().await, &ns, "api");
    let _op = bed.operator_with_prometheus(&ns, &prometheus.url(), &FAST);
    let t0 = Timestamp::now();
    let applied = Instant::now();
    apply(bed, &ns, &microservice("api", SLOW, 2, 12, NO_WINDOW));
    sim.set_load("api", 100.0);
    // A slow pod starts as a real one does: Running, not Ready.
    let starting = wait_for("a Running pod that is not Ready", TIMEOUT, || async {
        let out = bed.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "app.kubernetes.io/instance=api",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}/{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        out.lines()
            .any(|l| l == "Running/False")
            .then_some(out)
    })
    .await;
    eprintln!("warming: pods while starting: {starting:?}");
    // Both pods Ready (after their 20 s) and the rate read: 2 replicas on target.
    let ready = wait_recorded(
        &recorder,
        "2 replicas, both ready",
        Duration::from_secs(90),
        |s| s.replicas == 2 && s.ready == 2,
    )
    .await;
    let warmup = ready.instant.duration_since(applied);
    eprintln!(
        "warming: 2 pods Ready {:.1}s after the apply",
        warmup.as_secs_f64()
    );
    assert!(
        warmup >= Duration::from_secs(18),
        "slow pods were Ready after {warmup:?}, not 20 s"
    );
    wait_condition(bed, &ns, "api", "ScalingActive", "True", "ValidMetricFound").await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = recorder.last().expect("samples").replicas;
    assert_eq!(
        before,
        2,
        "steady at 100 req/s: {}",
        describe(&recorder.samples())
    );

    // The step: 375 req/s wants 8 (7 within tolerance), held for 80 s.
    sim.set_load("api", 375.0);
    let step = Instant::now();
    tokio::time::sleep(Duration::from_secs(80)).await;
    let held = recorder.since(step);
    let writes = audit::scale_writes(&bed.audit_log(), &ns, "api");
    eprintln!(
        "warming: replicas (spec/ready) since the step {}",
        describe(&held)
    );
    eprintln!("warming: {}", describe_writes(&writes, t0));
    let down = decreases(&held);
    assert!(
        down.is_empty(),
        "scaled down while new pods warmed up under a held load: {:?} (path {:?})",
        down.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        shoal_e2e::recorder::replica_path(&held)
    );
    let last = recorder.last().expect("samples");
    assert!(
        (7..=8).contains(&last.replicas),
        "not at 8 (or 7) replicas 80 s after the step: {}",
        describe(&held)
    );
}

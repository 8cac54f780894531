//! The CPU side-by-side of `make bench`: one CPU load trace, two identical services in one
//! namespace, one scaled by the controller-manager's HPA controller (`engine: HPA`, the
//! HorizontalPodAutoscaler Shoal renders, reading metrics-server) and one by Shoal's
//! metrics loop (`engine: Shoal`, reading `container_cpu_usage_seconds_total` from a
//! Prometheus that scrapes KWOK's resource-metrics endpoint).
//!
//! The load is a total CPU usage L(t) per service, spread evenly over its pods through
//! KWOK's `kwok.x-k8s.io/usage-cpu` pod annotation (KWOK reads it on every scrape of its
//! metrics endpoint), re-spread whenever L or the pods change. Times of scale writes come
//! from the apiserver's audit log ([`crate::reaction`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use crate::audit::{self, ScaleWriter};
use crate::reaction::{TimedWrite, seconds_between, timed_writes};
use crate::recorder::ReplicaRecorder;
use crate::{Operator, Prometheus, TestBed, wait_for};

/// Namespace of the side-by-side.
pub const NS: &str = "bench-cpu";
/// CPU request of every pod (millicores).
pub const REQUEST_MILLI: f64 = 100.0;
/// Target utilization (percent of the request).
pub const TARGET_UTILIZATION: i32 = 50;
/// Usage one replica should carry at target (millicores).
pub const TARGET_MILLI: f64 = REQUEST_MILLI * TARGET_UTILIZATION as f64 / 100.0;
/// Replica bounds of both services.
pub const MIN: i32 = 1;
/// Replica bounds of both services.
pub const MAX: i32 = 12;
/// Scale-down stabilization of both (the test bed's controller-manager default is 15 s too).
pub const SCALE_DOWN_WINDOW: i32 = 15;
/// The trace's first level, before measuring (millicores, 2 replicas).
pub const WARM_UP: f64 = 90.0;
/// One cycle of the trace (millicores of total usage): up to 7 replicas, down to 4, up to
/// 9, down to 2 at 50m per replica. Each level L lies in (1.1 × 50m × (n - 1), 50m × n] for
/// its ideal count n: one replica fewer is outside the 10% tolerance, so both autoscalers
/// must reach n (a level just above a multiple would let n - 1 stay, under capacity), and
/// the count does not flip on rounding.
pub const CYCLE: [f64; 4] = [345.0, 190.0, 445.0, 90.0];

/// One contender.
pub struct Contender {
    /// Its Microservice (and Deployment) name.
    pub name: &'static str,
    /// What scales it, as printed.
    pub label: &'static str,
    /// Who writes its replica count.
    pub writer: ScaleWriter,
    engine: &'static str,
}

/// The two contenders.
pub const CONTENDERS: [Contender; 2] = [
    Contender {
        name: "cpu-hpa",
        label: "HPA (controller-manager, metrics-server)",
        writer: ScaleWriter::HpaController,
        engine: "HPA",
    },
    Contender {
        name: "cpu-shoal",
        label: "Shoal (metrics loop, Prometheus)",
        writer: ScaleWriter::ShoalAutoscaler,
        engine: "Shoal",
    },
];

fn manifest(c: &Contender) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1
kind: Microservice
metadata: {{name: {name}}}
spec:
  image: registry.example/{name}:1
  resources: {{requests: {{cpu: {REQUEST_MILLI}m}}}}
  autoscaling:
    engine: {engine}
    minReplicas: {MIN}
    maxReplicas: {MAX}
    cpu: {{targetUtilization: {TARGET_UTILIZATION}}}
    behavior:
      scaleUp: {{stabilizationWindowSeconds: 0}}
      scaleDown: {{stabilizationWindowSeconds: {SCALE_DOWN_WINDOW}}}
---
",
        name = c.name,
        engine = c.engine
    )
}

/// The ideal count for a total usage of `load` millicores.
pub fn ideal(load: f64) -> i32 {
    ((load / TARGET_MILLI).ceil() as i32).clamp(MIN, MAX)
}

/// Per-pod usage annotation value for `load` millicores over `pods` pods.
fn per_pod(load: f64, pods: usize) -> String {
    format!("{}m", (load / pods.max(1) as f64).ceil() as i64)
}

/// Keeps every pod of each contender at `L / pods`, checking every 250 ms and at once when
/// `L` changes. Returns when `load` is dropped.
async fn spread_load(client: kube::Client, mut load: tokio::sync::watch::Receiver<f64>) {
    let pods: Api<Pod> = Api::namespaced(client, NS);
    loop {
        let l = *load.borrow_and_update();
        for c in &CONTENDERS {
            let params =
                ListParams::default().labels(&format!("app.kubernetes.io/instance={}", c.name));
            let Ok(list) = pods.list(&params).await else {
                continue;
            };
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let want = per_pod(l, live.len());
            for p in live {
                let has = p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kwok.x-k8s.io/usage-cpu"));
                if has != Some(&want) {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let patch = serde_json::json!({"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": want}}});
                    // A pod deleted by a scale-down since the list is no loss.
                    if let Err(e) = pods
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop)
                        .or_else(|e| match e {
                            kube::Error::Api(s) if s.code == 404 => Ok(()),
                            e => Err(e),
                        })
                    {
                        eprintln!("cpu load: patching pod {name}: {e}");
                    }
                }
            }
        }
        tokio::select! {
            changed = load.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// One contender's figures over the trace.
#[derive(Debug, Default)]
pub struct ContenderFigures {
    /// Seconds from each up-step's load change to its first write upwards.
    pub up: Vec<f64>,
    /// Seconds from each down-step's load change to its first write downwards.
    pub down: Vec<f64>,
    /// Steps with no write in their direction before the next step.
    pub missed: usize,
    /// Integral of `spec.replicas` over the trace.
    pub replica_seconds: f64,
    /// Integral of the ideal count over the trace.
    pub ideal_replica_seconds: f64,
    /// Seconds with ready replicas × per-replica target below L.
    pub under_capacity_seconds: f64,
    /// Successful scale writes in the trace (audit log).
    pub writes: usize,
    /// Changes the audit log had no write for (timed by the watch instead).
    pub unaudited: usize,
    /// The counts over the trace.
    pub path: Vec<i32>,
    /// Per step: the counts written before the next step and the seconds under capacity.
    pub steps: Vec<(Vec<i32>, f64)>,
}

/// Everything the side-by-side measured.
pub struct CpuFigures {
    /// Seconds of the trace.
    pub seconds: f64,
    /// Steps in the trace.
    pub steps: usize,
    /// Per contender, in the order of [`CONTENDERS`].
    pub contenders: Vec<ContenderFigures>,
    /// Shoal's metrics-loop ticks and Prometheus queries during the trace.
    pub ticks_and_queries: Option<(f64, f64)>,
}

/// Starts Prometheus with KWOK's resource-metrics endpoint as a target (the port is the
/// fake node's kubelet port, which KWOK serves).
fn cpu_prometheus(bed: &TestBed) -> Prometheus {
    let prometheus = Prometheus::start(bed, NS);
    let port = bed.kubectl_ok(&[
        "get",
        "node",
        "kwok-node-0",
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let target = serde_json::json!([{
        "targets": [format!("127.0.0.1:{}", port.trim())],
        "labels": {"__metrics_path__": "/metrics/nodes/kwok-node-0/metrics/resource", "component": "kwok"},
    }]);
    std::fs::write(prometheus.sd_dir.join("kwok.json"), target.to_string()).expect("kwok target");
    prometheus
}

fn ticks_and_queries(operator: &Operator) -> Option<(f64, f64)> {
    Some((
        operator.metric("shoal_autoscaler_ticks_total", &[])?,
        operator.metric("shoal_metric_queries_total", &[])?,
    ))
}

/// Runs `cycles` cycles of [`CYCLE`], each level held `hold`, after a warm-up at
/// [`WARM_UP`] until both contenders sit at its ideal count.
pub async fn side_by_side(bed: &TestBed, cycles: usize, hold: Duration) -> CpuFigures {
    bed.kubectl_ok(&["create", "namespace", NS]);
    let prometheus = cpu_prometheus(bed);
    let flags = crate::fast_loop_flags(&SCALE_DOWN_WINDOW.to_string());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator = bed.operator_with_prometheus(NS, &prometheus.url(), &flags);
    let client = bed.client().await;
    let recorders: Vec<ReplicaRecorder> = CONTENDERS
        .iter()
        .map(|c| ReplicaRecorder::start(client.clone(), NS, c.name))
        .collect();
    let (load, rx) = tokio::sync::watch::channel(WARM_UP);
    let spreader = tokio::spawn(spread_load(client.clone(), rx));
    let yaml: String = CONTENDERS.iter().map(manifest).collect();
    let out = bed.kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = ideal(WARM_UP);
    wait_for(
        "both CPU contenders to settle at the warm-up's count",
        Duration::from_secs(240),
        || async {
            recorders
                .iter()
                .all(|r| {
                    r.last()
                        .is_some_and(|s| s.replicas == want && s.ready == want)
                })
                .then_some(())
        },
    )
    .await;
    // Past the scale-down window, so the warm-up's decisions are all made.
    tokio::time::sleep(Duration::from_secs(SCALE_DOWN_WINDOW as u64 + 10)).await;

    let before = ticks_and_queries(&operator);
    let started = Instant::now();
    let mut steps: Vec<(Timestamp, f64, f64)> = Vec::new(); // (load change, from, to)
    let mut figures: Vec<ContenderFigures> = CONTENDERS
        .iter()
        .map(|_| ContenderFigures::default())
        .collect();
    let mut level = WARM_UP;
    let sample = Duration::from_millis(250);
    for _ in 0..cycles {
        for next in CYCLE {
            steps.push((Timestamp::now(), level, next));
            load.send_replace(next);
            level = next;
            let step_start = Instant::now();
            let mut previous = Instant::now();
            while step_start.elapsed() < hold {
                tokio::time::sleep(sample).await;
                let now = Instant::now();
                let dt = now.duration_since(previous).as_secs_f64();
                previous = now;
                for (r, f) in recorders.iter().zip(figures.iter_mut()) {
                    let Some(s) = r.last() else { continue };
                    f.replica_seconds += f64::from(s.replicas) * dt;
                    f.ideal_replica_seconds += f64::from(ideal(level)) * dt;
                    if f.steps.len() < steps.len() {
                        f.steps.push((Vec::new(), 0.0));
                    }
                    if f64::from(s.ready) * TARGET_MILLI < level {
                        f.under_capacity_seconds += dt;
                        if let Some(step) = f.steps.last_mut() {
                            step.1 += dt;
                        }
                    }
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let ended = Timestamp::now();
    let after = ticks_and_queries(&operator);
    drop(load);
    let _ = spreader.await;

    for ((c, r), f) in CONTENDERS.iter().zip(&recorders).zip(figures.iter_mut()) {
        let writes = audit::replica_writes(&bed.audit_log(), NS, c.name, c.writer);
        let timed: Vec<TimedWrite> = timed_writes(&r.samples(), &writes)
            .into_iter()
            .filter(|w| w.at >= steps[0].0 && w.at <= ended)
            .collect();
        f.writes = timed.len();
        f.unaudited = timed.iter().filter(|w| !w.audited).count();
        f.path = std::iter::once(timed.first().map_or(0, |w| w.from))
            .chain(timed.iter().map(|w| w.to))
            .collect();
        for (i, &(t0, from, to)) in steps.iter().enumerate() {
            let until = steps.get(i + 1).map_or(ended, |s| s.0);
            let up = to > from;
            let mine: Vec<&TimedWrite> = timed
                .iter()
                .filter(|w| w.at >= t0 && w.at < until)
                .collect();
            if let Some(step) = f.steps.get_mut(i) {
                step.0 = mine
                    .first()
                    .map(|w| w.from)
                    .into_iter()
                    .chain(mine.iter().map(|w| w.to))
                    .collect();
            }
            let first = mine
                .iter()
                .find(|w| if up { w.to > w.from } else { w.to < w.from });
            match first {
                Some(w) => {
                    (if up { &mut f.up } else { &mut f.down }).push(seconds_between(t0, w.at))
                }
                None => f.missed += 1,
            }
        }
    }
    let ticks_and_queries = match (before, after) {
        (Some(b), Some(a)) => Some((a.0 - b.0, a.1 - b.1)),
        _ => None,
    };
    drop(operator);
    drop(prometheus);
    CpuFigures {
        seconds,
        steps: steps.len(),
        contenders: figures,
        ticks_and_queries,
    }
}

/// The count each level asks for, for the printed header.
pub fn levels() -> BTreeMap<i64, i32> {
    std::iter::once(WARM_UP)
        .chain(CYCLE)
        .map(|l| (l as i64, ideal(l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_needs_its_whole_ideal_count() {
        for level in std::iter::once(WARM_UP).chain(CYCLE) {
            let n = ideal(level);
            assert!(level <= TARGET_MILLI * f64::from(n), "{level}m fits {n}");
            // One replica fewer is over target by more than the 10% tolerance.
            assert!(
                level > 1.1 * TARGET_MILLI * f64::from(n - 1),
                "{level}m on {} replicas is within the tolerance",
                n - 1
            );
        }
        assert_eq!(
            CYCLE.map(ideal),
            [7, 4, 9, 2],
            "up, down, up, down as documented"
        );
        assert_eq!(per_pod(445.0, 9), "50m");
        assert_eq!(per_pod(90.0, 0), "90m");
    }
}

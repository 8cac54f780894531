//! Issue 10's figures for `make bench` (called by `bench-reaction`): how often the metrics
//! loop writes a scale under a noisy constant load with no scale-down window (the goal is 0
//! writes per minute once settled), and, over the demo's load trace, what the replicas cost
//! against the ideal `ceil(load / target)` and how long ready capacity was below the offered
//! load. Each runs in its own namespace with its own `shoal run` on the shared test bed.

use std::time::{Duration, Instant};

use crate::recorder::{ReplicaRecorder, replica_path};
use crate::{LoadSim, TestBed, audit, wait_for};

const TARGET: f64 = 50.0;

fn manifest(name: &str, max: i32, behavior: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n  image: registry.example/{name}:1\n  resources: {{requests: {{cpu: 100m}}}}\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: {max}\n    requestRate: {{targetPerReplica: {TARGET}}}\n{behavior}"
    )
}

fn apply(bed: &TestBed, ns: &str, yaml: &str) {
    let out = bed.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Scale writes under a noisy constant load.
pub struct NoiseFigures {
    /// Load (req/s).
    pub load: f64,
    /// Its noise (± percent per load-simulator tick).
    pub noise_percent: f64,
    /// Seconds measured after settling.
    pub measured_seconds: f64,
    /// The operator's successful scale writes in that time (audit log).
    pub writes: usize,
    /// The replica counts in that time.
    pub path: Vec<i32>,
}

impl NoiseFigures {
    /// Writes per minute.
    pub fn per_minute(&self) -> f64 {
        self.writes as f64 * 60.0 / self.measured_seconds
    }
}

/// A constant `load` with `noise_percent` noise and `scaleDown.stabilizationWindowSeconds:
/// 0`: settles (count in the load's bucket or the one below, 30 s), then counts the scale
/// writes for `measure`.
pub async fn noisy_constant_load(
    bed: &TestBed,
    load: f64,
    noise_percent: f64,
    measure: Duration,
) -> NoiseFigures {
    let ns = "bench-noise";
    bed.kubectl_ok(&["create", "namespace", ns]);
    let sim = LoadSim::start(bed, ns, &bed.prometheus_sd_dir, noise_percent);
    let recorder = ReplicaRecorder::start(bed.client().await, ns, "noisy");
    let _operator = bed.operator(
        ns,
        &[
            "--tick-seconds",
            "2",
            "--rate-window",
            "10s",
            "--burst-window",
            "10s",
            "--scale-down-window-seconds",
            "0",
        ],
    );
    apply(
        bed,
        ns,
        &manifest(
            "noisy",
            20,
            "    behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n",
        ),
    );
    sim.set_load("noisy", load);
    let want = (load / TARGET).ceil() as i32;
    wait_for(
        "the noisy Microservice to reach its count",
        Duration::from_secs(120),
        || async { recorder.last().filter(|s| s.replicas >= want - 1) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let from = Instant::now();
    let since = k8s_openapi::jiff::Timestamp::now();
    tokio::time::sleep(measure).await;
    let measured_seconds = from.elapsed().as_secs_f64();
    let writes = audit::scale_writes(&bed.audit_log(), ns, "noisy")
        .into_iter()
        .filter(|w| w.succeeded() && w.received() >= since)
        .count();
    let mut path = recorder.replicas_at(from).into_iter().collect::<Vec<_>>();
    path.extend(replica_path(&recorder.since(from)));
    path.dedup();
    NoiseFigures {
        load,
        noise_percent,
        measured_seconds,
        writes,
        path,
    }
}

/// Cost and shortfall over a load trace.
pub struct TraceFigures {
    /// Seconds of the trace.
    pub seconds: f64,
    /// Integral of `spec.replicas` over the trace.
    pub replica_seconds: f64,
    /// Integral of `max(1, ceil(load / target))`.
    pub ideal_replica_seconds: f64,
    /// Seconds during which ready replicas × target < offered load.
    pub under_capacity_seconds: f64,
    /// The replica counts over the trace.
    pub path: Vec<i32>,
}

/// The offered load of the demo's trace at `t` seconds (fixed durations instead of the
/// demo's wait-until-settled phases): warm-up 25 req/s 30 s, ramp to 275 over 40 s, hold
/// 275 for 40 s, spike 425 for 40 s, quiet 30 for 60 s.
pub fn demo_trace(t: f64) -> Option<f64> {
    Some(match t {
        t if t < 30.0 => 25.0,
        t if t < 70.0 => 25.0 + (275.0 - 25.0) * (t - 30.0) / 40.0,
        t if t < 110.0 => 275.0,
        t if t < 150.0 => 425.0,
        t if t < 210.0 => 30.0,
        _ => return None,
    })
}

/// Runs [`demo_trace`] against a Microservice with the demo's settings (2 s ticks, 10 s
/// windows, 20 s scale-down window, max 10) and integrates every 250 ms from the end of the
/// warm-up.
pub async fn load_trace(bed: &TestBed) -> TraceFigures {
    let ns = "bench-trace";
    bed.kubectl_ok(&["create", "namespace", ns]);
    let sim = LoadSim::start(bed, ns, &bed.prometheus_sd_dir, 0.0);
    let recorder = ReplicaRecorder::start(bed.client().await, ns, "shop");
    let _operator = bed.operator(
        ns,
        &[
            "--tick-seconds",
            "2",
            "--rate-window",
            "10s",
            "--burst-window",
            "10s",
            "--scale-down-window-seconds",
            "20",
        ],
    );
    apply(bed, ns, &manifest("shop", 10, ""));
    wait_for(
        "the trace's Deployment",
        Duration::from_secs(60),
        || async { recorder.last().filter(|s| s.ready >= 1) },
    )
    .await;
    let step = Duration::from_millis(250);
    let started = Instant::now();
    let mut figures = TraceFigures {
        seconds: 0.0,
        replica_seconds: 0.0,
        ideal_replica_seconds: 0.0,
        under_capacity_seconds: 0.0,
        path: Vec::new(),
    };
    let mut last_load = -1.0;
    let mut previous = Instant::now();
    while let Some(load) = demo_trace(started.elapsed().as_secs_f64()) {
        // Whole multiples of 5 req/s, as the demo sets them.
        let load = (load / 5.0).round() * 5.0;
        if load != last_load {
            sim.set_load("shop", load);
            last_load = load;
        }
        tokio::time::sleep(step).await;
        let now = Instant::now();
        let dt = now.duration_since(previous).as_secs_f64();
        previous = now;
        if started.elapsed().as_secs_f64() < 30.0 {
            continue;
        }
        let Some(sample) = recorder.last() else {
            continue;
        };
        figures.seconds += dt;
        figures.replica_seconds += f64::from(sample.replicas) * dt;
        figures.ideal_replica_seconds += (load / TARGET).ceil().max(1.0) * dt;
        if f64::from(sample.ready) * TARGET < load {
            figures.under_capacity_seconds += dt;
        }
        if figures.path.last() != Some(&sample.replicas) {
            figures.path.push(sample.replicas);
        }
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_ramps_holds_spikes_and_ends() {
        assert_eq!(demo_trace(0.0), Some(25.0));
        assert_eq!(demo_trace(50.0), Some(150.0));
        assert_eq!(demo_trace(100.0), Some(275.0));
        assert_eq!(demo_trace(120.0), Some(425.0));
        assert_eq!(demo_trace(200.0), Some(30.0));
        assert_eq!(demo_trace(210.0), None);
    }
}

//! `make bench`: how fast Shoal's metrics loop reacts to a load step, and what it costs
//! Prometheus. A command that prints figures, not a timed test.
//!
//! Starts the local control plane, a private Prometheus (scraping every 2 s), the load
//! simulator and `shoal run` with 2 s ticks and 10 s rate windows, then steps the load of one
//! request-rate Microservice between a low and a high level. For every step it records each
//! scale write (the Deployment's spec.replicas, polled every 100 ms through the API) with its
//! time since the load change, until the count holds for the scale-down window and 2 ticks
//! with every replica ready.
//! At the end it prints percentiles of the time to the first and the last write, the writes
//! against the direction of the step, and the number of Prometheus queries per tick, from
//! Prometheus's own `prometheus_http_requests_total`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;
use shoal::crd::Microservice;
use shoal_e2e::{LoadSim, Prometheus, testbed};

const NS: &str = "bench";
const NAME: &str = "api";
const TARGET: f64 = 50.0;
const TICK_SECONDS: f64 = 2.0;
const SCRAPE_SECONDS: f64 = 2.0;
const SCALE_DOWN_WINDOW: u64 = 10;
const POLL: Duration = Duration::from_millis(100);
const QUERY_COUNTER: &str = "sum(prometheus_http_requests_total{handler=\"/api/v1/query\"})";

const USAGE: &str = "usage: bench-reaction [--cycles N] [--low RPS] [--high RPS]

  --cycles N   low -> high -> low cycles, two load steps each (default 10: 20 steps)
  --low RPS    low load (default 30: 1 replica at 60% of its target)
  --high RPS   high load (default 375: 8 replicas at 94% of their target)

Neither level sits on a multiple of the target (50 req/s per replica): at exactly 400 req/s
the count flips between 8 and 9 on the smallest noise, as the HPA's ceil(value / target)
would, and the steps would not settle.";

struct Args {
    cycles: usize,
    low: f64,
    high: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cycles: 10,
        low: 30.0,
        high: 375.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<f64, String> {
            it.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--cycles" => args.cycles = value("--cycles")? as usize,
            "--low" => args.low = value("--low")?,
            "--high" => args.high = value("--high")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.cycles == 0 || args.low >= args.high {
        return Err(format!("need --cycles >= 1 and --low < --high\n{USAGE}"));
    }
    Ok(args)
}

fn manifest() -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1
kind: Microservice
metadata: {{name: {NAME}}}
spec:
  image: registry.example/{NAME}:1
  resources: {{requests: {{cpu: 100m}}}}
  autoscaling:
    minReplicas: 1
    maxReplicas: 20
    requestRate: {{targetPerReplica: {TARGET}}}
    behavior:
      scaleUp: {{stabilizationWindowSeconds: 0, policies: [{{type: Percent, value: 1000, periodSeconds: 15}}]}}
      scaleDown: {{stabilizationWindowSeconds: {SCALE_DOWN_WINDOW}}}
"
    )
}

/// One measured step.
struct Step {
    from: i32,
    /// The counts written, in order, with the seconds from the load change to each write.
    writes: Vec<(f64, i32)>,
    /// The count held for the scale-down window and 2 ticks with every replica ready and the rate window caught up.
    settled: bool,
}

impl Step {
    /// Seconds to the first write in the direction of the step (a write left over from the
    /// step before, such as a late scale-down at the start of a step up, does not count).
    fn first(&self, up: bool) -> Option<f64> {
        self.writes
            .iter()
            .find(|&&(_, r)| if up { r > self.from } else { r < self.from })
            .map(|w| w.0)
    }

    /// Seconds to the last write before the count held.
    fn last(&self) -> Option<f64> {
        self.writes.last().map(|w| w.0)
    }

    fn final_count(&self) -> i32 {
        self.writes.last().map_or(self.from, |w| w.1)
    }

    /// A write against the direction of the step: a scale-down during a step up (an
    /// overshoot taken back) or a scale-up during a step down (one the load did not ask for).
    fn reversed(&self, up: bool) -> bool {
        let mut previous = self.from;
        self.writes.iter().any(|&(_, r)| {
            let against = if up { r < previous } else { r > previous };
            previous = r;
            against
        })
    }
}

struct Bench {
    deployments: Api<Deployment>,
    microservices: Api<Microservice>,
}

impl Bench {
    /// The Deployment's spec.replicas and ready replicas.
    async fn replicas(&self) -> Option<(i32, i32)> {
        let d = self.deployments.get_opt(NAME).await.ok().flatten()?;
        let ready = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        Some((d.spec?.replicas?, ready))
    }

    /// The total request rate in the Microservice's status.
    async fn status_rate(&self) -> Option<f64> {
        let ms = self.microservices.get_opt(NAME).await.ok().flatten()?;
        ms.status?.autoscaler?.request_rate?.current
    }

    /// Steps the load to `rps` and records every scale write until the count holds for the
    /// scale-down window and 2 ticks, with every replica ready and the rate in the status within 5% of the load (so
    /// the next step starts from a settled state).
    async fn step(&self, sim: &LoadSim, rps: f64) -> Step {
        let from = self.replicas().await.map_or(-1, |r| r.0);
        sim.set_load(NAME, rps);
        let t0 = Instant::now();
        let mut step = Step {
            from,
            writes: Vec::new(),
            settled: false,
        };
        let mut current = from;
        let mut changed = t0;
        // Longer than the scale-down window, so that a scale-down still to come is waited for.
        let quiet = Duration::from_secs_f64(SCALE_DOWN_WINDOW as f64 + 2.0 * TICK_SECONDS);
        while t0.elapsed() < Duration::from_secs(180) {
            if let Some((replicas, ready)) = self.replicas().await {
                if replicas != current {
                    step.writes.push((t0.elapsed().as_secs_f64(), replicas));
                    current = replicas;
                    changed = Instant::now();
                } else if changed.elapsed() >= quiet
                    && ready == replicas
                    && (!step.writes.is_empty() || t0.elapsed() >= Duration::from_secs(30))
                    && self
                        .status_rate()
                        .await
                        .is_some_and(|v| (v - rps).abs() <= 0.05 * rps)
                {
                    step.settled = true;
                    break;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        step
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(name: &str, values: &[f64]) {
    if values.is_empty() {
        println!("{name}: no measurement");
        return;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{name}: p50 {:.2} s, p95 {:.2} s, max {:.2} s, min {:.2} s (n = {})",
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0),
        sorted[sorted.len() - 1],
        sorted[0],
        sorted.len()
    );
}

fn show(step: &Step, up: bool) -> String {
    let path: Vec<String> = std::iter::once(step.from)
        .chain(step.writes.iter().map(|w| w.1))
        .map(|r| r.to_string())
        .collect();
    let times = match (step.first(up), step.last()) {
        (Some(first), Some(last)) => {
            format!("first write {first:5.2} s, last write {last:5.2} s")
        }
        _ => "no scale write".to_string(),
    };
    let mut notes = Vec::new();
    if step.reversed(up) {
        notes.push(if up {
            "overshoot taken back"
        } else {
            "scaled up again on a falling load"
        });
    }
    if !step.settled {
        notes.push("did not settle within 180 s");
    }
    format!(
        "{times}; replicas {}{}",
        path.join(" -> "),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let high_replicas = (args.high / TARGET).ceil() as i32;
    let low_replicas = ((args.low / TARGET).ceil() as i32).max(1);
    println!("bench-reaction: starting the local control plane and a private Prometheus...");
    let bed = testbed();
    bed.kubectl_ok(&["create", "namespace", NS]);
    let prometheus = Prometheus::start(bed, NS);
    let sim = LoadSim::start(bed, NS, &prometheus.sd_dir, 0.0);
    let operator_flags = shoal_e2e::fast_loop_flags(&SCALE_DOWN_WINDOW.to_string());
    let flags: Vec<&str> = operator_flags.iter().map(String::as_str).collect();
    let operator = bed.operator_with_prometheus(NS, &prometheus.url(), &flags);
    let out = bed.kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &manifest());
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = bed.client().await;
    let bench = Bench {
        deployments: Api::namespaced(client.clone(), NS),
        microservices: Api::namespaced(client, NS),
    };
    println!(
        "shoal run {} (operator log {})",
        operator_flags.join(" "),
        operator.log.display()
    );
    println!(
        "Microservice {NAME}: target {TARGET} req/s per replica, min 1, max 20, scale-up up to +1000% per 15 s, scale-down window {SCALE_DOWN_WINDOW} s"
    );
    println!(
        "steps: {} req/s ({low_replicas} replica) <-> {} req/s ({high_replicas} replicas, or {} within the 10% tolerance), {} cycles = {} steps",
        args.low,
        args.high,
        high_replicas - 1,
        args.cycles,
        args.cycles * 2
    );

    // Warm up at the low load.
    let warm = bench.step(&sim, args.low).await;
    if !warm.settled || warm.final_count() != low_replicas {
        eprintln!(
            "the Microservice did not settle at {low_replicas} replica(s): see the operator log"
        );
        std::process::exit(1);
    }
    let counter_before = prometheus.query_value(QUERY_COUNTER);
    let measuring = Instant::now();

    let mut up_first = Vec::new();
    let mut up_last = Vec::new();
    let mut down_first = Vec::new();
    let mut down_last = Vec::new();
    let mut unsettled = 0;
    let mut reversals = (0, 0);
    for cycle in 1..=args.cycles {
        // Vary where the step lands within the 2 s scrape and tick cycles.
        tokio::time::sleep(Duration::from_millis(((cycle * 737) % 2000) as u64)).await;
        for up in [true, false] {
            let step = bench
                .step(&sim, if up { args.high } else { args.low })
                .await;
            println!(
                "cycle {cycle:>2} {} {}",
                if up { "up  " } else { "down" },
                show(&step, up)
            );
            let (first, last, reversed) = if up {
                (&mut up_first, &mut up_last, &mut reversals.0)
            } else {
                (&mut down_first, &mut down_last, &mut reversals.1)
            };
            first.extend(step.first(up));
            last.extend(step.last());
            *reversed += usize::from(step.reversed(up));
            unsettled += usize::from(!step.settled);
        }
    }
    let measured = measuring.elapsed().as_secs_f64();
    // Let the last ticks' queries be scraped before reading the counter again.
    tokio::time::sleep(Duration::from_secs_f64(SCRAPE_SECONDS * 2.0)).await;
    let counter_after = prometheus.query_value(QUERY_COUNTER);
    let counted = measured + SCRAPE_SECONDS * 2.0;

    println!();
    println!("== results ({} load steps) ==", args.cycles * 2);
    println!(
        "settings: metrics-loop tick {TICK_SECONDS} s, Prometheus scrape interval {SCRAPE_SECONDS} s, rate window 10 s, burst window 10 s (irate), load simulator tick 250 ms, replicas polled every {} ms",
        POLL.as_millis()
    );
    summary("step up, load change -> first scale write", &up_first);
    summary("step up, load change -> last scale write", &up_last);
    summary("step down, load change -> first scale write", &down_first);
    summary("step down, load change -> last scale write", &down_last);
    println!(
        "writes against the step: {} of {} up-steps (overshoot taken back), {} of {} down-steps (scaled up again on a falling load)",
        reversals.0, args.cycles, reversals.1, args.cycles
    );
    match (counter_before, counter_after) {
        (Some(before), Some(after)) => {
            // One of our own reads of the counter falls inside the difference.
            let queries = after - before - 1.0;
            let ticks = counted / TICK_SECONDS;
            println!(
                "Prometheus queries: {queries:.0} in {counted:.0} s = {ticks:.0} ticks: {:.2} queries per tick",
                queries / ticks
            );
        }
        _ => println!("Prometheus queries: the counter could not be read"),
    }
    // Issue 10: writes under a noisy constant load, and cost and shortfall over the demo's trace.
    let noise =
        shoal_e2e::signalbench::noisy_constant_load(bed, 375.0, 10.0, Duration::from_secs(120))
            .await;
    println!(
        "noisy constant load {} req/s +-{}%, scale-down window 0 s: {} scale writes in {:.0} s after settling = {:.2} per minute (replicas {:?})",
        noise.load,
        noise.noise_percent,
        noise.writes,
        noise.measured_seconds,
        noise.per_minute(),
        noise.path
    );
    let trace = shoal_e2e::signalbench::load_trace(bed).await;
    println!(
        "demo load trace ({:.0} s, 20 s scale-down window): {:.0} replica-seconds against {:.0} ideal (ceil(load / target)) = {:.2}x; ready capacity below the offered load for {:.1} s (replicas {:?})",
        trace.seconds,
        trace.replica_seconds,
        trace.ideal_replica_seconds,
        trace.replica_seconds / trace.ideal_replica_seconds,
        trace.under_capacity_seconds,
        trace.path
    );
    println!(
        "machine: {} cores; measured over {measured:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let json: Value = serde_json::json!({
        "up_first_write_seconds": up_first,
        "up_last_write_seconds": up_last,
        "down_first_write_seconds": down_first,
        "down_last_write_seconds": down_last,
    });
    println!("raw: {json}");
    if unsettled > 0 {
        println!("{unsettled} step(s) did not settle within 180 s");
        std::process::exit(1);
    }
}

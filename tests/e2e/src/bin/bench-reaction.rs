//! `make bench`: how fast Shoal's metrics loop reacts to load changes, what it costs
//! Prometheus, and how it compares with the cluster's own HPA on CPU. A command that prints
//! figures, not a timed test; run it on a release build (`make bench` does).
//!
//! Phases (all by default; `--only` picks some):
//! * `steps`: a private Prometheus (2 s scrapes), the load simulator and `shoal run` with
//!   2 s ticks and 10 s windows; the request rate of one Microservice steps between a low
//!   and a high level, first with that Microservice alone, then with idle request-rate
//!   Microservices beside it (`--microservices 1,200`). Each scale write is timed by the
//!   apiserver's audit log (the write that made each change a watch saw), from the moment
//!   the bench sent the load change; ticks and queries come from the operator's own
//!   `/metrics` and from Prometheus's `prometheus_http_requests_total`.
//! * `cpu`: the same CPU load trace on two identical services, one scaled by the
//!   controller-manager's HPA controller, one by Shoal's loop (`shoal_e2e::cpubench`).
//! * `signal`: issue 10's figures (`shoal_e2e::signalbench`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;
use shoal::crd::Microservice;
use shoal_e2e::audit::{self, ScaleWriter};
use shoal_e2e::reaction::{TimedWrite, p50_p95, seconds_between, timed_writes};
use shoal_e2e::recorder::ReplicaRecorder;
use shoal_e2e::{LoadSim, Operator, Prometheus, TestBed, cpubench, testbed, wait_for};

const NS: &str = "bench";
const NAME: &str = "api";
const TARGET: f64 = 50.0;
const TICK_SECONDS: f64 = 2.0;
const SCRAPE_SECONDS: f64 = 2.0;
const SCALE_DOWN_WINDOW: u64 = 10;
const POLL: Duration = Duration::from_millis(100);
const QUERY_COUNTER: &str = "sum(prometheus_http_requests_total{handler=\"/api/v1/query\"})";

const USAGE: &str =
    "usage: bench-reaction [--cycles N] [--low RPS] [--high RPS] [--microservices LIST]
                      [--cpu-cycles N] [--cpu-hold SECONDS] [--only PHASES]

  --cycles N            low -> high -> low cycles, two load steps each (default 10: 20 steps)
  --low RPS             low load (default 30: 1 replica at 60% of its target)
  --high RPS            high load (default 375: 8 replicas at 94% of their target)
  --microservices LIST  Microservices in the steps' namespace, one round of --cycles each,
                        in this order (default 1,200: the measured one alone, then with 199
                        idle request-rate Microservices of 1 replica beside it)
  --cpu-cycles N        cycles of the CPU trace (4 steps each: 345m, 190m, 445m, 90m; default 2)
  --cpu-hold SECONDS    how long the CPU trace holds each level (default 60)
  --only PHASES         comma-separated subset of steps,cpu,signal (default all three)

Neither request-rate level sits on a multiple of the target (50 req/s per replica): at
exactly 400 req/s the count flips between 8 and 9 on the smallest noise, as the HPA's
ceil(value / target) would, and the steps would not settle.";

struct Args {
    cycles: usize,
    low: f64,
    high: f64,
    microservices: Vec<usize>,
    cpu_cycles: usize,
    cpu_hold: f64,
    only: BTreeSet<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cycles: 10,
        low: 30.0,
        high: 375.0,
        microservices: vec![1, 200],
        cpu_cycles: 2,
        cpu_hold: 60.0,
        only: ["steps", "cpu", "signal"].map(String::from).into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut text = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let positive = |name: &str, v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--cycles" => args.cycles = positive("--cycles", text("--cycles")?)? as usize,
            "--low" => args.low = positive("--low", text("--low")?)?,
            "--high" => args.high = positive("--high", text("--high")?)?,
            "--cpu-cycles" => {
                args.cpu_cycles = positive("--cpu-cycles", text("--cpu-cycles")?)? as usize
            }
            "--cpu-hold" => args.cpu_hold = positive("--cpu-hold", text("--cpu-hold")?)?,
            "--microservices" => {
                args.microservices = text("--microservices")?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n >= 1))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--microservices needs counts of at least 1, e.g. 1,200")?
            }
            "--only" => {
                args.only = text("--only")?
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .collect();
                if let Some(bad) = args
                    .only
                    .iter()
                    .find(|p| !["steps", "cpu", "signal"].contains(&p.as_str()))
                {
                    return Err(format!("unknown phase {bad}\n{USAGE}"));
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.cycles == 0 || args.cpu_cycles == 0 || args.low >= args.high {
        return Err(format!(
            "need --cycles >= 1, --cpu-cycles >= 1 and --low < --high\n{USAGE}"
        ));
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

/// An idle request-rate Microservice of one replica: it adds a service to every tick's
/// batched queries and nothing else.
fn idle_manifest(i: usize) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1
kind: Microservice
metadata: {{name: idle-{i:03}}}
spec:
  image: registry.example/idle:1
  resources: {{requests: {{cpu: 10m}}}}
  autoscaling: {{minReplicas: 1, maxReplicas: 1, requestRate: {{targetPerReplica: {TARGET}}}}}
---
"
    )
}

/// One measured step.
struct Step {
    /// When the bench sent the load change (this machine's clock, as the audit log's).
    changed: Timestamp,
    from: i32,
    up: bool,
    /// The count held for the scale-down window and 2 ticks with every replica ready and the rate window caught up.
    settled: bool,
    /// The writes until the next step: seconds from the load change (audit log) and the count written.
    writes: Vec<(f64, i32)>,
    /// Writes the audit log had no match for (timed by the watch).
    unaudited: usize,
}

impl Step {
    /// Seconds to the first write in the direction of the step (a write left over from the
    /// step before, such as a late scale-down at the start of a step up, does not count).
    fn first(&self) -> Option<f64> {
        let up = self.up;
        self.writes
            .iter()
            .find(|&&(_, r)| if up { r > self.from } else { r < self.from })
            .map(|w| w.0)
    }

    /// Seconds to the last write before the count held.
    fn last(&self) -> Option<f64> {
        self.writes.last().map(|w| w.0)
    }

    /// A write against the direction of the step: a scale-down during a step up (an
    /// overshoot taken back) or a scale-up during a step down (one the load did not ask for).
    fn reversed(&self) -> bool {
        let mut previous = self.from;
        self.writes.iter().any(|&(_, r)| {
            let against = if self.up { r < previous } else { r > previous };
            previous = r;
            against
        })
    }

    fn show(&self) -> String {
        let path: Vec<String> = std::iter::once(self.from)
            .chain(self.writes.iter().map(|w| w.1))
            .map(|r| r.to_string())
            .collect();
        let times = match (self.first(), self.last()) {
            (Some(first), Some(last)) => {
                format!("first write {first:5.2} s, last write {last:5.2} s")
            }
            _ => "no scale write in its direction".to_string(),
        };
        let mut notes = Vec::new();
        if self.reversed() {
            notes.push(if self.up {
                "overshoot taken back".to_string()
            } else {
                "scaled up again on a falling load".to_string()
            });
        }
        if !self.settled {
            notes.push("did not settle within 180 s".to_string());
        }
        if self.unaudited > 0 {
            notes.push(format!("{} write(s) timed by the watch", self.unaudited));
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
}

struct Bench<'a> {
    bed: &'a TestBed,
    recorder: ReplicaRecorder,
    microservices: Api<Microservice>,
    deployments: Api<Deployment>,
}

impl Bench<'_> {
    /// The total request rate in the Microservice's status.
    async fn status_rate(&self) -> Option<f64> {
        let ms = self.microservices.get_opt(NAME).await.ok().flatten()?;
        ms.status?.autoscaler?.request_rate?.current
    }

    /// Steps the load to `rps` and waits until the count holds for the scale-down window and
    /// 2 ticks, with every replica ready and the rate in the status within 5% of the load (so
    /// the next step starts from a settled state). The writes are filled in by [`Bench::time`].
    async fn step(&self, sim: &LoadSim, rps: f64, up: bool) -> Step {
        let from = self.recorder.last().map_or(-1, |s| s.replicas);
        let changed = Timestamp::now();
        sim.set_load(NAME, rps);
        let t0 = Instant::now();
        let mut step = Step {
            changed,
            from,
            up,
            settled: false,
            writes: Vec::new(),
            unaudited: 0,
        };
        let mut current = from;
        let mut last_change = t0;
        let mut wrote = false;
        // Longer than the scale-down window, so that a scale-down still to come is waited for.
        let quiet = Duration::from_secs_f64(SCALE_DOWN_WINDOW as f64 + 2.0 * TICK_SECONDS);
        while t0.elapsed() < Duration::from_secs(180) {
            if let Some(s) = self.recorder.last() {
                if s.replicas != current {
                    current = s.replicas;
                    last_change = Instant::now();
                    wrote = true;
                } else if last_change.elapsed() >= quiet
                    && s.ready == s.replicas
                    && (wrote || t0.elapsed() >= Duration::from_secs(30))
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

    /// Fills in each step's writes from the audit log: every change the watch saw until the
    /// next step, timed by the write that made it.
    fn time(&self, steps: &mut [Step], end: Timestamp) {
        let writes = audit::replica_writes(
            &self.bed.audit_log(),
            NS,
            NAME,
            ScaleWriter::ShoalAutoscaler,
        );
        let timed: Vec<TimedWrite> = timed_writes(&self.recorder.samples(), &writes);
        let starts: Vec<Timestamp> = steps.iter().map(|s| s.changed).collect();
        for (i, step) in steps.iter_mut().enumerate() {
            let until = starts.get(i + 1).copied().unwrap_or(end);
            let mine: Vec<&TimedWrite> = timed
                .iter()
                .filter(|w| w.at >= step.changed && w.at < until)
                .collect();
            step.writes = mine
                .iter()
                .map(|w| (seconds_between(step.changed, w.at), w.to))
                .collect();
            step.unaudited = mine.iter().filter(|w| !w.audited).count();
        }
    }

    /// Creates idle Microservices until the namespace holds `count` (the measured one
    /// included) and waits until each has a ready replica.
    async fn grow_to(&self, count: usize) {
        let yaml: String = (1..count).map(idle_manifest).collect();
        if yaml.is_empty() {
            return;
        }
        let out = self
            .bed
            .kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(
            &format!("{count} ready Deployments in {NS}"),
            Duration::from_secs(600),
            || async {
                let list = self.deployments.list(&ListParams::default()).await.ok()?;
                let ready = list
                    .items
                    .iter()
                    .filter(|d| {
                        d.status
                            .as_ref()
                            .and_then(|s| s.ready_replicas)
                            .is_some_and(|r| r >= 1)
                    })
                    .count();
                (ready >= count).then_some(())
            },
        )
        .await;
    }
}

/// The operator's ticks and queries, and Prometheus's query counter.
struct Counters {
    ticks: Option<f64>,
    queries: Option<f64>,
    served: Option<f64>,
}

fn counters(operator: &Operator, prometheus: &Prometheus) -> Counters {
    Counters {
        ticks: operator.metric("shoal_autoscaler_ticks_total", &[]),
        queries: operator.metric("shoal_metric_queries_total", &[]),
        served: prometheus.query_value(QUERY_COUNTER),
    }
}

/// One round of steps with `microservices` Microservices in the namespace.
struct Round {
    microservices: usize,
    up_first: Vec<f64>,
    up_last: Vec<f64>,
    down_first: Vec<f64>,
    down_last: Vec<f64>,
    reversals: (usize, usize),
    unsettled: usize,
    unaudited: usize,
    seconds: f64,
    ticks: Option<f64>,
    queries: Option<f64>,
    served: Option<f64>,
}

impl Round {
    fn per_tick(&self, n: Option<f64>) -> String {
        match (n, self.ticks) {
            (Some(n), Some(t)) if t > 0.0 => format!("{:.2} ({n:.0} / {t:.0} ticks)", n / t),
            _ => "not read".to_string(),
        }
    }
}

async fn steps_phase(bed: &TestBed, args: &Args) -> Vec<Round> {
    let high_replicas = (args.high / TARGET).ceil() as i32;
    let low_replicas = ((args.low / TARGET).ceil() as i32).max(1);
    bed.kubectl_ok(&["create", "namespace", NS]);
    let prometheus = Prometheus::start(bed, NS);
    let sim = LoadSim::start(bed, NS, &prometheus.sd_dir, 0.0);
    let operator_flags = shoal_e2e::fast_loop_flags(&SCALE_DOWN_WINDOW.to_string());
    let flags: Vec<&str> = operator_flags.iter().map(String::as_str).collect();
    let operator = bed.operator_with_prometheus(NS, &prometheus.url(), &flags);
    let client = bed.client().await;
    let bench = Bench {
        bed,
        recorder: ReplicaRecorder::start(client.clone(), NS, NAME),
        microservices: Api::namespaced(client.clone(), NS),
        deployments: Api::namespaced(client, NS),
    };
    let out = bed.kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &manifest());
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "shoal run {} (operator log {})",
        operator_flags.join(" "),
        operator.log.display()
    );
    println!(
        "Microservice {NAME}: target {TARGET} req/s per replica, min 1, max 20, scale-up up to +1000% per 15 s, scale-down window {SCALE_DOWN_WINDOW} s"
    );
    println!(
        "steps: {} req/s ({low_replicas} replica) <-> {} req/s ({high_replicas} replicas, or {} within the 10% tolerance), {} cycles = {} steps per round",
        args.low,
        args.high,
        high_replicas - 1,
        args.cycles,
        args.cycles * 2
    );
    let mut rounds = Vec::new();
    for &count in &args.microservices {
        bench.grow_to(count).await;
        println!("-- round with {count} Microservice(s) in {NS} --");
        // Warm up at the low load.
        let warm = bench.step(&sim, args.low, false).await;
        if !warm.settled || bench.recorder.last().map(|s| s.replicas) != Some(low_replicas) {
            eprintln!(
                "the Microservice did not settle at {low_replicas} replica(s): see the operator log"
            );
            std::process::exit(1);
        }
        let before = counters(&operator, &prometheus);
        let measuring = Instant::now();
        let mut steps = Vec::new();
        for cycle in 1..=args.cycles {
            // Vary where the step lands within the 2 s scrape and tick cycles.
            tokio::time::sleep(Duration::from_millis(((cycle * 737) % 2000) as u64)).await;
            for up in [true, false] {
                let step = bench
                    .step(&sim, if up { args.high } else { args.low }, up)
                    .await;
                println!(
                    "cycle {cycle:>2} {} settled: replicas {}",
                    if up { "up  " } else { "down" },
                    bench.recorder.last().map_or(-1, |s| s.replicas)
                );
                steps.push(step);
            }
        }
        let seconds = measuring.elapsed().as_secs_f64();
        let end = Timestamp::now();
        // Let the last ticks' queries be scraped before reading the counters again.
        tokio::time::sleep(Duration::from_secs_f64(SCRAPE_SECONDS * 2.0)).await;
        let after = counters(&operator, &prometheus);
        // The audit log may trail the requests by a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
        bench.time(&mut steps, end);
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let mut round = Round {
            microservices: count,
            up_first: Vec::new(),
            up_last: Vec::new(),
            down_first: Vec::new(),
            down_last: Vec::new(),
            reversals: (0, 0),
            unsettled: 0,
            unaudited: 0,
            seconds,
            ticks: diff(after.ticks, before.ticks),
            queries: diff(after.queries, before.queries),
            // One of our own reads of the counter falls inside the difference.
            served: diff(after.served, before.served).map(|n| n - 1.0),
        };
        for (i, step) in steps.iter().enumerate() {
            println!(
                "cycle {:>2} {} {}",
                i / 2 + 1,
                if step.up { "up  " } else { "down" },
                step.show()
            );
            let (first, last, reversed) = if step.up {
                (
                    &mut round.up_first,
                    &mut round.up_last,
                    &mut round.reversals.0,
                )
            } else {
                (
                    &mut round.down_first,
                    &mut round.down_last,
                    &mut round.reversals.1,
                )
            };
            first.extend(step.first());
            last.extend(step.last());
            *reversed += usize::from(step.reversed());
            round.unsettled += usize::from(!step.settled);
            round.unaudited += step.unaudited;
        }
        print_round(&round, args.cycles);
        rounds.push(round);
    }
    rounds
}

fn print_round(round: &Round, cycles: usize) {
    println!(
        "== {} Microservice(s), {} load steps, {:.0} s ==",
        round.microservices,
        cycles * 2,
        round.seconds
    );
    println!(
        "step up, load change -> first scale write: {}",
        p50_p95(&round.up_first)
    );
    println!(
        "step up, load change -> last scale write: {}",
        p50_p95(&round.up_last)
    );
    println!(
        "step down, load change -> first scale write: {}",
        p50_p95(&round.down_first)
    );
    println!(
        "step down, load change -> last scale write: {}",
        p50_p95(&round.down_last)
    );
    println!(
        "writes against the step: {} of {cycles} up-steps (overshoot taken back), {} of {cycles} down-steps (scaled up again on a falling load); {} write(s) the audit log had no match for",
        round.reversals.0, round.reversals.1, round.unaudited
    );
    println!(
        "queries per tick: {} by the operator's shoal_metric_queries_total; {} served by Prometheus (/api/v1/query); ticks from shoal_autoscaler_ticks_total",
        round.per_tick(round.queries),
        round.per_tick(round.served)
    );
}

fn print_cpu(figures: &cpubench::CpuFigures) {
    println!(
        "== CPU trace: {} steps in {:.0} s, levels (millicores -> ideal replicas) {:?}, target {}m per replica ({}% of {}m), min {} max {}, scale-down stabilization {} s ==",
        figures.steps,
        figures.seconds,
        cpubench::levels(),
        cpubench::TARGET_MILLI,
        cpubench::TARGET_UTILIZATION,
        cpubench::REQUEST_MILLI,
        cpubench::MIN,
        cpubench::MAX,
        cpubench::SCALE_DOWN_WINDOW
    );
    println!(
        "| | {} | {} |",
        cpubench::CONTENDERS[0].label,
        cpubench::CONTENDERS[1].label
    );
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&cpubench::ContenderFigures) -> String| {
        println!(
            "| {name} | {} | {} |",
            f(&figures.contenders[0]),
            f(&figures.contenders[1])
        );
    };
    row("up-steps: load change -> first write up", &|c| {
        p50_p95(&c.up)
    });
    row("down-steps: load change -> first write down", &|c| {
        p50_p95(&c.down)
    });
    row("steps with no write in their direction", &|c| {
        c.missed.to_string()
    });
    row("replica-seconds / ideal", &|c| {
        format!(
            "{:.0} / {:.0} = {:.2}x",
            c.replica_seconds,
            c.ideal_replica_seconds,
            c.replica_seconds / c.ideal_replica_seconds
        )
    });
    row("seconds under capacity (ready x target < L)", &|c| {
        format!("{:.1} s", c.under_capacity_seconds)
    });
    row("scale writes (audit log; timed by the watch)", &|c| {
        format!("{} ({})", c.writes, c.unaudited)
    });
    row("replicas", &|c| format!("{:?}", c.path));
    let levels: Vec<f64> = std::iter::repeat_n(cpubench::CYCLE, figures.steps / 4)
        .flatten()
        .collect();
    for (i, level) in levels.iter().enumerate() {
        row(
            &format!(
                "step {} to {level}m: counts written, s under capacity",
                i + 1
            ),
            &|c| {
                c.steps.get(i).map_or("-".to_string(), |(path, under)| {
                    format!("{path:?}, {under:.1} s")
                })
            },
        );
    }
    match figures.ticks_and_queries {
        Some((ticks, queries)) if ticks > 0.0 => println!(
            "Shoal's loop in the CPU namespace: {queries:.0} queries in {ticks:.0} ticks = {:.2} per tick",
            queries / ticks
        ),
        _ => println!("Shoal's loop in the CPU namespace: ticks or queries not read"),
    }
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
    let started = Instant::now();
    println!("bench-reaction: starting the local control plane...");
    let bed = testbed();
    let mut failed = false;
    let mut raw = serde_json::Map::new();
    let rounds = if args.only.contains("steps") {
        steps_phase(bed, &args).await
    } else {
        Vec::new()
    };
    for r in &rounds {
        failed |= r.unsettled > 0;
        raw.insert(
            format!("steps_{}_microservices", r.microservices),
            serde_json::json!({
                "up_first_write_seconds": r.up_first,
                "up_last_write_seconds": r.up_last,
                "down_first_write_seconds": r.down_first,
                "down_last_write_seconds": r.down_last,
                "ticks": r.ticks, "queries": r.queries, "served": r.served,
            }),
        );
    }
    let cpu = if args.only.contains("cpu") {
        println!("-- CPU side-by-side: HPA against Shoal's loop --");
        let figures =
            cpubench::side_by_side(bed, args.cpu_cycles, Duration::from_secs_f64(args.cpu_hold))
                .await;
        print_cpu(&figures);
        for (c, f) in cpubench::CONTENDERS.iter().zip(&figures.contenders) {
            raw.insert(
                format!("cpu_{}", c.name),
                serde_json::json!({"up": f.up, "down": f.down, "path": f.path}),
            );
        }
        Some(figures)
    } else {
        None
    };
    let signal = if args.only.contains("signal") {
        // Issue 10: writes under a noisy constant load, and cost and shortfall over the demo's trace.
        let noise =
            shoal_e2e::signalbench::noisy_constant_load(bed, 375.0, 10.0, Duration::from_secs(120))
                .await;
        let trace = shoal_e2e::signalbench::load_trace(bed).await;
        Some((noise, trace))
    } else {
        None
    };

    println!();
    println!("== results ==");
    println!(
        "settings: metrics-loop tick {TICK_SECONDS} s, Prometheus scrape interval {SCRAPE_SECONDS} s, rate window 10 s, burst window 10 s (irate), load simulator tick 250 ms; scale writes timed by the apiserver's audit log (ResponseComplete), load changes by this process's clock when it sent them"
    );
    for r in &rounds {
        print_round(r, args.cycles);
    }
    if let Some(figures) = &cpu {
        print_cpu(figures);
    }
    if let Some((noise, trace)) = &signal {
        println!(
            "noisy constant load {} req/s +-{}%, scale-down window 0 s: {} scale writes in {:.0} s after settling = {:.2} per minute (replicas {:?})",
            noise.load,
            noise.noise_percent,
            noise.writes,
            noise.measured_seconds,
            noise.per_minute(),
            noise.path
        );
        println!(
            "demo load trace ({:.0} s, 20 s scale-down window): {:.0} replica-seconds against {:.0} ideal (ceil(load / target)) = {:.2}x; ready capacity below the offered load for {:.1} s (replicas {:?})",
            trace.seconds,
            trace.replica_seconds,
            trace.ideal_replica_seconds,
            trace.replica_seconds / trace.ideal_replica_seconds,
            trace.under_capacity_seconds,
            trace.path
        );
    }
    println!(
        "machine: {} cores; whole run {:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    println!("raw: {}", Value::Object(raw));
    if failed {
        println!("some step(s) did not settle within 180 s");
        std::process::exit(1);
    }
}

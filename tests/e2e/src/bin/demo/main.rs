//! `make demo`: Shoal's whole story in one command.
//!
//! Starts the local control plane of tests/cluster (through the end-to-end harness), runs
//! `shoal` on namespace `demo`, offers a request-rate load through the load simulator and
//! shows, one line per 2 s tick, how Shoal scales a Microservice with it; then a rollout, a
//! broken rollout that Shoal rolls back by itself, and a `kubectl rollout undo` that Shoal
//! honours. It ends with a picture of load, capacity and replicas over time and keeps the
//! cluster up until Ctrl-C (`--exit` stops at the end instead).

mod plot;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_e2e::{LoadSim, Operator, TestBed, repo_root, testbed};

use plot::Point;

const NS: &str = "demo";
const NAME: &str = "shop";
const TARGET: f64 = 50.0;
const MAX_REPLICAS: i64 = 10;
/// The loads sit in the middle of a replica count (5.5, 8.5 and 0.6 replicas' worth), never
/// on a multiple of the target, where the smallest noise flips the count (ceil(450.01 / 50)
/// is 10), as the HPA's formula does.
const HOLD: f64 = 275.0;
const SPIKE: f64 = 425.0;
/// The load after the spike and during the rollouts: 1 replica, well inside its target.
const QUIET: f64 = 30.0;
const TICK: Duration = Duration::from_secs(2);
/// Fast metrics-loop settings: 2 s ticks and 10 s rate windows (Prometheus scrapes every 2 s),
/// with a 20 s scale-down window instead of the default 300 s.
const CONDITION_ORDER: [&str; 7] = [
    "Ready",
    "Progressing",
    "Degraded",
    "RolledBack",
    "AbleToScale",
    "ScalingActive",
    "ScalingLimited",
];

const USAGE: &str = "usage: demo [--exit] [--fast] [--out PATH]

  --exit       run the scenario to completion and exit (non-zero when a step did not happen)
               instead of keeping the cluster up until Ctrl-C
  --fast       shorter load phases (for the test)
  --out PATH   where to write the picture (SVG); the series goes next to it as .csv
               (default: target/demo/shoal-demo.svg)";

struct Args {
    exit: bool,
    fast: bool,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        exit: false,
        fast: false,
        out: repo_root().join("target/demo/shoal-demo.svg"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--exit" => args.exit = true,
            "--fast" => args.fast = true,
            "--out" => args.out = it.next().ok_or("--out needs a path")?.into(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    status: String,
    reason: String,
    message: String,
}

/// What one tick saw.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// Total request rate in the Microservice's status.
    rate: Option<f64>,
    /// The Deployment's spec.replicas (-1 when there is no Deployment yet).
    desired: i64,
    ready: i64,
    image: String,
    conditions: BTreeMap<String, Condition>,
    /// `status.rollout.canary.phase` and `.weight`, during and after a canary.
    canary: Option<(String, i64)>,
}

impl Sample {
    fn condition_is(&self, type_: &str, status: &str, reason: &str) -> bool {
        self.conditions
            .get(type_)
            .is_some_and(|c| c.status == status && c.reason == reason)
    }

    fn condition_message(&self, type_: &str) -> &str {
        self.conditions
            .get(type_)
            .map_or("", |c| c.message.as_str())
    }
}

/// Reads the Microservice and its Deployment in one kubectl call.
fn sample(bed: &TestBed) -> Sample {
    let out = bed.kubectl(&[
        "get",
        "-n",
        NS,
        &format!("microservice/{NAME}"),
        &format!("deployment/{NAME}"),
        "-o",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let items: Vec<Value> = match json.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ if json.is_object() => vec![json],
        _ => vec![],
    };
    let mut s = Sample {
        desired: -1,
        ..Sample::default()
    };
    for item in &items {
        match item["kind"].as_str() {
            Some("Microservice") => {
                s.rate = item
                    .pointer("/status/autoscaler/requestRate/current")
                    .and_then(Value::as_f64);
                s.canary = item.pointer("/status/rollout/canary").map(|c| {
                    (
                        c["phase"].as_str().unwrap_or_default().to_string(),
                        c["weight"].as_i64().unwrap_or(0),
                    )
                });
                for c in item
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                    s.conditions.insert(
                        text("type"),
                        Condition {
                            status: text("status"),
                            reason: text("reason"),
                            message: text("message"),
                        },
                    );
                }
            }
            Some("Deployment") => {
                s.desired = item
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(-1);
                s.ready = item
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                s.image = item
                    .pointer("/spec/template/spec/containers/0/image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
            }
            _ => {}
        }
    }
    s
}

/// The scenario's state: the load, the series, what went wrong.
struct Demo {
    bed: &'static TestBed,
    sim: LoadSim,
    started: Instant,
    next_tick: Instant,
    load: f64,
    phase: &'static str,
    last: Sample,
    points: Vec<Point>,
    problems: Vec<String>,
}

fn clock(t: f64) -> String {
    let t = t.max(0.0) as u64;
    format!("{}:{:02}", t / 60, t % 60)
}

impl Demo {
    fn set_load(&mut self, rps: f64) {
        let rps = (rps / 5.0).round() * 5.0;
        if (rps - self.load).abs() > f64::EPSILON {
            self.sim.set_load(NAME, rps);
            self.load = rps;
        }
    }

    fn banner(&self, text: &str) {
        println!(
            "\n── {} {text} {}",
            clock(self.started.elapsed().as_secs_f64()),
            "─".repeat(70usize.saturating_sub(text.chars().count()))
        );
    }

    /// One tick: sample, print one line and the conditions that changed, record the point.
    fn tick(&mut self) -> Sample {
        let t = self.started.elapsed().as_secs_f64();
        let s = sample(self.bed);
        let per_replica = match (s.rate, s.ready) {
            (Some(rate), ready) if ready > 0 => format!("{:6.1}", rate / ready as f64),
            _ => "     -".to_string(),
        };
        let bar: String = "▮".repeat(s.ready.clamp(0, 20) as usize);
        let canary = match &s.canary {
            Some((phase, weight)) if phase == "Progressing" || phase == "Paused" => {
                format!("  canary {weight}% ({phase})")
            }
            _ => String::new(),
        };
        println!(
            "{:>5}  {:<8} {:>5.0} req/s  {} / {:.0} req/s per replica  desired {:>2}  ready {:>2} {bar}{canary}",
            clock(t),
            self.phase,
            self.load,
            per_replica,
            TARGET,
            s.desired.max(0),
            s.ready,
        );
        let changed: Vec<&str> = CONDITION_ORDER
            .iter()
            .copied()
            .filter(|c| s.conditions.get(*c) != self.last.conditions.get(*c))
            .collect();
        for type_ in changed {
            if let Some(c) = s.conditions.get(type_) {
                let was = self
                    .last
                    .conditions
                    .get(type_)
                    .map(|p| format!(" (was {} {})", p.status, p.reason))
                    .unwrap_or_default();
                println!(
                    "{:>16} {type_}={} {}{was}: {}",
                    "↳", c.status, c.reason, c.message
                );
            }
        }
        self.points.push(Point {
            t,
            phase: self.phase,
            offered: self.load,
            observed: s.rate,
            desired: s.desired,
            ready: s.ready,
            image: s.image.clone(),
            canary_weight: s
                .canary
                .as_ref()
                .filter(|c| c.0 == "Progressing" || c.0 == "Paused")
                .map(|c| c.1),
        });
        self.last = s.clone();
        s
    }

    /// Runs a phase: the load follows `load(seconds into the phase)`, one tick every 2 s.
    /// Ends after `min` once `until` holds for a tick, or at `max` (then `failure` is recorded
    /// and false returned).
    fn phase(
        &mut self,
        name: &'static str,
        min: Duration,
        max: Duration,
        load: impl Fn(f64) -> f64,
        until: impl Fn(&Sample) -> bool,
        failure: &str,
    ) -> bool {
        self.phase = name;
        let start = Instant::now();
        loop {
            let elapsed = start.elapsed();
            self.set_load(load(elapsed.as_secs_f64()));
            if Instant::now() >= self.next_tick {
                let s = self.tick();
                self.next_tick += TICK;
                if self.next_tick < Instant::now() {
                    self.next_tick = Instant::now() + TICK;
                }
                if elapsed >= min && until(&s) {
                    return true;
                }
                if elapsed >= max {
                    println!("  ✗ {failure} (waited {} s)", max.as_secs());
                    self.problems.push(failure.to_string());
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `kubectl args`, printing the command line.
    fn kubectl(&mut self, args: &[&str]) {
        println!("$ kubectl {}", args.join(" "));
        let out = self.bed.kubectl(args);
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            println!("  {line}");
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            println!("  ✗ kubectl failed: {err}");
            self.problems
                .push(format!("kubectl {} failed: {err}", args.join(" ")));
        }
    }

    fn set_image(&mut self, image: &str) {
        self.kubectl(&[
            "patch",
            "microservice",
            NAME,
            "-n",
            NS,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"image":"{image}"}}}}"#),
        ]);
    }
}

/// The fewest replicas the autoscaler may settle at for `load`: like the HPA, it leaves a
/// count alone while the load per replica is within 10% of the target.
fn settled_count(load: f64) -> i64 {
    (load / (TARGET * 1.1)).ceil() as i64
}

fn manifest() -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1
kind: Microservice
metadata: {{name: {NAME}}}
spec:
  image: registry.example/{NAME}:1.0
  config: {{GREETING: hello}}
  resources: {{requests: {{cpu: 100m}}}}
  autoscaling:
    minReplicas: 1
    maxReplicas: {MAX_REPLICAS}
    requestRate: {{targetPerReplica: {TARGET}}}
  rollout: {{progressDeadlineSeconds: 15}}
"
    )
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let (ok, running) = run(&args);
    if !args.exit {
        wait_for_ctrl_c();
    }
    drop(running);
    std::process::exit(if ok { 0 } else { 1 });
}

fn wait_for_ctrl_c() {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
        Err(_) => loop {
            std::thread::park();
        },
    }
    println!("\nstopping the cluster");
}

/// The whole scenario; false when a step did not happen.
fn run(args: &Args) -> (bool, Running) {
    let scale = if args.fast { 0.6 } else { 1.0 };
    let secs = |s: f64| Duration::from_secs_f64(s * scale);
    let begun = Instant::now();
    println!("Shoal demo");
    println!(
        "starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK, metrics-server, Prometheus) and installing the CRD..."
    );
    let _ = std::io::stdout().flush();
    let bed = testbed();
    bed.kubectl_ok(&["create", "namespace", NS]);
    println!("namespace {NS} created");
    let operator_flags = shoal_e2e::fast_loop_flags("20");
    let flags: Vec<&str> = operator_flags.iter().map(String::as_str).collect();
    println!(
        "starting shoal run --namespace {NS} {}",
        operator_flags.join(" ")
    );
    let operator = bed.operator(NS, &flags);
    println!("  operator log: {}", operator.log.display());
    println!("starting the load simulator (per-pod request counters, scraped every 2 s)");
    let sim = LoadSim::start(bed, NS, &bed.prometheus_sd_dir, 2.0);
    println!("applying the Microservice:\n");
    let yaml = manifest();
    for line in yaml.lines() {
        println!("    {line}");
    }
    let out = bed.kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "\nready after {:.0} s. One line per metrics-loop tick (2 s); ↳ lines are Microservice conditions that changed.",
        begun.elapsed().as_secs_f64()
    );

    let mut demo = Demo {
        bed,
        sim,
        started: Instant::now(),
        next_tick: Instant::now(),
        load: -1.0,
        phase: "warm-up",
        last: Sample::default(),
        points: Vec::new(),
        problems: Vec::new(),
    };

    // 1. Load: warm-up, ramp, hold, spike, quiet.
    demo.banner("warm-up: 25 req/s until Shoal reads the rate from Prometheus");
    demo.phase(
        "warm-up",
        secs(4.0),
        Duration::from_secs(90),
        |_| 25.0,
        |s| {
            s.rate.is_some()
                && s.ready >= 1
                && s.conditions
                    .get("Ready")
                    .is_some_and(|c| c.status == "True")
        },
        "the Microservice did not become Ready with a request rate in its status",
    );
    let ramp = 40.0 * scale;
    demo.banner(&format!("ramp: 25 -> {HOLD} req/s over {ramp:.0} s"));
    demo.phase(
        "ramp",
        Duration::from_secs_f64(ramp),
        Duration::from_secs_f64(ramp),
        |t| 25.0 + (HOLD - 25.0) * (t / ramp).min(1.0),
        |_| true,
        "",
    );
    demo.banner(&format!(
        "hold: {HOLD} req/s (6 replicas, or {} within the 10% tolerance)",
        settled_count(HOLD)
    ));
    demo.phase(
        "hold",
        secs(16.0),
        Duration::from_secs(60),
        |_| HOLD,
        |s| s.desired >= settled_count(HOLD) && s.ready >= s.desired,
        "the hold load did not scale to 6 ready replicas (or 5, within the tolerance)",
    );
    demo.banner(&format!(
        "spike: {SPIKE} req/s (9 replicas, or {} within the 10% tolerance)",
        settled_count(SPIKE)
    ));
    demo.phase(
        "spike",
        secs(16.0),
        Duration::from_secs(60),
        |_| SPIKE,
        |s| s.desired >= settled_count(SPIKE) && s.ready >= s.desired,
        "the spike did not scale to 9 ready replicas (or 8, within the tolerance)",
    );
    demo.banner(&format!(
        "quiet: {QUIET} req/s; Shoal scales down after its 20 s scale-down window"
    ));
    let dropped = Instant::now();
    if demo.phase(
        "quiet",
        secs(10.0),
        Duration::from_secs(120),
        |_| QUIET,
        |s| s.desired == 1 && s.ready == 1,
        "the quiet period did not scale back down to 1 replica",
    ) {
        println!(
            "  scaled back to 1 replica {:.0} s after the load dropped",
            dropped.elapsed().as_secs_f64()
        );
    }

    // 2. Rollouts, with the load held at the quiet level.
    demo.banner("rollout: a new image");
    demo.set_image(&format!("registry.example/{NAME}:1.1"));
    let v11 = format!("registry.example/{NAME}:1.1");
    demo.phase(
        "rollout",
        Duration::ZERO,
        Duration::from_secs(90),
        |_| QUIET,
        |s| {
            s.image == v11
                && s.condition_is("Progressing", "True", "NewRevisionAvailable")
                && s.condition_message("Progressing").contains(&v11)
        },
        "the rollout of :1.1 did not reach Progressing=True NewRevisionAvailable",
    );

    demo.banner("broken rollout: image :broken never becomes Ready (progressDeadlineSeconds 15)");
    demo.set_image(&format!("registry.example/{NAME}:broken"));
    let rolled_back = demo.phase(
        "broken",
        Duration::ZERO,
        Duration::from_secs(120),
        |_| QUIET,
        |s| {
            s.condition_is("Degraded", "True", "ProgressDeadlineExceeded")
                && s.condition_is("RolledBack", "True", "ProgressDeadlineExceeded")
                && s.image == v11
                && s.ready >= 1
        },
        "Shoal did not report Degraded=True and RolledBack=True (ProgressDeadlineExceeded) with :1.1 restored",
    );
    if rolled_back {
        println!(
            "  Shoal rolled back to :1.1 by itself; it will not retry :broken until the spec changes"
        );
    }

    demo.banner("roll forward: a fixed image :1.2");
    demo.set_image(&format!("registry.example/{NAME}:1.2"));
    let v12 = format!("registry.example/{NAME}:1.2");
    demo.phase(
        "fix",
        Duration::ZERO,
        Duration::from_secs(90),
        |_| QUIET,
        |s| {
            s.image == v12
                && s.condition_is("Progressing", "True", "NewRevisionAvailable")
                && s.condition_message("Progressing").contains(&v12)
        },
        "the rollout of :1.2 did not reach Progressing=True NewRevisionAvailable",
    );

    demo.banner("manual rollback: kubectl rollout undo (Shoal honours it, never reverts it)");
    demo.kubectl(&["rollout", "undo", &format!("deployment/{NAME}"), "-n", NS]);
    let undone = demo.phase(
        "undo",
        Duration::ZERO,
        Duration::from_secs(60),
        |_| QUIET,
        |s| s.condition_is("RolledBack", "True", "ManualRollback") && s.image == v11,
        "Shoal did not report RolledBack=True ManualRollback with :1.1 live",
    );
    if undone {
        demo.phase("undo", secs(8.0), secs(8.0), |_| QUIET, |_| true, "");
        if demo.last.image == v11 {
            println!("  the undone revision (:1.1) is kept: Shoal does not put :1.2 back");
        } else {
            println!(
                "  ✗ Shoal replaced the undone revision with {}",
                demo.last.image
            );
            demo.problems
                .push("the manual rollback was reverted".to_string());
        }
    }

    // 3. Canary releases: a good image proves itself on a share of the traffic and is
    // promoted; a bad one (20% errors) is aborted by the analysis.
    demo.banner("canary: strategy Canary, image :2.0 gets 25% then 50% of the traffic");
    demo.kubectl(&[
        "patch",
        "microservice",
        NAME,
        "-n",
        NS,
        "--type=merge",
        "-p",
        &format!(
            r#"{{"spec":{{"image":"registry.example/{NAME}:2.0","rollout":{{"strategy":"Canary","canary":{{"steps":[{{"weight":25}},{{"pause":{{"duration":"10s"}}}},{{"weight":50}}],"analysis":{{"interval":"10s","failureLimit":2,"minRequests":20,"noDataTimeout":"90s"}}}}}}}}}}"#
        ),
    ]);
    let v20 = format!("registry.example/{NAME}:2.0");
    let promoted = demo.phase(
        "canary",
        Duration::ZERO,
        Duration::from_secs(150),
        |_| QUIET,
        |s| {
            s.image == v20
                && s.canary.as_ref().is_some_and(|c| c.0 == "Promoted")
                && s.condition_is("Progressing", "True", "NewRevisionAvailable")
        },
        "the canary of :2.0 was not promoted",
    );
    let weights: std::collections::BTreeSet<i64> = demo
        .points
        .iter()
        .filter(|p| p.phase == "canary")
        .filter_map(|p| p.canary_weight)
        .collect();
    if promoted {
        println!("  canary promoted: :2.0 is the stable revision (weights seen: {weights:?})");
    }
    demo.banner("bad canary: image :bad answers 20% of its requests with 500");
    demo.set_image(&format!("registry.example/{NAME}:bad"));
    let aborted = demo.phase(
        "bad canary",
        Duration::ZERO,
        Duration::from_secs(120),
        |_| QUIET,
        |s| {
            s.condition_is("RolledBack", "True", "CanaryAnalysisFailed")
                && s.canary.as_ref().is_some_and(|c| c.0 == "Aborted")
                && s.image == v20
        },
        "the bad canary was not aborted with RolledBack=True CanaryAnalysisFailed",
    );
    if aborted {
        println!("  canary aborted: :2.0 kept serving; :bad is not retried until the spec changes");
    }

    // 4. The picture and the summary.
    let peak = demo.points.iter().map(|p| p.desired).max().unwrap_or(0);
    let finished = demo.started.elapsed().as_secs_f64();
    let csv = args.out.with_extension("csv");
    let drawn = write_outputs(&args.out, &csv, &demo.points);
    println!();
    println!("{}", "─".repeat(80));
    match drawn {
        Ok(()) => {
            println!("picture: {}", display(&args.out));
            println!("series:  {}", display(&csv));
        }
        Err(e) => {
            println!("✗ could not write the picture: {e:#}");
            demo.problems.push(format!("picture: {e:#}"));
        }
    }
    println!(
        "scenario: {:.0} s ({:.0} s with start-up); peak {peak} replicas, now {} ({})",
        finished,
        begun.elapsed().as_secs_f64(),
        demo.last.desired,
        demo.last.image
    );
    if demo.problems.is_empty() {
        println!("every step happened as expected");
    } else {
        println!("✗ {} step(s) did not happen:", demo.problems.len());
        for p in &demo.problems {
            println!("  - {p}");
        }
    }
    if !args.exit {
        println!("\nThe cluster stays up until Ctrl-C. In another terminal:");
        println!(
            "export KUBECONFIG={} PATH={}:$PATH",
            bed.kubeconfig.display(),
            bed.bin.display()
        );
        println!("kubectl get ms,deploy,pods -n {NS}; kubectl describe ms {NAME} -n {NS}");
        println!(
            "(the load stays at {QUIET} req/s; the operator log is {})",
            operator.log.display()
        );
    }
    let _ = std::io::stdout().flush();
    (
        demo.problems.is_empty(),
        Running {
            _operator: operator,
            _sim: demo.sim,
        },
    )
}

/// What must stay alive while the cluster is kept up: dropping it stops them.
struct Running {
    _operator: Operator,
    _sim: LoadSim,
}

fn display(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn write_outputs(svg: &Path, csv: &Path, points: &[Point]) -> anyhow::Result<()> {
    if let Some(dir) = svg.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    plot::write_csv(csv, points, TARGET)?;
    plot::draw_svg(svg, points, TARGET, MAX_REPLICAS)?;
    Ok(())
}

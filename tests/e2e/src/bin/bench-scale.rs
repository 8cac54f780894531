//! `make bench-scale N=1000`: what Shoal costs the apiserver and itself with many
//! Microservices, against a bare client writing the same children. A command that prints
//! figures (run on a release build), not a timed test.
//!
//! On the local control plane, for each round (alternating, so machine noise hits both):
//! - **Shoal**: `shoal run` for a fresh namespace; N Microservices of the
//!   `web-with-ingress` shape (0 replicas by default, so the scheduler is not what is
//!   measured) are applied through one client, `--concurrency` at a time; watches record
//!   when every child exists and when every Microservice is Ready. Then the operator's writes
//!   per Microservice by verb and resource (from the apiserver's audit log), its resident
//!   memory and its peak (`process_*` on its /metrics), CPU seconds per Microservice, and a
//!   restart: the new process's writes (should be 0), its peak memory and when it is quiet.
//! - **Bare writer**: the same children (Shoal's own renderer, owner references removed)
//!   applied by the same kind of client with the same concurrency in another fresh
//!   namespace; watches record when every child exists.
//!
//! Prints one table; the ratio Shoal / bare writer is the figure that machine speed does
//! not move.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal::crd::Microservice;
use shoal_e2e::{TestBed, audit, openmetrics, sibling_bin, testbed};

const USAGE: &str = "usage: bench-scale [--count N] [--rounds R] [--concurrency C] [--replicas K]

  --count N        Microservices per run (default 1000)
  --rounds R       alternating rounds of Shoal and the bare writer (default 2)
  --concurrency C  writes in flight from the creating client (default 32)
  --replicas K     spec.replicas of each Microservice (default 0: no pods to schedule)
  --only WHO       run only `shoal` or only `bare` (a memory run at 10,000: no ratio)

The operator takes its settings from the environment (SHOAL_CONCURRENCY=32, say);
BENCH_SHOAL_LOG sets its log filter (shoal=debug logs what each status write changed);
BENCH_SHOAL_BIN the operator's binary (default: `shoal` beside this one; `make bench-scale`
gives it the build the image ships, profile `dist`).";

struct Args {
    count: usize,
    rounds: usize,
    concurrency: usize,
    replicas: i32,
    /// Only Shoal's rounds (Some(true)) or only the bare writer's (Some(false)).
    only: Option<bool>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        count: 1000,
        rounds: 2,
        concurrency: 32,
        replicas: 0,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(format!("{name} needs a whole number"))
        };
        match arg.as_str() {
            "--count" => args.count = value("--count")?,
            "--rounds" => args.rounds = value("--rounds")?,
            "--concurrency" => args.concurrency = value("--concurrency")?,
            "--replicas" => args.replicas = value("--replicas")? as i32,
            "--only" => {
                args.only = match it.next().as_deref() {
                    Some("shoal") => Some(true),
                    Some("bare") => Some(false),
                    _ => return Err(format!("--only takes shoal or bare\n{USAGE}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.count == 0 || args.rounds == 0 || args.concurrency == 0 {
        return Err(format!(
            "--count, --rounds and --concurrency must be positive\n{USAGE}"
        ));
    }
    Ok(args)
}

/// The `web-with-ingress` example as Microservice `name`.
fn microservice(name: &str, replicas: i32) -> Microservice {
    let example = std::fs::read_to_string(
        shoal_e2e::repo_root().join("manifests/examples/web-with-ingress.yaml"),
    )
    .expect("manifests/examples/web-with-ingress.yaml");
    let mut ms: Microservice = serde_yaml::from_str(&example).expect("example parses");
    ms.metadata.name = Some(name.to_string());
    ms.spec.replicas = Some(replicas);
    if let Some(ingress) = ms.spec.ingress.as_mut() {
        ingress.host = format!("{name}.example.com");
    }
    ms
}

fn names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("svc-{i:05}")).collect()
}

/// Applies `object` with server-side apply as `manager`.
async fn apply<K>(api: &Api<K>, object: &K, manager: &str)
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().expect("name");
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// Seconds from `start` until a watch of `K` in `ns` has seen `target` distinct objects
/// passing `done` (None if `limit` passed first).
fn watch_until<K>(
    client: &Client,
    ns: &str,
    target: usize,
    start: Instant,
    limit: Duration,
    done: fn(&K) -> bool,
) -> tokio::task::JoinHandle<Option<f64>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .try_filter_map(|o: K| async move { Ok(done(&o).then(|| o.name_any())) });
        let mut stream = Box::pin(stream);
        let counted = tokio::time::timeout(limit, async {
            while let Some(Ok(name)) = stream.next().await {
                let mut seen = seen.lock().expect("lock");
                seen.insert(name);
                if seen.len() >= target {
                    return start.elapsed().as_secs_f64();
                }
            }
            f64::NAN
        })
        .await;
        counted.ok().filter(|s| s.is_finite())
    })
}

fn is_ready(ms: &Microservice) -> bool {
    ms.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn any<K>(_: &K) -> bool {
    true
}

/// The children of every kind the bare writer writes, per Microservice (the example's
/// nightly schedule is a CronJob), and a PodDisruptionBudget with `--replicas` 2 or more.
const KINDS: [&str; 5] = ["ConfigMap", "Deployment", "Service", "Ingress", "CronJob"];

/// Watches recording when every child of `count` Microservices exists.
fn watch_children(
    client: &Client,
    ns: &str,
    args: &Args,
    start: Instant,
    limit: Duration,
) -> Vec<tokio::task::JoinHandle<Option<f64>>> {
    let count = args.count;
    let mut watches = vec![
        watch_until::<ConfigMap>(client, ns, count, start, limit, |c| {
            c.name_any().contains("-config-")
        }),
        watch_until::<Deployment>(client, ns, count, start, limit, any),
        watch_until::<Service>(client, ns, count, start, limit, any),
        watch_until::<Ingress>(client, ns, count, start, limit, any),
        watch_until::<CronJob>(client, ns, count, start, limit, any),
    ];
    // A PodDisruptionBudget is rendered for services that can run 2+ replicas.
    if args.replicas >= 2 {
        watches.push(watch_until::<PodDisruptionBudget>(
            client, ns, count, start, limit, any,
        ));
    }
    watches
}

async fn slowest(handles: Vec<tokio::task::JoinHandle<Option<f64>>>) -> Option<f64> {
    let mut worst: Option<f64> = Some(0.0);
    for h in handles {
        let t = h.await.expect("watch task");
        worst = match (worst, t) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    worst
}

/// The longest wait for an operator to be quiet.
const QUIET_LIMIT: Duration = Duration::from_secs(120);

/// How long a round waits for every child and every Ready: 10 minutes, and at 10,000
/// Microservices a fifth of a second each (the test bed's controller-manager creates their
/// ReplicaSets at up to 100 requests/s, 20 before 2026-12-01, and shares the apiserver with
/// the creates).
fn wait_limit(count: usize) -> Duration {
    Duration::from_secs(600).max(Duration::from_millis(200) * count as u32)
}

/// How long after the operator is quiet its memory is read again: jemalloc returns freed
/// pages to the system over 1 s as the operator is built (`.cargo/config.toml`), over 10 s
/// with its default.
const SETTLE: Duration = Duration::from_secs(15);

/// A `shoal run` for one namespace, with its /metrics on a known port.
struct Operator {
    child: Child,
    metrics: String,
}

impl Operator {
    fn start(bed: &TestBed, ns: &str) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // Appended to: the restarted operator logs after the first one.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(bed.dir.join("logs").join(format!("bench-{ns}.log")))
            .expect("log");
        let binary = std::env::var_os("BENCH_SHOAL_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| sibling_bin("shoal"));
        let child = Command::new(&binary)
            .args(["run", "--namespace", ns])
            .env("KUBECONFIG", &bed.kubeconfig)
            .env(
                "SHOAL_LOG",
                std::env::var("BENCH_SHOAL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("SHOAL_PROMETHEUS_URL", &bed.prometheus_url)
            .env("SHOAL_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting shoal run");
        let op = Operator {
            child,
            metrics: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while op.metric("shoal_reconciles_total").is_none() {
            assert!(Instant::now() < deadline, "shoal did not serve /metrics");
            std::thread::sleep(Duration::from_millis(200));
        }
        op
    }

    /// Its /metrics text (None while it does not answer).
    fn scrape(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.metrics).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response.split("\r\n\r\n").nth(1)?.to_string())
    }

    /// One sample of its /metrics (None while it does not answer).
    fn metric(&self, name: &str) -> Option<f64> {
        openmetrics::value(&self.scrape()?, name, &[])
    }

    /// Waits until at least `reconciles` reconciles have run and then the operator sent no
    /// write to the apiserver (`shoal_kubernetes_requests_total` other than GET) for
    /// `quiet`; returns seconds waited. Writes, not reconciles: at 10,000 Microservices the
    /// periodic re-check reconciles ~30 a second and writes nothing, and the
    /// controller-manager's status updates wake reconciles that write nothing. A restarted
    /// operator reconciles every Microservice once, but only after its caches are listed,
    /// which at 10,000 takes longer than `quiet`: hence the count. Gives up after
    /// [`QUIET_LIMIT`].
    fn wait_quiet(&self, quiet: Duration, reconciles: f64) -> f64 {
        let start = Instant::now();
        let sample = || {
            let text = self.scrape()?;
            let requests = "shoal_kubernetes_requests_total";
            let writes = openmetrics::value(&text, requests, &[]).unwrap_or(0.0)
                - openmetrics::value(&text, requests, &[("method", "GET")]).unwrap_or(0.0);
            Some((
                writes,
                openmetrics::value(&text, "shoal_reconciles_total", &[]),
            ))
        };
        let mut last = sample();
        let mut since = Instant::now();
        let enough =
            |s: Option<(f64, Option<f64>)>| s.and_then(|(_, n)| n).is_some_and(|n| n >= reconciles);
        while (since.elapsed() < quiet || !enough(last)) && start.elapsed() < QUIET_LIMIT {
            std::thread::sleep(Duration::from_millis(500));
            let now = sample();
            if now.map(|(w, _)| w) != last.map(|(w, _)| w) || !enough(now) {
                since = Instant::now();
            }
            last = now;
        }
        (start.elapsed() - quiet).as_secs_f64()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Deletes a round's namespace and waits until it is gone: the garbage collector and the
/// namespace controller deleting 60,000 objects load the apiserver for minutes, and the
/// next round (the other contender's) must not run beside that.
fn delete_namespace(bed: &TestBed, ns: &str) {
    let started = Instant::now();
    let _ = bed.kubectl(&["delete", "namespace", ns, "--wait=true", "--timeout=1200s"]);
    eprintln!(
        "namespace {ns} deleted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn mib(bytes: Option<f64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1}", b / 1048576.0))
}

fn secs(s: Option<f64>) -> String {
    s.map_or("timeout".into(), |s| format!("{s:.1}"))
}

/// The operator's writes in `ns`, per Microservice, by verb and resource.
fn writes_per_microservice(bed: &TestBed, ns: &str, count: usize) -> (f64, BTreeMap<String, f64>) {
    let writes = audit::writes(&bed.audit_log(), ns, "shoal");
    let mut by_kind = BTreeMap::new();
    for w in &writes {
        let o = w.object_ref.as_ref().expect("object");
        let key = if o.subresource.is_empty() {
            format!("{} {}", w.verb, o.resource)
        } else {
            format!("{} {}/{}", w.verb, o.resource, o.subresource)
        };
        *by_kind.entry(key).or_insert(0.0) += 1.0 / count as f64;
    }
    (writes.len() as f64 / count as f64, by_kind)
}

async fn shoal_round(bed: &TestBed, client: &Client, args: &Args, round: usize) -> Vec<String> {
    let ns = bed.namespace(&format!("shoal-{round}"));
    let op = Operator::start(bed, &ns);
    let limit = wait_limit(args.count);
    let start = Instant::now();
    let children = watch_children(client, &ns, args, start, limit);
    let ready = watch_until::<Microservice>(client, &ns, args.count, start, limit, is_ready);
    let api: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    futures::stream::iter(names(args.count))
        .for_each_concurrent(args.concurrency, |name| {
            let api = api.clone();
            let ms = microservice(&name, args.replicas);
            async move { apply(&api, &ms, "bench").await }
        })
        .await;
    let created = start.elapsed().as_secs_f64();
    let children = slowest(children).await;
    let ready = ready.await.expect("watch task");
    let quiet = op.wait_quiet(Duration::from_secs(3), 0.0);
    let reconciles = op.metric("shoal_reconciles_total");
    let (per_ms, by_kind) = writes_per_microservice(bed, &ns, args.count);
    let rss = op.metric("process_resident_memory_bytes");
    let peak = op.metric("process_resident_memory_peak_bytes");
    let cpu = op.metric("process_cpu_seconds_total");
    // What stays once the allocator has returned the burst's freed pages (jemalloc decays
    // them over 10 s): the figure of a converged operator.
    std::thread::sleep(SETTLE);
    let settled = op.metric("process_resident_memory_bytes");
    let heap = op.metric("shoal_heap_allocated_bytes");
    op.stop();
    // A restart with everything converged: writes nothing, and how much memory it takes.
    let before = audit::writes(&bed.audit_log(), &ns, "shoal").len();
    let restarted = Instant::now();
    let op = Operator::start(bed, &ns);
    op.wait_quiet(Duration::from_secs(3), args.count as f64);
    let quiet_after_restart = restarted.elapsed().as_secs_f64() - 3.0;
    let after = audit::writes(&bed.audit_log(), &ns, "shoal").len() - before;
    let restart_rss = op.metric("process_resident_memory_bytes");
    let restart_peak = op.metric("process_resident_memory_peak_bytes");
    std::thread::sleep(SETTLE);
    let restart_settled = op.metric("process_resident_memory_bytes");
    let restart_heap = op.metric("shoal_heap_allocated_bytes");
    op.stop();
    delete_namespace(bed, &ns);
    let status_writes = by_kind
        .get("patch microservices/status")
        .copied()
        .unwrap_or(0.0);
    let events = by_kind.get("create events").copied().unwrap_or(0.0);
    let mut lines = vec![
        format!(
            "shoal round {round}: {} Microservices applied in {created:.1} s",
            args.count
        ),
        format!("  every child exists      {} s", secs(children)),
        format!(
            "  every Microservice Ready {} s (quiet {quiet:.1} s later)",
            secs(ready)
        ),
        format!(
            "  writes per Microservice {per_ms:.2}: beyond the children {:.2} ({events:.2} Events, {status_writes:.2} status)",
            events + status_writes
        ),
    ];
    for (kind, n) in by_kind {
        lines.push(format!("    {kind:<34} {n:.2}"));
    }
    lines.push(format!(
        "  reconciles per Microservice {:.2} (until quiet)",
        reconciles.unwrap_or(f64::NAN) / args.count as f64
    ));
    lines.push(format!(
        "  RSS {} MiB, peak {} MiB, {}s later {} MiB (heap {} MiB), CPU {:.1} ms per Microservice",
        mib(rss),
        mib(peak),
        SETTLE.as_secs(),
        mib(settled),
        mib(heap),
        cpu.unwrap_or(f64::NAN) * 1000.0 / args.count as f64
    ));
    lines.push(format!(
        "  restart: quiet in {quiet_after_restart:.1} s, {after} writes, RSS {} MiB, peak {} MiB, {}s later {} MiB (heap {} MiB)",
        mib(restart_rss),
        mib(restart_peak),
        SETTLE.as_secs(),
        mib(restart_settled),
        mib(restart_heap)
    ));
    lines.push(format!(
        "RESULT shoal {round} {}",
        children.unwrap_or(f64::NAN)
    ));
    lines
}

async fn bare_round(bed: &TestBed, client: &Client, args: &Args, round: usize) -> Vec<String> {
    let ns = bed.namespace(&format!("bare-{round}"));
    let limit = wait_limit(args.count);
    let start = Instant::now();
    let children = watch_children(client, &ns, args, start, limit);
    let objects: Vec<_> = names(args.count)
        .into_iter()
        .map(|name| {
            let mut ms = microservice(&name, args.replicas);
            ms.metadata.namespace = Some(ns.clone());
            ms.metadata.uid = Some(format!("bench-{name}"));
            ms.metadata.generation = Some(1);
            let valid = shoal::validate::validate(&ms).expect("valid example");
            shoal::controller::render::render(&valid)
        })
        .collect();
    futures::stream::iter(objects)
        .for_each_concurrent(args.concurrency, |c| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let mut config_map = c.config_map;
                let mut deployment = c.deployment;
                let mut service = c.service;
                config_map.metadata.owner_references = None;
                deployment.metadata.owner_references = None;
                service.metadata.owner_references = None;
                apply(&Api::namespaced(client.clone(), &ns), &config_map, "bare").await;
                apply(&Api::namespaced(client.clone(), &ns), &deployment, "bare").await;
                apply(&Api::namespaced(client.clone(), &ns), &service, "bare").await;
                if let Some(mut ingress) = c.ingress {
                    ingress.metadata.owner_references = None;
                    apply(&Api::namespaced(client.clone(), &ns), &ingress, "bare").await;
                }
                if let Some(mut pdb) = c.pod_disruption_budget {
                    pdb.metadata.owner_references = None;
                    apply(&Api::namespaced(client.clone(), &ns), &pdb, "bare").await;
                }
                for mut job in c.cron_jobs {
                    job.metadata.owner_references = None;
                    apply(&Api::namespaced(client.clone(), &ns), &job, "bare").await;
                }
            }
        })
        .await;
    let children = slowest(children).await;
    delete_namespace(bed, &ns);
    vec![
        format!(
            "bare round {round}: every child exists {} s",
            secs(children)
        ),
        format!("RESULT bare {round} {}", children.unwrap_or(f64::NAN)),
    ]
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let bed = testbed();
    let client = bed.client().await;
    println!(
        "bench-scale: {} Microservices of the web-with-ingress shape ({} replicas), {} rounds, {} writes in flight; children: {}",
        args.count,
        args.replicas,
        args.rounds,
        args.concurrency,
        KINDS.join(", ")
            + if args.replicas >= 2 {
                ", PodDisruptionBudget"
            } else {
                ""
            }
    );
    let mut shoal = Vec::new();
    let mut bare = Vec::new();
    for round in 1..=args.rounds {
        // Alternate which goes first.
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for is_shoal in order {
            if args.only.is_some_and(|only| only != is_shoal) {
                continue;
            }
            let lines = if is_shoal {
                shoal_round(bed, &client, &args, round).await
            } else {
                bare_round(bed, &client, &args, round).await
            };
            for line in &lines {
                if let Some(result) = line.strip_prefix("RESULT ") {
                    let value: f64 = result
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN);
                    if is_shoal {
                        shoal.push(value)
                    } else {
                        bare.push(value)
                    }
                } else {
                    println!("{line}");
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    if args.only.is_some() {
        let (who, times) = match args.only {
            Some(true) => ("shoal", &shoal),
            _ => ("bare writer", &bare),
        };
        println!(
            "\nevery child exists: {who} {:.1} s (mean of {} rounds, no ratio: --only); per 1,000: {:.1} s",
            mean(times),
            times.len(),
            mean(times) * 1000.0 / args.count as f64,
        );
        return;
    }
    println!(
        "\nevery child exists: shoal {:.1} s, bare writer {:.1} s (means of {} rounds): ratio {:.2}; per 1,000: shoal {:.1} s, bare {:.1} s",
        mean(&shoal),
        mean(&bare),
        args.rounds,
        mean(&shoal) / mean(&bare),
        mean(&shoal) * 1000.0 / args.count as f64,
        mean(&bare) * 1000.0 / args.count as f64,
    );
}

//! `loadsim`: invents per-pod request, latency and CPU figures for the serving pods of
//! Shoal-managed services in one namespace and serves them on `/metrics`. See README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Deserialize;
use serde_json::json;
use shoal_loadsim::control::Source;
use shoal_loadsim::{
    CONTENT_TYPE, CostModel, LoadControl, MANAGED_SELECTOR, Schedule, SimState, advance,
    apply_noise, connect_addr, file_sd_json, pod_view, render, render_pod,
};
use tracing::{info, warn};

/// Load simulator for Shoal end-to-end tests and demos.
#[derive(Debug, Parser)]
#[command(name = "loadsim", version)]
struct Args {
    /// Namespace whose Shoal-managed pods receive load.
    #[arg(long, env = "LOADSIM_NAMESPACE")]
    namespace: String,
    /// Address to serve /metrics and the control API on.
    #[arg(long, env = "LOADSIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a Prometheus file_sd JSON file naming this simulator here (atomically).
    #[arg(long, env = "LOADSIM_SD_FILE")]
    sd_file: Option<PathBuf>,
    /// YAML load schedule.
    #[arg(long, env = "LOADSIM_SCHEDULE")]
    schedule: Option<PathBuf>,
    /// CPU-seconds consumed per request.
    #[arg(long, env = "LOADSIM_CPU_PER_REQUEST", default_value_t = 0.005)]
    cpu_per_request: f64,
    /// CPU cores each serving pod burns with no load.
    #[arg(long, env = "LOADSIM_BASE_CPU", default_value_t = 0.01)]
    base_cpu: f64,
    /// Uniform random noise on each service's rate, ± this many percent, drawn every tick.
    #[arg(long, env = "LOADSIM_NOISE", default_value_t = 0.0)]
    noise: f64,
    /// How often counters advance, in milliseconds.
    #[arg(long, env = "LOADSIM_TICK_MS", default_value_t = 500)]
    tick_ms: u64,
    /// Exit when standard input reaches end of file.
    #[arg(long, env = "LOADSIM_EXIT_ON_STDIN_EOF")]
    exit_on_stdin_eof: bool,
}

struct App {
    namespace: String,
    start: Instant,
    control: Mutex<LoadControl>,
    sim: Mutex<SimState>,
    /// The pod cache, once synced.
    pods: std::sync::OnceLock<Store<Pod>>,
    cost: CostModel,
    noise: f64,
    /// When the counters last advanced, and the noise source.
    clock: Mutex<(Instant, fastrand::Rng)>,
    /// Problems with pods' track labels or loadsim annotations seen in the last tick, so
    /// each is logged once when it appears rather than on every tick.
    warned: Mutex<BTreeSet<(String, String)>>,
}

impl App {
    /// Advances every counter to this instant. Called by the tick loop and before each
    /// scrape, so a scrape sees counters exact to the moment (no tick-sized steps that
    /// would make Prometheus's irate jitter).
    fn advance_to_now(&self) -> Option<BTreeMap<String, usize>> {
        let store = self.pods.get()?;
        let mut clock = lock(&self.clock);
        let now = Instant::now();
        let dt = now.duration_since(clock.0).as_secs_f64();
        clock.0 = now;
        let t = now.duration_since(self.start).as_secs_f64();
        let draw = clock.1.f64();
        let loads: BTreeMap<String, f64> = lock(&self.control)
            .loads_at(t)
            .into_iter()
            .map(|(s, (rps, _))| (s, apply_noise(rps, self.noise, draw)))
            .collect();
        let mut pods = Vec::new();
        let mut warnings = BTreeSet::new();
        for pod in store.state() {
            if let Some((view, problems)) = pod_view(&pod) {
                warnings.extend(problems.into_iter().map(|w| (view.name.clone(), w)));
                pods.push(view);
            }
        }
        self.log_new_warnings(warnings);
        let mut sim = lock(&self.sim);
        advance(&mut sim, &loads, &pods, &self.cost, dt);
        Some(
            sim.services
                .iter()
                .map(|(s, st)| (s.clone(), st.serving))
                .collect(),
        )
    }

    /// Logs the warnings not in the previous tick's set, and keeps `current` as that set.
    fn log_new_warnings(&self, current: BTreeSet<(String, String)>) {
        let mut warned = lock(&self.warned);
        for (pod, problem) in current.difference(&warned) {
            warn!(%pod, "{problem}");
        }
        *warned = current;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("loadsim: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing();
    check_args(&args)?;

    let schedule = match &args.schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the schedule {}", path.display()))?;
            Schedule::from_yaml(&text).with_context(|| format!("schedule {}", path.display()))?
        }
        None => Schedule::default(),
    };

    let client = kube::Client::try_default().await.map_err(|e| {
        let what = match std::env::var_os("KUBECONFIG") {
            Some(v) => format!(
                "building a Kubernetes client from KUBECONFIG={}",
                v.to_string_lossy()
            ),
            None => "building a Kubernetes client: KUBECONFIG is not set, and neither \
                     ~/.kube/config nor an in-cluster service account is usable; \
                     set KUBECONFIG to the cluster's kubeconfig"
                .to_owned(),
        };
        // kube's error repeats its sources in its message: print it once, not as a chain.
        anyhow::anyhow!("{what}: {e}")
    })?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = connect_addr(listener.local_addr().context("local address")?);
    if let Some(path) = &args.sd_file {
        write_atomically(path, &file_sd_json(addr))
            .with_context(|| format!("writing the file_sd file {}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "LOADSIM_ADDR={addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    info!(%addr, namespace = %args.namespace, "listening");

    let cost = CostModel {
        base_cpu: args.base_cpu,
        cpu_per_request: args.cpu_per_request,
    };
    let app = Arc::new(App {
        namespace: args.namespace.clone(),
        start: Instant::now(),
        control: Mutex::new(LoadControl::new(schedule)),
        sim: Mutex::new(SimState::default()),
        pods: std::sync::OnceLock::new(),
        cost,
        noise: args.noise,
        clock: Mutex::new((Instant::now(), fastrand::Rng::new())),
        warned: Mutex::new(BTreeSet::new()),
    });

    // Pod cache.
    let (reader, writer) = reflector::store::<Pod>();
    let pods = watcher(
        Api::<Pod>::namespaced(client, &args.namespace),
        watcher::Config::default().labels(MANAGED_SELECTOR),
    )
    .default_backoff()
    .reflect(writer);
    tokio::spawn(async move {
        let mut pods = std::pin::pin!(pods);
        while let Some(event) = pods.next().await {
            if let Err(e) = event {
                warn!(error = %e, "watching pods");
            }
        }
    });

    tokio::spawn(tick_loop(
        app.clone(),
        reader,
        Duration::from_millis(args.tick_ms),
    ));

    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/load", get(get_load))
        .route("/load/{service}", put(put_load).delete(delete_load))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal(args.exit_on_stdin_eof)?)
        .await
        .context("serving HTTP")?;
    info!("stopped");
    Ok(())
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    if args.namespace.is_empty() {
        bail!("--namespace must not be empty");
    }
    for (name, v) in [
        ("--cpu-per-request", args.cpu_per_request),
        ("--base-cpu", args.base_cpu),
        ("--noise", args.noise),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{name} must be a finite number >= 0, got {v}");
        }
    }
    if args.tick_ms == 0 {
        bail!("--tick-ms must be > 0");
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Writes `content` to a temporary file next to `path`, then renames it over `path`.
fn write_atomically(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

async fn tick_loop(app: Arc<App>, store: Store<Pod>, tick: Duration) {
    if store.wait_until_ready().await.is_err() {
        warn!("pod cache writer dropped before the first sync");
        return;
    }
    info!("pod cache synced");
    *lock(&app.clock) = (Instant::now(), fastrand::Rng::new());
    let _ = app.pods.set(store);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_serving: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        interval.tick().await;
        let Some(serving) = app.advance_to_now() else {
            continue;
        };
        for (service, n) in &serving {
            if last_serving.get(service) != Some(n) {
                info!(%service, serving_pods = n, "serving pods changed");
            }
        }
        last_serving = serving;
    }
}

/// Resolves on Ctrl-C, SIGTERM, or (if asked) end of standard input.
fn shutdown_signal(
    exit_on_stdin_eof: bool,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let eof_rx = exit_on_stdin_eof.then(|| {
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        // A plain thread: tokio's stdin read cannot be cancelled and would hold up shutdown.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = eof_tx.send(());
        });
        eof_rx
    });
    let stdin_eof = async move {
        match eof_rx {
            Some(rx) => drop(rx.await),
            None => std::future::pending().await,
        }
    };
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
            _ = term.recv() => info!("SIGTERM, stopping"),
            () = stdin_eof => info!("standard input closed, stopping"),
        }
    })
}

/// `?pod=NAME`: only that pod's request and latency series, without pod labels, as the pod itself would serve them
/// (for a Prometheus that finds the pods through the apiserver and relabels).
#[derive(Deserialize)]
struct MetricsQuery {
    pod: Option<String>,
}

async fn metrics(State(app): State<Arc<App>>, Query(query): Query<MetricsQuery>) -> Response {
    app.advance_to_now();
    let text = match &query.pod {
        None => render(&lock(&app.sim), &app.namespace),
        Some(pod) => match render_pod(&lock(&app.sim), pod) {
            Some(text) => text,
            None => return (StatusCode::NOT_FOUND, format!("no pod {pod}\n")).into_response(),
        },
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLoad {
    rps: f64,
}

async fn put_load(
    State(app): State<Arc<App>>,
    UrlPath(service): UrlPath<String>,
    body: Bytes,
) -> Response {
    let req: SetLoad = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected a JSON body like {{\"rps\": 200.0}}: {e}\n"),
            )
                .into_response();
        }
    };
    if !(req.rps.is_finite() && req.rps >= 0.0) {
        return (
            StatusCode::BAD_REQUEST,
            "rps must be a finite number >= 0\n",
        )
            .into_response();
    }
    // Settle the counters at the old rate up to this instant first.
    app.advance_to_now();
    lock(&app.control).set(&service, req.rps);
    info!(%service, rps = req.rps, "load set");
    axum::Json(json!({"service": service, "rps": req.rps})).into_response()
}

async fn delete_load(State(app): State<Arc<App>>, UrlPath(service): UrlPath<String>) -> Response {
    let cleared = lock(&app.control).clear(&service);
    info!(%service, cleared, "load override cleared");
    axum::Json(json!({"service": service, "cleared": cleared})).into_response()
}

async fn get_load(State(app): State<Arc<App>>) -> Response {
    let t = app.start.elapsed().as_secs_f64();
    let nominal = lock(&app.control).loads_at(t);
    let serving: BTreeMap<String, usize> = lock(&app.sim)
        .services
        .iter()
        .map(|(s, st)| (s.clone(), st.serving))
        .collect();
    let mut load = serde_json::Map::new();
    let mut source = serde_json::Map::new();
    let mut serving_pods = serde_json::Map::new();
    let services = nominal
        .keys()
        .chain(serving.keys())
        .collect::<std::collections::BTreeSet<_>>();
    for s in services {
        let (rps, src) = nominal.get(s).copied().unwrap_or((0.0, Source::Schedule));
        load.insert(s.clone(), json!(rps));
        let src = match (nominal.contains_key(s), src) {
            (false, _) => "none",
            (true, Source::Schedule) => "schedule",
            (true, Source::Override) => "override",
        };
        source.insert(s.clone(), json!(src));
        serving_pods.insert(s.clone(), json!(serving.get(s).copied().unwrap_or(0)));
    }
    axum::Json(json!({
        "load": load,
        "servingPods": serving_pods,
        "source": source,
        "elapsedSeconds": t,
    }))
    .into_response()
}

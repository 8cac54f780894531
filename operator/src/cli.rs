//! Command line: `shoal run` and `shoal crd`. Every flag has an environment variable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use kube::CustomResourceExt;

use crate::crd::Microservice;
use crate::leader::{self, Elector};
use crate::metrics::Metrics;
use crate::server::{self, Health, Phase};
use crate::telemetry::{self, LogFormat};

/// Shoal: a Kubernetes operator and horizontal autoscaler for Microservices.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the Microservice CustomResourceDefinition as YAML.
    Crd,
}

/// Flags of `shoal run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Log format: text or json.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax, e.g. `info,shoal=debug`.
    #[arg(long, env = "SHOAL_LOG", default_value = "info")]
    pub log_level: String,
    /// Seconds between periodic re-checks of each Microservice (a no-op when nothing changed).
    #[arg(long, env = "SHOAL_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Most Microservices reconciled at once.
    #[arg(long, env = "SHOAL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SHOAL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Which loops this process runs: all, controller or autoscaler (to deploy them apart).
    #[arg(long, env = "SHOAL_COMPONENTS", value_enum, default_value = "all")]
    pub components: Components,
    /// Base URL of Prometheus.
    #[arg(
        long,
        env = "SHOAL_PROMETHEUS_URL",
        default_value = "http://prometheus.monitoring.svc:9090"
    )]
    pub prometheus_url: String,
    /// Timeout of one Prometheus query, in seconds.
    #[arg(long, env = "SHOAL_PROMETHEUS_TIMEOUT_SECONDS", default_value_t = 5.0)]
    pub prometheus_timeout_seconds: f64,
    /// Seconds between ticks of the metrics loop (fractions allowed, down to 1).
    #[arg(long, env = "SHOAL_TICK_SECONDS", default_value_t = 15.0)]
    pub tick_seconds: f64,
    /// Request counter metric.
    #[arg(
        long,
        env = "SHOAL_REQUEST_METRIC",
        default_value = "http_requests_total"
    )]
    pub request_metric: String,
    /// Label holding the namespace in both metrics.
    #[arg(long, env = "SHOAL_NAMESPACE_LABEL", default_value = "namespace")]
    pub namespace_label: String,
    /// Label of the request counter holding the Microservice's name.
    #[arg(long, env = "SHOAL_SERVICE_LABEL", default_value = "service")]
    pub service_label: String,
    /// Label of the CPU counter holding the pod's name.
    #[arg(long, env = "SHOAL_POD_LABEL", default_value = "pod")]
    pub pod_label: String,
    /// CPU counter metric (seconds of CPU used).
    #[arg(
        long,
        env = "SHOAL_CPU_METRIC",
        default_value = "container_cpu_usage_seconds_total"
    )]
    pub cpu_metric: String,
    /// Extra label selector of the CPU counter.
    #[arg(long, env = "SHOAL_CPU_SELECTOR", default_value = "container!=\"\"")]
    pub cpu_selector: String,
    /// Range of the stable rate() (PromQL duration).
    #[arg(long, env = "SHOAL_RATE_WINDOW", default_value = "1m")]
    pub rate_window: String,
    /// Range of the burst irate() (PromQL duration).
    #[arg(long, env = "SHOAL_BURST_WINDOW", default_value = "30s")]
    pub burst_window: String,
    /// Default scale-down stabilization window in seconds (a Microservice's behavior overrides it).
    #[arg(long, env = "SHOAL_SCALE_DOWN_WINDOW_SECONDS", default_value_t = 300)]
    pub scale_down_window_seconds: i64,
    /// Run the loops only while holding the Lease `shoal-leader` (`shoal-leader-controller` or
    /// `shoal-leader-autoscaler` with --components), so several replicas can run
    /// (`--leader-election` or `--leader-election=true`). Off by default for a single local
    /// process; the Helm chart turns it on.
    #[arg(
        long,
        env = "SHOAL_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace from POD_NAMESPACE, else `default`).
    #[arg(long, env = "SHOAL_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz (port 0: any free port).
    #[arg(long, env = "SHOAL_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
}

/// Which loops run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Components {
    /// The controller and the metrics loop.
    All,
    /// Only the reconcile loop.
    Controller,
    /// Only the metrics loop.
    Autoscaler,
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

/// The CRD as the YAML committed in `crds/microservice.yaml`.
pub fn crd_yaml() -> anyhow::Result<String> {
    let yaml = serde_yaml::to_string(&Microservice::crd()).context("serialising the CRD")?;
    Ok(format!(
        "# Generated by `shoal crd` (make generate). Do not edit by hand.\n{yaml}"
    ))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Destructured without `..`: a new flag that nobody handles fails to compile.
    let RunArgs {
        log_format,
        log_level,
        resync_seconds,
        concurrency,
        namespace,
        components,
        prometheus_url,
        prometheus_timeout_seconds,
        tick_seconds,
        request_metric,
        namespace_label,
        service_label,
        pod_label,
        cpu_metric,
        cpu_selector,
        rate_window,
        burst_window,
        scale_down_window_seconds,
        leader_election,
        leader_election_namespace,
        metrics_address,
    } = args;
    telemetry::init_tracing(log_format, &log_level);
    anyhow::ensure!(tick_seconds >= 1.0, "--tick-seconds must be at least 1");
    anyhow::ensure!(
        prometheus_timeout_seconds > 0.0,
        "--prometheus-timeout-seconds must be positive"
    );
    // The endpoint comes first: probes answer while the process waits for the lease.
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = server::bind(metrics_address).await?;
    tracing::info!(
        address = %listener.local_addr().context("reading the bound address")?,
        "serving /metrics, /healthz and /readyz"
    );
    tokio::spawn(server::serve(listener, metrics.clone(), health.clone()));

    let config = client_config().await?;
    let client =
        kube::Client::try_from(config.clone()).context("building the Kubernetes client")?;
    crate::controller::check_crd_installed(&client, namespace.as_deref()).await?;
    let controller_config = crate::controller::Config {
        resync: Duration::from_secs(resync_seconds),
        concurrency,
        namespace: namespace.clone(),
    };
    let autoscaler_config = crate::autoscaler::Config {
        tick: Duration::from_secs_f64(tick_seconds),
        metrics: crate::autoscaler::source::MetricsConfig {
            url: prometheus_url,
            timeout: Duration::from_secs_f64(prometheus_timeout_seconds),
            request_metric,
            namespace_label,
            service_label,
            pod_label,
            cpu_metric,
            cpu_selector,
            rate_window,
            burst_window,
        },
        scale_down_window_seconds,
        namespace,
    };
    let leadership = if leader_election {
        let lease_client = kube::Client::try_from(leader::bounded(config))
            .context("building the Kubernetes client of leader election")?;
        let elector = Elector::new(
            lease_client,
            leader::Config::new(leader::namespace(leader_election_namespace), components),
        );
        health.set(Phase::Following);
        tokio::select! {
            leadership = elector.acquire() => Some(leadership),
            () = shutdown_signal() => {
                tracing::info!("stopped while waiting for the leader lease");
                return Ok(());
            }
        }
    } else {
        None
    };
    // Only the leader (or the only process) runs the loops, started after acquiring.
    metrics.set_leader(true);
    health.set(Phase::Leading);
    let controller = async {
        if components != Components::Autoscaler {
            crate::controller::run(client.clone(), controller_config, metrics.clone()).await;
        }
    };
    let autoscaler = async {
        if components != Components::Controller {
            crate::autoscaler::run(
                client.clone(),
                autoscaler_config,
                metrics.clone(),
                shutdown_signal(),
            )
            .await;
        }
    };
    let loops = async {
        futures::join!(controller, autoscaler);
    };
    let hold = async {
        match &leadership {
            Some(leadership) => leadership.hold().await,
            None => std::future::pending().await,
        }
    };
    // The loops stop on SIGTERM by themselves; a lost lease stops the process; a shutdown
    // that hangs must not keep the lease (and the loops) past the pod's grace period.
    let stuck = async {
        shutdown_signal().await;
        tokio::time::sleep(SHUTDOWN_TIMEOUT).await;
    };
    let outcome = tokio::select! {
        () = loops => Ok(()),
        lost = hold => Err(lost),
        () = stuck => {
            tracing::warn!(timeout = ?SHUTDOWN_TIMEOUT, "the loops did not stop in time; stopping anyway");
            Ok(())
        }
    };
    health.set(Phase::Stopping);
    metrics.set_leader(false);
    if let Err(lost) = outcome {
        tracing::error!(error = %format!("{lost:#}"), "stopping: this process is no longer the leader");
        return Err(lost);
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}

/// How long the loops may take to stop after SIGTERM before the process releases the lease
/// and exits anyway (the chart's terminationGracePeriodSeconds is 30).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A client for the cluster of the current kubeconfig (or the in-cluster config) that
/// names itself `shoal/<version>` in the apiserver's logs and audit trail.
pub async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_from(client_config().await?).context("building the Kubernetes client")
}

/// The configuration of [`client`].
pub async fn client_config() -> anyhow::Result<kube::Config> {
    let mut config = kube::Config::infer()
        .await
        .context("finding the cluster: set KUBECONFIG, or run inside a cluster")?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("shoal/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(config)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! Command line: `shoal run` and `shoal crd`, as clap types only (the process is assembled
//! in [`crate::app`]). Every flag has an environment variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

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
    /// Seconds between two checks (API discovery) for the Prometheus Operator's PodMonitor
    /// CRD: Shoal manages a PodMonitor per Microservice while it is installed.
    #[arg(long, env = "SHOAL_POD_MONITOR_RECHECK_SECONDS", default_value_t = 30)]
    pub pod_monitor_recheck_seconds: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SHOAL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Which loops this process runs: all, controller or autoscaler (to deploy them apart).
    #[arg(long, env = "SHOAL_COMPONENTS", value_enum, default_value = "all")]
    pub components: Components,
    /// Seconds between ticks of the metrics loop (fractions allowed, down to 1).
    #[arg(long, env = "SHOAL_TICK_SECONDS", default_value_t = 15.0)]
    pub tick_seconds: f64,
    /// Where and how the metrics loop reads metrics.
    #[command(flatten)]
    pub metrics: MetricsArgs,
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

/// Flags of the metrics loop's Prometheus source.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
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
    /// Label of the request counter and latency histogram naming the track of a canary
    /// release (`canary`; any other value or none is the stable track).
    #[arg(long, env = "SHOAL_TRACK_LABEL", default_value = "track")]
    pub track_label: String,
}

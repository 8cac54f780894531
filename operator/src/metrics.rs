//! The operator's own Prometheus metrics, served on `/metrics` by [`crate::server`].
//!
//! [`Metrics`] owns one registry and every counter of the process; the controller and the
//! autoscaler call its methods (`count_and_measure`, `reconcile_failure`, `scale_decision`,
//! `observe_query`, `tick`, `scale_write`, `observe_tick_lag`).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every metric name.
pub const PREFIX: &str = "shoal";

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of the reconcile error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::error::Error::metric_label`] of the failure.
    pub reason: String,
}

/// Label set of the scale decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `up` or `down`.
    pub direction: String,
}

/// Label set of the query error counter: the Microservice whose own query failed, or
/// empty namespace and microservice for a batched query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryErrorLabels {
    /// Namespace of the Microservice ("" for a batched query).
    pub namespace: String,
    /// Name of the Microservice ("" for a batched query).
    pub microservice: String,
    /// Short reason: timeout, unreachable, query, no_data, invalid, several_series, no_client.
    pub reason: String,
}

/// Label set of the apiserver request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The HTTP method: GET (reads, lists and watches), POST, PUT, PATCH, DELETE.
    pub method: String,
}

/// Label set of the build info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The operator's metrics. Cheap to share (`Arc<Metrics>`): every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    scale_decisions: Family<DirectionLabels, Counter>,
    query_duration: Histogram,
    tick_lag: Gauge<f64, AtomicU64>,
    leader: Gauge,
    ticks: Counter,
    queries: Counter,
    query_errors: Family<QueryErrorLabels, Counter>,
    scale_writes: Counter,
    canary_queries: Counter,
    kubernetes_requests: Family<MethodLabels, Counter>,
    /// Gauges computed from the controller's Microservice cache, once it is attached.
    pub microservices: crate::condition_metrics::ConditionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        // The process's own metrics keep their conventional names; Shoal's are prefixed.
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of Microservices started",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles of Microservices, by error reason",
            reconcile_errors.clone(),
        );
        // 1 ms .. ~16 s: a reconcile reads caches and writes at most a handful of objects.
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile of a Microservice",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let scale_decisions = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "scale_decisions",
            "Replica count changes decided by the metrics loop, by direction",
            scale_decisions.clone(),
        );
        let query_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "metric_query_duration",
            "Duration of one Prometheus query of the metrics loop",
            Unit::Seconds,
            query_duration.clone(),
        );
        let tick_lag = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "autoscaler_tick_lag",
            "How late the last tick of the metrics loop started after its schedule",
            Unit::Seconds,
            tick_lag.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process runs the loops (holds the leader lease, or leader election is off), else 0",
            leader.clone(),
        );
        registry.register(
            "build",
            "Version of the running operator",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        let ticks = Counter::default();
        registry.register(
            "autoscaler_ticks",
            "Ticks of the metrics loop",
            ticks.clone(),
        );
        let queries = Counter::default();
        registry.register(
            "metric_queries",
            "Prometheus queries sent by the metrics loop",
            queries.clone(),
        );
        let query_errors = Family::<QueryErrorLabels, Counter>::default();
        // The batched queries' series exist from the start (at 0), so the family is served
        // before the first error and `rate()` over it sees the first increment.
        for reason in crate::autoscaler::source::MetricError::REASONS {
            drop(query_errors.get_or_create(&QueryErrorLabels {
                namespace: String::new(),
                microservice: String::new(),
                reason: reason.to_string(),
            }));
        }
        registry.register(
            "metric_query_errors",
            "Prometheus queries of the metrics loop that failed, by Microservice (empty for batched queries) and reason",
            query_errors.clone(),
        );
        let scale_writes = Counter::default();
        registry.register(
            "autoscaler_scale_writes",
            "Writes of the metrics loop to the scale subresource of Deployments",
            scale_writes.clone(),
        );
        let canary_queries = Counter::default();
        registry.register(
            "canary_analysis_queries",
            "Prometheus queries sent by the canary analysis (three per group of canaries sharing metric names, selector and interval, once per interval)",
            canary_queries.clone(),
        );
        let kubernetes_requests = Family::<MethodLabels, Counter>::default();
        registry.register(
            "kubernetes_requests",
            "Requests the loops sent to the Kubernetes apiserver, by HTTP method (a watch counts once, when it starts; leader election's lease renewals are not counted)",
            kubernetes_requests.clone(),
        );
        let microservices = crate::condition_metrics::ConditionMetrics::default();
        registry.register_collector(Box::new(microservices.clone()));
        Metrics {
            ticks,
            queries,
            query_errors,
            scale_writes,
            canary_queries,
            kubernetes_requests,
            registry: root,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            scale_decisions,
            query_duration,
            tick_lag,
            leader,
            microservices,
        }
    }

    /// Counts a request to the apiserver by its HTTP method.
    pub fn kubernetes_request(&self, method: &http::Method) {
        self.kubernetes_requests
            .get_or_create(&MethodLabels {
                method: method.as_str().to_string(),
            })
            .inc();
    }

    /// Counts a query of the canary analysis.
    pub fn canary_query(&self) {
        self.canary_queries.inc();
    }

    /// Counts a reconcile and measures it until the returned guard drops.
    pub fn count_and_measure(&self) -> ReconcileMeasurer<'_> {
        self.reconciles.inc();
        ReconcileMeasurer {
            started: Instant::now(),
            histogram: &self.reconcile_duration,
        }
    }

    /// Counts a failed reconcile under its error's metric label.
    pub fn reconcile_failure(&self, error: &crate::error::Error) {
        self.reconcile_failure_reason(error.metric_label());
    }

    /// Counts a failed reconcile under `reason`.
    pub fn reconcile_failure_reason(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a decision of the metrics loop to change a replica count (equal counts are ignored).
    pub fn scale_decision(&self, from: i32, to: i32) {
        let direction = match to.cmp(&from) {
            std::cmp::Ordering::Greater => "up",
            std::cmp::Ordering::Less => "down",
            std::cmp::Ordering::Equal => return,
        };
        self.scale_decisions
            .get_or_create(&DirectionLabels {
                direction: direction.to_string(),
            })
            .inc();
    }

    /// Counts one Prometheus query, how long it took, and its failure: (namespace,
    /// Microservice, reason), with empty names for a batched query.
    pub fn observe_query(&self, duration: Duration, failure: Option<(&str, &str, &str)>) {
        self.queries.inc();
        self.query_duration.observe(duration.as_secs_f64());
        if let Some((namespace, microservice, reason)) = failure {
            self.query_errors
                .get_or_create(&QueryErrorLabels {
                    namespace: namespace.to_string(),
                    microservice: microservice.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Counts a tick of the metrics loop.
    pub fn tick(&self) {
        self.ticks.inc();
    }

    /// Counts a write to a scale subresource.
    pub fn scale_write(&self) {
        self.scale_writes.inc();
    }

    /// Records how late the current tick of the metrics loop started.
    pub fn observe_tick_lag(&self, lag: Duration) {
        self.tick_lag.set(lag.as_secs_f64());
    }

    /// Says whether this process runs the loops.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "could not encode the metrics");
        }
        text
    }
}

/// Observes the duration of one reconcile when dropped.
pub struct ReconcileMeasurer<'a> {
    started: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileMeasurer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_every_family_with_its_prefix() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.tick();
        }
        {
            let _measure = metrics.count_and_measure();
        }
        metrics.reconcile_failure_reason("kube");
        metrics.scale_decision(2, 5);
        metrics.scale_decision(5, 5);
        metrics.observe_query(Duration::from_millis(20), None);
        metrics.observe_query(Duration::from_millis(20), Some(("shop", "api", "timeout")));
        metrics.observe_tick_lag(Duration::from_millis(250));
        metrics.set_leader(true);
        metrics.kubernetes_request(&http::Method::PATCH);
        metrics.kubernetes_request(&http::Method::GET);
        metrics.kubernetes_request(&http::Method::GET);
        let text = metrics.render();
        assert_eq!(
            sample(&text, "shoal_kubernetes_requests_total{method=\"GET\"}"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "shoal_kubernetes_requests_total{method=\"PATCH\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "shoal_reconciles_total"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "shoal_reconcile_errors_total{reason=\"kube\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "shoal_reconcile_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "shoal_scale_decisions_total{direction=\"up\"}"),
            Some(1.0)
        );
        assert!(!text.contains("direction=\"down\""), "{text}");
        assert_eq!(
            sample(&text, "shoal_metric_query_duration_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "shoal_autoscaler_tick_lag_seconds"),
            Some(0.25)
        );
        assert_eq!(sample(&text, "shoal_leader"), Some(1.0));
        // The process's own, unprefixed.
        assert!(
            sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
            "{text}"
        );
        assert!(
            sample(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
        // The allocator's own figures (jemalloc is linked into the tests too, unused).
        assert!(
            sample(&text, "shoal_heap_resident_bytes").is_some(),
            "{text}"
        );
        assert!(!text.contains("shoal_process_"), "{text}");
        assert_eq!(sample(&text, "shoal_autoscaler_ticks_total"), Some(3.0));
        assert_eq!(sample(&text, "shoal_metric_queries_total"), Some(2.0));
        assert_eq!(
            sample(
                &text,
                "shoal_metric_query_errors_total{namespace=\"shop\",microservice=\"api\",reason=\"timeout\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "shoal_autoscaler_scale_writes_total"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "shoal_canary_analysis_queries_total"),
            Some(0.0)
        );
        assert!(text.contains("shoal_build_info{version=\""), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}

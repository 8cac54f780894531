//! The metrics source: the PromQL Shoal sends, batched (a fixed number of queries per tick
//! for every Microservice at once), each bounded by a timeout on both ends, and strict
//! parsing into typed errors: an empty result, NaN, Inf or several series for one key are
//! "no data", never zero.
//!
//! The request rate is read per pod as the true average between the newest sample and the
//! newest sample at least one window older: `(m - m offset W) / (timestamp(m) -
//! timestamp(m offset W))`. Unlike `rate(m[W])`, it does not under-read after a scrape gap
//! (the span then covers the gap), and a pod without a sample one window old (a new pod,
//! a fresh Prometheus) has no value at all, which the decision treats as a missing pod.
//! The span itself is read too: a span well over the window marks a gap.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_http_query::response::Data;

/// Why a metric has no value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// No Prometheus client could be built.
    #[error("no Prometheus client: {0}")]
    NoClient(String),
    /// The query did not answer in time.
    #[error("the query timed out after {0:?}")]
    Timeout(Duration),
    /// Prometheus could not be reached or answered with an HTTP error.
    #[error("Prometheus could not be reached: {0}")]
    Unreachable(String),
    /// Prometheus refused or failed the query.
    #[error("Prometheus failed the query: {0}")]
    Query(String),
    /// No series for this key.
    #[error("{0}")]
    NoData(String),
    /// A value that is not a finite number, or a result of the wrong shape.
    #[error("{0}")]
    Invalid(String),
    /// Several series where one was expected.
    #[error("the query returned {0} series; it must return one")]
    SeveralSeries(usize),
}

impl MetricError {
    /// Every value of [`MetricError::reason`].
    pub const REASONS: [&'static str; 7] = [
        "no_client",
        "timeout",
        "unreachable",
        "query",
        "no_data",
        "invalid",
        "several_series",
    ];

    /// Short label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            MetricError::NoClient(_) => "no_client",
            MetricError::Timeout(_) => "timeout",
            MetricError::Unreachable(_) => "unreachable",
            MetricError::Query(_) => "query",
            MetricError::NoData(_) => "no_data",
            MetricError::Invalid(_) => "invalid",
            MetricError::SeveralSeries(_) => "several_series",
        }
    }
}

/// How to find the metrics in Prometheus. All of it is operator configuration.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Base URL of Prometheus, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// Timeout of one query.
    pub timeout: Duration,
    /// Request counter, e.g. `http_requests_total`.
    pub request_metric: String,
    /// Label holding the namespace.
    pub namespace_label: String,
    /// Label of the request counter holding the service (the Microservice's name).
    pub service_label: String,
    /// Label holding the pod name (request counter and CPU counter).
    pub pod_label: String,
    /// CPU counter in seconds, e.g. cAdvisor's `container_cpu_usage_seconds_total`.
    pub cpu_metric: String,
    /// Extra selector of the CPU counter, e.g. `container!=""` (leaves out the pod-level sums).
    pub cpu_selector: String,
    /// Range of the stable rate, e.g. `1m`.
    pub rate_window: String,
    /// Range of the burst `irate()`, e.g. `30s`.
    pub burst_window: String,
    /// Label naming the track of a canary release (`canary`, else stable).
    pub track_label: String,
}

/// Key of a batched result: (namespace, name) or (namespace, service, pod) joined.
pub type Key = (String, String);

/// Values by key, or why the whole query failed.
pub type Batch = Result<HashMap<Key, Result<f64, MetricError>>, MetricError>;

/// A span this much longer than the window means a gap in the scrapes inside it.
pub const GAP_FACTOR: f64 = 1.5;

impl MetricsConfig {
    /// The rate window in seconds.
    pub fn rate_window_seconds(&self) -> Result<f64, String> {
        promql_parser::util::parse_duration(&self.rate_window)
            .map(|d| d.as_secs_f64())
            .map_err(|e| format!("--rate-window {:?}: {e}", self.rate_window))
    }

    fn true_rate(&self, metric: &str) -> String {
        let w = &self.rate_window;
        format!(
            "((({metric} - {metric} offset {w}) / (timestamp({metric}) - timestamp({metric} offset {w}))) >= 0)"
        )
    }

    /// Request rate per pod over the window, for every service at once.
    pub fn request_rate_query(&self) -> String {
        format!(
            "sum by ({ns}, {svc}, {pod}) {rate}",
            ns = self.namespace_label,
            svc = self.service_label,
            pod = self.pod_label,
            rate = self.true_rate(&self.request_metric)
        )
    }

    /// Seconds between the newest sample and the newest one a window older, per pod: about
    /// the window when the scrapes are regular, more after a gap.
    pub fn span_query(&self) -> String {
        let (m, w) = (&self.request_metric, &self.rate_window);
        format!(
            "max by ({ns}, {svc}, {pod}) (timestamp({m}) - timestamp({m} offset {w}))",
            ns = self.namespace_label,
            svc = self.service_label,
            pod = self.pod_label,
        )
    }

    /// Total request rate per service over the short window with `irate`, to see a jump on
    /// the next scrape. `and {metric}` keeps only series scraped now.
    pub fn burst_query(&self) -> String {
        format!(
            "sum by ({ns}, {svc}) (irate({m}[{w}]) and {m})",
            ns = self.namespace_label,
            svc = self.service_label,
            m = self.request_metric,
            w = self.burst_window
        )
    }

    /// CPU cores used per pod over the window, for every pod at once.
    pub fn cpu_query(&self) -> String {
        let selector = if self.cpu_selector.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", self.cpu_selector)
        };
        format!(
            "sum by ({ns}, {pod}) {rate}",
            ns = self.namespace_label,
            pod = self.pod_label,
            rate = self.true_rate(&format!("{}{selector}", self.cpu_metric))
        )
    }

    /// The total request-rate query of one service with a metric or selector of its own.
    pub fn request_rate_query_for(
        &self,
        namespace: &str,
        service: &str,
        metric: Option<&str>,
        selector: Option<&str>,
    ) -> String {
        let extra = selector
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!(", {s}"))
            .unwrap_or_default();
        let series = format!(
            "{m}{{{ns}=\"{namespace}\", {svc}=\"{service}\"{extra}}}",
            ns = self.namespace_label,
            svc = self.service_label,
            m = metric.unwrap_or(&self.request_metric),
        );
        format!("sum({})", self.true_rate(&series))
    }
}

/// Checks that a Microservice's own query (or the series its metric and selector make) is
/// PromQL, before any tick sends it.
pub fn check_promql(query: &str) -> Result<(), String> {
    promql_parser::parser::parse(query).map(|_| ())
}

/// A finite number, or why it is not one.
pub fn strict(value: f64) -> Result<f64, MetricError> {
    if value.is_nan() {
        Err(MetricError::Invalid("the query returned NaN".into()))
    } else if value.is_infinite() {
        Err(MetricError::Invalid(
            "the query returned an infinite value".into(),
        ))
    } else {
        Ok(value)
    }
}

/// Groups an instant vector by labels (joined with `/` after the first). Several series for
/// one key make that key an error.
pub fn by_labels(data: &Data, first: &str, rest: &[&str]) -> Batch {
    let Data::Vector(vector) = data else {
        return Err(MetricError::Invalid(
            "the query did not return an instant vector".into(),
        ));
    };
    let mut out: HashMap<Key, Result<f64, MetricError>> = HashMap::new();
    for sample in vector {
        let labels = sample.metric();
        let Some(a) = labels.get(first) else { continue };
        let Some(parts) = rest
            .iter()
            .map(|l| labels.get(*l).cloned())
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let key = (a.clone(), parts.join("/"));
        let value = strict(sample.sample().value());
        out.entry(key)
            .and_modify(|v| *v = Err(MetricError::SeveralSeries(2)))
            .or_insert(value);
    }
    Ok(out)
}

/// Exactly one finite value from a single-series result (a Microservice's own query).
pub fn single(data: &Data) -> Result<f64, MetricError> {
    match data {
        Data::Vector(v) if v.len() == 1 => strict(v[0].sample().value()),
        Data::Vector(v) if v.is_empty() => {
            Err(MetricError::NoData("the query returned no series".into()))
        }
        Data::Vector(v) => Err(MetricError::SeveralSeries(v.len())),
        Data::Scalar(s) => strict(s.value()),
        _ => Err(MetricError::Invalid(
            "the query did not return an instant vector or scalar".into(),
        )),
    }
}

/// Looks up one key of a batch: no series for it is "no data".
pub fn lookup(batch: &Batch, key: &Key, what: &str) -> Result<f64, MetricError> {
    match batch {
        Err(e) => Err(e.clone()),
        Ok(map) => map.get(key).cloned().unwrap_or_else(|| {
            Err(MetricError::NoData(format!(
                "no {what} series for {}/{}",
                key.0, key.1
            )))
        }),
    }
}

/// Runs one query, bounded by `timeout` here and at Prometheus (which then stops working
/// on it instead of running an abandoned query).
pub async fn query(
    client: &prometheus_http_query::Client,
    promql: &str,
    timeout: Duration,
) -> Result<Data, MetricError> {
    let request = client
        .query(promql)
        .timeout(timeout.as_millis() as i64)
        .get();
    match tokio::time::timeout(timeout, request).await {
        Err(_) => Err(MetricError::Timeout(timeout)),
        Ok(Ok(response)) => Ok(response.into_inner().0),
        Ok(Err(prometheus_http_query::Error::Prometheus(e)))
            if e.is_timeout() || e.is_canceled() =>
        {
            Err(MetricError::Timeout(timeout))
        }
        Ok(Err(prometheus_http_query::Error::Prometheus(e))) => {
            Err(MetricError::Query(e.to_string()))
        }
        Ok(Err(e)) => {
            let text = format!("{e}");
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            if text.contains("timed out") || source.contains("timed out") {
                Err(MetricError::Timeout(timeout))
            } else {
                Err(MetricError::Unreachable(format!("{text}{source}")))
            }
        }
    }
}

/// A Prometheus client. Timeouts are per query ([`query`]); the connection timeout keeps a
/// dead address from holding a tick.
pub fn client(config: &MetricsConfig) -> Result<prometheus_http_query::Client, MetricError> {
    let http = reqwest::Client::builder()
        .connect_timeout(config.timeout)
        .build()
        .map_err(|e| MetricError::NoClient(format!("building the HTTP client: {e}")))?;
    prometheus_http_query::Client::from(http, &config.url)
        .map_err(|e| MetricError::NoClient(format!("bad Prometheus URL {:?}: {e}", config.url)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> MetricsConfig {
        MetricsConfig {
            url: "http://127.0.0.1:9090".into(),
            timeout: Duration::from_secs(5),
            request_metric: "http_requests_total".into(),
            namespace_label: "namespace".into(),
            service_label: "service".into(),
            pod_label: "pod".into(),
            cpu_metric: "container_cpu_usage_seconds_total".into(),
            cpu_selector: "container!=\"\"".into(),
            rate_window: "1m".into(),
            burst_window: "30s".into(),
            track_label: "track".into(),
        }
    }

    #[test]
    fn queries_are_batched_over_all_services_and_parse() {
        let c = config();
        assert_eq!(
            c.request_rate_query(),
            "sum by (namespace, service, pod) (((http_requests_total - http_requests_total offset 1m) / (timestamp(http_requests_total) - timestamp(http_requests_total offset 1m))) >= 0)"
        );
        assert_eq!(
            c.span_query(),
            "max by (namespace, service, pod) (timestamp(http_requests_total) - timestamp(http_requests_total offset 1m))"
        );
        assert_eq!(
            c.burst_query(),
            "sum by (namespace, service) (irate(http_requests_total[30s]) and http_requests_total)"
        );
        assert!(c.cpu_query().starts_with(
            "sum by (namespace, pod) (((container_cpu_usage_seconds_total{container!=\"\"} - "
        ));
        assert_eq!(
            c.request_rate_query_for(
                "shop",
                "api",
                Some("nginx_requests_total"),
                Some("code!~\"5..\"")
            ),
            "sum((((nginx_requests_total{namespace=\"shop\", service=\"api\", code!~\"5..\"} - nginx_requests_total{namespace=\"shop\", service=\"api\", code!~\"5..\"} offset 1m) / (timestamp(nginx_requests_total{namespace=\"shop\", service=\"api\", code!~\"5..\"}) - timestamp(nginx_requests_total{namespace=\"shop\", service=\"api\", code!~\"5..\"} offset 1m))) >= 0))"
        );
        for q in [
            c.request_rate_query(),
            c.span_query(),
            c.burst_query(),
            c.cpu_query(),
            c.request_rate_query_for("a", "b", None, Some("x=\"y\"")),
        ] {
            check_promql(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        assert_eq!(c.rate_window_seconds(), Ok(60.0));
        assert!(check_promql("sum(rate(x[1m])").is_err());
    }

    fn vector(json: &str) -> Data {
        serde_json::from_str(json).expect("data")
    }

    #[test]
    fn nan_inf_duplicates_and_absence_are_no_data() {
        let data = vector(
            r#"{"resultType":"vector","result":[
            {"metric":{"namespace":"a","service":"x","pod":"p"},"value":[1,"12.5"]},
            {"metric":{"namespace":"a","service":"nan","pod":"p"},"value":[1,"NaN"]},
            {"metric":{"namespace":"a","service":"inf","pod":"p"},"value":[1,"+Inf"]},
            {"metric":{"namespace":"a","service":"dup","pod":"p"},"value":[1,"1"]},
            {"metric":{"namespace":"a","service":"dup","pod":"p"},"value":[1,"2"]}]}"#,
        );
        let batch = by_labels(&data, "namespace", &["service", "pod"]);
        let key = |s: &str| ("a".to_string(), format!("{s}/p"));
        assert_eq!(lookup(&batch, &key("x"), "request"), Ok(12.5));
        for bad in ["nan", "inf", "dup", "missing"] {
            assert!(lookup(&batch, &key(bad), "request").is_err(), "{bad}");
        }
        let failed: Batch = Err(MetricError::Unreachable("connection refused".into()));
        assert_eq!(
            lookup(&failed, &key("x"), "request").map_err(|e| e.reason()),
            Err("unreachable")
        );
    }

    #[test]
    fn a_custom_query_must_return_one_series() {
        assert_eq!(
            single(&vector(
                r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}"#
            )),
            Ok(3.0)
        );
        assert!(single(&vector(r#"{"resultType":"vector","result":[]}"#)).is_err());
        assert_eq!(
            single(&vector(
                r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"3"]},{"metric":{"a":"2"},"value":[1,"3"]}]}"#
            )),
            Err(MetricError::SeveralSeries(2))
        );
    }

    #[tokio::test]
    async fn a_query_that_does_not_answer_times_out() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut c = config();
        c.url = format!("http://{addr}");
        c.timeout = Duration::from_millis(300);
        let client = client(&c).expect("client");
        let started = std::time::Instant::now();
        let result = query(&client, "up", c.timeout).await;
        assert_eq!(result.err().map(|e| e.reason()), Some("timeout"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

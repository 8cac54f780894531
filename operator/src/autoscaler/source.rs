//! The metrics source: batched PromQL queries (one per metric per tick, for every
//! Microservice at once) and strict parsing: an empty result, NaN, Inf or several series
//! for one service are "no data", never zero.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_http_query::response::Data;

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
    /// Label of the CPU counter holding the pod name.
    pub pod_label: String,
    /// CPU counter in seconds, e.g. cAdvisor's `container_cpu_usage_seconds_total`.
    pub cpu_metric: String,
    /// Extra selector of the CPU counter, e.g. `container!=""` (leaves out the pod-level sums).
    pub cpu_selector: String,
    /// Range of the stable `rate()`, e.g. `1m`.
    pub rate_window: String,
    /// Range of the burst `irate()`, e.g. `30s`.
    pub burst_window: String,
}

/// Key of a batched result: (namespace, name).
pub type Key = (String, String);

/// Values by key, or why the whole query failed.
pub type Batch = Result<HashMap<Key, Result<f64, String>>, String>;

impl MetricsConfig {
    /// Total request rate per service, for every service at once. `and {metric}` keeps only
    /// series scraped now: a pod that is gone keeps its last rate inside the range window,
    /// and counting it next to the pods that took over its traffic would scale back up.
    pub fn request_rate_query(&self) -> String {
        format!(
            "sum by ({ns}, {svc}) (rate({m}[{w}]) and {m})",
            ns = self.namespace_label,
            svc = self.service_label,
            m = self.request_metric,
            w = self.rate_window
        )
    }

    /// The same over the short window with `irate`, to see a jump on the next scrape.
    pub fn burst_query(&self) -> String {
        format!(
            "sum by ({ns}, {svc}) (irate({m}[{w}]) and {m})",
            ns = self.namespace_label,
            svc = self.service_label,
            m = self.request_metric,
            w = self.burst_window
        )
    }

    /// CPU cores used per pod, for every pod at once.
    pub fn cpu_query(&self) -> String {
        let selector = if self.cpu_selector.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", self.cpu_selector)
        };
        format!(
            "sum by ({ns}, {pod}) (rate({m}{selector}[{w}]))",
            ns = self.namespace_label,
            pod = self.pod_label,
            m = self.cpu_metric,
            w = self.rate_window
        )
    }

    /// The request-rate query for one service: what the batch computes for it, or, with a
    /// metric or selector of its own, the query run for it alone.
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
        format!(
            "sum(rate({m}{{{ns}=\"{namespace}\", {svc}=\"{service}\"{extra}}}[{w}]))",
            ns = self.namespace_label,
            svc = self.service_label,
            m = metric.unwrap_or(&self.request_metric),
            w = self.rate_window
        )
    }
}

/// A finite number, or why it is not one.
pub fn strict(value: f64) -> Result<f64, String> {
    if value.is_nan() {
        Err("the query returned NaN".to_string())
    } else if value.is_infinite() {
        Err("the query returned an infinite value".to_string())
    } else {
        Ok(value)
    }
}

/// Groups an instant vector by two labels. Several series for one key make that key an error.
pub fn by_labels(data: &Data, first: &str, second: &str) -> Batch {
    let Data::Vector(vector) = data else {
        return Err("the query did not return an instant vector".to_string());
    };
    let mut out: HashMap<Key, Result<f64, String>> = HashMap::new();
    for sample in vector {
        let labels = sample.metric();
        let (Some(a), Some(b)) = (labels.get(first), labels.get(second)) else {
            continue;
        };
        let key = (a.clone(), b.clone());
        let value = strict(sample.sample().value());
        out.entry(key)
            .and_modify(|v| *v = Err("the query returned several series".to_string()))
            .or_insert(value);
    }
    Ok(out)
}

/// Exactly one finite value from a single-series result (a Microservice's own query).
pub fn single(data: &Data) -> Result<f64, String> {
    match data {
        Data::Vector(v) if v.len() == 1 => strict(v[0].sample().value()),
        Data::Vector(v) if v.is_empty() => Err("the query returned no series".to_string()),
        Data::Vector(v) => Err(format!(
            "the query returned {} series; it must return one",
            v.len()
        )),
        Data::Scalar(s) => strict(s.value()),
        _ => Err("the query did not return an instant vector or scalar".to_string()),
    }
}

/// Looks up one key of a batch: no series for it is "no data".
pub fn lookup(batch: &Batch, key: &Key, what: &str) -> Result<f64, String> {
    match batch {
        Err(e) => Err(e.clone()),
        Ok(map) => map
            .get(key)
            .cloned()
            .unwrap_or_else(|| Err(format!("no {what} series for {}/{}", key.0, key.1))),
    }
}

/// Runs one query.
pub async fn query(client: &prometheus_http_query::Client, promql: &str) -> Result<Data, String> {
    client
        .query(promql)
        .get()
        .await
        .map(|r| r.into_inner().0)
        .map_err(|e| format!("Prometheus query failed: {e}"))
}

/// A Prometheus client with a request timeout.
pub fn client(config: &MetricsConfig) -> Result<prometheus_http_query::Client, String> {
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    prometheus_http_query::Client::from(http, &config.url)
        .map_err(|e| format!("bad Prometheus URL {:?}: {e}", config.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MetricsConfig {
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
        }
    }

    #[test]
    fn queries_are_batched_over_all_services() {
        let c = config();
        assert_eq!(
            c.request_rate_query(),
            "sum by (namespace, service) (rate(http_requests_total[1m]) and http_requests_total)"
        );
        assert_eq!(
            c.burst_query(),
            "sum by (namespace, service) (irate(http_requests_total[30s]) and http_requests_total)"
        );
        assert_eq!(
            c.request_rate_query_for(
                "shop",
                "api",
                Some("nginx_requests_total"),
                Some("code!~\"5..\"")
            ),
            "sum(rate(nginx_requests_total{namespace=\"shop\", service=\"api\", code!~\"5..\"}[1m]))"
        );
        assert_eq!(
            c.cpu_query(),
            "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!=\"\"}[1m]))"
        );
    }

    fn vector(json: &str) -> Data {
        serde_json::from_str(json).expect("data")
    }

    #[test]
    fn nan_inf_duplicates_and_absence_are_no_data() {
        let data = vector(
            r#"{"resultType":"vector","result":[
            {"metric":{"namespace":"a","service":"x"},"value":[1,"12.5"]},
            {"metric":{"namespace":"a","service":"nan"},"value":[1,"NaN"]},
            {"metric":{"namespace":"a","service":"inf"},"value":[1,"+Inf"]},
            {"metric":{"namespace":"a","service":"dup"},"value":[1,"1"]},
            {"metric":{"namespace":"a","service":"dup"},"value":[1,"2"]}]}"#,
        );
        let batch = by_labels(&data, "namespace", "service");
        let key = |s: &str| ("a".to_string(), s.to_string());
        assert_eq!(lookup(&batch, &key("x"), "request"), Ok(12.5));
        for bad in ["nan", "inf", "dup", "missing"] {
            assert!(lookup(&batch, &key(bad), "request").is_err(), "{bad}");
        }
        let failed: Batch = Err("connection refused".into());
        assert_eq!(
            lookup(&failed, &key("x"), "request"),
            Err("connection refused".into())
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
        assert!(
            single(&vector(r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"3"]},{"metric":{"a":"2"},"value":[1,"3"]}]}"#)).is_err()
        );
    }
}

//! Prometheus exposition of the simulator state (OpenMetrics text format).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::latency::{BUCKET_COUNT, LatencyHistogram, upper_bound};
use crate::sim::{PodCounters, SimState};

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `code` label of the requests answered successfully.
pub const CODE_OK: &str = "200";
/// `code` label of the requests answered with an error.
pub const CODE_ERROR: &str = "500";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    service: String,
    pod: String,
    track: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    namespace: String,
    service: String,
    pod: String,
    track: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CpuLabels {
    namespace: String,
    pod: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    namespace: String,
    service: String,
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

const REQUESTS_HELP: &str = "Requests served by the pod, by status code (simulated)";
const LATENCY_NAME: &str = "http_request_duration_seconds";
const LATENCY_HELP: &str = "Latency of the requests served by the pod (simulated, log-normal)";

/// One pod's latency histogram as exposed. prometheus-client's own `Histogram` counts whole
/// observations one `observe()` at a time; the simulator's histogram holds fractional
/// counts, so this type hands its (rounded down) cumulative counts to the crate's encoder
/// directly. The text encoding itself is the crate's.
#[derive(Debug)]
struct Latency {
    sum: f64,
    /// Cumulative whole counts per bucket, in the order of `latency::upper_bound`.
    cumulative: [u64; BUCKET_COUNT],
}

impl From<&LatencyHistogram> for Latency {
    fn from(h: &LatencyHistogram) -> Self {
        Self {
            sum: h.sum(),
            cumulative: h.cumulative_whole(),
        }
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder takes per-bucket counts and accumulates them itself.
        let mut buckets = Vec::with_capacity(BUCKET_COUNT);
        let mut below = 0;
        for (i, &c) in self.cumulative.iter().enumerate() {
            buckets.push((upper_bound(i), c.saturating_sub(below)));
            below = c;
        }
        let count = self.cumulative[BUCKET_COUNT - 1];
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every pod's [`Latency`], labelled, in pod order (a `Family` would need a `Default`
/// metric filled in afterwards through interior mutability).
#[derive(Debug)]
struct Latencies(Vec<(PodLabels, Latency)>);

impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, latency) in &self.0 {
            latency.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `(code, requests)` of a pod: both codes always, so neither series appears late.
fn by_code(c: &PodCounters) -> [(&'static str, f64); 2] {
    [(CODE_OK, c.ok), (CODE_ERROR, c.errors)]
}

/// Renders `state` as OpenMetrics text. Counter families are named without `_total` in the
/// `# TYPE` lines, as OpenMetrics requires; samples carry the `_total` suffix.
pub fn render(state: &SimState, namespace: &str) -> String {
    let requests = Family::<RequestLabels, FloatCounter>::default();
    let mut latencies = Vec::with_capacity(state.pods.len());
    let cpu = Family::<CpuLabels, FloatCounter>::default();
    let dropped = Family::<ServiceLabels, FloatCounter>::default();
    let offered = Family::<ServiceLabels, FloatGauge>::default();
    let serving = Family::<ServiceLabels, Gauge>::default();

    for (pod, c) in &state.pods {
        let labels = PodLabels {
            namespace: namespace.to_owned(),
            service: c.service.clone(),
            pod: pod.clone(),
            track: c.track.as_str().to_owned(),
        };
        for (code, n) in by_code(c) {
            requests
                .get_or_create(&RequestLabels {
                    namespace: labels.namespace.clone(),
                    service: labels.service.clone(),
                    pod: labels.pod.clone(),
                    track: labels.track.clone(),
                    code: code.to_owned(),
                })
                .inc_by(n);
        }
        latencies.push((labels, Latency::from(&c.latency)));
        cpu.get_or_create(&CpuLabels {
            namespace: namespace.to_owned(),
            pod: pod.clone(),
            container: "app".to_owned(),
        })
        .inc_by(c.cpu_seconds);
    }
    for (service, s) in &state.services {
        let labels = ServiceLabels {
            namespace: namespace.to_owned(),
            service: service.clone(),
        };
        dropped.get_or_create(&labels).inc_by(s.dropped);
        offered.get_or_create(&labels).set(s.offered);
        serving
            .get_or_create(&labels)
            .set(i64::try_from(s.serving).unwrap_or(i64::MAX));
    }

    let mut registry = Registry::default();
    registry.register("http_requests", REQUESTS_HELP, requests);
    registry.register(LATENCY_NAME, LATENCY_HELP, Latencies(latencies));
    registry.register(
        "container_cpu_usage_seconds",
        "CPU time consumed by the container in seconds (simulated)",
        cpu,
    );
    registry.register(
        "loadsim_dropped_requests",
        "Requests offered while the service had no serving pod",
        dropped,
    );
    registry.register(
        "loadsim_offered_load",
        "Request rate offered to the service in the last tick (requests/second)",
        offered,
    );
    registry.register(
        "loadsim_serving_pods",
        "Pods of the service that are Running, Ready and not terminating",
        serving,
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Renders one pod's own series, as the pod itself would serve them on its `/metrics`:
/// `http_requests_total` by `code` and `http_request_duration_seconds`, without `namespace`,
/// `service`, `pod` or `track` (the scraper adds those by relabeling, as docs/metrics.md
/// says). None for an unknown pod.
pub fn render_pod(state: &SimState, pod: &str) -> Option<String> {
    let counters = state.pods.get(pod)?;
    let requests = Family::<CodeLabels, FloatCounter>::default();
    for (code, n) in by_code(counters) {
        requests
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc_by(n);
    }
    let mut registry = Registry::default();
    registry.register("http_requests", REQUESTS_HELP, requests);
    registry.register(LATENCY_NAME, LATENCY_HELP, Latency::from(&counters.latency));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency;
    use crate::sim::{CostModel, PodView, ServiceStats, Track, advance};
    use std::collections::BTreeMap;

    fn counters(track: Track, ok: f64, errors: f64, median: f64, cpu: f64) -> PodCounters {
        let mut latency = LatencyHistogram::default();
        latency.record(ok + errors, median);
        PodCounters {
            service: "api".into(),
            uid: "u1".into(),
            track,
            ok,
            errors,
            cpu_seconds: cpu,
            latency,
        }
    }

    fn small_state() -> SimState {
        let mut s = SimState::default();
        s.pods.insert(
            "api-7d9-abcde".into(),
            counters(Track::Stable, 125.5, 0.0, 0.05, 0.75),
        );
        s.pods.insert(
            "api-canary-5c4-fghij".into(),
            counters(Track::Canary, 8.0, 2.0, 0.8, 0.25),
        );
        s.services.insert(
            "api".into(),
            ServiceStats {
                offered: 50.0,
                serving: 2,
                dropped: 0.0,
            },
        );
        s.services.insert(
            "web".into(),
            ServiceStats {
                offered: 10.0,
                serving: 0,
                dropped: 20.0,
            },
        );
        s
    }

    /// One sample line of OpenMetrics text.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses OpenMetrics text the way a scraper must be able to: `# HELP`/`# TYPE` before
    /// each family, every sample named after its family with the suffixes its type allows,
    /// `name{label="value",...} number` (no escapes occur in our label values), `# EOF` last.
    fn parse(text: &str) -> Vec<Sample> {
        let mut samples = Vec::new();
        let (mut family, mut kind) = (String::new(), String::new());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (f, k) = rest.split_once(' ').expect("# TYPE name type");
                (family, kind) = (f.to_owned(), k.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_owned(), v.expect("quoted value").to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_sum", "_count"],
                other => panic!("unexpected type {other}"),
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{family}{s}")),
                "{line} outside its family {family} ({kind})"
            );
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        samples
    }

    /// Checks every histogram series of `name`: buckets in ascending `le` ending in `+Inf`,
    /// cumulative, `+Inf` equal to `_count`, whole counts. Returns the buckets by label set
    /// (without `le`).
    fn histograms(
        samples: &[Sample],
        name: &str,
    ) -> BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> {
        let mut buckets: BTreeMap<_, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for s in samples {
            let mut labels = s.labels.clone();
            if s.name == format!("{name}_bucket") {
                let le = labels.remove("le").expect("le");
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le number")
                };
                buckets.entry(labels).or_default().push((le, s.value));
            } else if s.name == format!("{name}_count") {
                counts.insert(labels, s.value);
            }
        }
        assert_eq!(
            buckets.keys().collect::<Vec<_>>(),
            counts.keys().collect::<Vec<_>>()
        );
        for (labels, b) in &buckets {
            let les: Vec<f64> = b.iter().map(|(le, _)| *le).collect();
            let mut want: Vec<f64> = latency::BUCKETS.to_vec();
            want.push(f64::INFINITY);
            assert_eq!(les, want, "{labels:?}");
            assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{labels:?}: {b:?}");
            assert!(b.iter().all(|(_, c)| c.fract() == 0.0), "{b:?}");
            assert_eq!(b.last().map(|(_, c)| *c), Some(counts[labels]));
        }
        buckets
    }

    #[test]
    fn exact_text() {
        let text = render(&small_state(), "ns1");
        let expected = r#"# HELP http_requests Requests served by the pod, by status code (simulated).
# TYPE http_requests counter
http_requests_total{namespace="ns1",service="api",pod="api-7d9-abcde",track="stable",code="200"} 125.5
http_requests_total{namespace="ns1",service="api",pod="api-7d9-abcde",track="stable",code="500"} 0.0
http_requests_total{namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary",code="200"} 8.0
http_requests_total{namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary",code="500"} 2.0
# HELP http_request_duration_seconds Latency of the requests served by the pod (simulated, log-normal).
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_sum{namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 7.110506542994336
http_request_duration_seconds_count{namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="0.005",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 0
http_request_duration_seconds_bucket{le="0.01",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 0
http_request_duration_seconds_bucket{le="0.025",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 10
http_request_duration_seconds_bucket{le="0.05",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 62
http_request_duration_seconds_bucket{le="0.1",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 115
http_request_duration_seconds_bucket{le="0.25",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="0.5",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="1.0",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="2.5",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="5.0",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="10.0",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_bucket{le="+Inf",namespace="ns1",service="api",pod="api-7d9-abcde",track="stable"} 125
http_request_duration_seconds_sum{namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 9.06518762453461
http_request_duration_seconds_count{namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 10
http_request_duration_seconds_bucket{le="0.005",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.01",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.025",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.05",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.1",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.25",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 0
http_request_duration_seconds_bucket{le="0.5",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 1
http_request_duration_seconds_bucket{le="1.0",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 6
http_request_duration_seconds_bucket{le="2.5",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 9
http_request_duration_seconds_bucket{le="5.0",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 9
http_request_duration_seconds_bucket{le="10.0",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 9
http_request_duration_seconds_bucket{le="+Inf",namespace="ns1",service="api",pod="api-canary-5c4-fghij",track="canary"} 10
# HELP container_cpu_usage_seconds CPU time consumed by the container in seconds (simulated).
# TYPE container_cpu_usage_seconds counter
container_cpu_usage_seconds_total{namespace="ns1",pod="api-canary-5c4-fghij",container="app"} 0.25
container_cpu_usage_seconds_total{namespace="ns1",pod="api-7d9-abcde",container="app"} 0.75
# HELP loadsim_dropped_requests Requests offered while the service had no serving pod.
# TYPE loadsim_dropped_requests counter
loadsim_dropped_requests_total{namespace="ns1",service="api"} 0.0
loadsim_dropped_requests_total{namespace="ns1",service="web"} 20.0
# HELP loadsim_offered_load Request rate offered to the service in the last tick (requests/second).
# TYPE loadsim_offered_load gauge
loadsim_offered_load{namespace="ns1",service="api"} 50.0
loadsim_offered_load{namespace="ns1",service="web"} 10.0
# HELP loadsim_serving_pods Pods of the service that are Running, Ready and not terminating.
# TYPE loadsim_serving_pods gauge
loadsim_serving_pods{namespace="ns1",service="api"} 2
loadsim_serving_pods{namespace="ns1",service="web"} 0
# EOF
"#;
        // Family iteration order is a hash map's; compare line sets within each family by
        // sorting, and check the overall structure separately (`parse`).
        parse(&text);
        let mut got: Vec<&str> = text.lines().collect();
        let mut want: Vec<&str> = expected.lines().collect();
        assert_eq!(got.first(), want.first());
        assert_eq!(got.last(), Some(&"# EOF"));
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "full text:\n{text}");
    }

    #[test]
    fn exposition_parses_and_histograms_count_the_requests() {
        let state = small_state();
        let samples = parse(&render(&state, "ns1"));
        let buckets = histograms(&samples, "http_request_duration_seconds");
        assert_eq!(buckets.len(), 2);
        for (pod, c) in &state.pods {
            let of_pod = |s: &&Sample| s.labels.get("pod") == Some(pod);
            let requests: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.name == "http_requests_total")
                .filter(of_pod)
                .collect();
            // Both codes, each with the pod's track.
            let codes: Vec<&str> = requests.iter().map(|s| s.labels["code"].as_str()).collect();
            assert_eq!(codes.len(), 2);
            assert!(
                codes.contains(&"200") && codes.contains(&"500"),
                "{codes:?}"
            );
            assert!(
                requests
                    .iter()
                    .all(|s| s.labels["track"] == c.track.as_str())
            );
            let total: f64 = requests.iter().map(|s| s.value).sum();
            assert!((total - c.requests()).abs() < 1e-9);
            let count = samples
                .iter()
                .filter(|s| s.name == "http_request_duration_seconds_count")
                .find(of_pod)
                .expect("a count");
            assert_eq!(count.value, total.floor(), "{pod}");
        }
    }

    #[test]
    fn empty_state() {
        let text = render(&SimState::default(), "ns1");
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.lines().any(|l| !l.starts_with('#')));
        parse(&text);
    }

    #[test]
    fn one_pod_serves_its_own_series_without_pod_labels() {
        let text = render_pod(&small_state(), "api-canary-5c4-fghij").expect("known pod");
        for line in [
            r#"http_requests_total{code="200"} 8.0"#,
            r#"http_requests_total{code="500"} 2.0"#,
            "http_request_duration_seconds_count 10",
            r#"http_request_duration_seconds_bucket{le="+Inf"} 10"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        for label in ["namespace=", "service=", "pod=", "track="] {
            assert!(!text.contains(label), "{text}");
        }
        let samples = parse(&text);
        assert_eq!(
            histograms(&samples, "http_request_duration_seconds").len(),
            1
        );
        assert!(render_pod(&small_state(), "nope").is_none());
    }

    /// Prometheus's `histogram_quantile` on classic buckets (`bucketQuantile` in
    /// promql/quantile.go): find the bucket holding rank `q * total`, interpolate linearly.
    fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
        let total = buckets.last().expect("+Inf bucket").1;
        let rank = q * total;
        let n = buckets.len();
        let b = buckets[..n - 1]
            .iter()
            .position(|(_, c)| *c >= rank)
            .unwrap_or(n - 1);
        if b == n - 1 {
            return buckets[n - 2].0;
        }
        let (end, count) = buckets[b];
        let (start, below) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
        start + (end - start) * ((rank - below) / (count - below))
    }

    fn bucket_index(x: f64) -> usize {
        latency::BUCKETS
            .iter()
            .position(|le| x <= *le)
            .unwrap_or(latency::BUCKETS.len())
    }

    /// What Shoal's analysis computes: `histogram_quantile(0.99, sum by (le) (rate(..[1m])))`
    /// from two scrapes a minute apart of a pod that has served for a while. It lands in the
    /// bucket of the true p99 (the whole counts exposed included).
    #[test]
    fn p99_over_a_minute_lands_in_the_true_p99s_bucket() {
        const COST: CostModel = CostModel {
            base_cpu: 0.0,
            cpu_per_request: 0.0,
        };
        for median in [0.05, 0.8] {
            for rps in [2.0, 10.0, 100.0] {
                let pod = PodView {
                    name: "api-1".into(),
                    uid: "u".into(),
                    service: "api".into(),
                    serving: true,
                    track: Track::Canary,
                    error_ratio: 0.0,
                    latency_median: median,
                };
                let loads = BTreeMap::from([("api".to_owned(), rps)]);
                let mut state = SimState::default();
                let mut scrape = || {
                    // 60 s in uneven ticks, then a scrape.
                    for dt in [0.37, 0.5, 0.63].repeat(40) {
                        advance(&mut state, &loads, std::slice::from_ref(&pod), &COST, dt);
                    }
                    let text = render_pod(&state, "api-1").expect("pod");
                    let samples = parse(&text);
                    let mut h = histograms(&samples, "http_request_duration_seconds");
                    h.pop_first().expect("one histogram").1
                };
                let _warm_up = scrape();
                let before = scrape();
                let after = scrape();
                let increase: Vec<(f64, f64)> = before
                    .iter()
                    .zip(&after)
                    .map(|((le, b), (_, a))| (*le, a - b))
                    .collect();
                let estimate = histogram_quantile(0.99, &increase);
                let truth = latency::quantile(0.99, median);
                assert_eq!(
                    bucket_index(estimate),
                    bucket_index(truth),
                    "median {median}, {rps} req/s: p99 {truth}, histogram_quantile {estimate}, \
                     increase {increase:?}"
                );
            }
        }
    }
}

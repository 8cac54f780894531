//! Prometheus exposition of the simulator state (OpenMetrics text format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::sim::SimState;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    service: String,
    pod: String,
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

/// Renders `state` as OpenMetrics text. Counter families are named without `_total` in the
/// `# TYPE` lines, as OpenMetrics requires; samples carry the `_total` suffix.
pub fn render(state: &SimState, namespace: &str) -> String {
    let requests = Family::<RequestLabels, FloatCounter>::default();
    let cpu = Family::<CpuLabels, FloatCounter>::default();
    let dropped = Family::<ServiceLabels, FloatCounter>::default();
    let offered = Family::<ServiceLabels, FloatGauge>::default();
    let serving = Family::<ServiceLabels, Gauge>::default();

    for (pod, c) in &state.pods {
        requests
            .get_or_create(&RequestLabels {
                namespace: namespace.to_owned(),
                service: c.service.clone(),
                pod: pod.clone(),
            })
            .inc_by(c.requests);
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
    registry.register(
        "http_requests",
        "Requests served by the pod (simulated)",
        requests,
    );
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

/// Renders one pod's own counters, as the pod itself would serve them on its `/metrics`:
/// `http_requests_total` without labels (the scraper adds `namespace`, `service` and `pod`
/// by relabeling, as docs/metrics.md says). None for an unknown pod.
pub fn render_pod(state: &SimState, pod: &str) -> Option<String> {
    let counters = state.pods.get(pod)?;
    let requests = FloatCounter::default();
    requests.inc_by(counters.requests);
    let mut registry = Registry::default();
    registry.register(
        "http_requests",
        "Requests served by the pod (simulated)",
        requests,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{PodCounters, ServiceStats};

    fn small_state() -> SimState {
        let mut s = SimState::default();
        s.pods.insert(
            "api-7d9-abcde".into(),
            PodCounters {
                service: "api".into(),
                uid: "u1".into(),
                requests: 125.5,
                cpu_seconds: 0.75,
            },
        );
        s.services.insert(
            "api".into(),
            ServiceStats {
                offered: 50.0,
                serving: 1,
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

    #[test]
    fn exact_text() {
        let text = render(&small_state(), "ns1");
        let expected = r#"# HELP http_requests Requests served by the pod (simulated).
# TYPE http_requests counter
http_requests_total{namespace="ns1",service="api",pod="api-7d9-abcde"} 125.5
# HELP container_cpu_usage_seconds CPU time consumed by the container in seconds (simulated).
# TYPE container_cpu_usage_seconds counter
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
loadsim_serving_pods{namespace="ns1",service="api"} 1
loadsim_serving_pods{namespace="ns1",service="web"} 0
# EOF
"#;
        // Family iteration order is a hash map's; compare line sets within each family by
        // sorting, and check the overall structure separately.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap_or_default();
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(family),
                    "{line} outside its family {family}"
                );
            }
        }
        let mut got: Vec<&str> = text.lines().collect();
        let mut want: Vec<&str> = expected.lines().collect();
        assert_eq!(got.first(), want.first());
        assert_eq!(got.last(), Some(&"# EOF"));
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "full text:\n{text}");
    }

    #[test]
    fn empty_state() {
        let text = render(&SimState::default(), "ns1");
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.lines().any(|l| !l.starts_with('#')));
    }

    #[test]
    fn one_pod_serves_its_own_counter_without_labels() {
        let text = render_pod(&small_state(), "api-7d9-abcde").expect("known pod");
        assert!(
            text.lines().any(|l| l == "http_requests_total 125.5"),
            "{text}"
        );
        assert!(!text.contains("namespace="), "{text}");
        assert!(render_pod(&small_state(), "nope").is_none());
    }
}

//! Canary analysis: Prometheus queries batched over every canary in flight, as the
//! autoscaler's are. The controller registers a canary on each pass ([`Analyzer::want`])
//! and reads the latest [`Sample`]; a background task ([`Analyzer::run`]) sends, per
//! group of canaries that share metric names, selector and interval, one query per figure
//! per interval, grouped by namespace, service and track.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use prometheus_http_query::response::Data;
use tracing::{debug, warn};

use crate::autoscaler::source;
pub use crate::autoscaler::source::MetricsConfig;
use crate::validate::AnalysisPolicy;

/// A canary is forgotten when no reconcile asked for it for this long.
const FORGET_AFTER: Duration = Duration::from_secs(120);
/// How often the task looks for due groups.
const TICK: Duration = Duration::from_secs(2);

/// The figures of one track in one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Track {
    /// Requests in the window.
    pub requests: Option<f64>,
    /// Share of the requests without a 5xx, percent.
    pub success_rate: Option<f64>,
    /// p99 latency in milliseconds.
    pub p99_ms: Option<f64>,
}

/// One analysis reading of one Microservice.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When the queries ran.
    pub at: Timestamp,
    /// The window they read.
    pub window: Duration,
    /// The canary track.
    pub canary: Track,
    /// The stable track (every series whose track is not `canary`).
    pub stable: Track,
    /// Why there are no figures (Prometheus unreachable, a query refused).
    pub error: Option<String>,
}

/// What the queries of a canary depend on: canaries with equal groups share queries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    request_metric: String,
    latency_metric: String,
    selector: String,
    window: Duration,
}

impl Group {
    /// The group of a canary with this analysis policy.
    pub fn of(policy: &AnalysisPolicy, config: &MetricsConfig) -> Group {
        Group {
            request_metric: policy
                .request_metric
                .clone()
                .unwrap_or_else(|| config.request_metric.clone()),
            latency_metric: policy.latency_metric.clone(),
            selector: policy.selector.clone().unwrap_or_default(),
            window: policy.interval,
        }
    }

    fn series(&self, metric: &str, extra: &str) -> String {
        let matchers: Vec<&str> = [extra, self.selector.as_str()]
            .into_iter()
            .filter(|m| !m.trim().is_empty())
            .collect();
        format!("{metric}{{{}}}", matchers.join(", "))
    }

    /// The three queries: requests, 5xx responses, p99 latency in seconds.
    pub fn queries(&self, config: &MetricsConfig) -> [String; 3] {
        let by = format!(
            "{}, {}, {}",
            config.namespace_label, config.service_label, config.track_label
        );
        let w = format!("{}s", self.window.as_secs());
        let requests = self.series(&self.request_metric, "");
        let errors = self.series(&self.request_metric, r#"code=~"5..""#);
        let buckets = self.series(&format!("{}_bucket", self.latency_metric), "");
        [
            format!("sum by ({by}) (increase({requests}[{w}]))"),
            format!("sum by ({by}) (increase({errors}[{w}]))"),
            format!("histogram_quantile(0.99, sum by ({by}, le) (rate({buckets}[{w}])))"),
        ]
    }
}

/// (namespace, service).
pub type Key = (String, String);

/// Values per (namespace, service): (canary, stable), stable summed over the other tracks.
type Split = HashMap<Key, (Option<f64>, Option<f64>)>;

fn split(data: &Data, config: &MetricsConfig, sum: bool) -> Split {
    let mut out: Split = HashMap::new();
    let Data::Vector(vector) = data else {
        return out;
    };
    for s in vector {
        let labels = s.metric();
        let (Some(ns), Some(svc)) = (
            labels.get(&config.namespace_label),
            labels.get(&config.service_label),
        ) else {
            continue;
        };
        let Ok(value) = source::strict(s.sample().value()) else {
            continue;
        };
        let canary = labels.get(&config.track_label).map(String::as_str) == Some("canary");
        let entry = out.entry((ns.clone(), svc.clone())).or_default();
        let slot = if canary { &mut entry.0 } else { &mut entry.1 };
        *slot = Some(match *slot {
            // Several stable series (no track label and `stable`): requests add up; for
            // a quantile the larger one is the cautious reading.
            Some(old) if sum => old + value,
            Some(old) => old.max(value),
            None => value,
        });
    }
    out
}

fn track(requests: Option<f64>, errors: Option<f64>, p99_seconds: Option<f64>) -> Track {
    let success_rate = requests
        .filter(|r| *r > 0.0)
        .map(|r| 100.0 * (1.0 - errors.unwrap_or(0.0) / r).clamp(0.0, 1.0));
    Track {
        requests,
        success_rate,
        p99_ms: p99_seconds.map(|s| s * 1000.0),
    }
}

#[derive(Default)]
struct Inner {
    /// Canaries asked for, with their group and when last asked.
    wanted: HashMap<Key, (Group, Instant)>,
    /// Latest samples.
    samples: HashMap<Key, Sample>,
    /// When each group's queries last ran.
    ran: HashMap<Group, Instant>,
}

/// The shared analysis state.
pub struct Analyzer {
    config: MetricsConfig,
    inner: Mutex<Inner>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Analyzer {
    /// An analyzer reading Prometheus as `config` says, counting its queries in `metrics`
    /// (`shoal_canary_analysis_queries_total`).
    pub fn new(config: MetricsConfig, metrics: Arc<crate::metrics::Metrics>) -> Analyzer {
        Analyzer {
            config,
            inner: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for the analysis of the canary of `key` (again: it is forgotten when nobody
    /// asked for a while).
    pub fn want(&self, key: Key, policy: &AnalysisPolicy) {
        let group = Group::of(policy, &self.config);
        self.lock().wanted.insert(key, (group, Instant::now()));
    }

    /// The latest sample of the canary of `key`.
    pub fn latest(&self, key: &Key) -> Option<Sample> {
        self.lock().samples.get(key).cloned()
    }

    /// Forgets a canary that ended.
    pub fn forget(&self, key: &Key) {
        let mut inner = self.lock();
        inner.wanted.remove(key);
        inner.samples.remove(key);
    }

    /// The groups whose interval has passed since their last queries, with their canaries.
    fn due(&self) -> Vec<(Group, Vec<Key>)> {
        let mut inner = self.lock();
        inner
            .wanted
            .retain(|_, (_, asked)| asked.elapsed() < FORGET_AFTER);
        let mut groups: HashMap<Group, Vec<Key>> = HashMap::new();
        for (key, (group, _)) in &inner.wanted {
            groups.entry(group.clone()).or_default().push(key.clone());
        }
        let due: Vec<(Group, Vec<Key>)> = groups
            .into_iter()
            .filter(|(g, _)| inner.ran.get(g).is_none_or(|t| t.elapsed() >= g.window))
            .collect();
        for (g, _) in &due {
            inner.ran.insert(g.clone(), Instant::now());
        }
        let live: Vec<Group> = inner.wanted.values().map(|(g, _)| g.clone()).collect();
        inner.ran.retain(|g, _| live.contains(g));
        due
    }

    async fn sample(
        &self,
        client: &prometheus_http_query::Client,
        group: &Group,
    ) -> Result<[Split; 3], String> {
        let queries = group.queries(&self.config);
        let mut out: [Split; 3] = Default::default();
        for (i, q) in queries.iter().enumerate() {
            self.metrics.canary_query();
            let data = source::query(client, q, self.config.timeout)
                .await
                .map_err(|e| format!("{e} (query {q})"))?;
            out[i] = split(&data, &self.config, i < 2);
        }
        Ok(out)
    }

    /// Runs the queries of due groups until the process stops.
    pub async fn run(self: Arc<Self>) {
        let client = match source::client(&self.config) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "no Prometheus client: canary analysis will find no data");
                None
            }
        };
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            for (group, keys) in self.due() {
                let result = match &client {
                    Some(c) => self.sample(c, &group).await,
                    None => Err("no Prometheus client".to_string()),
                };
                let at = Timestamp::now();
                debug!(canaries = keys.len(), window = ?group.window, ok = result.is_ok(), "canary analysis");
                let mut inner = self.lock();
                for key in keys {
                    let sample = match &result {
                        Ok([requests, errors, p99]) => {
                            let r = requests.get(&key).copied().unwrap_or_default();
                            let e = errors.get(&key).copied().unwrap_or_default();
                            let p = p99.get(&key).copied().unwrap_or_default();
                            Sample {
                                at,
                                window: group.window,
                                canary: track(r.0, e.0, p.0),
                                stable: track(r.1, e.1, p.1),
                                error: None,
                            }
                        }
                        Err(e) => Sample {
                            at,
                            window: group.window,
                            canary: Track::default(),
                            stable: Track::default(),
                            error: Some(e.clone()),
                        },
                    };
                    inner.samples.insert(key, sample);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::source::tests::config;

    fn policy() -> AnalysisPolicy {
        crate::validate::analysis_policy(&Default::default()).expect("defaults are valid")
    }

    #[test]
    fn queries_group_by_track_and_parse() {
        let group = Group::of(&policy(), &config());
        for q in group.queries(&config()) {
            source::check_promql(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert!(q.contains("by (namespace, service, track"), "{q}");
            assert!(q.contains("[30s]"), "{q}");
        }
        let mut p = policy();
        p.selector = Some(r#"handler!="/health""#.into());
        let [requests, errors, _] = Group::of(&p, &config()).queries(&config());
        assert!(
            requests.contains(r#"http_requests_total{handler!="/health"}"#),
            "{requests}"
        );
        assert!(
            errors.contains(r#"{code=~"5..", handler!="/health"}"#),
            "{errors}"
        );
    }

    #[test]
    fn canaries_with_the_same_settings_share_one_set_of_queries_per_interval() {
        let analyzer = Analyzer::new(config(), Arc::new(crate::metrics::Metrics::new()));
        let p = policy();
        for name in ["a", "b", "c"] {
            analyzer.want(("ns".into(), name.into()), &p);
        }
        let mut other = policy();
        other.interval = Duration::from_secs(60);
        analyzer.want(("ns2".into(), "d".into()), &other);
        let mut due = analyzer.due();
        due.sort_by_key(|(g, _)| g.window);
        assert_eq!(due.len(), 2, "two groups: {due:?}");
        assert_eq!(due[0].1.len(), 3, "three canaries, one group");
        assert_eq!(due[1].1, vec![("ns2".to_string(), "d".to_string())]);
        assert!(
            analyzer.due().is_empty(),
            "nothing is due again before the interval"
        );
        // A group nobody wants any more is forgotten, so it is due at once if it comes back.
        analyzer.forget(&("ns2".into(), "d".into()));
        assert!(analyzer.due().is_empty());
        assert!(!analyzer.lock().ran.contains_key(&due[1].0));
        analyzer.want(("ns2".into(), "d".into()), &other);
        assert_eq!(analyzer.due().len(), 1, "the 60 s group again, not waiting");
    }

    #[test]
    fn success_rate_from_requests_and_errors() {
        let t = track(Some(200.0), Some(40.0), Some(0.052));
        assert_eq!(t.success_rate, Some(80.0));
        assert_eq!(t.p99_ms, Some(52.0));
        assert_eq!(track(Some(10.0), None, None).success_rate, Some(100.0));
        assert_eq!(track(Some(0.0), None, None).success_rate, None);
        assert_eq!(track(None, None, None).success_rate, None);
    }
}

//! The simulation proper: split each service's load across its serving pods and advance
//! per-pod counters.

use std::collections::{BTreeMap, BTreeSet};

use crate::latency::LatencyHistogram;

/// Release track of a pod (label `shoal.dev/track`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    /// No track label, or `stable`.
    #[default]
    Stable,
    /// `canary`.
    Canary,
}

impl Track {
    /// The value of the `track` label on the simulator's series.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

/// What the simulator needs to know about one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    /// The service the pod belongs to (label `app.kubernetes.io/instance`).
    pub service: String,
    /// Running, Ready=True and not being deleted.
    pub serving: bool,
    pub track: Track,
    /// Share of the pod's requests answered with a 5xx (0..=1).
    pub error_ratio: f64,
    /// Median latency of the pod's requests, in seconds.
    pub latency_median: f64,
}

/// Counters of one pod. They exist from the first tick at which the pod serves until the pod
/// is gone; while the pod does not serve they stay where they are.
#[derive(Debug, Clone, PartialEq)]
pub struct PodCounters {
    pub service: String,
    pub uid: String,
    /// The pod's track as of the last tick.
    pub track: Track,
    /// `http_requests_total{code="200"}` (a float counter).
    pub ok: f64,
    /// `http_requests_total{code="500"}` (a float counter).
    pub errors: f64,
    /// `container_cpu_usage_seconds_total`.
    pub cpu_seconds: f64,
    /// `http_request_duration_seconds`: its count follows `ok + errors`.
    pub latency: LatencyHistogram,
}

impl PodCounters {
    /// Fresh counters for `pod`.
    pub fn new(pod: &PodView) -> Self {
        Self {
            service: pod.service.clone(),
            uid: pod.uid.clone(),
            track: pod.track,
            ok: 0.0,
            errors: 0.0,
            cpu_seconds: 0.0,
            latency: LatencyHistogram::default(),
        }
    }

    /// Requests served, whatever the status code.
    pub fn requests(&self) -> f64 {
        self.ok + self.errors
    }
}

/// Per-service figures of the last tick, plus the dropped-requests counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceStats {
    /// Request rate applied in the last tick (after noise).
    pub offered: f64,
    /// Serving pods in the last tick.
    pub serving: usize,
    /// Requests offered while the service had no serving pod.
    pub dropped: f64,
}

/// Whole simulator state, keyed by pod name and service name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimState {
    pub pods: BTreeMap<String, PodCounters>,
    pub services: BTreeMap<String, ServiceStats>,
}

/// How requests translate to CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// CPU cores each serving pod burns with no load.
    pub base_cpu: f64,
    /// CPU-seconds per request.
    pub cpu_per_request: f64,
}

/// Advances `state` by `dt` seconds.
///
/// `loads` maps service name to its request rate (req/s) for this tick; `pods` are all pods
/// currently known (serving or not). Pods absent from `pods` (or whose uid changed) lose their
/// counters. For a service with load `L` and `N > 0` serving pods (whatever their track) each
/// serving pod gets `r = L/N * dt` requests, `r * (1 - e)` answered 200 and `r * e` answered
/// 500 for its error ratio `e`, spread over the latency histogram by its median, and
/// `(base_cpu + cpu_per_request * L/N) * dt` CPU-seconds; with `N = 0` the service's dropped
/// counter grows by `L * dt`.
pub fn advance(
    state: &mut SimState,
    loads: &BTreeMap<String, f64>,
    pods: &[PodView],
    cost: &CostModel,
    dt: f64,
) {
    let dt = if dt.is_finite() && dt > 0.0 { dt } else { 0.0 };

    // Forget pods that are gone or were replaced by a new pod of the same name.
    let current: BTreeMap<&str, &PodView> = pods.iter().map(|p| (p.name.as_str(), p)).collect();
    state
        .pods
        .retain(|name, c| current.get(name.as_str()).is_some_and(|p| p.uid == c.uid));

    let mut serving: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.serving) {
        *serving.entry(pod.service.as_str()).or_default() += 1;
    }

    let services: BTreeSet<&str> = loads
        .keys()
        .map(String::as_str)
        .chain(pods.iter().map(|p| p.service.as_str()))
        .collect();
    for &service in &services {
        let load = loads.get(service).copied().unwrap_or(0.0).max(0.0);
        let n = serving.get(service).copied().unwrap_or(0);
        let stats = state.services.entry(service.to_owned()).or_default();
        stats.offered = load;
        stats.serving = n;
        if n == 0 {
            stats.dropped += load * dt;
        }
    }
    // Services that have neither load nor pods any more keep their dropped counter.
    for (name, stats) in state.services.iter_mut() {
        if !services.contains(name.as_str()) {
            stats.offered = 0.0;
            stats.serving = 0;
        }
    }

    for pod in pods.iter().filter(|p| p.serving) {
        let n = serving[pod.service.as_str()];
        let per_pod = loads.get(&pod.service).copied().unwrap_or(0.0).max(0.0) / n as f64;
        let counters = state
            .pods
            .entry(pod.name.clone())
            .or_insert_with(|| PodCounters::new(pod));
        counters.service.clone_from(&pod.service);
        counters.track = pod.track;
        let requests = per_pod * dt;
        let error_ratio = if pod.error_ratio.is_finite() {
            pod.error_ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        counters.ok += requests * (1.0 - error_ratio);
        counters.errors += requests * error_ratio;
        counters.latency.record(requests, pod.latency_median);
        counters.cpu_seconds += (cost.base_cpu + cost.cpu_per_request * per_pod) * dt;
    }
}

/// Applies uniform noise of ±`noise_percent` % to `rate`; `u` is a uniform sample in [0, 1).
/// The result is never negative.
pub fn apply_noise(rate: f64, noise_percent: f64, u: f64) -> f64 {
    if noise_percent <= 0.0 || !noise_percent.is_finite() {
        return rate;
    }
    let factor = 1.0 + (2.0 * u - 1.0) * noise_percent / 100.0;
    (rate * factor).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST: CostModel = CostModel {
        base_cpu: 0.01,
        cpu_per_request: 0.005,
    };

    fn pod(name: &str, service: &str, serving: bool) -> PodView {
        PodView {
            name: name.into(),
            uid: format!("uid-{name}"),
            service: service.into(),
            serving,
            track: Track::Stable,
            error_ratio: 0.0,
            latency_median: 0.05,
        }
    }

    fn loads(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn splits_load_evenly_across_serving_pods() {
        let mut s = SimState::default();
        let pods = [
            pod("api-1", "api", true),
            pod("api-2", "api", true),
            pod("api-3", "api", false),
            pod("web-1", "web", true),
        ];
        advance(&mut s, &loads(&[("api", 100.0)]), &pods, &COST, 0.5);
        let api1 = &s.pods["api-1"];
        assert!(close(api1.requests(), 25.0));
        assert!(close(api1.cpu_seconds, (0.01 + 0.005 * 50.0) * 0.5));
        assert!(close(s.pods["api-2"].requests(), 25.0));
        // Never served: no counters at all.
        assert!(!s.pods.contains_key("api-3"));
        // Serving without load: base CPU only.
        assert!(close(s.pods["web-1"].requests(), 0.0));
        assert!(close(s.pods["web-1"].cpu_seconds, 0.005));
        assert_eq!(s.services["api"].serving, 2);
        assert!(close(s.services["api"].offered, 100.0));
        assert_eq!(s.services["web"].serving, 1);
        assert!(close(s.services["web"].offered, 0.0));
    }

    #[test]
    fn counters_accumulate_and_follow_pod_count() {
        let mut s = SimState::default();
        let l = loads(&[("api", 60.0)]);
        advance(&mut s, &l, &[pod("a", "api", true)], &COST, 1.0);
        assert!(close(s.pods["a"].requests(), 60.0));
        // A second pod comes up: per-pod rate halves.
        let two = [pod("a", "api", true), pod("b", "api", true)];
        advance(&mut s, &l, &two, &COST, 1.0);
        assert!(close(s.pods["a"].requests(), 90.0));
        assert!(close(s.pods["b"].requests(), 30.0));
        // "a" stops serving (e.g. terminating): its counters freeze, "b" takes everything.
        let a_off = [pod("a", "api", false), pod("b", "api", true)];
        advance(&mut s, &l, &a_off, &COST, 1.0);
        assert!(close(s.pods["a"].requests(), 90.0));
        assert!(close(s.pods["b"].requests(), 90.0));
        // "a" is gone: its series disappears.
        advance(&mut s, &l, &[pod("b", "api", true)], &COST, 1.0);
        assert!(!s.pods.contains_key("a"));
        assert!(close(s.pods["b"].requests(), 150.0));
        assert!(close(s.services["api"].dropped, 0.0));
    }

    #[test]
    fn a_recreated_pod_starts_from_zero() {
        let mut s = SimState::default();
        let l = loads(&[("api", 10.0)]);
        advance(&mut s, &l, &[pod("a", "api", true)], &COST, 1.0);
        let mut again = pod("a", "api", true);
        again.uid = "other".into();
        advance(&mut s, &l, &[again], &COST, 1.0);
        assert!(close(s.pods["a"].requests(), 10.0));
        assert_eq!(s.pods["a"].uid, "other");
    }

    #[test]
    fn requests_split_by_code_and_tracks_share_the_load_by_replicas() {
        let mut s = SimState::default();
        let mut canary = pod("api-canary-1", "api", true);
        canary.track = Track::Canary;
        canary.error_ratio = 0.2;
        canary.latency_median = 0.8;
        let pods = [pod("api-1", "api", true), pod("api-2", "api", true), canary];
        let l = loads(&[("api", 300.0)]);
        for _ in 0..4 {
            advance(&mut s, &l, &pods, &COST, 0.5);
        }
        // 300 req/s over three pods for 2 s: 200 each, whatever the track.
        for name in ["api-1", "api-2", "api-canary-1"] {
            let c = &s.pods[name];
            assert!(close(c.requests(), 200.0), "{name}: {c:?}");
            assert!(close(c.latency.count(), c.requests()), "{name}: {c:?}");
        }
        assert!(close(s.pods["api-1"].ok, 200.0));
        assert!(close(s.pods["api-1"].errors, 0.0));
        assert_eq!(s.pods["api-1"].track, Track::Stable);
        let c = &s.pods["api-canary-1"];
        assert_eq!(c.track, Track::Canary);
        assert!(close(c.ok, 160.0) && close(c.errors, 40.0), "{c:?}");
        // The canary's median is 800 ms, the stable pods' 50 ms: half the canary's requests
        // within 0.8 s lands between the 0.5 and 1 s buckets, half the stable's at 0.05 s.
        let (stable, slow) = (s.pods["api-1"].latency.cumulative(), c.latency.cumulative());
        assert!((stable[3] - 100.0).abs() < 1e-4, "{stable:?}");
        assert!(slow[6] < 100.0 && slow[7] > 100.0, "{slow:?}");
        // CPU follows the per-pod rate, not the track.
        assert!(close(c.cpu_seconds, s.pods["api-1"].cpu_seconds));
    }

    #[test]
    fn a_changed_error_ratio_applies_from_the_next_tick() {
        let mut s = SimState::default();
        let l = loads(&[("api", 10.0)]);
        let mut p = pod("a", "api", true);
        advance(&mut s, &l, std::slice::from_ref(&p), &COST, 1.0);
        p.error_ratio = 1.0;
        advance(&mut s, &l, std::slice::from_ref(&p), &COST, 1.0);
        p.error_ratio = f64::NAN;
        advance(&mut s, &l, std::slice::from_ref(&p), &COST, 1.0);
        assert!(close(s.pods["a"].ok, 20.0));
        assert!(close(s.pods["a"].errors, 10.0));
    }

    #[test]
    fn no_serving_pod_drops_requests() {
        let mut s = SimState::default();
        let l = loads(&[("api", 40.0)]);
        advance(&mut s, &l, &[pod("a", "api", false)], &COST, 0.5);
        advance(&mut s, &l, &[], &COST, 0.5);
        assert!(s.pods.is_empty());
        assert!(close(s.services["api"].dropped, 40.0));
        assert_eq!(s.services["api"].serving, 0);
        // Load removed: dropped stays, offered goes to 0.
        advance(&mut s, &BTreeMap::new(), &[], &COST, 0.5);
        assert!(close(s.services["api"].dropped, 40.0));
        assert!(close(s.services["api"].offered, 0.0));
    }

    #[test]
    fn bad_dt_advances_nothing() {
        let mut s = SimState::default();
        let l = loads(&[("api", 40.0)]);
        advance(&mut s, &l, &[pod("a", "api", true)], &COST, f64::NAN);
        advance(&mut s, &l, &[pod("a", "api", true)], &COST, -1.0);
        assert!(close(s.pods["a"].requests(), 0.0));
        assert!(close(s.pods["a"].cpu_seconds, 0.0));
    }

    #[test]
    fn noise_stays_within_bounds() {
        assert!(close(apply_noise(100.0, 0.0, 0.99), 100.0));
        assert!(close(apply_noise(100.0, 10.0, 0.0), 90.0));
        assert!(close(apply_noise(100.0, 10.0, 0.5), 100.0));
        assert!(apply_noise(100.0, 10.0, 0.999_999) < 110.0);
        assert!(close(apply_noise(100.0, 300.0, 0.0), 0.0));
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for _ in 0..10_000 {
            let r = apply_noise(200.0, 20.0, rng.f64());
            assert!((160.0..240.0).contains(&r), "{r} out of bounds");
            lo = lo.min(r);
            hi = hi.max(r);
        }
        // The samples actually spread over the range.
        assert!(lo < 165.0 && hi > 235.0, "lo {lo} hi {hi}");
    }
}

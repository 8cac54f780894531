//! Simulated request latency: the log-normal distribution a pod's latencies follow, and the
//! `http_request_duration_seconds` histogram its requests fill.
//!
//! Latencies are log-normal with the pod's median `m` and shape [`SIGMA`] = 0.5: the share of
//! requests faster than `x` is `Φ(ln(x / m) / σ)`. So p90 = 1.9 m, p99 = 3.2 m (160 ms for the
//! default 50 ms, 2.56 s for a `slow` pod's 800 ms) and the mean is `m·e^(σ²/2)` = 1.13 m.
//! There is no randomness: each tick a pod's new requests are spread over the buckets by
//! exactly those shares.

/// Shape (standard deviation of `ln(latency)`) of every pod's latency distribution.
pub const SIGMA: f64 = 0.5;

/// Upper bounds of the finite buckets, in seconds; a `+Inf` bucket follows.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Number of buckets including `+Inf`.
pub const BUCKET_COUNT: usize = BUCKETS.len() + 1;

/// Upper bound of bucket `i` (`f64::INFINITY` for the last one).
pub fn upper_bound(i: usize) -> f64 {
    BUCKETS.get(i).copied().unwrap_or(f64::INFINITY)
}

/// Share of requests answered within `x` seconds by a pod whose median latency is `median`
/// seconds.
pub fn share_within(x: f64, median: f64) -> f64 {
    if x == f64::INFINITY {
        return 1.0;
    }
    if x <= 0.0 || median <= 0.0 {
        return 0.0;
    }
    standard_normal_cdf((x / median).ln() / SIGMA).clamp(0.0, 1.0)
}

/// The latency below which a share `q` (0 < q < 1) of the requests fall.
pub fn quantile(q: f64, median: f64) -> f64 {
    median * (SIGMA * standard_normal_quantile(q)).exp()
}

/// Mean latency, in seconds, of a pod whose median is `median` seconds.
pub fn mean(median: f64) -> f64 {
    median * (SIGMA * SIGMA / 2.0).exp()
}

/// Φ, through erfc (Numerical Recipes' `erfcc`, Chebyshev fit, relative error < 1.2e-7):
/// plenty for buckets a factor 2 or more apart.
fn standard_normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Inverse of Φ by bisection (only tests and documentation need it).
fn standard_normal_quantile(q: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 10.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if standard_normal_cdf(mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One pod's latency histogram, kept with fractional counts (requests are float counters
/// here). Counts are cumulative, as Prometheus's `le` buckets are.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `cumulative[i]`: requests answered within [`upper_bound`]`(i)`; the last is the total.
    cumulative: [f64; BUCKET_COUNT],
    /// Total latency of all requests, in seconds.
    sum: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            cumulative: [0.0; BUCKET_COUNT],
            sum: 0.0,
        }
    }
}

impl LatencyHistogram {
    /// Adds `requests` requests from a pod whose median latency is `median` seconds. Nothing
    /// happens for a non-positive or non-finite count.
    pub fn record(&mut self, requests: f64, median: f64) {
        if !(requests.is_finite() && requests > 0.0) {
            return;
        }
        // `max` keeps the shares monotonic even if the approximation of Φ were not.
        let mut share = 0.0_f64;
        for (i, c) in self.cumulative.iter_mut().enumerate() {
            share = share.max(share_within(upper_bound(i), median));
            *c += requests * share;
        }
        self.sum += requests * mean(median);
    }

    /// Requests recorded (the `+Inf` bucket, `_count`).
    pub fn count(&self) -> f64 {
        self.cumulative[BUCKET_COUNT - 1]
    }

    /// Total latency in seconds (`_sum`).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Cumulative bucket counts, in the order of [`upper_bound`].
    pub fn cumulative(&self) -> [f64; BUCKET_COUNT] {
        self.cumulative
    }

    /// Cumulative bucket counts rounded down to whole requests, as exposed: still cumulative,
    /// and never decreasing over time since the fractional counts never do.
    pub fn cumulative_whole(&self) -> [u64; BUCKET_COUNT] {
        // The float-to-int `as` saturates; counts are finite and non-negative.
        self.cumulative.map(|c| c.floor() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!(close(standard_normal_cdf(0.0), 0.5, 1e-7));
        assert!(close(standard_normal_cdf(1.0), 0.841_344_746, 1e-7));
        assert!(close(standard_normal_cdf(-1.959_964), 0.025, 1e-7));
        assert!(close(standard_normal_cdf(2.326_348), 0.99, 1e-7));
        assert!(close(standard_normal_quantile(0.99), 2.326_348, 1e-5));
    }

    #[test]
    fn the_median_is_the_median() {
        for median in [0.05, 0.8] {
            assert!(close(share_within(median, median), 0.5, 1e-7));
            assert!(close(quantile(0.5, median), median, 1e-6 * median));
        }
        // p99 = median · e^(0.5 · 2.326) = 3.2 medians.
        assert!(close(quantile(0.99, 0.05), 0.160, 0.001));
        assert!(close(quantile(0.99, 0.8), 2.56, 0.01));
        assert!(close(share_within(f64::INFINITY, 0.05), 1.0, 0.0));
        assert!(close(share_within(0.0, 0.05), 0.0, 0.0));
    }

    #[test]
    fn buckets_are_cumulative_monotonic_and_count_everything() {
        let mut h = LatencyHistogram::default();
        let mut total = 0.0;
        let mut before = h.clone();
        for (i, median) in [0.05, 0.8, 0.001, 20.0, 0.05].iter().enumerate() {
            let n = 10.0 + i as f64 * 3.3;
            h.record(n, *median);
            total += n;
            let (c, w) = (h.cumulative(), h.cumulative_whole());
            assert!(c.windows(2).all(|p| p[0] <= p[1]), "{c:?}");
            assert!(w.windows(2).all(|p| p[0] <= p[1]), "{w:?}");
            // Over time, every bucket only grows.
            let (b, bw) = (before.cumulative(), before.cumulative_whole());
            assert!(c.iter().zip(b).all(|(now, then)| *now >= then));
            assert!(w.iter().zip(bw).all(|(now, then)| *now >= then));
            assert!(close(h.count(), total, 1e-9));
            assert_eq!(w[BUCKET_COUNT - 1], total.floor() as u64);
            before = h.clone();
        }
        assert!(h.sum() > 0.0);
    }

    #[test]
    fn shares_follow_the_distribution() {
        let mut h = LatencyHistogram::default();
        h.record(1000.0, 0.05);
        let c = h.cumulative();
        // Half the requests within the median (the 0.05 bucket).
        assert!(close(c[3], 500.0, 1e-3), "{c:?}");
        assert!(close(h.sum(), 1000.0 * 0.05 * (0.125_f64).exp(), 1e-9));
        h.record(0.0, 0.05);
        h.record(f64::NAN, 0.05);
        h.record(-1.0, 0.05);
        assert!(close(h.count(), 1000.0, 1e-9));
    }
}

//! Scale writes timed by the apiserver: each change of a Deployment's `spec.replicas` seen
//! by a [`ReplicaRecorder`] paired with the audited write that made it, for `make bench`.
//!
//! The audit log (Metadata level) has the time of every write but not the count it set;
//! the watch has the count but sees it a little later. A change seen at `W` was made by
//! the last write of its writer the apiserver received at or before `W`.

use k8s_openapi::jiff::Timestamp;

use crate::audit::{self, AuditEvent};
use crate::recorder::ReplicaSample;

/// One change of the replica count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedWrite {
    /// When the apiserver answered the write (its audit `stageTimestamp` at
    /// ResponseComplete), or, when no audited write matched, when the watch saw the change.
    pub at: Timestamp,
    /// The count before.
    pub from: i32,
    /// The count written.
    pub to: i32,
    /// True when `at` comes from the audit log.
    pub audited: bool,
}

/// The changes of `spec.replicas` in `samples` (a recorder's, oldest first), each timed by
/// the write among `writes` (one writer's, in the order received) that made it.
/// A write pairs with at most one change; a change with no unpaired write received before
/// it was seen keeps the watch's time and `audited: false`.
pub fn timed_writes(samples: &[ReplicaSample], writes: &[AuditEvent]) -> Vec<TimedWrite> {
    let mut next = 0;
    samples
        .windows(2)
        .filter(|w| w[1].replicas != w[0].replicas)
        .map(|w| {
            let seen = w[1].at;
            let received = writes[next..]
                .iter()
                .take_while(|e| e.received() <= seen)
                .count();
            let write = received.checked_sub(1).map(|i| &writes[next + i]);
            next += received;
            TimedWrite {
                at: write.map_or(seen, audit::answered),
                from: w[0].replicas,
                to: w[1].replicas,
                audited: write.is_some(),
            }
        })
        .collect()
}

/// Seconds from `a` to `b`.
pub fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_nanosecond() - a.as_nanosecond()) as f64 / 1e9
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `p50 / p95 / max (n)` of `values`, or "no measurement".
pub fn p50_p95(values: &[f64]) -> String {
    if values.is_empty() {
        return "no measurement".to_string();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} s, p95 {:.2} s, max {:.2} s, min {:.2} s (n = {})",
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0),
        sorted[sorted.len() - 1],
        sorted[0],
        sorted.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn sample(when: &str, replicas: i32) -> ReplicaSample {
        ReplicaSample {
            at: at(when),
            instant: Instant::now(),
            replicas,
            ready: replicas,
        }
    }

    fn write(received: &str, answered: &str) -> AuditEvent {
        serde_json::from_value(serde_json::json!({
            "verb": "patch", "stage": "ResponseComplete",
            "requestReceivedTimestamp": received, "stageTimestamp": answered,
        }))
        .expect("event")
    }

    #[test]
    fn each_change_takes_the_time_of_the_last_write_received_before_it_was_seen() {
        let samples = [
            sample("2026-11-30T10:00:00Z", 1),
            sample("2026-11-30T10:00:05.020Z", 4),
            sample("2026-11-30T10:00:05.500Z", 4),
            sample("2026-11-30T10:00:07.030Z", 7),
            sample("2026-11-30T10:00:09Z", 6),
        ];
        let writes = [
            write("2026-11-30T10:00:05.000Z", "2026-11-30T10:00:05.010Z"),
            write("2026-11-30T10:00:07.000Z", "2026-11-30T10:00:07.040Z"),
        ];
        let timed = timed_writes(&samples, &writes);
        assert_eq!(timed.len(), 3);
        assert_eq!((timed[0].from, timed[0].to), (1, 4));
        assert_eq!(timed[0].at, at("2026-11-30T10:00:05.010Z"));
        assert_eq!(timed[1].at, at("2026-11-30T10:00:07.040Z"));
        assert!(timed[1].audited);
        // No write left for the last change: the watch's time.
        assert_eq!((timed[2].from, timed[2].to), (7, 6));
        assert!(!timed[2].audited);
        assert_eq!(timed[2].at, at("2026-11-30T10:00:09Z"));
        let none = timed_writes(&samples[..2], &[]);
        assert!(!none[0].audited);
        assert_eq!(none[0].at, at("2026-11-30T10:00:05.020Z"));
        assert!((seconds_between(at("2026-11-30T10:00:00Z"), timed[0].at) - 5.01).abs() < 1e-9);
    }
}

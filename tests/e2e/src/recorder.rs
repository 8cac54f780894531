//! Records a Deployment's replica counts over time from a watch (kube-rs `watcher`): every
//! change of `spec.replicas` or `status.readyReplicas` the apiserver reports, with the time
//! this process saw it. The most robust record of what an autoscaler did: the audit log has
//! no bodies, and Events are aggregated.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::watcher;

/// One observation of the Deployment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaSample {
    /// Wall-clock time it was seen (comparable with audit timestamps).
    pub at: Timestamp,
    /// Monotonic time it was seen.
    pub instant: Instant,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas` (0 when absent).
    pub ready: i32,
}

/// Watches one Deployment until dropped.
pub struct ReplicaRecorder {
    samples: Arc<Mutex<Vec<ReplicaSample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplicaRecorder {
    /// Starts watching Deployment `namespace/name` (which need not exist yet).
    pub fn start(client: kube::Client, namespace: &str, name: &str) -> ReplicaRecorder {
        let api: Api<Deployment> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let samples = Arc::new(Mutex::new(Vec::<ReplicaSample>::new()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).boxed();
            while let Some(event) = stream.next().await {
                let deployment = match event {
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => d,
                    Ok(_) => continue,
                    Err(err) => {
                        eprintln!("replica recorder: watch error (retrying): {err}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let replicas = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1);
                let ready = deployment
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                let mut samples = sink.lock().expect("recorder lock");
                if samples
                    .last()
                    .is_some_and(|s| s.replicas == replicas && s.ready == ready)
                {
                    continue;
                }
                samples.push(ReplicaSample {
                    at: Timestamp::now(),
                    instant: Instant::now(),
                    replicas,
                    ready,
                });
            }
        });
        ReplicaRecorder { samples, task }
    }

    /// Every change seen so far, oldest first.
    pub fn samples(&self) -> Vec<ReplicaSample> {
        self.samples.lock().expect("recorder lock").clone()
    }

    /// The last sample, if any.
    pub fn last(&self) -> Option<ReplicaSample> {
        self.samples.lock().expect("recorder lock").last().copied()
    }

    /// The samples seen at or after `since`.
    pub fn since(&self, since: Instant) -> Vec<ReplicaSample> {
        self.samples()
            .into_iter()
            .filter(|s| s.instant >= since)
            .collect()
    }

    /// The `spec.replicas` in force at `at`: the last sample seen at or before it.
    pub fn replicas_at(&self, at: Instant) -> Option<i32> {
        self.samples()
            .iter()
            .take_while(|s| s.instant <= at)
            .last()
            .map(|s| s.replicas)
    }

    /// The distinct `spec.replicas` in order of change (e.g. `[1, 8, 7]`).
    pub fn replica_path(&self) -> Vec<i32> {
        replica_path(&self.samples())
    }
}

impl Drop for ReplicaRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The distinct `spec.replicas` of `samples` in order of change.
pub fn replica_path(samples: &[ReplicaSample]) -> Vec<i32> {
    let mut path: Vec<i32> = Vec::new();
    for s in samples {
        if path.last() != Some(&s.replicas) {
            path.push(s.replicas);
        }
    }
    path
}

/// Every decrease of `spec.replicas` in `samples`: (from, to, when).
pub fn decreases(samples: &[ReplicaSample]) -> Vec<(i32, i32, Timestamp)> {
    samples
        .windows(2)
        .filter(|w| w[1].replicas < w[0].replicas)
        .map(|w| (w[0].replicas, w[1].replicas, w[1].at))
        .collect()
}

/// `samples` as a short text for assertion messages: `+0.0s 1/0, +2.1s 8/1, ...` (relative
/// to the first sample; spec/ready).
pub fn describe(samples: &[ReplicaSample]) -> String {
    let Some(first) = samples.first() else {
        return "(no samples)".to_string();
    };
    samples
        .iter()
        .map(|s| {
            format!(
                "+{:.1}s {}/{}",
                s.instant.duration_since(first.instant).as_secs_f64(),
                s.replicas,
                s.ready
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(replicas: i32) -> ReplicaSample {
        ReplicaSample {
            at: Timestamp::now(),
            instant: Instant::now(),
            replicas,
            ready: 0,
        }
    }

    #[test]
    fn path_and_decreases() {
        let samples: Vec<_> = [1, 1, 8, 8, 7, 9].into_iter().map(sample).collect();
        assert_eq!(replica_path(&samples), vec![1, 8, 7, 9]);
        let down: Vec<_> = decreases(&samples).iter().map(|d| (d.0, d.1)).collect();
        assert_eq!(down, vec![(8, 7)]);
    }
}

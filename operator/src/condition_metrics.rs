//! Gauges computed at scrape time from the controller's Microservice watch cache: how many
//! Microservices are in each condition state, and each Microservice's replica counts and
//! metric against its target.
//!
//! The condition counts carry no per-object labels: `shoal_microservices{condition, status,
//! reason}` has at most one series per known (type, status, reason) triple, whatever the
//! number of Microservices, and a reason the code does not know is counted as `Other`. The
//! per-Microservice gauges (`shoal_microservice_*{microservice_namespace, microservice}`)
//! have exactly one series per Microservice each; they feed the dashboard's scale-decision
//! panels. (Not `namespace`: a Prometheus Operator scrape sets that label to the operator's
//! own namespace and would rename ours to `exported_namespace`.)
//!
//! Nothing is served until the controller hands over its store with
//! [`ConditionMetrics::attach`], so only the process that runs the controller (the leader)
//! serves these families.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::caches::PackedMicroservice;
use crate::crd::Microservice;
use crate::vocabulary::{ConditionType, LimitedBy, Reason, ScalingReason};

/// The condition type a condition counts under, if it is one of Shoal's.
fn condition_type(type_: &str) -> Option<&'static str> {
    ConditionType::ALL
        .iter()
        .map(|t| t.as_str())
        .find(|t| *t == type_)
}

/// The reason label of a reason: every reason of the vocabulary (what the controller and
/// the autoscaler write), anything else [`OTHER_REASON`], so the label's values stay bounded.
fn reason_label(reason: &str) -> &'static str {
    Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(ScalingReason::ALL.iter().map(|r| r.as_str()))
        .chain(LimitedBy::ALL.iter().map(|r| r.as_str()))
        .find(|r| *r == reason)
        .unwrap_or(OTHER_REASON)
}

/// The reason label of a reason that is not in the vocabulary.
pub const OTHER_REASON: &str = "Other";

/// The per-Microservice gauges: name, help, and how to read the value from a Microservice.
type Reader = fn(&Microservice) -> Option<f64>;
const PER_MICROSERVICE: [(&str, &str, Reader); 6] = [
    (
        "microservice_desired_replicas",
        "Replicas the Microservice's Deployment asks for (status.desiredReplicas)",
        |ms| Some(f64::from(ms.status.as_ref()?.desired_replicas?)),
    ),
    (
        "microservice_ready_replicas",
        "Ready replicas of the Microservice (status.readyReplicas)",
        |ms| Some(f64::from(ms.status.as_ref()?.ready_replicas?)),
    ),
    (
        "microservice_request_rate",
        "Requests per second in total, as the metrics loop last read them",
        |ms| {
            ms.status
                .as_ref()?
                .autoscaler
                .as_ref()?
                .request_rate
                .as_ref()?
                .current
        },
    ),
    (
        "microservice_request_rate_target",
        "Target requests per second per replica of the metrics loop",
        |ms| {
            Some(
                ms.status
                    .as_ref()?
                    .autoscaler
                    .as_ref()?
                    .request_rate
                    .as_ref()?
                    .target,
            )
        },
    ),
    (
        "microservice_cpu_utilization",
        "CPU use of the ready pods in percent of their requests, as the metrics loop last read it",
        |ms| {
            ms.status
                .as_ref()?
                .autoscaler
                .as_ref()?
                .cpu
                .as_ref()?
                .current
        },
    ),
    (
        "microservice_cpu_utilization_target",
        "Target CPU use in percent of the pods' requests of the metrics loop",
        |ms| {
            Some(
                ms.status
                    .as_ref()?
                    .autoscaler
                    .as_ref()?
                    .cpu
                    .as_ref()?
                    .target,
            )
        },
    ),
];

/// The collector of the Microservice gauges; a cheap handle (clones share the store slot).
#[derive(Clone, Debug, Default)]
pub struct ConditionMetrics {
    store: Arc<RwLock<Option<Store<PackedMicroservice>>>>,
}

impl ConditionMetrics {
    /// Hands over the controller's Microservice watch cache: from now on the gauges are
    /// computed from it at every scrape.
    pub fn attach(&self, store: Store<PackedMicroservice>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// Every cached Microservice, or None before [`ConditionMetrics::attach`].
    fn microservices(&self) -> Option<Vec<Arc<Microservice>>> {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .filter_map(|packed| packed.unpack().map(Arc::new))
                    .collect()
            })
    }
}

/// Counts Microservices by (condition type, status, bounded reason).
pub fn count_conditions(
    microservices: &[Arc<Microservice>],
) -> BTreeMap<(&'static str, &'static str, &'static str), u64> {
    let mut counts = BTreeMap::new();
    for ms in microservices {
        let Some(status) = ms.status.as_ref() else {
            continue;
        };
        for condition in &status.conditions {
            let Some(type_) = condition_type(&condition.type_) else {
                continue;
            };
            let state = match condition.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            };
            let reason = reason_label(&condition.reason);
            *counts.entry((type_, state, reason)).or_insert(0) += 1;
        }
    }
    counts
}

impl Collector for ConditionMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Before the store is attached (a follower) nothing is served; after, every family
        // is described even while it has no sample.
        let Some(mut microservices) = self.microservices() else {
            return Ok(());
        };
        microservices.sort_by_key(|ms| (ms.namespace(), ms.name_any()));
        let counts = count_conditions(&microservices);
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "microservices",
            "Microservices by condition type, status and reason (one series per state, not per object)",
            None,
            gauge.metric_type(),
        )?;
        for ((condition, status, reason), n) in counts {
            let labels = [
                ("condition", condition),
                ("status", status),
                ("reason", reason),
            ];
            let count = i64::try_from(n).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, read) in PER_MICROSERVICE {
            let values: Vec<(String, String, f64)> = microservices
                .iter()
                .filter_map(|ms| Some((ms.namespace()?, ms.name_any(), read(ms)?)))
                .collect();
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
            for (namespace, microservice, value) in values {
                let labels = [
                    ("microservice_namespace", namespace.as_str()),
                    ("microservice", microservice.as_str()),
                ];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalerStatus, MetricStatus, MicroserviceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;
    use prometheus_client::registry::Registry;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn microservice(name: &str, conditions: Vec<Condition>) -> Microservice {
        let mut ms: Microservice = serde_json::from_value(serde_json::json!({
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "Microservice",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"image": "nginx", "port": 8080},
        }))
        .expect("a Microservice");
        ms.status = Some(MicroserviceStatus {
            conditions,
            desired_replicas: Some(3),
            ready_replicas: Some(2),
            autoscaler: Some(AutoscalerStatus {
                request_rate: Some(MetricStatus {
                    current: Some(250.0),
                    target: 100.0,
                    ..MetricStatus::default()
                }),
                ..AutoscalerStatus::default()
            }),
            ..MicroserviceStatus::default()
        });
        ms
    }

    fn render(metrics: &ConditionMetrics) -> String {
        let mut registry = Registry::with_prefix("shoal");
        registry.register_collector(Box::new(metrics.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn counts_states_not_objects_and_bounds_reasons() {
        let (reader, mut writer) = store::<PackedMicroservice>();
        for ms in [
            microservice(
                "a",
                vec![
                    condition("Ready", "False", "ReplicasUnavailable"),
                    condition("ScalingLimited", "True", "TooManyReplicas"),
                ],
            ),
            microservice(
                "b",
                vec![
                    condition("Ready", "False", "ReplicasUnavailable"),
                    condition("RolledBack", "True", "ProgressDeadlineExceeded"),
                ],
            ),
            microservice(
                "c",
                vec![
                    condition("Ready", "True", "SomethingUnheardOf"),
                    condition("NotOurs", "True", "Whatever"),
                ],
            ),
        ] {
            writer
                .apply_watcher_event(&Event::Apply(PackedMicroservice::pack(&ms).expect("packs")));
        }
        let metrics = ConditionMetrics::default();
        assert_eq!(render(&metrics).trim(), "# EOF", "nothing before attach");
        metrics.attach(reader);
        let text = render(&metrics);
        for line in [
            "shoal_microservices{condition=\"Ready\",status=\"False\",reason=\"ReplicasUnavailable\"} 2",
            "shoal_microservices{condition=\"Ready\",status=\"True\",reason=\"Other\"} 1",
            "shoal_microservices{condition=\"ScalingLimited\",status=\"True\",reason=\"TooManyReplicas\"} 1",
            "shoal_microservices{condition=\"RolledBack\",status=\"True\",reason=\"ProgressDeadlineExceeded\"} 1",
            "shoal_microservice_desired_replicas{microservice_namespace=\"shop\",microservice=\"a\"} 3.0",
            "shoal_microservice_ready_replicas{microservice_namespace=\"shop\",microservice=\"c\"} 2.0",
            "shoal_microservice_request_rate{microservice_namespace=\"shop\",microservice=\"b\"} 250.0",
            "shoal_microservice_request_rate_target{microservice_namespace=\"shop\",microservice=\"b\"} 100.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("NotOurs"), "{text}");
        assert!(!text.contains("SomethingUnheardOf"), "{text}");
        assert!(
            !text.contains("shoal_microservice_cpu_utilization{"),
            "no CPU target, no CPU series:\n{text}"
        );
        assert!(
            text.contains("# TYPE shoal_microservice_cpu_utilization gauge"),
            "the family is described all the same:\n{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("shoal_microservice_desired_replicas{"))
                .count(),
            3,
            "one series per Microservice:\n{text}"
        );
    }

    #[test]
    fn every_reason_of_the_vocabulary_is_its_own_label() {
        for r in Reason::ALL.iter().map(|r| r.as_str()) {
            assert_eq!(reason_label(r), r);
        }
        for r in ScalingReason::ALL.iter().map(|r| r.as_str()) {
            assert_eq!(reason_label(r), r);
        }
        assert_eq!(reason_label("IncompleteMetrics"), "IncompleteMetrics");
        assert_eq!(reason_label("SomethingElse"), OTHER_REASON);
        assert_eq!(condition_type("Ready"), Some("Ready"));
        assert_eq!(condition_type("NotOurs"), None);
    }
}

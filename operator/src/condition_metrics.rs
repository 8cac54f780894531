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

use crate::autoscaler::decision;
use crate::conditions;
use crate::crd::Microservice;
use crate::rollout;

/// Condition types the gauges count; other types are ignored.
pub const CONDITION_TYPES: [&str; 7] = [
    conditions::READY,
    rollout::PROGRESSING,
    rollout::DEGRADED,
    rollout::ROLLED_BACK,
    decision::ABLE_TO_SCALE,
    decision::SCALING_ACTIVE,
    decision::SCALING_LIMITED,
];

/// Every reason the controller and the autoscaler write; any other reason becomes
/// [`OTHER_REASON`], so the label's values stay bounded.
pub const KNOWN_REASONS: [&str; 26] = [
    conditions::REASON_AVAILABLE,
    conditions::REASON_INVALID_SPEC,
    conditions::REASON_CREATING,
    conditions::REASON_ROLLOUT_IN_PROGRESS,
    conditions::REASON_REPLICAS_UNAVAILABLE,
    conditions::REASON_PROGRESS_DEADLINE_EXCEEDED,
    rollout::reason::NEW_REVISION_AVAILABLE,
    rollout::reason::MANUAL_ROLLBACK,
    rollout::reason::NO_ROLLBACK,
    rollout::reason::HEALTHY,
    decision::reason::READY_FOR_NEW_SCALE,
    decision::reason::SUCCEEDED_RESCALE,
    decision::reason::FAILED_UPDATE_SCALE,
    decision::reason::VALID_METRIC_FOUND,
    decision::reason::FAILED_GET_METRICS,
    decision::reason::SCALING_DISABLED,
    decision::reason::DESIRED_WITHIN_RANGE,
    decision::reason::TOO_FEW_REPLICAS,
    decision::reason::TOO_MANY_REPLICAS,
    decision::reason::SCALE_UP_LIMIT,
    decision::reason::SCALE_DOWN_LIMIT,
    decision::reason::SCALE_UP_STABILIZED,
    decision::reason::SCALE_DOWN_STABILIZED,
    decision::reason::INCOMPLETE_METRICS,
    decision::reason::ROLLOUT_IN_PROGRESS,
    decision::reason::FALLBACK,
];

/// The reason label of a reason that is not in [`KNOWN_REASONS`].
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
    store: Arc<RwLock<Option<Store<Microservice>>>>,
}

impl ConditionMetrics {
    /// Hands over the controller's Microservice watch cache: from now on the gauges are
    /// computed from it at every scrape.
    pub fn attach(&self, store: Store<Microservice>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// Every cached Microservice, or None before [`ConditionMetrics::attach`].
    fn microservices(&self) -> Option<Vec<Arc<Microservice>>> {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Store::state)
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
            let Some(type_) = CONDITION_TYPES
                .iter()
                .find(|t| **t == condition.type_)
                .copied()
            else {
                continue;
            };
            let state = match condition.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            };
            let reason = KNOWN_REASONS
                .iter()
                .find(|r| **r == condition.reason)
                .copied()
                .unwrap_or(OTHER_REASON);
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
        let (reader, mut writer) = store::<Microservice>();
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
            writer.apply_watcher_event(&Event::Apply(ms));
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
    fn every_reason_the_code_writes_is_known() {
        let sources = [
            include_str!("conditions.rs"),
            include_str!("rollout.rs"),
            include_str!("autoscaler/decision/mod.rs"),
        ];
        for source in sources {
            for line in source.lines() {
                let line = line.trim();
                let Some(rest) = line.strip_prefix("pub const ") else {
                    continue;
                };
                let Some((name, value)) = rest.split_once(": &str = \"") else {
                    continue;
                };
                let value = value.trim_end_matches("\";");
                // Every string constant there is a condition type or a reason, but for
                // annotation names.
                assert!(
                    name.ends_with("_ANNOTATION")
                        || CONDITION_TYPES.contains(&value)
                        || KNOWN_REASONS.contains(&value),
                    "{name} = {value} is neither a counted condition type nor in KNOWN_REASONS"
                );
            }
        }
    }
}

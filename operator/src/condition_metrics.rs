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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kube::Resource;
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
    /// The rows of the previous scrape by namespace and name, with the uid and
    /// resourceVersion they were read at: a scrape unpacks only the Microservices that
    /// changed since (unpacking all 10,000 took ~0.3 s of CPU per scrape).
    rows: Arc<Mutex<Rows>>,
}

/// Rows by [`crate::packed::name_hash`], with a hash of the (uid, resourceVersion) they were
/// read at ([`crate::packed::version_of`]): two numbers and the row, no string, per
/// Microservice (the names come from the store at each scrape). A collision of two names'
/// hashes costs an unpack, never a wrong row: the uids differ.
type Rows = HashMap<u64, (u64, Row)>;

/// Every label value a [`Row`]'s conditions use, so that a row keeps three indexes per
/// condition where three `&str` took 48 bytes.
static LABELS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut labels: Vec<&'static str> = ConditionType::ALL.iter().map(|t| t.as_str()).collect();
    labels.extend(["True", "False", "Unknown", OTHER_REASON]);
    labels.extend(Reason::ALL.iter().map(|r| r.as_str()));
    labels.extend(ScalingReason::ALL.iter().map(|r| r.as_str()));
    labels.extend(LimitedBy::ALL.iter().map(|r| r.as_str()));
    labels
});

/// The index of `label` in [`LABELS`] (every label a row stores is there).
fn label_index(label: &'static str) -> u16 {
    let index = LABELS.iter().position(|l| *l == label).unwrap_or_default();
    u16::try_from(index).unwrap_or_default()
}

/// What the gauges read of one Microservice: ~80 bytes (a scrape at 10,000 Microservices
/// keeps 10,000 of them between scrapes).
#[derive(Clone, Debug)]
pub struct Row {
    /// Its conditions of Shoal's types, as indexes in [`LABELS`] of (type, state, bounded
    /// reason).
    conditions: Box<[[u16; 3]]>,
    /// The [`PER_MICROSERVICE`] values, in order; NaN where there is none.
    values: [f64; PER_MICROSERVICE.len()],
}

impl Row {
    /// The row of `ms`.
    pub fn of(ms: &Microservice) -> Row {
        let conditions = ms
            .status
            .iter()
            .flat_map(|status| &status.conditions)
            .filter_map(|condition| {
                let type_ = condition_type(&condition.type_)?;
                let state = match condition.status.as_str() {
                    "True" => "True",
                    "False" => "False",
                    _ => "Unknown",
                };
                Some([type_, state, reason_label(&condition.reason)].map(label_index))
            })
            .collect();
        Row {
            conditions,
            values: PER_MICROSERVICE.map(|(_, _, read)| read(ms).unwrap_or(f64::NAN)),
        }
    }

    /// Its conditions as (type, state, bounded reason).
    fn states(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> + '_ {
        let label = |i: u16| LABELS.get(usize::from(i)).copied().unwrap_or(OTHER_REASON);
        self.conditions
            .iter()
            .map(move |[t, s, r]| (label(*t), label(*s), label(*r)))
    }
}

impl ConditionMetrics {
    /// Hands over the controller's Microservice watch cache: from now on the gauges are
    /// computed from it at every scrape.
    pub fn attach(&self, store: Store<PackedMicroservice>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// What the gauges need of every cached Microservice, with its namespace and name,
    /// sorted by them, or None before [`ConditionMetrics::attach`]. A Microservice is
    /// unpacked only when its uid or resourceVersion moved since the previous scrape, read
    /// into its [`Row`] and dropped: holding them all typed for a scrape took ~80 MB at
    /// 10,000.
    fn rows(&self) -> Option<Vec<(Arc<PackedMicroservice>, Row)>> {
        let state = self
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|store| store.state())?;
        let mut previous = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = HashMap::with_capacity(state.len());
        let mut rows = Vec::with_capacity(state.len());
        for packed in state {
            let meta = packed.meta();
            let at = crate::packed::name_hash(meta.namespace.as_deref(), meta.name.as_deref());
            let version = packed.version_hash();
            let row = match previous.remove(&at) {
                Some((read_at, row)) if Some(read_at) == version => row,
                _ => match packed.unpack() {
                    Some(ms) => Row::of(&ms),
                    None => continue,
                },
            };
            if let Some(version) = version {
                current.insert(at, (version, row.clone()));
            }
            rows.push((packed, row));
        }
        *previous = current;
        rows.sort_by(|(a, _), (b, _)| {
            let (a, b) = (a.meta(), b.meta());
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        Some(rows)
    }
}

/// Counts Microservices by (condition type, status, bounded reason).
pub fn count_conditions<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> BTreeMap<(&'static str, &'static str, &'static str), u64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        for state in row.states() {
            *counts.entry(state).or_insert(0) += 1;
        }
    }
    counts
}

impl Collector for ConditionMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Before the store is attached (a follower) nothing is served; after, every family
        // is described even while it has no sample.
        let Some(rows) = self.rows() else {
            return Ok(());
        };
        let counts = count_conditions(rows.iter().map(|(_, row)| row));
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
        for (i, (name, help, _)) in PER_MICROSERVICE.iter().enumerate() {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
            for (packed, row) in &rows {
                let meta = packed.meta();
                let value = row.values[i];
                let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), &meta.name) else {
                    continue;
                };
                if value.is_nan() {
                    continue;
                }
                let labels = [
                    ("microservice_namespace", namespace),
                    ("microservice", name.as_str()),
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

    /// A scrape reads again only what moved: same uid and resourceVersion, the row of the
    /// previous scrape (seen here by changing the object without moving its version, which
    /// the apiserver never does); a new resourceVersion, or another uid under the same
    /// name, is read again; a deleted Microservice leaves the gauges.
    #[test]
    fn a_scrape_reads_again_only_the_microservices_that_changed() {
        let (reader, mut writer) = store::<PackedMicroservice>();
        let at = |name: &str, uid: &str, version: &str, desired: i32| {
            let mut ms = microservice(name, vec![condition("Ready", "True", "Available")]);
            ms.metadata.uid = Some(uid.into());
            ms.metadata.resource_version = Some(version.into());
            if let Some(status) = ms.status.as_mut() {
                status.desired_replicas = Some(desired);
            }
            PackedMicroservice::pack(&ms).expect("packs")
        };
        let desired = |text: &str, name: &str| {
            let prefix = format!(
                "shoal_microservice_desired_replicas{{microservice_namespace=\"shop\",microservice=\"{name}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        };
        writer.apply_watcher_event(&Event::Apply(at("a", "u-a", "1", 1)));
        writer.apply_watcher_event(&Event::Apply(at("b", "u-b", "1", 1)));
        let metrics = ConditionMetrics::default();
        metrics.attach(reader);
        let text = render(&metrics);
        assert_eq!(desired(&text, "a").as_deref(), Some("1.0"), "{text}");
        // Same version, other contents: the previous row stands.
        writer.apply_watcher_event(&Event::Apply(at("a", "u-a", "1", 5)));
        // A new version, and a Microservice re-created under b's name: read again.
        writer.apply_watcher_event(&Event::Apply(at("b", "u-b2", "1", 7)));
        writer.apply_watcher_event(&Event::Apply(at("c", "u-c", "9", 2)));
        let text = render(&metrics);
        assert_eq!(desired(&text, "a").as_deref(), Some("1.0"), "{text}");
        assert_eq!(desired(&text, "b").as_deref(), Some("7.0"), "{text}");
        assert_eq!(desired(&text, "c").as_deref(), Some("2.0"), "{text}");
        writer.apply_watcher_event(&Event::Apply(at("a", "u-a", "2", 5)));
        writer.apply_watcher_event(&Event::Delete(at("c", "u-c", "9", 2)));
        let text = render(&metrics);
        assert_eq!(desired(&text, "a").as_deref(), Some("5.0"), "{text}");
        assert_eq!(desired(&text, "c"), None, "{text}");
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

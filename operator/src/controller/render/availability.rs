//! Zero-downtime defaults: the PodDisruptionBudget of a service that can run 2+ replicas,
//! and the pods' topology spread.

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::meta::{object_meta, selector_labels, with_applied_hash};
use crate::validate::ValidatedMicroservice;

/// Pods that are not Ready may always be evicted: a crash-looping or never-ready revision
/// must not block a node drain, and evicting it takes nothing that serves.
pub const UNHEALTHY_POD_EVICTION_POLICY: &str = "AlwaysAllow";

/// Renders the PodDisruptionBudget named like the Microservice, selecting its pods, or
/// None when the service cannot run 2+ replicas or `spec.disruption.enabled` is false.
pub fn render_pod_disruption_budget(ms: &ValidatedMicroservice) -> Option<PodDisruptionBudget> {
    let budget = ms.disruption.as_ref()?;
    Some(with_applied_hash(PodDisruptionBudget {
        metadata: object_meta(ms, ms.name.clone(), "disruption-budget"),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(ms)),
                match_expressions: None,
            }),
            max_unavailable: budget.max_unavailable.clone(),
            min_available: budget.min_available.clone(),
            unhealthy_pod_eviction_policy: Some(UNHEALTHY_POD_EVICTION_POLICY.to_string()),
        }),
        status: None,
    }))
}

/// Node label of a node's name: spread over it so one node going away takes few pods.
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Node label of a node's zone: spread over it so one zone going away takes few pods.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// The pods' topology spread: the user's constraints (those without a `labelSelector`
/// select this service's pods), or by default one per node and one per zone, each
/// `maxSkew: 1` and `ScheduleAnyway` (a preference: pods still schedule when a cluster has
/// one node or one zone) and counted per revision (`matchLabelKeys: [pod-template-hash]`,
/// so a rollout's new pods spread by themselves).
pub fn topology_spread(ms: &ValidatedMicroservice) -> Vec<TopologySpreadConstraint> {
    let selector = || LabelSelector {
        match_labels: Some(selector_labels(ms)),
        match_expressions: None,
    };
    match &ms.pod.topology_spread_constraints {
        Some(constraints) => constraints
            .iter()
            .cloned()
            .map(|mut c| {
                c.label_selector.get_or_insert_with(selector);
                c
            })
            .collect(),
        None => [HOSTNAME_TOPOLOGY_KEY, ZONE_TOPOLOGY_KEY]
            .into_iter()
            .map(|key| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: key.to_string(),
                when_unsatisfiable: "ScheduleAnyway".to_string(),
                label_selector: Some(selector()),
                match_label_keys: Some(vec!["pod-template-hash".to_string()]),
                ..TopologySpreadConstraint::default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::test_support::valid;

    fn budget(spec: &str) -> Option<PodDisruptionBudgetSpec> {
        render_pod_disruption_budget(&valid(spec)).map(|pdb| pdb.spec.expect("spec"))
    }

    #[test]
    fn a_budget_exactly_when_two_or_more_replicas_are_possible() {
        assert!(budget("  image: a:1\n").is_none(), "one replica by default");
        assert!(budget("  image: a:1\n  replicas: 1\n").is_none());
        let two = budget("  image: a:1\n  replicas: 2\n").expect("a budget at 2");
        assert_eq!(two.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(two.min_available, None);
        assert_eq!(
            two.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        let selector = two
            .selector
            .expect("selector")
            .match_labels
            .expect("labels");
        assert_eq!(selector[crate::vocabulary::INSTANCE_LABEL], "shop");
        // Autoscaled: what counts is how many replicas there can be.
        let scaled = "  image: a:1\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {minReplicas: 1, maxReplicas: MAX, cpu: {targetUtilization: 50}}\n";
        assert!(budget(&scaled.replace("MAX", "1")).is_none());
        assert!(budget(&scaled.replace("MAX", "5")).is_some());
    }

    #[test]
    fn the_budget_can_be_changed_or_turned_off() {
        let min = budget("  image: a:1\n  replicas: 3\n  disruption: {minAvailable: '50%'}\n")
            .expect("budget");
        assert_eq!(min.min_available, Some(IntOrString::String("50%".into())));
        assert_eq!(
            min.max_unavailable, None,
            "minAvailable replaces the default"
        );
        let max = budget("  image: a:1\n  replicas: 3\n  disruption: {maxUnavailable: 2}\n")
            .expect("budget");
        assert_eq!(max.max_unavailable, Some(IntOrString::Int(2)));
        assert!(budget("  image: a:1\n  replicas: 3\n  disruption: {enabled: false}\n").is_none());
    }

    #[test]
    fn pods_spread_over_nodes_and_zones_unless_the_user_says_otherwise() {
        let default = topology_spread(&valid("  image: a:1\n  replicas: 3\n"));
        let keys: Vec<&str> = default.iter().map(|c| c.topology_key.as_str()).collect();
        assert_eq!(keys, [HOSTNAME_TOPOLOGY_KEY, ZONE_TOPOLOGY_KEY]);
        for c in &default {
            assert_eq!(
                (c.max_skew, c.when_unsatisfiable.as_str()),
                (1, "ScheduleAnyway")
            );
            let labels = c
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref());
            assert_eq!(
                labels.expect("selector")[crate::vocabulary::NAME_LABEL],
                "shop"
            );
        }
        let own = topology_spread(&valid(
            "  image: a:1\n  topologySpreadConstraints: [{maxSkew: 2, topologyKey: rack, whenUnsatisfiable: DoNotSchedule}]\n",
        ));
        assert_eq!(own.len(), 1, "the user's constraints replace the defaults");
        assert_eq!(own[0].topology_key, "rack");
        assert!(
            own[0].label_selector.is_some(),
            "selects this service's pods"
        );
        let none = topology_spread(&valid("  image: a:1\n  topologySpreadConstraints: []\n"));
        assert!(none.is_empty(), "an empty list turns spreading off");
    }
}

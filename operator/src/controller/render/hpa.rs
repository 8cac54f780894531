//! The native HorizontalPodAutoscaler, for Microservices scaled on CPU only.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::meta::{object_meta, with_applied_hash};
use crate::crd::{PolicyType, ScalingRules, SelectPolicy};
use crate::validate::{Scaling, ValidatedMicroservice};

/// Renders the HPA when the HPA engine scales this Microservice, else None.
pub fn render_hpa(ms: &ValidatedMicroservice) -> Option<HorizontalPodAutoscaler> {
    let Scaling::Hpa(hpa) = &ms.scaling else {
        return None;
    };
    Some(with_applied_hash(HorizontalPodAutoscaler {
        metadata: object_meta(ms, ms.name.clone(), "autoscaler"),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: ms.name.clone(),
            },
            min_replicas: Some(hpa.min),
            max_replicas: hpa.max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(hpa.cpu_target),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: hpa
                .behavior
                .as_ref()
                .map(|b| HorizontalPodAutoscalerBehavior {
                    scale_up: b.scale_up.as_ref().map(hpa_rules),
                    scale_down: b.scale_down.as_ref().map(hpa_rules),
                }),
        },
        ..HorizontalPodAutoscaler::default()
    }))
}

fn hpa_rules(rules: &ScalingRules) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: rules.stabilization_window_seconds,
        select_policy: rules.select_policy.map(|p| {
            match p {
                SelectPolicy::Max => "Max",
                SelectPolicy::Min => "Min",
                SelectPolicy::Disabled => "Disabled",
            }
            .to_string()
        }),
        policies: rules.policies.as_ref().map(|policies| {
            policies
                .iter()
                .map(|p| HPAScalingPolicy {
                    type_: match p.type_ {
                        PolicyType::Pods => "Pods",
                        PolicyType::Percent => "Percent",
                    }
                    .to_string(),
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
                .collect()
        }),
        ..HPAScalingRules::default()
    }
}

//! The side effects of a decision: the scale write (field manager `shoal-autoscaler`), its
//! Event, and the status patch. A failed write is reported, not recorded: the next tick
//! decides again and retries, and the rate budget is not spent.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource};
use tracing::{info, warn};

use super::decision::{self, Decision, reason};
use super::inputs::Observed;
use super::status;
use crate::AUTOSCALER_FIELD_MANAGER;
use crate::conditions::ConditionSpec;
use crate::crd::{AutoscalerStatus, Microservice};
use crate::kube_ext::{self, EventSink};
use crate::metrics::Metrics;

/// One Microservice's decision and the status that goes with it.
pub struct Plan {
    /// What was read.
    pub observed: Observed,
    /// What was decided.
    pub decision: Decision,
    /// `status.autoscaler` as decided.
    pub status: AutoscalerStatus,
    /// The autoscaler's conditions as decided.
    pub conditions: Vec<Condition>,
}

/// What happened to the replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change.
    Unchanged,
    /// The apiserver accepted the new count.
    Scaled {
        /// Count before.
        from: i32,
        /// Count after.
        to: i32,
    },
    /// The write was refused or failed.
    Failed,
}

/// Writes the scale (when it changes) and the status (when it changed).
pub async fn act(
    client: &Client,
    recorder: &EventSink,
    plan: Plan,
    metrics: &Metrics,
    now: &Time,
) -> Outcome {
    let Plan {
        observed,
        decision,
        mut status,
        mut conditions,
    } = plan;
    let ms = &observed.target.ms;
    let valid = &observed.target.valid;
    let reference = ms.object_ref(&());
    let current = observed.current;
    // During a canary release the stable Deployment gets its share of the total.
    let stable_target = observed.canary_weight.map_or(decision.desired, |w| {
        crate::tracks::stable_share(decision.desired, w)
    });
    let mut outcome = Outcome::Unchanged;
    if decision.desired != current && stable_target != observed.stable {
        metrics.scale_write();
        metrics.scale_decision(current, decision.desired);
        let explanation = status::explain(&status);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &valid.namespace);
        let wanted = match kube_ext::scale(
            &deployments,
            &valid.name,
            stable_target,
            AUTOSCALER_FIELD_MANAGER,
        )
        .await
        {
            Ok(_) => {
                info!(namespace = %valid.namespace, name = %valid.name, from = current, to = decision.desired, %explanation, "scaled");
                publish(
                    recorder,
                    &reference,
                    EventType::Normal,
                    "SuccessfulRescale",
                    format!("New size: {}; reason: {explanation}", decision.desired),
                )
                .await;
                outcome = Outcome::Scaled {
                    from: current,
                    to: decision.desired,
                };
                status.last_scale_time = Some(now.clone());
                ConditionSpec::new(
                    decision::ABLE_TO_SCALE,
                    true,
                    reason::SUCCEEDED_RESCALE,
                    "the autoscaler was able to update the target scale",
                )
            }
            Err(err) => {
                let err = short_error(&err);
                warn!(namespace = %valid.namespace, name = %valid.name, error = %err, "scale write failed; retried next tick");
                publish(
                    recorder,
                    &reference,
                    EventType::Warning,
                    "FailedRescale",
                    format!(
                        "New size: {}; reason: {explanation}; error: {err}",
                        decision.desired
                    ),
                )
                .await;
                status.desired_replicas = Some(current);
                outcome = Outcome::Failed;
                ConditionSpec::new(
                    decision::ABLE_TO_SCALE,
                    false,
                    reason::FAILED_UPDATE_SCALE,
                    format!("the autoscaler was unable to update the target scale: {err}"),
                )
            }
        };
        conditions = status::conditions(&conditions, &[wanted], valid.generation, now);
    }
    if let Some(body) = status::patch(ms.status.as_ref(), &status, &conditions) {
        let api: Api<Microservice> = Api::namespaced(client.clone(), &valid.namespace);
        if let Err(err) =
            kube_ext::apply_status(&api, &valid.name, body, AUTOSCALER_FIELD_MANAGER).await
        {
            warn!(name = %valid.name, error = %err, "autoscaler status write failed");
        }
    }
    outcome
}

/// The apiserver's own message for a refused request (the kube error's Display carries
/// the whole Status), or the error's text.
fn short_error(err: &crate::error::Error) -> String {
    match std::error::Error::source(err).and_then(|s| s.downcast_ref::<kube::Error>()) {
        Some(kube::Error::Api(status)) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        _ => err.to_string(),
    }
}

async fn publish(
    recorder: &EventSink,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    recorder
        .publish(reference, type_, reason, "Scale", note)
        .await;
}

//! One reconcile of one Microservice, one line per stage:
//! `validate -> render -> rollout -> apply -> status`. Only the lines marked "client"
//! talk to the apiserver; the others are pure or read the watch caches.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use super::apply::{self, Live};
use super::status::{self, EventSpec};
use super::{Context, canary, render, rollout};
use crate::crd::{Microservice, MicroserviceStatus};
use crate::error::{Error, Result};
use crate::validate::{self, InvalidSpec, ValidatedMicroservice};

/// Reconciles one Microservice: renders its children, applies those that differ from the
/// live ones, and writes its status when it changed.
#[instrument(skip(ms, ctx), fields(namespace = ms.namespace().unwrap_or_default(), name = %ms.name_any(), generation = ms.metadata.generation))]
pub async fn reconcile(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action> {
    if ms.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the children through their owner references.
        ctx.forget_status_write(&ms);
        return Ok(Action::await_change());
    }
    ctx.ready.clone().await; // no client (the caches' first lists)
    let _measure = ctx.metrics.count_and_measure();
    let valid = match validate::validate(&ms) {
        Ok(valid) => valid,                                               // no client
        Err(invalid) => return report_invalid(&ctx, &ms, &invalid).await, // client
    };
    let children = render::render(&valid); // no client
    let live = Live::from_stores(&ctx.stores, &valid); // no client (watch caches)
    let canary_key = (valid.namespace.clone(), valid.name.clone());
    let sample = ctx.analyzer.as_ref().and_then(|a| a.latest(&canary_key)); // no client
    let mut transition =
        rollout::transition(&live.observed(&ms, &valid, &children, sample.as_ref(), now().0)); // no client
    let canary_in_flight = canary::in_flight(&transition.status);
    if let (Some(analyzer), Some(policy)) = (&ctx.analyzer, &valid.rollout.canary) {
        // The analysis runs while a canary is in flight (no client: the analyzer's task queries).
        match canary_in_flight {
            true => analyzer.want(canary_key, &policy.analysis),
            false => analyzer.forget(&canary_key),
        }
    }
    let applied = match apply::apply(&ctx, &ms, &valid, children, &live, &transition).await {
        Ok(applied) => applied, // client
        Err(err) => return Err(report_apply_failed(&ctx, &ms, &valid, err).await), // client
    };
    transition.record_apply(valid.generation, applied.deployment()); // no client
    apply::note_routing(&mut transition, applied.routing_note.as_deref()); // no client
    let new = status::valid_status(
        &ms,
        &valid,
        applied.deployment(),
        &live.replica_sets,
        &transition,
        &now(),
    ); // no client
    // A write that is not news may wait (then come back when it may be made).
    let held = status::needs_write(ms.status.as_ref(), &new)
        .then(|| ctx.status_write_delay(&ms, &new))
        .flatten();
    if held.is_none() {
        write_status(&ctx, &ms, &new).await?; // client
    }
    ctx.forget_failures(&ms);
    // Back when a held write may be made or a canary step is due; else on the next change
    // or the periodic re-check (`resync::triggers`), which needs no timer per Microservice.
    let mut requeue = held.filter(|d| *d < ctx.resync);
    if canary_in_flight {
        requeue = Some(requeue.map_or(canary::CANARY_REQUEUE, |d| d.min(canary::CANARY_REQUEUE)));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// An invalid spec: Ready=False and a Warning Event, then nothing until the spec changes.
async fn report_invalid(ctx: &Context, ms: &Microservice, invalid: &InvalidSpec) -> Result<Action> {
    let new = status::invalid_status(ms, invalid, &now());
    if status::needs_write(ms.status.as_ref(), &new) {
        write_status(ctx, ms, &new).await?;
        publish(ctx, ms, status::invalid_spec_event(invalid)).await;
    }
    ctx.forget_failures(ms);
    Ok(Action::await_change())
}

/// A child the apiserver refused: Ready=False with its message and a Warning Event (once
/// per new message), then the error, so that the error policy retries with backoff.
/// Other failures (timeouts, 5xx) only retry: they say nothing about the spec.
async fn report_apply_failed(
    ctx: &Context,
    ms: &Microservice,
    valid: &ValidatedMicroservice,
    err: Error,
) -> Error {
    let Some(refusal) = err.refusal() else {
        return err;
    };
    let new = status::apply_failed_status(ms, valid, &refusal, &now());
    if status::needs_write(ms.status.as_ref(), &new) {
        if let Err(status_err) = write_status(ctx, ms, &new).await {
            tracing::warn!(error = %status_err, "could not record the refused apply in the status");
        }
        publish(ctx, ms, status::apply_failed_event(&refusal)).await;
    }
    err
}

/// When the controller's part of the status changed: publishes the Events of the change
/// ([`status::events_for`]), then writes it.
async fn write_status(ctx: &Context, ms: &Microservice, new: &MicroserviceStatus) -> Result<()> {
    if !status::needs_write(ms.status.as_ref(), new) {
        return Ok(());
    }
    tracing::debug!(changed = ?status::changed_fields(ms.status.as_ref(), new), "writing the status");
    for event in status::events_for(ms.status.as_ref(), new) {
        publish(ctx, ms, event).await;
    }
    let name = ms
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingMetadata("name"))?;
    let namespace = ms.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<Microservice> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = serde_json::to_value(status::controller_view(new)).unwrap_or_default();
    let written = crate::kube_ext::apply_status(&api, name, body, crate::FIELD_MANAGER).await?;
    ctx.remember_written(written);
    Ok(())
}

async fn publish(ctx: &Context, ms: &Microservice, event: EventSpec) {
    let EventSpec {
        type_,
        reason,
        action,
        note,
    } = event;
    ctx.events
        .publish(&ms.object_ref(&()), type_, &reason, action, note)
        .await;
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

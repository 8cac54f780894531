//! One copy of what both loops do with the Kubernetes API: scoped handles, watch caches,
//! server-side apply of objects and of status, scale writes, and Events.

use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::error::{Error, Result};

/// An API handle for one namespace, or all of them.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of `api` (only objects matching `labels`, when given) that keeps `writer`'s
/// cache current, with `managedFields` and `kubectl apply`'s copy stripped ([`slim`]). Poll the stream to keep
/// the cache alive.
pub fn reflected<K>(
    api: Api<K>,
    labels: Option<&str>,
    writer: reflector::store::Writer<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    shaped(api, labels, writer, slim)
}

/// [`reflected`] with `shape` applied to each object before the cache holds it (e.g. a
/// [`crate::projection`]; it replaces [`slim`]).
pub fn shaped<K>(
    api: Api<K>,
    labels: Option<&str>,
    writer: reflector::store::Writer<K>,
    shape: impl FnMut(&mut K) + Send + 'static,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut config = watch_config();
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    watcher(api, config)
        .default_backoff()
        .modify(shape)
        .reflect(writer)
}

/// Objects per page of a watch's initial list (kube-runtime's default is 500). A page is
/// held twice, as the response and as typed objects before they are shaped, and every watch
/// lists at once after a start: with 500 the pages of a restart over 1,000 Microservices
/// were most of the operator's memory, kept by the allocator after they were freed.
pub const LIST_PAGE_SIZE: u32 = 100;

/// The watch settings of every cache: [`LIST_PAGE_SIZE`] objects per page.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

/// What `kubectl apply` (client-side) leaves on an object: a copy of the whole applied
/// object.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no reader of a watch cache looks at and most of an object's bytes can be:
/// `managedFields` (one entry per field manager) and `kubectl apply`'s copy of the object.
pub fn slim<K: Resource>(object: &mut K) {
    // None, not an empty list: a cleared list would keep its buffer in every cached object.
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// A watch cache of `api` kept current by a background task (see [`reflected`]).
pub fn spawn_cache<K>(api: Api<K>, labels: Option<&str>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflected(api, labels, writer).applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

/// A watch cache of `api` kept current by a background task, `shape` applied to each
/// object (see [`shaped`]).
pub fn spawn_shaped_cache<K>(
    api: Api<K>,
    labels: Option<&str>,
    shape: impl FnMut(&mut K) + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = shaped(api, labels, writer, shape).applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

/// The kind of a statically typed resource, for error messages.
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

/// Server-side applies `object` (forced) as `manager`; returns the object as stored.
pub async fn apply<K>(api: &Api<K>, object: &K, manager: &str) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: kind_of::<K>(),
        name,
        source,
    })
}

/// Server-side applies `status` to the status subresource of `K` named `name` (forced) as
/// `manager`; the body's apiVersion and kind come from `K`. Returns the object as stored.
pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: serde_json::Value,
    manager: &str,
) -> Result<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Status {
        kind: kind_of::<K>(),
        name: name.to_string(),
        source,
    })
}

/// Sets a Deployment's replica count through the scale subresource (forced) as `manager`.
pub async fn scale(api: &Api<Deployment>, name: &str, replicas: i32, manager: &str) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch_scale(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Scale {
        name: name.to_string(),
        replicas,
        source,
    })?;
    Ok(())
}

/// The reporter of Events published by `controller` (`shoal`, `shoal-autoscaler`), with
/// this pod's name (`POD_NAME`) as the instance.
pub fn reporter(controller: &str) -> Reporter {
    Reporter {
        controller: controller.into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

/// Longest Event note Shoal writes, in bytes (the apiserver refuses notes over 1 KiB).
pub const NOTE_MAX_BYTES: usize = 1000;

/// `text` cut to [`NOTE_MAX_BYTES`] at a character boundary, with `...` when cut.
pub fn fit_note(text: &str) -> String {
    if text.len() <= NOTE_MAX_BYTES {
        return text.to_string();
    }
    let mut end = NOTE_MAX_BYTES - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Publishes Events as one reporting controller. Each publish creates a new Event:
/// kube-runtime's Recorder folds repeats of one (reason, action, object) into a series that
/// keeps the first message, which would hide "New size: 8" behind "New size: 5".
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    reporter: Reporter,
}

impl EventSink {
    /// An event sink reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Publishes one Event about `reference`, its note cut to fit ([`fit_note`]). A failure
    /// is logged, never returned: an Event that cannot be written is no reason to fail a
    /// reconcile or a tick.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(fit_note(&note)),
            action: action.into(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(err) = recorder.publish(&event, reference).await {
            warn!(error = %err, reason, "could not publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Deployment, LAST_APPLIED_ANNOTATION, NOTE_MAX_BYTES, fit_note, slim};
    use kube::ResourceExt;

    #[test]
    fn cached_objects_drop_managed_fields_and_kubectls_copy_only() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut deployment = Deployment::default();
        deployment.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        deployment.metadata.annotations = Some(
            [
                (LAST_APPLIED_ANNOTATION.to_string(), "{...}".to_string()),
                ("shoal.dev/applied-hash".to_string(), "h".to_string()),
            ]
            .into(),
        );
        slim(&mut deployment);
        assert_eq!(deployment.metadata.managed_fields, None);
        let kept: Vec<&String> = deployment.annotations().keys().collect();
        assert_eq!(kept, ["shoal.dev/applied-hash"]);
    }

    #[test]
    fn event_notes_fit_in_one_kibibyte_at_a_character_boundary() {
        assert_eq!(fit_note("short"), "short");
        let cut = fit_note(&"é".repeat(800));
        assert!(
            cut.len() <= NOTE_MAX_BYTES && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }
}

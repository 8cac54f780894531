//! Watch caches that hold each object packed: its [`crate::projection`] as JSON, compressed
//! with zstd, and unpacked into a typed object only when a reader asks for it.
//!
//! A typed Kubernetes object in memory is 4–5 times its JSON (every `Option`, `String` and
//! `BTreeMap` has its own allocation), and a Deployment's JSON compresses about 2.5 times;
//! a packed child takes a few hundred bytes to 1.5 KB where a typed projection took 5–15 KB.
//! Readers are few and read a handful of objects per reconcile, so the unpacking (tens of
//! microseconds) costs far less than holding 10,000 Microservices' children typed.
//!
//! The children's watch streams stay typed: the controller's owner triggers and the owner
//! indexes read the events as they pass, and only the store packs. The Microservices are
//! the controller's own objects and live in kube-runtime's store: each is a [`Packed`]
//! there, read from the watch as a Microservice and packed on arrival.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::projection::{self, Keep};

/// zstd's level: 3 is its default; higher levels gain a few percent on objects this small
/// and cost several times the CPU.
const LEVEL: i32 = 3;

/// A watch cache of packed objects, fed by a watch's events
/// ([`PackedStore::apply_watcher_event`]) like kube-runtime's reflector store: a relist
/// replaces the contents whole at its end, and readers see the previous contents until then.
pub struct PackedStore<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    inner: Arc<Inner<K>>,
}

impl<K: Resource> Clone for PackedStore<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        PackedStore {
            inner: self.inner.clone(),
        }
    }
}

/// Packed objects by [`slot`]: "namespace/name" in one allocation (16 bytes in the table)
/// where an `ObjectRef` took 96 bytes and two strings per object.
type Objects = HashMap<Box<str>, Box<[u8]>>;

struct Inner<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// What to keep of an object: the projection keeping these paths, or (None) the whole
    /// object without `managedFields`.
    keep: Option<Keep>,
    /// K's kind, which picks the dictionary ([`compress`]).
    kind: String,
    objects: RwLock<Objects>,
    /// A relist in progress: what it has listed so far.
    relist: Mutex<Option<Objects>>,
    /// True once the first list is complete.
    ready: tokio::sync::watch::Sender<bool>,
    /// The store holds `K`s, packed.
    holds: PhantomData<fn() -> K>,
}

impl<K> PackedStore<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// A store keeping each object's projection with `keep` ([`projection::projected_json`]).
    pub fn projecting(keep: Keep) -> Self {
        Self::with(Some(keep))
    }

    /// A store keeping each object whole, without `managedFields` ([`crate::kube_ext::slim`]).
    pub fn whole() -> Self {
        Self::with(None)
    }

    fn with(keep: Option<Keep>) -> Self {
        PackedStore {
            inner: Arc::new(Inner {
                keep,
                kind: K::kind(&K::DynamicType::default()).into_owned(),
                objects: RwLock::new(HashMap::new()),
                relist: Mutex::new(None),
                ready: tokio::sync::watch::channel(false).0,
                holds: PhantomData,
            }),
        }
    }

    /// Records one watch event.
    pub fn apply_watcher_event(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => {
                if let Some(packed) = self.pack(object) {
                    self.write().insert(key(object), packed);
                }
            }
            watcher::Event::Delete(object) => {
                self.write().remove(&key(object));
            }
            watcher::Event::Init => *self.relist() = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let Some(packed) = self.pack(object) {
                    self.relist()
                        .get_or_insert_with(HashMap::new)
                        .insert(key(object), packed);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relist().take().unwrap_or_default();
                *self.write() = listed;
                self.inner.ready.send_replace(true);
            }
        }
    }

    /// The object named by `key` (its namespace and name), unpacked.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.get_slot(&slot(key.namespace.as_deref(), &key.name))
    }

    /// The object in `slot` ("namespace/name", [`slot`]), unpacked.
    pub fn get_slot(&self, slot: &str) -> Option<Arc<K>> {
        let objects = self.inner.objects.read().unwrap_or_else(|e| e.into_inner());
        objects
            .get(slot)
            .and_then(|packed| unpack(&self.inner.kind, packed))
            .map(Arc::new)
    }

    /// Every object, unpacked.
    pub fn state(&self) -> Vec<Arc<K>> {
        let objects = self.inner.objects.read().unwrap_or_else(|e| e.into_inner());
        objects
            .values()
            .filter_map(|packed| unpack(&self.inner.kind, packed))
            .map(Arc::new)
            .collect()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.inner
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the packed objects take (their contents, not the map's own).
    pub fn packed_bytes(&self) -> usize {
        self.inner
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| p.len())
            .sum()
    }

    /// Completes once the store holds its first full list. Any number of tasks may wait.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        // The sender lives as long as the store, which `self` keeps.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    fn pack(&self, object: &K) -> Option<Box<[u8]>> {
        let json = match self.inner.keep {
            Some(keep) => projection::projected_json(object, keep),
            None => projection::slim_json(object),
        }?;
        compress(&self.inner.kind, &json)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.inner
            .objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn relist(&self) -> std::sync::MutexGuard<'_, Option<Objects>> {
        self.inner.relist.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A watch of `api` (only objects matching `labels`, when given) that keeps `store` current;
/// the events pass on typed and whole. Poll the stream to keep the store current.
pub fn watch<K>(
    api: Api<K>,
    labels: Option<&str>,
    store: PackedStore<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let mut config = crate::kube_ext::watch_config();
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    watcher(api, config)
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                store.apply_watcher_event(event);
            }
        })
}

/// `store`, kept current by a background task watching `api` ([`watch`]).
pub fn spawn<K>(api: Api<K>, labels: Option<&str>, store: PackedStore<K>) -> PackedStore<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let stream = watch(api, labels, store.clone());
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    store
}

/// The store's key of `object`: its namespace and name only ([`slot`]).
pub fn key<K: Resource>(object: &K) -> Box<str> {
    let meta = object.meta();
    slot(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// A number that moves whenever an object's uid or resourceVersion does (None without a
/// resourceVersion): what the caches that remember what they read of an object (the
/// scrape's rows, the metrics loop's non-targets) compare, eight bytes where the two
/// strings took ~130.
pub fn version_of(meta: &ObjectMeta) -> Option<u64> {
    let version = meta.resource_version.as_deref()?;
    Some(hash_of(&(meta.uid.as_deref(), version)))
}

/// A hash of a namespace and name: the key of the tables that remember something per
/// Microservice without keeping its name (the scrape's rows, the status-write times).
pub fn name_hash(namespace: Option<&str>, name: Option<&str>) -> u64 {
    hash_of(&(namespace, name))
}

/// `value`'s hash, the same in every run of the process (SipHash with fixed keys).
pub(crate) fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// "namespace/name", or "name" for an object without a namespace (no name holds a '/').
pub fn slot(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(LEVEL).ok());
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// A kind's zstd dictionary, prepared once for both directions.
struct Dictionary {
    encoder: zstd::dict::EncoderDictionary<'static>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

/// The dictionaries: for each kind Shoal keeps many of, one such object as the test bed
/// stored it, kept as its store keeps it (the `web-with-ingress` example as a Microservice
/// and its children, `projection/testdata/`),
/// used as zstd's raw-content dictionary. Every child of a kind shares most of its text with
/// it (field names, defaults, labels, the pod template), so a packed child is mostly
/// references into the dictionary: a few hundred bytes where it was 0.4–1.4 KB alone. The
/// dictionary is chosen by kind alone, so packing and unpacking always agree on it; a kind
/// without one packs alone.
static DICTIONARIES: std::sync::LazyLock<HashMap<&'static str, Dictionary>> =
    std::sync::LazyLock::new(|| {
        use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
        use k8s_openapi::api::batch::v1::CronJob;
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::networking::v1::Ingress;

        /// `json` as its store keeps it: projected with `keep`, or (None) whole and slim.
        fn sample<K>(json: &str, keep: Option<Keep>) -> Option<(&'static str, Dictionary)>
        where
            K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone,
        {
            let object: K = serde_json::from_str(json).ok()?;
            let bytes = match keep {
                Some(keep) => projection::projected_json(&object, keep)?,
                None => projection::slim_json(&object)?,
            };
            let kind: &'static str = match K::kind(&()) {
                std::borrow::Cow::Borrowed(kind) => kind,
                std::borrow::Cow::Owned(_) => return None,
            };
            Some((
                kind,
                Dictionary {
                    encoder: zstd::dict::EncoderDictionary::copy(&bytes, LEVEL),
                    decoder: zstd::dict::DecoderDictionary::copy(&bytes),
                },
            ))
        }
        [
            sample::<crate::crd::Microservice>(
                include_str!("projection/testdata/microservice.json"),
                None,
            ),
            sample::<Deployment>(
                include_str!("projection/testdata/deployment.json"),
                Some(projection::DEPLOYMENT),
            ),
            sample::<ReplicaSet>(
                include_str!("projection/testdata/replicaset.json"),
                Some(projection::REPLICA_SET),
            ),
            sample::<Service>(
                include_str!("projection/testdata/service.json"),
                Some(projection::SERVICE),
            ),
            sample::<Ingress>(
                include_str!("projection/testdata/ingress.json"),
                Some(projection::OWNED_ONLY),
            ),
            sample::<CronJob>(
                include_str!("projection/testdata/cronjob.json"),
                Some(projection::OWNED_ONLY),
            ),
            // ConfigMaps are watched as their metadata (`PartialObjectMetadata`).
            sample::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap>>(
                include_str!("projection/testdata/configmap-metadata.json"),
                None,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    });

/// `json`, an object of `kind`, compressed (with the kind's dictionary, if it has one),
/// after its length (4 bytes, little-endian) for the unpacking.
fn compress(kind: &str, json: &[u8]) -> Option<Box<[u8]>> {
    let len = u32::try_from(json.len()).ok()?;
    let dictionary = DICTIONARIES.get(kind);
    let body = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.as_mut()?;
        match dictionary {
            Some(d) => c.set_prepared_dictionary(&d.encoder).ok()?,
            None => c.set_dictionary(LEVEL, &[]).ok()?,
        }
        c.compress(json).ok()
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Some(out.into_boxed_slice())
}

/// The object of `kind` that `packed` holds.
fn unpack<K: DeserializeOwned>(kind: &str, packed: &[u8]) -> Option<K> {
    let (len, body) = packed.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let dictionary = DICTIONARIES.get(kind);
    let json = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let d = d.as_mut()?;
        match dictionary {
            Some(dict) => d.set_prepared_dictionary(&dict.decoder).ok()?,
            None => d.set_dictionary(&[]).ok()?,
        }
        d.decompress(body, len).ok()
    })?;
    match serde_json::from_slice(&json) {
        Ok(object) => Some(object),
        Err(err) => {
            warn!(error = %err, kind, "a packed object did not read back");
            None
        }
    }
}

/// One object packed like a [`PackedStore`]'s, as a resource of its own: kube-runtime's
/// stores and controller hold it (a controller's primary objects must be in its own store),
/// with the metadata they read (name, namespace, generation, deletion time) beside the
/// packed whole. It reads a watch's objects as `K` and packs them as they arrive;
/// [`Packed::unpack`] gives the object back.
///
/// The uid is not in its metadata, only in [`Packed::version_hash`] (a hash of uid and
/// resourceVersion): kube-runtime's store copies it from the metadata into each key, and
/// its two copies took ~100 bytes per Microservice for readers that only ask whether it
/// moved. The resourceVersion stays: the watcher resumes from it.
pub struct Packed<K> {
    metadata: ObjectMeta,
    version: Option<u64>,
    bytes: Arc<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Packed {
            metadata: self.metadata.clone(),
            version: self.version,
            bytes: self.bytes.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("metadata", &self.metadata)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<K> Packed<K>
where
    K: Resource + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    /// `object` packed whole, without `managedFields` ([`crate::kube_ext::slim`]).
    pub fn pack(object: &K) -> Option<Self> {
        let dt = K::DynamicType::default();
        let bytes = compress(&K::kind(&dt), &projection::slim_json(object)?)?;
        let meta = object.meta();
        Some(Packed {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                // The watcher resumes from each event's resourceVersion: without it every
                // event ended the watch ("no metadata.resourceVersion in watch result").
                resource_version: meta.resource_version.clone(),
                generation: meta.generation,
                deletion_timestamp: meta.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            version: version_of(meta),
            bytes: bytes.into(),
            kind: PhantomData,
        })
    }

    /// The object (None only if its bytes were damaged, which a warning logs).
    pub fn unpack(&self) -> Option<K> {
        let dt = K::DynamicType::default();
        unpack(&K::kind(&dt), &self.bytes)
    }

    /// [`version_of`] the object: moves whenever its uid or resourceVersion does.
    pub fn version_hash(&self) -> Option<u64> {
        self.version
    }

    /// Bytes the packed object takes (not its metadata).
    pub fn packed_len(&self) -> usize {
        self.bytes.len()
    }
}

impl<K> Resource for Packed<K>
where
    K: Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de, K> Deserialize<'de> for Packed<K>
where
    K: Resource + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = K::deserialize(deserializer)?;
        Packed::pack(&object).ok_or_else(|| serde::de::Error::custom("could not pack the object"))
    }
}

#[cfg(test)]
mod tests;

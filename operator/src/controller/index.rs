//! Which cached objects each owner has, so that a reconcile reads its own ReplicaSets,
//! CronJobs and ConfigMaps without walking the whole cache: `Store::state()` clones every
//! object's `Arc`, and a reconcile that did so per kind made each reconcile O(n) and a
//! burst of n Microservices O(n²).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::packed::{PackedStore, key};

/// Owner uid -> the objects that name it in their owner references, kept current from the
/// same watch events as the cache it indexes (a relist replaces it whole at `InitDone`, as
/// the reflector replaces its store).
pub struct OwnerIndex<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    inner: Arc<RwLock<Inner<K>>>,
}

impl<K: Resource> Clone for OwnerIndex<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        OwnerIndex {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Resource> Default for OwnerIndex<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn default() -> Self {
        OwnerIndex {
            inner: Arc::new(RwLock::new(Inner {
                by_owner: HashMap::new(),
                relist: None,
                followed: false,
                kind: std::marker::PhantomData,
            })),
        }
    }
}

struct Inner<K: Resource>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Owner uid -> the store slots ("namespace/name", [`crate::packed::slot`]) of the
    /// objects that named it as an owner, joined by spaces (no name or namespace holds
    /// one): one allocation per owner where a list of slots took one per object, and no
    /// map back from objects to owners (that map and its copies of the slots took two
    /// thirds of the index). An object that leaves an owner stays in the owner's slots
    /// until it is deleted or the watch relists; [`OwnerIndex::owned_by`] reads each object's
    /// owner references again, so it never returns one that no longer names the owner.
    by_owner: HashMap<Uid, Box<str>>,
    /// A relist in progress: what it has listed so far.
    relist: Option<Vec<(Box<str>, Owners)>>,
    /// The index is of `K`s.
    kind: std::marker::PhantomData<fn() -> K>,
    /// Fed by a watch: without one (caches filled by hand in tests) lookups scan the store.
    followed: bool,
}

impl<K: Resource> Inner<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Drops `slot` from its owners' slots.
    fn remove(&mut self, slot: &str, owners: &[Uid]) {
        for owner in owners {
            let Some(slots) = self.by_owner.get_mut(owner) else {
                continue;
            };
            if !slots.split(' ').any(|s| s == slot) {
                continue;
            }
            let rest: Vec<&str> = slots.split(' ').filter(|s| *s != slot).collect();
            match rest.is_empty() {
                true => {
                    self.by_owner.remove(owner);
                }
                false => *slots = rest.join(" ").into_boxed_str(),
            }
        }
    }

    /// Adds `slot` to its owners' slots.
    fn insert(&mut self, slot: &str, owners: &[Uid]) {
        for owner in owners {
            match self.by_owner.get_mut(owner) {
                Some(slots) if slots.split(' ').any(|s| s == slot) => {}
                Some(slots) => *slots = format!("{slots} {slot}").into_boxed_str(),
                None => {
                    self.by_owner.insert(*owner, slot.into());
                }
            }
        }
    }
}

/// The uids of an object's owners.
type Owners = Box<[Uid]>;

/// An owner's uid as 16 bytes in the table: a UUID (what the apiserver assigns) read as its
/// number, anything else (fixtures) by the first 16 bytes of its SHA-256. A uid as a string
/// took an allocation of 48 bytes, twice per indexed object.
type Uid = u128;

fn uid(uid: &str) -> Uid {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    match hex.len() == 32 && uid.len() == 36 {
        true => u128::from_str_radix(&hex, 16).ok(),
        false => None,
    }
    .unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(uid.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(first)
    })
}

fn owner_uids<K: Resource>(object: &K) -> Owners {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .map(|o| uid(&o.uid))
        .collect()
}

impl<K> OwnerIndex<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// Records one watch event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(object) => {
                inner.insert(&key(object), &owner_uids(object));
            }
            watcher::Event::Delete(object) => inner.remove(&key(object), &owner_uids(object)),
            watcher::Event::Init => inner.relist = Some(Vec::new()),
            watcher::Event::InitApply(object) => {
                let entry = (key(object), owner_uids(object));
                inner.relist.get_or_insert_with(Vec::new).push(entry);
            }
            watcher::Event::InitDone => {
                let listed = inner.relist.take().unwrap_or_default();
                inner.by_owner.clear();
                for (key, owners) in listed {
                    inner.insert(&key, &owners);
                }
                inner.by_owner.shrink_to_fit();
            }
        }
    }

    /// Keeps the index current from `stream` (a watch's events, before or after its
    /// reflector).
    pub fn follow<S>(
        &self,
        stream: S,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        K: Send + Sync,
        K::DynamicType: Send + Sync,
    {
        let index = self.clone();
        index
            .inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .followed = true;
        stream.inspect(move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        })
    }

    /// The objects of `store` owned by `uid`, sorted by name.
    pub fn owned_by(&self, store: &PackedStore<K>, owner: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let owner = uid(owner);
        let mut owned: Vec<Arc<K>> = match inner.followed {
            true => inner
                .by_owner
                .get(&owner)
                .into_iter()
                .flat_map(|slots| slots.split(' '))
                .filter_map(|slot| store.get_slot(slot))
                .filter(|o| owner_uids(o.as_ref()).contains(&owner))
                .collect(),
            false => store
                .state()
                .into_iter()
                .filter(|o| owner_uids(o.as_ref()).contains(&owner))
                .collect(),
        };
        owned.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        owned
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn rs(name: &str, owner: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        }
    }

    fn names(v: Vec<Arc<ReplicaSet>>) -> Vec<String> {
        v.iter()
            .map(|r| r.metadata.name.clone().expect("name"))
            .collect()
    }

    #[test]
    fn uids_are_numbers_and_other_strings_their_hash() {
        let a = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
        assert_eq!(uid(a), 0x6f1c2d3e_4a5b_4c6d_8e7f_9a0b1c2d3e4f);
        assert_ne!(uid("u-1"), uid("u-2"));
        assert_eq!(uid("u-1"), uid("u-1"));
        // 32 hex digits without the dashes are not a UUID as the apiserver writes it.
        assert_ne!(uid("6f1c2d3e4a5b4c6d8e7f9a0b1c2d3e4f"), uid(a));
    }

    #[test]
    fn follows_applies_deletes_owner_changes_and_relists() {
        let store = PackedStore::<ReplicaSet>::whole();
        let index = OwnerIndex::<ReplicaSet>::default();
        index.inner.write().expect("lock").followed = true;
        let feed = |event: watcher::Event<ReplicaSet>| {
            index.apply(&event);
            store.apply_watcher_event(&event);
        };
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(rs("a-1", "a")));
        feed(watcher::Event::InitApply(rs("b-1", "b")));
        // Until InitDone the relist is not visible (nor is it in the store).
        assert!(index.owned_by(&store, "a").is_empty());
        feed(watcher::Event::InitDone);
        assert_eq!(names(index.owned_by(&store, "a")), ["a-1"]);
        feed(watcher::Event::Apply(rs("a-2", "a")));
        assert_eq!(names(index.owned_by(&store, "a")), ["a-1", "a-2"]);
        // An object that changes owner leaves the old one.
        feed(watcher::Event::Apply(rs("a-2", "b")));
        assert_eq!(names(index.owned_by(&store, "a")), ["a-1"]);
        assert_eq!(names(index.owned_by(&store, "b")), ["a-2", "b-1"]);
        feed(watcher::Event::Delete(rs("a-1", "a")));
        assert!(index.owned_by(&store, "a").is_empty());
        // A relist replaces everything: what it did not list is gone.
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(rs("c-1", "c")));
        feed(watcher::Event::InitDone);
        assert!(index.owned_by(&store, "b").is_empty());
        assert_eq!(names(index.owned_by(&store, "c")), ["c-1"]);
        assert_eq!(index.inner.read().expect("lock").by_owner.len(), 1);
    }
}

//! The children this process wrote a moment ago, so that a pass whose cache has not shown
//! that write yet does not write the same again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a write of ours may wait to show in the watch cache before a pass writes again.
const WRITE_SHOWS_WITHIN: Duration = Duration::from_secs(10);

/// Type, namespace and name of a child.
pub(super) type ChildKey = (String, String, String);

/// One write: the resourceVersion the cache showed before it (None: absent), when, and
/// what it returned, as JSON bytes (smaller than a `serde_json::Value`: a burst keeps
/// thousands of these for their 10 s).
type Write = (Option<String>, Instant, Vec<u8>);

/// The children this process wrote in the last [`WRITE_SHOWS_WITHIN`].
#[derive(Default)]
pub struct Written(Mutex<Writes>);

#[derive(Default)]
struct Writes {
    by_child: HashMap<ChildKey, Write>,
    /// The resourceVersion each write returned, by a hash of the child's kind, namespace
    /// and name, until its watch event arrives ([`Written::is_echo`]).
    echoes: HashMap<u64, (Box<str>, Instant)>,
    /// When older writes were last dropped: at most once a second, not at every lookup
    /// (each pass looks up every child; a burst holds thousands of writes).
    purged: Option<Instant>,
}

impl Writes {
    fn purge(&mut self) {
        if self
            .purged
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.by_child
            .retain(|_, (_, at, _)| at.elapsed() < WRITE_SHOWS_WITHIN);
        self.echoes
            .retain(|_, (_, at)| at.elapsed() < WRITE_SHOWS_WITHIN);
        // A burst grew the tables to thousands of writes: give them back once they are gone.
        if self.by_child.capacity() > 64 && self.by_child.len() * 4 < self.by_child.capacity() {
            self.by_child.shrink_to_fit();
        }
        if self.echoes.capacity() > 64 && self.echoes.len() * 4 < self.echoes.capacity() {
            self.echoes.shrink_to_fit();
        }
        self.purged = Some(Instant::now());
    }
}

impl Written {
    /// Drops the writes older than [`WRITE_SHOWS_WITHIN`] (at most once a second). Every
    /// reconcile calls it: a lookup or a new write purges too, but after a burst the
    /// reconciles that follow write nothing and may look up no child, and the burst's last
    /// writes (9 MB at 1,000 new Microservices) stayed.
    pub(crate) fn purge(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).purge();
    }

    /// What our last write of `key` returned, when the cache (showing `seen`) still shows
    /// the object as it was before that write, made less than [`WRITE_SHOWS_WITHIN`] ago.
    /// Forgets the write once the cache shows anything else, or when it is older.
    pub(super) fn behind<K: DeserializeOwned>(
        &self,
        key: &ChildKey,
        seen: Option<&str>,
    ) -> Option<K> {
        let mut writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Old writes go also when no new one comes (after a burst, say).
        writes.purge();
        let (before, at, ours) = writes.by_child.get(key)?;
        if before.as_deref() == seen && at.elapsed() < WRITE_SHOWS_WITHIN {
            return serde_json::from_slice(ours).ok();
        }
        writes.by_child.remove(key);
        None
    }

    /// Remembers what a write of `key` returned, without its `managedFields` (most of its
    /// bytes, and no reader of a written child looks at them), and the resourceVersion it
    /// returned, to recognize the write's watch event ([`Written::is_echo`]).
    pub(crate) fn remember<K: Serialize + Resource + Clone>(
        &self,
        key: ChildKey,
        seen: Option<String>,
        applied: &K,
    ) {
        let mut slimmed = applied.clone();
        crate::kube_ext::slim(&mut slimmed);
        let echo = echo_key(&key.0, &key.1, &key.2);
        let mut writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        writes.purge();
        if let Some(version) = applied.meta().resource_version.clone() {
            writes
                .echoes
                .insert(echo, (version.into_boxed_str(), Instant::now()));
        }
        if let Ok(value) = serde_json::to_vec(&slimmed) {
            writes.by_child.insert(key, (seen, Instant::now(), value));
        }
    }

    /// Whether `object`, as a watch event brings it, is what one of our writes of the last
    /// [`WRITE_SHOWS_WITHIN`] returned: the echo of that write, which the pass that made it
    /// has already seen (it goes on with what the write returned). Such an event need not
    /// wake the owner again; any other version of the object does (another writer's change,
    /// the controller-manager's status, a deletion). Each write's echo is recognized once.
    pub(crate) fn is_echo<K: Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        let meta = object.meta();
        let (Some(namespace), Some(name), Some(version)) = (
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            meta.resource_version.as_deref(),
        ) else {
            return false;
        };
        let key = echo_key(&K::kind(&()), namespace, name);
        let mut writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match writes.echoes.get(&key) {
            Some((ours, _)) if &**ours == version => {
                writes.echoes.remove(&key);
                true
            }
            _ => false,
        }
    }
}

/// The key of a child's echo: a hash of its kind, namespace and name.
fn echo_key(kind: &str, namespace: &str, name: &str) -> u64 {
    crate::packed::hash_of(&(kind, namespace, name))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;

    use super::*;

    fn key(name: &str) -> ChildKey {
        ("Service".into(), "shop".into(), name.into())
    }

    fn service(name: &str, version: &str) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(version.into());
        s
    }

    #[test]
    fn a_write_stands_in_only_while_the_cache_shows_the_object_from_before_it() {
        let written = Written::default();
        // Created (the cache showed nothing), then an update over resourceVersion 7.
        written.remember(key("new"), None, &service("new", "1"));
        written.remember(key("old"), Some("7".into()), &service("old", "8"));
        let behind = |name: &str, seen: Option<&str>| {
            written
                .behind::<Service>(&key(name), seen)
                .and_then(|s| s.metadata.resource_version)
        };
        assert_eq!(behind("new", None), Some("1".into()));
        assert_eq!(behind("old", Some("7")), Some("8".into()));
        // Once the cache shows anything else, the write is forgotten for good.
        assert_eq!(behind("old", Some("8")), None);
        assert_eq!(behind("old", Some("7")), None);
        assert_eq!(behind("never", None), None);
    }

    #[test]
    fn a_write_is_kept_without_its_managed_fields() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let written = Written::default();
        let mut applied = service("a", "1");
        applied.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("shoal".into()),
            ..ManagedFieldsEntry::default()
        }]);
        written.remember(key("a"), None, &applied);
        let kept = written
            .behind::<Service>(&key("a"), None)
            .expect("remembered");
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("1"));
    }

    #[test]
    fn writes_older_than_the_window_go_on_any_lookup() {
        let written = Written::default();
        written.remember(key("a"), None, &service("a", "1"));
        {
            let mut writes = written.0.lock().expect("lock");
            let (_, at, _) = writes.by_child.get_mut(&key("a")).expect("remembered");
            *at -= WRITE_SHOWS_WITHIN + Duration::from_secs(1);
            writes.purged = None;
        }
        // A lookup of another child drops it.
        assert!(written.behind::<Service>(&key("b"), None).is_none());
        assert!(written.0.lock().expect("lock").by_child.is_empty());
    }

    #[test]
    fn only_the_version_a_write_returned_is_its_echo_and_only_once() {
        let written = Written::default();
        written.remember(key("web"), None, &service("web", "5"));
        let event = |name: &str, version: &str| {
            let mut s = service(name, version);
            s.metadata.namespace = Some("shop".into());
            s
        };
        // The controller-manager's or another writer's version is news.
        assert!(!written.is_echo(&event("web", "4")));
        assert!(!written.is_echo(&event("other", "5")));
        // Another kind of the same name is another object.
        let mut config = k8s_openapi::api::core::v1::ConfigMap::default();
        config.metadata.namespace = Some("shop".into());
        config.metadata.name = Some("web".into());
        config.metadata.resource_version = Some("5".into());
        assert!(!written.is_echo(&config));
        // Our write's own version is its echo, once: a relist that brings it again wakes
        // the owner as any listed object does.
        assert!(written.is_echo(&event("web", "5")));
        assert!(!written.is_echo(&event("web", "5")));
        // An object without a namespace, name or version is never an echo.
        assert!(!written.is_echo(&service("web", "5")));
    }

    #[test]
    fn echoes_older_than_the_window_are_forgotten() {
        let written = Written::default();
        written.remember(key("a"), None, &service("a", "1"));
        {
            let mut writes = written.0.lock().expect("lock");
            for (_, at) in writes.echoes.values_mut() {
                *at -= WRITE_SHOWS_WITHIN + Duration::from_secs(1);
            }
            writes.purged = None;
        }
        written.purge();
        assert!(written.0.lock().expect("lock").echoes.is_empty());
    }
}

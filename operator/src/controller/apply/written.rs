//! The children this process wrote a moment ago, so that a pass whose cache has not shown
//! that write yet does not write the same again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a write of ours may wait to show in the watch cache before a pass writes again.
const WRITE_SHOWS_WITHIN: Duration = Duration::from_secs(10);

/// Type, namespace and name of a child.
pub(super) type ChildKey = (String, String, String);

/// One write: the resourceVersion the cache showed before it (None: absent), when, and
/// what it returned, as JSON bytes (a third of a `serde_json::Value`'s memory: a burst
/// keeps thousands of these for their 10 s).
type Write = (Option<String>, Instant, Vec<u8>);

/// The children this process wrote in the last [`WRITE_SHOWS_WITHIN`].
#[derive(Default)]
pub struct Written(Mutex<HashMap<ChildKey, Write>>);

impl Written {
    /// What our last write of `key` returned, when the cache (showing `seen`) still shows
    /// the object as it was before that write, made less than [`WRITE_SHOWS_WITHIN`] ago.
    /// Forgets the write once the cache shows anything else, or when it is older.
    pub(super) fn behind<K: DeserializeOwned>(
        &self,
        key: &ChildKey,
        seen: Option<&str>,
    ) -> Option<K> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Old writes go also when no new one comes (after a burst, say).
        map.retain(|_, (_, at, _)| at.elapsed() < WRITE_SHOWS_WITHIN);
        let (before, at, ours) = map.get(key)?;
        if before.as_deref() == seen && at.elapsed() < WRITE_SHOWS_WITHIN {
            return serde_json::from_slice(ours).ok();
        }
        map.remove(key);
        None
    }

    pub(super) fn remember<K: Serialize>(&self, key: ChildKey, seen: Option<String>, applied: &K) {
        if let Ok(value) = serde_json::to_vec(applied) {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, (_, at, _)| at.elapsed() < WRITE_SHOWS_WITHIN);
            map.insert(key, (seen, Instant::now(), value));
        }
    }
}

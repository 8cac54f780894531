//! What the watch caches keep of a child: the fields Shoal's field manager owns (as its
//! `managedFields` entries say), the metadata, and the few fields some reader needs whoever
//! owns them (a Deployment's status, the lists [`crate::controller::reclaim`] takes back,
//! the template annotations the rollout compares). Defaults the apiserver filled in, other
//! managers' fields and unread status are dropped at ingest, before an object reaches a
//! store: a typed Kubernetes object in memory is 4–5 times its JSON, and most of a
//! Deployment's or a CronJob's is defaults.
//!
//! Drift detection stays exact. Server-side apply moves a field to the manager that changes
//! it, so a field someone else edited leaves Shoal's entry and is missing from the
//! projection: [`crate::controller::diff::contains`] then sees the desired value missing
//! and Shoal applies again, as it did when it compared the whole object.
//!
//! When the projection cannot be read back as the object's type (a required field lost to
//! another manager) the object is kept whole: a projection only ever saves memory, it never
//! drops an object from the cache.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use kube::Resource;

use crate::kube_ext::slim;

/// Paths (JSON pointers; `*` is every item of a list) kept whole, whoever owns them, beside
/// the metadata and Shoal's own fields.
pub type Keep = &'static [&'static str];

/// A Deployment: the rollout reads its template's annotations, its first container's image
/// and its status; the metrics loop its replicas; the reclaim step every entry of its
/// volumes and of its containers' ports, env and mounts.
pub const DEPLOYMENT: Keep = &[
    "/spec/replicas",
    "/spec/selector",
    "/spec/template/metadata",
    "/spec/template/spec/volumes",
    "/spec/template/spec/containers/*/name",
    "/spec/template/spec/containers/*/image",
    "/spec/template/spec/containers/*/ports",
    "/spec/template/spec/containers/*/env",
    "/spec/template/spec/containers/*/envFrom",
    "/spec/template/spec/containers/*/volumeMounts",
    "/status",
];

/// A ReplicaSet (the deployment controller's, not Shoal's): the rollout reads its template's
/// annotations and first image to know a revision, the status step its replicas and
/// failure conditions, the ConfigMap pruning the ConfigMaps its template uses. An automatic
/// rollback reads the whole template with a GET ([`crate::controller::apply`]).
pub const REPLICA_SET: Keep = &[
    "/spec/replicas",
    "/spec/selector",
    "/spec/template/metadata",
    "/spec/template/spec/volumes",
    "/spec/template/spec/containers/*/name",
    "/spec/template/spec/containers/*/image",
    "/spec/template/spec/containers/*/envFrom",
    "/status",
];

/// A Service: the reclaim step reads every entry of its ports.
pub const SERVICE: Keep = &["/spec/ports"];

/// A pod of a Microservice (the metrics loop's: whether it counts, its CPU requests).
pub const POD: Keep = &[
    "/spec/containers/*/name",
    "/spec/containers/*/resources",
    "/status/phase",
    "/status/conditions",
];

/// Children whose Shoal-owned fields are all their readers compare (Ingress, HPA,
/// PodDisruptionBudget, CronJob).
pub const OWNED_ONLY: Keep = &[];

/// The field manager whose fields are kept.
const MANAGER: &str = crate::FIELD_MANAGER;

/// A watch cache's shape function ([`crate::kube_ext::shaped`]) keeping `keep`.
pub fn keeping<K>(keep: Keep) -> impl FnMut(&mut K) + Send + 'static
where
    K: Resource + Serialize + DeserializeOwned,
{
    move |object: &mut K| project(object, keep)
}

/// Projects `object` in place (see the module's doc) and drops what [`slim`] drops.
pub fn project<K>(object: &mut K, keep: Keep)
where
    K: Resource + Serialize + DeserializeOwned,
{
    let Some(out) = projected_value(object, keep) else {
        slim(object);
        return;
    };
    match serde_json::from_value::<K>(out) {
        Ok(projected) => *object = projected,
        Err(_) => slim(object),
    }
}

/// `object` projected (see the module's doc), as JSON bytes that read back as a `K`; the
/// slimmed whole object when the projection does not. None only when `object` does not
/// serialize.
pub fn projected_json<K>(object: &K, keep: Keep) -> Option<Vec<u8>>
where
    K: Resource + Serialize + DeserializeOwned,
{
    if let Some(out) = projected_value(object, keep)
        && let Ok(bytes) = serde_json::to_vec(&out)
        && serde_json::from_slice::<K>(&bytes).is_ok()
    {
        return Some(bytes);
    }
    slim_json(object)
}

/// `object` as JSON bytes without what [`slim`] drops.
pub fn slim_json<K: Resource + Serialize>(object: &K) -> Option<Vec<u8>> {
    let mut whole = serde_json::to_value(object).ok()?;
    slim_value(&mut whole);
    serde_json::to_vec(&whole).ok()
}

/// [`slim`] on an object's JSON.
fn slim_value(whole: &mut Value) {
    if let Some(Value::Object(meta)) = whole.get_mut("metadata") {
        meta.remove("managedFields");
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove(crate::kube_ext::LAST_APPLIED_ANNOTATION);
        }
    }
}

/// The projection of `object` as JSON (not checked to read back as a `K`).
fn projected_value<K>(object: &K, keep: Keep) -> Option<Value>
where
    K: Resource + Serialize,
{
    let owned = owned_fields(object);
    let mut whole = serde_json::to_value(object).ok()?;
    slim_value(&mut whole);
    let mut out = match &owned {
        Some(fields) => owned_part(&whole, fields),
        None => Value::Object(Map::new()),
    };
    for field in ["apiVersion", "kind", "metadata"] {
        copy(&whole, &mut out, &[field]);
    }
    for path in keep {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        copy(&whole, &mut out, &segments);
    }
    Some(out)
}

/// The union of Shoal's `managedFields` entries (its applies, and the updates of the
/// reclaim step's JSON patches) on the main resource; None when it owns nothing.
fn owned_fields<K: Resource>(object: &K) -> Option<Value> {
    let mut union: Option<Value> = None;
    for entry in object.meta().managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(MANAGER) || entry.subresource.is_some() {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
            continue;
        };
        match union.as_mut() {
            None => union = Some(fields.clone()),
            Some(u) => merge(u, fields),
        }
    }
    union
}

/// Adds the fields of set `other` to set `into` (both in the `FieldsV1` format).
fn merge(into: &mut Value, other: &Value) {
    let (Value::Object(into), Value::Object(other)) = (into, other) else {
        return;
    };
    for (key, value) in other {
        match into.get_mut(key) {
            Some(existing) => merge(existing, value),
            None => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The part of `value` that the field set `fields` (`FieldsV1`: `f:<field>`, `k:<key>`,
/// `v:<value>`, `i:<index>`, `.`) names. A field named without its children (a leaf, an
/// atomic list or map) is kept whole. A list keeps every item in its order (so that the
/// positions a JSON patch tests stay right): the items named are projected, the others kept
/// whole.
pub fn owned_part(value: &Value, fields: &Value) -> Value {
    let Some(fields) = fields.as_object() else {
        return value.clone();
    };
    if fields.keys().all(|k| k == ".") {
        return value.clone();
    }
    match value {
        Value::Object(map) => Value::Object(
            fields
                .iter()
                .filter_map(|(key, sub)| {
                    let name = key.strip_prefix("f:")?;
                    Some((name.to_string(), owned_part(map.get(name)?, sub)))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item_fields(fields, i, item) {
                    Some(sub) => owned_part(item, sub),
                    None => item.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The field set of list item `item` at position `index`, if `fields` names it.
fn item_fields<'a>(
    fields: &'a Map<String, Value>,
    index: usize,
    item: &Value,
) -> Option<&'a Value> {
    fields.iter().find_map(|(key, sub)| {
        let named = if let Some(key) = key.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(key) => key.iter().all(|(k, v)| item.get(k) == Some(v)),
                Err(_) => false,
            }
        } else if let Some(v) = key.strip_prefix("v:") {
            serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item)
        } else if let Some(i) = key.strip_prefix("i:") {
            i.parse::<usize>() == Ok(index)
        } else {
            false
        };
        named.then_some(sub)
    })
}

/// Copies the value at `path` (`*`: every item of a list, position by position) of `from`
/// into `to`, creating the objects on the way; a path `from` lacks is skipped.
fn copy(from: &Value, to: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        *to = from.clone();
        return;
    };
    if *first == "*" {
        if let (Value::Array(from), Value::Array(to)) = (from, to) {
            for (f, t) in from.iter().zip(to.iter_mut()) {
                copy(f, t, rest);
            }
        }
        return;
    }
    let Some(next) = from.get(*first) else { return };
    let Value::Object(to) = to else { return };
    let slot = to.entry(first.to_string()).or_insert_with(|| {
        if let (Some(&"*"), Value::Array(items)) = (rest.first(), next) {
            // A list only the kept paths name: as many items, each with the fields kept.
            Value::Array(vec![Value::Object(Map::new()); items.len()])
        } else {
            Value::Object(Map::new())
        }
    });
    copy(next, slot, rest);
}

#[cfg(test)]
mod tests;

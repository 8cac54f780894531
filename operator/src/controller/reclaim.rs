//! List entries another field manager changed in a way server-side apply alone cannot
//! take back, and the JSON patch that does.
//!
//! Server-side apply merges lists of objects by key. Two kinds of foreign change to an
//! entry Shoal sets leave Shoal's apply refused, forever:
//!
//! - **a changed key**: `kubectl patch` of a Service port 80 -> 81 (ports are keyed by
//!   number and protocol). Shoal's port 80 is added beside the foreign 81, and the two
//!   entries of the same name are refused (`Duplicate value: "http"`);
//! - **a switched one-of**: an env var's `value` replaced by a `valueFrom`, a volume's
//!   `configMap` by a `secret`. Shoal's field is added back beside the foreign one, and
//!   an entry with both is refused (`may not be specified when value is not empty`,
//!   `may not specify more than 1 volume type`).
//!
//! In both cases the entry, found by what names it (its `name`, or a mount's
//! `mountPath`), is replaced by Shoal's in one JSON patch, guarded by `test` operations
//! so that it fails rather than overwrite a newer change. Entries of other names are
//! left alone, and so are entries apply can heal by itself (a changed value).

use serde_json::{Value, json};

use super::diff;

/// How server-side apply treats one kind of list Shoal fills.
struct Kind {
    /// Field of the list (in a container for container lists).
    field: &'static str,
    /// What names an entry, in Shoal's and in the live list.
    identity: &'static str,
    /// The fields server-side apply merges the list by.
    key: &'static [&'static str],
    /// Fields the apiserver fills in: present live, absent from Shoal's entry, no conflict.
    filled: &'static [&'static str],
    /// Filled-in fields to keep when the entry is replaced (allocated, not defaulted).
    kept: &'static [&'static str],
}

const SERVICE_PORTS: Kind = Kind {
    field: "ports",
    identity: "name",
    key: &["port", "protocol"],
    filled: &["protocol", "targetPort", "nodePort", "appProtocol"],
    kept: &["nodePort"],
};

const VOLUMES: Kind = Kind {
    field: "volumes",
    identity: "name",
    key: &["name"],
    filled: &[],
    kept: &[],
};

const CONTAINER_LISTS: [Kind; 3] = [
    Kind {
        field: "ports",
        identity: "name",
        key: &["containerPort", "protocol"],
        filled: &["protocol"],
        kept: &[],
    },
    Kind {
        field: "env",
        identity: "name",
        key: &["name"],
        filled: &[],
        kept: &[],
    },
    Kind {
        field: "volumeMounts",
        identity: "mountPath",
        key: &["mountPath"],
        filled: &[],
        kept: &[],
    },
];

/// One list of an object.
struct List<'a> {
    /// JSON pointer of the list.
    path: String,
    /// The list's name, the same in the live and the desired object: the container's
    /// name (None outside containers) and the field.
    id: (Option<&'a Value>, &'static str),
    entries: &'a [Value],
    kind: &'static Kind,
}

/// The lists of `object` (a Service or a Deployment) whose entries Shoal sets.
fn lists(object: &Value) -> Vec<List<'_>> {
    let mut lists = Vec::new();
    let top = [
        ("/spec/ports", &SERVICE_PORTS),
        ("/spec/template/spec/volumes", &VOLUMES),
    ];
    for (path, kind) in top {
        if let Some(entries) = object.pointer(path).and_then(Value::as_array) {
            lists.push(List {
                path: path.to_string(),
                id: (None, kind.field),
                entries,
                kind,
            });
        }
    }
    let containers = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array);
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let Some(name) = container.get("name") else {
            continue;
        };
        for kind in &CONTAINER_LISTS {
            if let Some(entries) = container.get(kind.field).and_then(Value::as_array) {
                lists.push(List {
                    path: format!("/spec/template/spec/containers/{i}/{}", kind.field),
                    id: (Some(name), kind.field),
                    entries,
                    kind,
                });
            }
        }
    }
    lists
}

/// A field of an entry as server-side apply sees it (`protocol` defaults to TCP).
fn field(entry: &Value, name: &str) -> Value {
    match (name, entry.get(name)) {
        ("protocol", None) => Value::String("TCP".into()),
        (_, value) => value.cloned().unwrap_or(Value::Null),
    }
}

/// True when applying `mine` cannot heal the live entry `theirs` of the same identity:
/// its key changed, or it differs and carries a field Shoal's entry does not set (the
/// other member of a one-of).
fn needs_replacing(theirs: &Value, mine: &Value, kind: &Kind) -> bool {
    if kind.key.iter().any(|k| field(theirs, k) != field(mine, k)) {
        return true;
    }
    let foreign_field = theirs.as_object().is_some_and(|fields| {
        fields
            .keys()
            .any(|k| mine.get(k).is_none() && !kind.filled.contains(&k.as_str()))
    });
    foreign_field && !diff::contains(theirs, mine)
}

/// JSON patch operations that replace each entry of `live` that apply cannot heal by
/// `desired`'s entry of the same identity (see the module's documentation); empty when
/// there is none.
pub fn ops(live: &Value, desired: &Value) -> Vec<Value> {
    let wanted = lists(desired);
    let mut ops = Vec::new();
    for list in lists(live) {
        let Some(mine) = wanted.iter().find(|w| w.id == list.id) else {
            continue;
        };
        let kind = list.kind;
        for (i, theirs) in list.entries.iter().enumerate() {
            let Some(identity) = theirs.get(kind.identity).filter(|v| v.is_string()) else {
                continue;
            };
            let Some(entry) = mine
                .entries
                .iter()
                .find(|m| m.get(kind.identity) == Some(identity))
            else {
                continue;
            };
            if !needs_replacing(theirs, entry, kind) {
                continue;
            }
            let at = format!("{}/{i}", list.path);
            ops.push(
                json!({"op": "test", "path": format!("{at}/{}", kind.identity), "value": identity}),
            );
            for k in kind.key.iter().filter(|k| **k != kind.identity) {
                if let Some(value) = theirs.get(*k) {
                    ops.push(json!({"op": "test", "path": format!("{at}/{k}"), "value": value}));
                }
            }
            let mut replacement = entry.clone();
            for k in kind.kept {
                if let (Some(value), Some(fields)) = (theirs.get(*k), replacement.as_object_mut()) {
                    fields.entry(k.to_string()).or_insert_with(|| value.clone());
                }
            }
            ops.push(json!({"op": "replace", "path": at, "value": replacement}));
        }
    }
    ops
}

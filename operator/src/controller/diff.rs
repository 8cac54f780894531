//! Does a live child still match what Shoal would apply? Pure comparison, so a reconcile
//! that changes nothing writes nothing.

use serde_json::Value;

use super::render::APPLIED_HASH_ANNOTATION;
use crate::validate::parse_quantity;

/// True when `desired` must be applied: the child is missing, was rendered differently
/// (its `shoal.dev/applied-hash` differs), or someone changed a field Shoal sets.
pub fn needs_apply(desired: &Value, live: Option<&Value>) -> bool {
    let Some(live) = live else { return true };
    let hash = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
            .cloned()
    };
    hash(desired) != hash(live) || !contains(live, desired)
}

/// True when every field set in `wanted` has the same value in `live`. Objects may have
/// extra fields in `live` (defaults, status); every element of a wanted list must be in the
/// live list (other field managers may add entries, which server-side apply keeps, so a
/// longer live list is not drift: otherwise Shoal would re-apply forever); quantities
/// compare by value (`0.5` equals `500m`). Entries Shoal itself stopped rendering are
/// caught by the applied-hash annotation instead.
pub fn contains(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (_, Value::Null) => true,
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, wv)| match l.get(k) {
            Some(lv) => contains(lv, wv),
            None => wv.is_null() || is_empty_collection(wv),
        }),
        (Value::Array(l), Value::Array(w)) => {
            w.iter().all(|wv| l.iter().any(|lv| contains(lv, wv)))
        }
        (Value::String(l), Value::String(w)) => {
            l == w
                || matches!((parse_quantity(l), parse_quantity(w)), (Some(a), Some(b)) if (a - b).abs() <= f64::EPSILON * a.abs().max(1.0))
        }
        (Value::Array(l), w) if l.is_empty() => is_empty_collection(w),
        (l, w) => l == w,
    }
}

// The apiserver drops empty lists and maps, so an empty one in `wanted` matches a missing field.
fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_defaults_and_status_do_not_count_as_drift() {
        let wanted = json!({"metadata": {"annotations": {"shoal.dev/applied-hash": "h"}}, "spec": {"ports": [{"port": 80}]}});
        let live = json!({"metadata": {"annotations": {"shoal.dev/applied-hash": "h"}, "uid": "x"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}, "status": {}});
        assert!(!needs_apply(&wanted, Some(&live)));
    }

    #[test]
    fn missing_changed_or_edited_children_are_applied() {
        let wanted = json!({"metadata": {"annotations": {"shoal.dev/applied-hash": "h"}}, "spec": {"replicas": 2}});
        assert!(needs_apply(&wanted, None));
        let rerendered = json!({"metadata": {"annotations": {"shoal.dev/applied-hash": "old"}}, "spec": {"replicas": 2}});
        assert!(needs_apply(&wanted, Some(&rerendered)));
        let edited = json!({"metadata": {"annotations": {"shoal.dev/applied-hash": "h"}}, "spec": {"replicas": 5}});
        assert!(needs_apply(&wanted, Some(&edited)));
    }

    #[test]
    fn lists_must_match_and_quantities_compare_by_value() {
        assert!(
            contains(&json!([1, 2, 3]), &json!([1, 2])),
            "entries added by others are kept"
        );
        assert!(
            !contains(&json!([1, 3]), &json!([1, 2])),
            "a missing or changed entry is drift"
        );
        assert!(contains(&json!({"cpu": "500m"}), &json!({"cpu": "0.5"})));
        assert!(!contains(&json!({"cpu": "250m"}), &json!({"cpu": "0.5"})));
        assert!(contains(&json!({}), &json!({"env": []})));
    }
}

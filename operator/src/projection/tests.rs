//! Projections of objects as the test bed stored them (`testdata/`: the `web-with-ingress`
//! example, one replica, read with `kubectl get -o json --show-managed-fields`).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::*;
use crate::controller::diff::contains;

fn load<K: DeserializeOwned>(name: &str) -> K {
    let path = format!(
        "{}/src/projection/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn json_len<K: Serialize>(k: &K) -> usize {
    serde_json::to_string(k).expect("serializable").len()
}

/// `object` projected, and the share of its slimmed JSON the projection keeps.
fn projected<K: Resource + Serialize + DeserializeOwned + Clone>(
    object: &K,
    keep: Keep,
) -> (K, f64) {
    let mut slimmed = object.clone();
    slim(&mut slimmed);
    let mut p = object.clone();
    project(&mut p, keep);
    let share = json_len(&p) as f64 / json_len(&slimmed) as f64;
    (p, share)
}

fn value<K: Serialize>(k: &K) -> Value {
    serde_json::to_value(k).expect("serializable")
}

/// What Shoal applied, as read back: the part of the object its entry names.
fn shoal_part<K: Resource + Serialize>(k: &K) -> Value {
    owned_part(&value(k), &owned_fields(k).expect("Shoal owns fields"))
}

/// Moves `pointer` (a field path in `FieldsV1` form, e.g. `/f:spec/f:replicas`) out of
/// Shoal's entry, as server-side apply does when another manager changes the field.
fn lose<K: Resource>(k: &mut K, parent: &str, field: &str) {
    for entry in k.meta_mut().managed_fields.iter_mut().flatten() {
        if entry.manager.as_deref() == Some(MANAGER)
            && let Some(fields) = entry.fields_v1.as_mut()
            && let Some(Value::Object(map)) = fields.0.pointer_mut(parent)
        {
            map.remove(field);
        }
    }
}

#[test]
fn a_deployment_keeps_shoals_fields_the_rollouts_and_its_status_and_drops_defaults() {
    let d: Deployment = load("deployment");
    let (p, share) = projected(&d, DEPLOYMENT);
    assert!(share < 0.95, "kept {share:.2} of the Deployment");
    let v = value(&p);
    // What the diff compares: everything Shoal applied is still there, as applied.
    assert!(contains(&v, &shoal_part(&d)));
    // What the rollout, the status step and the reclaim step read.
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/checkout:1.4.2");
    assert!(c["ports"][0]["protocol"].is_string());
    assert!(
        v["spec"]["template"]["metadata"]["annotations"]["shoal.dev/template-hash"].is_string()
    );
    assert_eq!(
        v["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(v["status"]["readyReplicas"], 1);
    assert!(v["metadata"]["managedFields"].is_null());
    // Defaults nobody reads.
    assert!(c["terminationMessagePath"].is_null());
    assert!(v["spec"]["template"]["spec"]["dnsPolicy"].is_null());
    assert!(c["livenessProbe"]["timeoutSeconds"].is_null());
    assert!(c["livenessProbe"]["httpGet"]["path"].is_string());
}

#[test]
fn a_field_another_manager_took_is_missing_so_the_diff_sees_the_drift() {
    let d: Deployment = load("deployment");
    let wanted = shoal_part(&d);
    let mut edited = d.clone();
    lose(
        &mut edited,
        "/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"app\"}",
        "f:resources",
    );
    let (p, _) = projected(&edited, DEPLOYMENT);
    assert!(!contains(&value(&p), &wanted), "the drift went unseen");
    // The whole object did not lose the field: only the projection tells.
    assert!(contains(&value(&edited), &wanted));
}

#[test]
fn a_replica_set_keeps_what_names_its_revision_and_its_config_not_its_pod_spec() {
    let rs: ReplicaSet = load("replicaset");
    let (p, share) = projected(&rs, REPLICA_SET);
    assert!(share < 0.5, "kept {share:.2} of the ReplicaSet");
    let v = value(&p);
    let t = &v["spec"]["template"];
    assert!(t["metadata"]["annotations"]["shoal.dev/template-hash"].is_string());
    assert_eq!(
        t["spec"]["containers"][0]["image"],
        "registry.example/checkout:1.4.2"
    );
    assert_eq!(
        crate::controller::apply::referenced_config_maps(&p),
        crate::controller::apply::referenced_config_maps(&rs)
    );
    assert!(!crate::controller::apply::referenced_config_maps(&p).is_empty());
    assert_eq!(v["status"], value(&rs)["status"]);
    assert_eq!(
        v["metadata"]["ownerReferences"],
        value(&rs)["metadata"]["ownerReferences"]
    );
    assert!(t["spec"]["containers"][0]["resources"].is_null());
    assert!(t["spec"]["containers"][0]["readinessProbe"].is_null());
}

#[test]
fn services_ingresses_and_cron_jobs_keep_what_shoal_applied() {
    fn check<K: Resource + Serialize + DeserializeOwned + Clone>(name: &str, keep: Keep) -> f64 {
        let k: K = load(name);
        let (p, share) = projected(&k, keep);
        assert!(contains(&value(&p), &shoal_part(&k)), "{name}");
        assert_eq!(value(&p)["metadata"]["uid"], value(&k)["metadata"]["uid"]);
        share
    }
    let service = check::<Service>("service", SERVICE);
    assert!(service < 0.9, "kept {service:.2} of the Service");
    check::<Ingress>("ingress", OWNED_ONLY);
    let cron_job = check::<CronJob>("cronjob", OWNED_ONLY);
    assert!(cron_job < 0.95, "kept {cron_job:.2} of the CronJob");
    let c: CronJob = load("cronjob");
    let (p, _) = projected(&c, OWNED_ONLY);
    assert_eq!(
        crate::controller::apply::cron_job_config_maps(&p),
        crate::controller::apply::cron_job_config_maps(&c)
    );
}

#[test]
fn a_child_shoal_owns_nothing_of_any_more_is_seen_as_drifted() {
    // Someone else took every field (a `kubectl replace`, say): Shoal must apply again.
    let c: CronJob = load("cronjob");
    let wanted = shoal_part(&c);
    let mut taken = c.clone();
    taken
        .metadata
        .managed_fields
        .iter_mut()
        .flatten()
        .for_each(|e| e.manager = Some("someone".into()));
    let (p, _) = projected(&taken, OWNED_ONLY);
    assert!(!contains(&value(&p), &wanted));
    assert_eq!(p.metadata.uid, c.metadata.uid);
}

#[test]
fn a_service_port_another_manager_changed_is_still_seen_for_the_reclaim() {
    let mut s: Service = load("service");
    // kubectl patch of the port: the entry keyed 80/TCP is now someone else's 81/TCP.
    let ports = s.spec.as_mut().and_then(|s| s.ports.as_mut());
    let port = &mut ports.expect("the Service has ports")[0];
    port.port = 81;
    let (p, _) = projected(&s, SERVICE);
    assert_eq!(value(&p)["spec"]["ports"], value(&s)["spec"]["ports"]);
}

#[test]
fn list_items_are_found_by_key_value_or_index_and_keep_their_order() {
    let live = json!({"spec": {
        "ports": [{"port": 9, "extra": 1}, {"port": 80, "protocol": "TCP", "name": "http", "extra": 2}],
        "finalizers": ["a", "b"],
        "args": ["x", "y"],
        "items": [{"n": 1, "d": 1}, {"n": 2, "d": 2}],
        "default": true,
    }});
    let fields = json!({"f:spec": {
        "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}},
        "f:finalizers": {"v:\"b\"": {}},
        "f:args": {},
        "f:items": {"i:1": {"f:n": {}}},
    }});
    assert_eq!(
        owned_part(&live, &fields),
        json!({"spec": {
            "ports": [{"port": 9, "extra": 1}, {"name": "http"}],
            "finalizers": ["a", "b"],
            "args": ["x", "y"],
            "items": [{"n": 1, "d": 1}, {"n": 2}],
        }})
    );
}

#[test]
fn kept_paths_reach_into_every_list_item() {
    let whole = json!({"spec": {"containers": [
        {"name": "a", "image": "i", "resources": {}},
        {"name": "b", "image": "j", "resources": {}},
    ]}});
    let mut out = json!({});
    copy(&whole, &mut out, &["spec", "containers", "*", "image"]);
    copy(&whole, &mut out, &["spec", "containers", "*", "name"]);
    assert_eq!(
        out,
        json!({"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}]}})
    );
}

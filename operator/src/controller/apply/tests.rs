//! Tests of the apply step's pure helpers.
use super::*;
use serde_json::json;

fn service(ports: Value) -> Value {
    json!({"spec": {"ports": ports}})
}

#[test]
fn a_renumbered_service_port_is_replaced_and_foreign_ports_are_left_alone() {
    let desired =
        service(json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]));
    let live = service(json!([
        {"name": "http", "port": 81, "protocol": "TCP", "targetPort": "http"},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090},
    ]));
    let ops = reclaim::ops(&live, &desired);
    assert_eq!(
        ops,
        vec![
            json!({"op": "test", "path": "/spec/ports/0/name", "value": "http"}),
            json!({"op": "test", "path": "/spec/ports/0/port", "value": 81}),
            json!({"op": "test", "path": "/spec/ports/0/protocol", "value": "TCP"}),
            json!({"op": "replace", "path": "/spec/ports/0", "value": desired["spec"]["ports"][0]}),
        ]
    );
    // Converged (the protocol defaulted): nothing to take back.
    let converged = service(json!([{"name": "http", "port": 80, "targetPort": "http"}]));
    assert!(reclaim::ops(&converged, &desired).is_empty());
}

#[test]
fn a_renumbered_container_port_is_replaced_in_its_own_container() {
    let pod = |app: i64, sidecar: i64| {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "ports": [{"name": "http", "containerPort": sidecar}]},
            {"name": "app", "ports": [{"name": "http", "containerPort": app, "protocol": "TCP"}]},
        ]}}}})
    };
    let desired = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]},
    ]}}}});
    let ops = reclaim::ops(&pod(8081, 1234), &desired);
    assert_eq!(ops.len(), 4, "{ops:#?}");
    assert_eq!(ops[3]["path"], "/spec/template/spec/containers/1/ports/0");
    assert!(reclaim::ops(&pod(8080, 1234), &desired).is_empty());
}

fn container(fields: Value) -> Value {
    let mut container = json!({"name": "app"});
    for (k, v) in fields.as_object().expect("fields") {
        container[k] = v.clone();
    }
    json!({"spec": {"template": {"spec": {"containers": [container]}}}})
}

#[test]
fn an_env_var_switched_to_value_from_is_replaced_and_a_changed_value_left_to_apply() {
    let desired =
        container(json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}));
    let live = container(json!({"env": [
        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "B", "value": "3"},
        {"name": "FOREIGN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]}));
    let ops = reclaim::ops(&live, &desired);
    assert_eq!(
        ops,
        vec![
            json!({"op": "test", "path": "/spec/template/spec/containers/0/env/0/name", "value": "A"}),
            json!({"op": "replace", "path": "/spec/template/spec/containers/0/env/0", "value": {"name": "A", "value": "1"}}),
        ],
        "B's value is apply's to take back, FOREIGN is not Shoal's"
    );
    assert!(reclaim::ops(&desired, &desired).is_empty());
}

#[test]
fn a_volume_switched_to_another_source_is_replaced() {
    let volumes =
        |v: Value| json!({"spec": {"template": {"spec": {"volumes": v, "containers": []}}}});
    let desired = volumes(
        json!([{"name": "tmp", "emptyDir": {}}, {"name": "x", "configMap": {"name": "x"}}]),
    );
    let live = volumes(json!([
        {"name": "tmp", "emptyDir": {}},
        {"name": "x", "secret": {"secretName": "x"}},
    ]));
    let ops = reclaim::ops(&live, &desired);
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert_eq!(ops[1]["path"], "/spec/template/spec/volumes/1");
    // Defaulted live fields (defaultMode) are no conflict.
    let defaulted = volumes(json!([
        {"name": "tmp", "emptyDir": {}},
        {"name": "x", "configMap": {"name": "x", "defaultMode": 420}},
    ]));
    assert!(reclaim::ops(&defaulted, &desired).is_empty());
}

#[test]
fn a_replaced_service_port_keeps_its_allocated_node_port() {
    let desired = service(json!([{"name": "http", "port": 80, "protocol": "TCP"}]));
    let live = service(json!([{"name": "http", "port": 81, "protocol": "TCP", "nodePort": 30001}]));
    let ops = reclaim::ops(&live, &desired);
    assert_eq!(
        ops.last().expect("replace")["value"],
        json!({"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30001})
    );
}

#[test]
fn config_map_metadata_drift_is_seen_and_foreign_metadata_is_not() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let labels = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let desired = ConfigMap {
        metadata: ObjectMeta {
            labels: labels(&[("a", "1")]),
            annotations: labels(&[("h", "x")]),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let live = |l: &[(&str, &str)], a: &[(&str, &str)]| PartialObjectMeta::<ConfigMap> {
        metadata: ObjectMeta {
            labels: labels(l),
            annotations: labels(a),
            ..ObjectMeta::default()
        },
        ..PartialObjectMeta::default()
    };
    assert!(!metadata_drift(
        &desired,
        &live(&[("a", "1"), ("team", "t")], &[("h", "x"), ("f", "y")])
    ));
    assert!(metadata_drift(
        &desired,
        &live(&[("a", "2")], &[("h", "x")])
    ));
    assert!(metadata_drift(&desired, &live(&[("a", "1")], &[])));
}

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
    let ops = reclaim_ops(&live, &desired);
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
    assert!(reclaim_ops(&converged, &desired).is_empty());
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
    let ops = reclaim_ops(&pod(8081, 1234), &desired);
    assert_eq!(ops.len(), 4, "{ops:#?}");
    assert_eq!(ops[3]["path"], "/spec/template/spec/containers/1/ports/0");
    assert!(reclaim_ops(&pod(8080, 1234), &desired).is_empty());
}

//! Generated Microservice specs for property tests (proptest strategies): the renderer's
//! unit properties and the end-to-end server-side dry run of a sample draw from the same
//! generator. The specs are meant to be valid; the properties check that they are.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::crd::Microservice;

fn image() -> impl Strategy<Value = String> {
    "[a-z]{1,8}\\.example/[a-z][a-z0-9-]{0,10}:[0-9]\\.[0-9]{1,2}(\\.[0-9])?"
}

fn env() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        "[ -~]{0,16}".prop_map(|v| json!({"value": v})),
        Just(json!({"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})),
        "[a-z]{1,8}".prop_map(
            |s| json!({"valueFrom": {"secretKeyRef": {"name": s, "key": "k", "optional": true}}})
        ),
    ];
    btree_map("[A-Z][A-Z0-9_]{0,8}", value, 0..4).prop_map(|vars| {
        Value::Array(
            vars.into_iter()
                .map(|(name, mut v)| {
                    v["name"] = json!(name);
                    v
                })
                .collect(),
        )
    })
}

fn service() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("ClusterIP"), Just("NodePort"), Just("LoadBalancer")],
        1..=65535i32,
    )
        .prop_map(|(t, port)| json!({"type": t, "port": port}))
}

fn ingress() -> impl Strategy<Value = Value> {
    (
        // DNS labels neither start nor end with `-`.
        "[a-z]([a-z0-9-]{0,8}[a-z0-9])?\\.example\\.com",
        // Only paths an Ingress takes: no `//`, `/./`, `/../`, `%2F`, no `/.` or `/..` at the
        // end (the CRD's rule INGRESS_PATH_RULE refuses them, and so does Shoal's validation).
        "(/[a-z0-9_-]{1,6}){0,3}/?".prop_map(|p| if p.is_empty() { "/".to_string() } else { p }),
        option::of("[a-z]{1,8}"),
        option::of("[a-z]{1,8}-tls"),
    )
        .prop_map(|(host, path, class, tls)| {
            let mut i = json!({"host": host, "path": path});
            if let Some(class) = class {
                i["className"] = json!(class);
            }
            if let Some(tls) = tls {
                i["tlsSecretName"] = json!(tls);
            }
            i
        })
}

/// `replicas`, `autoscaling` (CPU, request rate or both, with a behavior), or neither.
fn scaling() -> impl Strategy<Value = Map<String, Value>> {
    let fixed = (0..10i32).prop_map(|n| {
        let mut m = Map::new();
        m.insert("replicas".into(), json!(n));
        m
    });
    let auto = (
        1..5i32,
        0..10i32,
        option::of(10..100i32),
        option::of(1.0..500.0f64),
        option::of((0..600i32, 1..100i32, 1..600i32)),
    )
        .prop_map(|(min, extra, cpu, rate, down)| {
            let mut a = json!({"minReplicas": min, "maxReplicas": min + extra});
            // At least one signal.
            let cpu = if cpu.is_none() && rate.is_none() {
                Some(50)
            } else {
                cpu
            };
            if let Some(cpu) = cpu {
                a["cpu"] = json!({"targetUtilization": cpu});
            }
            if let Some(rate) = rate {
                a["requestRate"] = json!({"targetPerReplica": (rate * 10.0).round() / 10.0});
            }
            if let Some((window, value, period)) = down {
                a["behavior"] = json!({"scaleDown": {
                    "stabilizationWindowSeconds": window,
                    "policies": [{"type": "Percent", "value": value, "periodSeconds": period}],
                }});
            }
            let mut m = Map::new();
            m.insert("autoscaling".into(), a);
            m
        });
    prop_oneof![Just(Map::new()), fixed, auto]
}

fn rollout() -> impl Strategy<Value = Value> {
    (1..4i32, 0..3i32, 30..600i32, any::<bool>(), 1..20i32).prop_map(
        |(surge, unavailable, deadline, auto_rollback, history)| {
            json!({
                "maxSurge": surge,
                "maxUnavailable": unavailable,
                "progressDeadlineSeconds": deadline,
                "autoRollback": auto_rollback,
                "revisionHistoryLimit": history,
            })
        },
    )
}

fn probes() -> impl Strategy<Value = Value> {
    (
        "/[a-z]{0,8}",
        option::of(1..60i32),
        option::of(("/[a-z]{0,8}", 1..10i32)),
    )
        .prop_map(|(path, period, liveness)| {
            let mut p = json!({"readiness": {"path": path}});
            if let Some(period) = period {
                p["readiness"]["periodSeconds"] = json!(period);
            }
            if let Some((path, failures)) = liveness {
                p["liveness"] = json!({"path": path, "failureThreshold": failures});
            }
            p
        })
}

fn pod() -> impl Strategy<Value = Map<String, Value>> {
    (
        btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..3),
        btree_map("example\\.com/[a-z]{1,8}", "[ -~]{0,16}", 0..3),
        vec("[a-z]{1,8}", 0..3),
        0..30i64,
    )
        .prop_map(|(labels, annotations, volumes, pre_stop)| {
            let mut m = Map::new();
            m.insert("podLabels".into(), json!(labels));
            m.insert("podAnnotations".into(), json!(annotations));
            let mut names: Vec<String> = volumes.into_iter().map(|v| format!("v-{v}")).collect();
            names.sort();
            names.dedup();
            m.insert(
                "volumes".into(),
                names
                    .iter()
                    .map(|n| json!({"name": n, "configMap": {"name": n, "optional": true}}))
                    .collect(),
            );
            m.insert(
                "volumeMounts".into(),
                names
                    .iter()
                    .map(|n| json!({"name": n, "mountPath": format!("/etc/{n}"), "readOnly": true}))
                    .collect(),
            );
            m.insert("preStopSleepSeconds".into(), json!(pre_stop));
            m
        })
}

/// Requests (CPU autoscaling needs a CPU request) and maybe a memory limit above them.
fn resources() -> impl Strategy<Value = Value> {
    (10..2000u32, 16..1024u32, option::of(0..1024u32)).prop_map(|(cpu, memory, headroom)| {
        let mut r =
            json!({"requests": {"cpu": format!("{cpu}m"), "memory": format!("{memory}Mi")}});
        if let Some(headroom) = headroom {
            r["limits"] = json!({"memory": format!("{}Mi", memory + headroom)});
        }
        r
    })
}

/// A Microservice spec (as JSON) meant to be valid, using most of what the CRD offers.
pub fn spec() -> impl Strategy<Value = Value> {
    (
        image(),
        1..=65535i32,
        btree_map("[A-Za-z][A-Za-z0-9_.-]{0,10}", "[ -~]{0,24}", 0..4),
        env(),
        option::of(service()),
        option::of(ingress()),
        scaling(),
        option::of(rollout()),
        option::of(probes()),
        pod(),
        option::of(vec("[a-z-]{1,8}", 0..3)),
        resources(),
    )
        .prop_map(
            |(
                image,
                port,
                config,
                env,
                service,
                ingress,
                scaling,
                rollout,
                probes,
                pod,
                args,
                resources,
            )| {
                let mut spec = Map::new();
                spec.insert("image".into(), json!(image));
                spec.insert("port".into(), json!(port));
                spec.insert("config".into(), json!(config));
                spec.insert("env".into(), env);
                spec.insert("resources".into(), resources);
                let optional = [
                    ("service", service),
                    ("ingress", ingress),
                    ("rollout", rollout),
                    ("probes", probes),
                    ("args", args.map(Value::from)),
                ];
                for (key, value) in optional {
                    if let Some(value) = value {
                        spec.insert(key.into(), value);
                    }
                }
                spec.extend(scaling);
                spec.extend(pod);
                Value::Object(spec)
            },
        )
}

/// Microservice `namespace/name` (uid `uid`, generation 1) with `spec`.
pub fn microservice(name: &str, namespace: &str, uid: &str, spec: Value) -> Microservice {
    serde_json::from_value(json!({
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "Microservice",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1},
        "spec": spec,
    }))
    .expect("a generated spec deserializes as a Microservice")
}

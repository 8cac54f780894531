//! Foreign writers (issue 16), table-driven: for each child kind and each field Shoal
//! sets, lists included, another field manager changes it with `kubectl patch`; Shoal
//! restores it with exactly one write to that child, and leaves alone an annotation the
//! other writer added (a field Shoal does not own).
//!
//! Every case has its own Microservice, so all conflicts are made at once against one
//! operator and the table costs one wait, not one per row.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_e2e::{testbed, wait_for};

use crate::helpers::*;

/// Which child a case patches.
#[derive(Clone, Copy, Debug)]
enum Child {
    ConfigMap,
    Deployment,
    Service,
    Ingress,
    Hpa,
}

impl Child {
    /// kubectl's name for the kind, and the audit log's resource.
    fn kind(self) -> (&'static str, &'static str) {
        match self {
            Child::ConfigMap => ("configmap", "configmaps"),
            Child::Deployment => ("deployment", "deployments"),
            Child::Service => ("service", "services"),
            Child::Ingress => ("ingress", "ingresses"),
            Child::Hpa => ("hpa", "horizontalpodautoscalers"),
        }
    }
}

/// What a field must be once healed.
#[derive(Clone, Debug)]
enum Expect {
    Eq(Value),
    Absent,
    Present,
}

struct Case {
    /// The Microservice (and the case's) name.
    name: &'static str,
    child: Child,
    /// JSON patch operations of the foreign writer (the foreign annotation is added to them).
    ops: Value,
    /// JSON pointers into the child and what they must hold after the heal.
    healed: Vec<(&'static str, Expect)>,
}

const CONTAINER: &str = "/spec/template/spec/containers/0";
const FOREIGN_ANNOTATION: &str = "foreign.example/owner";

fn case(name: &'static str, child: Child, ops: Value, healed: Vec<(&'static str, Expect)>) -> Case {
    Case {
        name,
        child,
        ops,
        healed,
    }
}

fn eq(value: Value) -> Expect {
    Expect::Eq(value)
}

fn replace(path: &str, value: Value) -> Value {
    json!({"op": "replace", "path": path, "value": value})
}

fn remove(path: &str) -> Value {
    json!({"op": "remove", "path": path})
}

fn cases() -> Vec<Case> {
    use Child::*;
    use Expect::{Absent, Present};
    let c = |p: &str| format!("{CONTAINER}{p}");
    vec![
        // ConfigMap: immutable data, mutable metadata.
        case(
            "cm-label",
            ConfigMap,
            json!([replace(
                "/metadata/labels/app.kubernetes.io~1component",
                json!("x")
            )]),
            vec![(
                "/metadata/labels/app.kubernetes.io~1component",
                eq(json!("config")),
            )],
        ),
        case(
            "cm-managed-by",
            ConfigMap,
            json!([remove("/metadata/labels/app.kubernetes.io~1managed-by")]),
            vec![(
                "/metadata/labels/app.kubernetes.io~1managed-by",
                eq(json!("shoal")),
            )],
        ),
        // Deployment: scalar fields, labels, and the keyed lists of the pod template.
        case(
            "deploy-image",
            Deployment,
            json!([replace(&c("/image"), json!("registry.example/evil:6.6.6"))]),
            vec![(
                "/spec/template/spec/containers/0/image",
                eq(json!("registry.example/hello:1.0.0")),
            )],
        ),
        case(
            "deploy-label",
            Deployment,
            json!([replace(
                "/metadata/labels/app.kubernetes.io~1component",
                json!("x")
            )]),
            vec![(
                "/metadata/labels/app.kubernetes.io~1component",
                eq(json!("server")),
            )],
        ),
        case(
            "deploy-managed-by",
            Deployment,
            json!([remove("/metadata/labels/app.kubernetes.io~1managed-by")]),
            vec![(
                "/metadata/labels/app.kubernetes.io~1managed-by",
                eq(json!("shoal")),
            )],
        ),
        case(
            "deploy-hash",
            Deployment,
            json!([remove("/metadata/annotations/shoal.dev~1applied-hash")]),
            vec![("/metadata/annotations/shoal.dev~1applied-hash", Present)],
        ),
        case(
            "deploy-env-value",
            Deployment,
            json!([replace(&c("/env/0/value"), json!("bye"))]),
            vec![(
                "/spec/template/spec/containers/0/env/0/value",
                eq(json!("hello")),
            )],
        ),
        case(
            "deploy-env-removed",
            Deployment,
            json!([remove(&c("/env/0"))]),
            vec![(
                "/spec/template/spec/containers/0/env/0/value",
                eq(json!("hello")),
            )],
        ),
        case(
            // `value` and `valueFrom` exclude each other: applying `value` back beside the
            // foreign `valueFrom` would be refused.
            "deploy-env-value-from",
            Deployment,
            json!([replace(
                &c("/env/0"),
                json!({"name": "GREETING", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
            )]),
            vec![
                (
                    "/spec/template/spec/containers/0/env/0/value",
                    eq(json!("hello")),
                ),
                ("/spec/template/spec/containers/0/env/0/valueFrom", Absent),
            ],
        ),
        case(
            "deploy-ctr-port",
            Deployment,
            json!([replace(&c("/ports/0/containerPort"), json!(8081))]),
            vec![
                (
                    "/spec/template/spec/containers/0/ports/0/containerPort",
                    eq(json!(8080)),
                ),
                ("/spec/template/spec/containers/0/ports/1", Absent),
            ],
        ),
        case(
            // A volume's source is a one-of too: a secret beside Shoal's configMap is refused.
            "deploy-volume-source",
            Deployment,
            json!([replace(
                "/spec/template/spec/volumes/1",
                json!({"name": "extra", "secret": {"secretName": "extra", "optional": true}})
            )]),
            vec![
                (
                    "/spec/template/spec/volumes/1/configMap/name",
                    eq(json!("extra")),
                ),
                ("/spec/template/spec/volumes/1/secret", Absent),
            ],
        ),
        case(
            "deploy-mount-read-only",
            Deployment,
            json!([replace(&c("/volumeMounts/1/readOnly"), json!(false))]),
            vec![(
                "/spec/template/spec/containers/0/volumeMounts/1/readOnly",
                eq(json!(true)),
            )],
        ),
        // Service: ports keyed by number, selector, type.
        case(
            "svc-port",
            Service,
            json!([replace("/spec/ports/0/port", json!(81))]),
            vec![
                ("/spec/ports/0/port", eq(json!(80))),
                ("/spec/ports/1", Absent),
            ],
        ),
        case(
            "svc-target-port",
            Service,
            json!([replace("/spec/ports/0/targetPort", json!(9999))]),
            vec![("/spec/ports/0/targetPort", eq(json!("http")))],
        ),
        case(
            "svc-selector",
            Service,
            json!([replace(
                "/spec/selector/app.kubernetes.io~1instance",
                json!("other")
            )]),
            vec![(
                "/spec/selector/app.kubernetes.io~1instance",
                eq(json!("svc-selector")),
            )],
        ),
        case(
            "svc-type",
            Service,
            json!([replace("/spec/type", json!("NodePort"))]),
            vec![
                ("/spec/type", eq(json!("ClusterIP"))),
                ("/spec/ports/0/nodePort", Absent),
            ],
        ),
        case(
            "svc-label",
            Service,
            json!([replace(
                "/metadata/labels/app.kubernetes.io~1component",
                json!("x")
            )]),
            vec![(
                "/metadata/labels/app.kubernetes.io~1component",
                eq(json!("server")),
            )],
        ),
        // Ingress: rules and paths are atomic lists.
        case(
            "ing-host",
            Ingress,
            json!([replace("/spec/rules/0/host", json!("evil.example.com"))]),
            vec![("/spec/rules/0/host", eq(json!("ing-host.example.com")))],
        ),
        case(
            "ing-path",
            Ingress,
            json!([replace("/spec/rules/0/http/paths/0/path", json!("/other"))]),
            vec![
                ("/spec/rules/0/http/paths/0/path", eq(json!("/"))),
                ("/spec/rules/0/http/paths/1", Absent),
            ],
        ),
        case(
            "ing-backend",
            Ingress,
            json!([replace(
                "/spec/rules/0/http/paths/0/backend/service/port/number",
                json!(81)
            )]),
            vec![(
                "/spec/rules/0/http/paths/0/backend/service/port/number",
                eq(json!(80)),
            )],
        ),
        // HPA.
        case(
            "hpa-max",
            Hpa,
            json!([replace("/spec/maxReplicas", json!(9))]),
            vec![("/spec/maxReplicas", eq(json!(4)))],
        ),
        case(
            "hpa-min",
            Hpa,
            json!([replace("/spec/minReplicas", json!(2))]),
            vec![("/spec/minReplicas", eq(json!(1)))],
        ),
        case(
            "hpa-target",
            Hpa,
            json!([replace(
                "/spec/metrics/0/resource/target/averageUtilization",
                json!(90)
            )]),
            vec![(
                "/spec/metrics/0/resource/target/averageUtilization",
                eq(json!(60)),
            )],
        ),
    ]
}

/// One Microservice with every child and every list Shoal fills.
fn microservice(name: &str) -> String {
    format!(
        r#"---
apiVersion: shoal.dev/v1alpha1
kind: Microservice
metadata:
  name: {name}
spec:
  image: registry.example/hello:1.0.0
  port: 8080
  config: {{LOG_LEVEL: info}}
  env: [{{name: GREETING, value: hello}}]
  resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
  volumes: [{{name: extra, configMap: {{name: extra, optional: true}}}}]
  volumeMounts: [{{name: extra, mountPath: /etc/extra, readOnly: true}}]
  ingress: {{host: {name}.example.com}}
  autoscaling: {{minReplicas: 1, maxReplicas: 4, cpu: {{targetUtilization: 60}}}}
"#
    )
}

/// Which of `healed` `object` fails, as messages.
fn unhealed(object: &Value, healed: &[(&str, Expect)]) -> Vec<String> {
    healed
        .iter()
        .filter_map(|(pointer, expect)| {
            let got = object.pointer(pointer);
            let ok = match expect {
                Expect::Eq(want) => got == Some(want),
                Expect::Absent => got.is_none(),
                Expect::Present => got.is_some(),
            };
            (!ok).then(|| format!("{pointer} is {got:?}, want {expect:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_field_a_foreign_writer_changes_is_restored_with_one_write() {
    let bed = testbed();
    let ns = bed.namespace("foreign");
    let _op = bed.operator(&ns, &[]);
    let cases = cases();
    let yaml: String = cases.iter().map(|c| microservice(c.name)).collect();
    apply(bed, &ns, &yaml);
    let mut children = Vec::new();
    for c in &cases {
        let ms = wait_ready(bed, &ns, c.name).await;
        let name = match c.child {
            Child::ConfigMap => ms["status"]["configMap"]
                .as_str()
                .expect("status.configMap")
                .to_string(),
            _ => c.name.to_string(),
        };
        children.push(name);
    }
    settled_writes(bed, &ns).await;
    let before = writes_per_object(bed, &ns);

    for (c, child) in cases.iter().zip(&children) {
        let mut ops = c.ops.as_array().expect("ops").clone();
        ops.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", FOREIGN_ANNOTATION.replace('/', "~1")),
            "value": "someone-else",
        }));
        let (kind, _) = c.child.kind();
        let patch = Value::Array(ops).to_string();
        bed.kubectl_ok(&["patch", kind, child, "-n", &ns, "--type=json", "-p", &patch]);
    }

    // Every conflict healed.
    let get_child = |c: &Case, child: &str| get(bed, &ns, c.child.kind().0, child);
    wait_for(
        "every field a foreign writer changed to be restored",
        Duration::from_secs(60),
        || async {
            cases
                .iter()
                .zip(&children)
                .all(|(c, child)| {
                    get_child(c, child).is_some_and(|o| unhealed(&o, &c.healed).is_empty())
                })
                .then_some(())
        },
    )
    .await;
    // Long enough for a few resyncs (3 s): a second write would show.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = writes_per_object(bed, &ns);
    let mut failures = Vec::new();
    for (c, child) in cases.iter().zip(&children) {
        let (_, resource) = c.child.kind();
        let key = (resource.to_string(), child.clone());
        let writes = after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0);
        if writes != 1 {
            failures.push(format!(
                "{}: {writes} writes to {resource}/{child}, want 1",
                c.name
            ));
        }
        let object = get_child(c, child).expect("child");
        for problem in unhealed(&object, &c.healed) {
            failures.push(format!("{}: {problem}", c.name));
        }
        if object["metadata"]["annotations"][FOREIGN_ANNOTATION] != "someone-else" {
            failures.push(format!("{}: the foreign annotation is gone", c.name));
        }
        let ms = get(bed, &ns, "ms", c.name).expect("ms");
        if condition(&ms, "Ready").is_none_or(|r| r.0 != "True") {
            failures.push(format!(
                "{}: not Ready: {:?}",
                c.name,
                condition(&ms, "Ready")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

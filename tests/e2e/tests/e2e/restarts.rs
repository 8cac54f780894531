//! Restarts, handovers and foreign writers (issue 16): the first reconciles after a start
//! finish within seconds, ports another field manager changed are taken back, an orphaned
//! ConfigMap is adopted back, and taking the leader lease is a compare-and-swap.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use shoal::leader::{self, Attempt};
use shoal_e2e::{audit, testbed, wait_for};

use crate::helpers::*;

/// ConfigMaps that slow the first list of one cache in [`first_reconciles_after_a_restart`].
const FILLERS: usize = 1500;

fn generation_observed(ms: &Value) -> bool {
    ms.pointer("/status/observedGeneration") == ms.pointer("/metadata/generation")
}

/// `count` converged Microservices (`steady-N`) and one changed while the operator was
/// stopped (`changed`): after a restart every Microservice is reconciled within seconds,
/// not after the 60 s reconcile timeout, the changed one reaches its new generation, and
/// the converged ones cause no write.
async fn first_reconciles_after_a_restart(test: &str, count: usize) {
    let bed = testbed();
    let ns = bed.namespace(test);
    let mut op = bed.operator(&ns, &[]);
    let mut yaml = String::new();
    for name in (0..count)
        .map(|i| format!("steady-{i}"))
        .chain(["changed".to_string()])
    {
        yaml.push_str(&format!(
            "---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata:\n  name: {name}\nspec:\n  image: registry.example/hello:1.0.0\n"
        ));
    }
    apply(bed, &ns, &yaml);
    wait_for(
        "every Microservice Ready at its generation",
        Duration::from_secs(180),
        || async {
            let list: Value =
                serde_json::from_str(&bed.kubectl_ok(&["get", "ms", "-n", &ns, "-o", "json"]))
                    .ok()?;
            let items = list["items"].as_array()?;
            (items.len() == count + 1
                && items.iter().all(|ms| {
                    generation_observed(ms) && condition(ms, "Ready").is_some_and(|c| c.0 == "True")
                }))
            .then_some(())
        },
    )
    .await;
    settled_writes(bed, &ns).await;
    op.stop();
    // Many objects in one of the watched caches (ConfigMaps with Shoal's label, owned by
    // nobody, so never pruned) make its first list take longer than the Microservices':
    // reconciles start while that cache is still cold, as on a busy cluster.
    let fillers: Vec<Value> = (0..FILLERS)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": format!("filler-{i}"),
                    "labels": {"app.kubernetes.io/managed-by": "shoal"},
                },
                "data": {"filler": "x".repeat(512)},
            })
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": fillers});
    let out = bed.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-", "-o", "name"],
        &list.to_string(),
    );
    assert!(
        out.status.success(),
        "creating fillers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = audit::writes(&bed.audit_log(), &ns, "shoal/").len();
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "changed",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"registry.example/hello:1.0.1"}}"#,
    ]);

    let started = Instant::now();
    let op = bed.operator(&ns, &[]);
    wait_for(
        "the Microservice changed while stopped to reach its generation",
        Duration::from_secs(20),
        || async {
            let ms = get(bed, &ns, "ms", "changed")?;
            generation_observed(&ms).then_some(())
        },
    )
    .await;
    eprintln!(
        "{count} converged + 1 changed: the changed one reached its generation {:.1}s after the start",
        started.elapsed().as_secs_f64()
    );
    // Every Microservice was reconciled (counted once its caches were ready) within
    // seconds of the start.
    let reconciled = wait_for(
        "every Microservice to be reconciled once",
        Duration::from_secs(25).saturating_sub(started.elapsed()),
        || async {
            let n = op.metric("shoal_reconciles_total", &[])?;
            (n >= (count + 1) as f64).then_some(n)
        },
    )
    .await;
    eprintln!(
        "{reconciled} reconciles {:.1}s after the start",
        started.elapsed().as_secs_f64()
    );
    let log = op.plain_log_text();
    assert!(
        !log.contains("did not finish within"),
        "a reconcile hit the timeout; see {}",
        op.log.display()
    );
    // Converged ones cost nothing.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = audit::writes(&bed.audit_log(), &ns, "shoal/");
    let steady: Vec<_> = after[before..]
        .iter()
        .filter(|w| {
            w.object_ref
                .as_ref()
                .is_some_and(|o| o.name.starts_with("steady-"))
        })
        .map(|w| format!("{} {:?}", w.verb, w.object_ref))
        .collect();
    assert!(
        steady.is_empty(),
        "writes for converged Microservices: {steady:#?}"
    );
    assert!(
        after.len() > before,
        "the changed Microservice must have been written (is auditing on?)"
    );
    // The operator's count of its own writes (`shoal_kubernetes_requests_total`, counted
    // when sent) agrees with the apiserver's audit log (logged when answered): read
    // between two scrapes, the audited writes of the restarted process lie between them.
    let counted = || -> f64 {
        ["POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .filter_map(|m| op.metric("shoal_kubernetes_requests_total", &[("method", m)]))
            .sum()
    };
    let first = counted();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let audited = (audit::writes(&bed.audit_log(), &ns, "shoal/").len() - before) as f64;
    let second = counted();
    assert!(
        first <= audited && audited <= second,
        "the operator counted {first}..{second} writes, the audit log shows {audited}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_reconciles_after_a_restart_finish_within_seconds_with_3() {
    first_reconciles_after_a_restart("restart-3", 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_reconciles_after_a_restart_finish_within_seconds_with_30() {
    first_reconciles_after_a_restart("restart-30", 30).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_port_changed_by_a_foreign_writer_is_taken_back() {
    let bed = testbed();
    let ns = bed.namespace("foreign-svc-port");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "minimal.yaml");
    wait_ready(bed, &ns, "hello").await;
    settled_writes(bed, &ns).await;
    let before = writes_to(bed, &ns, "services", "hello");
    // Another writer re-numbers Shoal's port (80 -> 81), adds a port of its own and a
    // label: only the first is Shoal's business.
    bed.kubectl_ok(&[
        "patch",
        "service",
        "hello",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":81},
            {"op":"add","path":"/spec/ports/-","value":{"name":"metrics","port":9090,"protocol":"TCP","targetPort":9090}},
            {"op":"add","path":"/metadata/labels/team","value":"payments"}]"#,
    ]);
    let ports = |svc: &Value| -> Vec<(String, i64)> {
        svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["port"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    let healed = wait_for(
        "Service port 80 to be taken back",
        Duration::from_secs(20),
        || async {
            let svc = get(bed, &ns, "service", "hello")?;
            (ports(&svc).contains(&("http".to_string(), 80))).then_some(svc)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let svc = get(bed, &ns, "service", "hello").expect("service");
    let mut now = ports(&svc);
    now.sort();
    assert_eq!(
        now,
        vec![("http".to_string(), 80), ("metrics".to_string(), 9090)],
        "Shoal's port back, the foreign one left alone: {healed:#}"
    );
    assert_eq!(
        svc["metadata"]["labels"]["team"], "payments",
        "a foreign label is left alone"
    );
    assert_eq!(
        writes_to(bed, &ns, "services", "hello") - before,
        1,
        "one write per conflict"
    );
    let ms = get(bed, &ns, "ms", "hello").expect("ms");
    assert_eq!(condition(&ms, "Ready").expect("Ready").0, "True");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_port_changed_by_a_foreign_writer_is_taken_back() {
    let bed = testbed();
    let ns = bed.namespace("foreign-ctr-port");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "minimal.yaml");
    wait_ready(bed, &ns, "hello").await;
    settled_writes(bed, &ns).await;
    let deployment = get(bed, &ns, "deployment", "hello").expect("deployment");
    let port = deployment
        .pointer("/spec/template/spec/containers/0/ports/0/containerPort")
        .and_then(Value::as_i64)
        .expect("container port");
    let before = writes_to(bed, &ns, "deployments", "hello");
    bed.kubectl_ok(&[
        "patch",
        "deployment",
        "hello",
        "-n",
        &ns,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/ports/0/containerPort","value":{}}},
                {{"op":"add","path":"/metadata/annotations/team","value":"payments"}}]"#,
            port + 1
        ),
    ]);
    let container_ports = |d: &Value| -> Vec<i64> {
        d.pointer("/spec/template/spec/containers/0/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_i64())
            .collect()
    };
    wait_for(
        "the container port to be taken back",
        Duration::from_secs(20),
        || async {
            let d = get(bed, &ns, "deployment", "hello")?;
            (container_ports(&d) == vec![port]).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let d = get(bed, &ns, "deployment", "hello").expect("deployment");
    assert_eq!(container_ports(&d), vec![port]);
    assert_eq!(
        d["metadata"]["annotations"]["team"], "payments",
        "a foreign annotation is left alone"
    );
    assert_eq!(
        writes_to(bed, &ns, "deployments", "hello") - before,
        1,
        "one write per conflict"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphaned_config_map_is_adopted_back() {
    let bed = testbed();
    let ns = bed.namespace("orphan-adopt");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "web-with-ingress.yaml");
    let first = wait_ready(bed, &ns, "checkout").await;
    let cm = first["status"]["configMap"]
        .as_str()
        .expect("configMap")
        .to_string();
    bed.kubectl_ok(&[
        "delete",
        "ms",
        "checkout",
        "-n",
        &ns,
        "--cascade=orphan",
        "--wait=true",
    ]);
    wait_gone(bed, &ns, "ms", "checkout").await;
    assert!(
        get(bed, &ns, "configmap", &cm).is_some(),
        "the orphan stays"
    );
    apply_example(bed, &ns, "web-with-ingress.yaml");
    let second = wait_ready(bed, &ns, "checkout").await;
    let uid = second["metadata"]["uid"].clone();
    assert_ne!(uid, first["metadata"]["uid"]);
    for (kind, name) in [
        ("configmap", cm.as_str()),
        ("deployment", "checkout"),
        ("service", "checkout"),
        ("ingress", "checkout"),
    ] {
        wait_for(
            &format!("{kind} {name} to be owned by the new Microservice"),
            Duration::from_secs(20),
            || async {
                let child = get(bed, &ns, kind, name)?;
                let owners = child["metadata"]["ownerReferences"].as_array()?.clone();
                owners
                    .iter()
                    .any(|o| o["uid"] == uid && o["controller"] == true)
                    .then_some(())
            },
        )
        .await;
    }
    // Adopted, so it goes with the next delete.
    bed.kubectl_ok(&["delete", "ms", "checkout", "-n", &ns, "--wait=true"]);
    wait_gone(bed, &ns, "configmap", &cm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_candidates_racing_for_an_expired_lease_one_wins() {
    let bed = testbed();
    let ns = bed.namespace("lease-cas");
    let client = bed.client().await;
    let api: Api<Lease> = Api::namespaced(client, &ns);
    let now = Timestamp::now();
    for round in 0..5 {
        let name = format!("race-{round}");
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("dead".into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(60))),
                acquire_time: Some(MicroTime(now - SignedDuration::from_secs(600))),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        };
        api.create(&PostParams::default(), &lease)
            .await
            .expect("create lease");
        // Both candidates saw the same expired lease before either wrote.
        let seen_a = api.get(&name).await.expect("get");
        let seen_b = api.get(&name).await.expect("get");
        let ttl = Duration::from_secs(15);
        let (a, b) = futures::join!(
            leader::take_over(&api, &name, Some(seen_a), "a", ttl),
            leader::take_over(&api, &name, Some(seen_b), "b", ttl),
        );
        let (a, b) = (a.expect("candidate a"), b.expect("candidate b"));
        let winner = match (&a, &b) {
            (Attempt::Acquired, Attempt::Lost) => "a",
            (Attempt::Lost, Attempt::Acquired) => "b",
            other => panic!("exactly one must win, the other get 409 Conflict: {other:?}"),
        };
        let stored = api.get(&name).await.expect("get");
        let spec = stored.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(winner));
        assert_eq!(spec.lease_transitions, Some(4), "one transition");
        // The loser, looking again, follows the winner's valid lease.
        let loser = if winner == "a" { "b" } else { "a" };
        assert_eq!(
            leader::try_acquire(&api, &name, loser, ttl)
                .await
                .expect("try"),
            Attempt::Held {
                holder: winner.to_string()
            }
        );
        // The winner renews without a transition.
        assert_eq!(
            leader::try_acquire(&api, &name, winner, ttl)
                .await
                .expect("renew"),
            Attempt::Acquired
        );
        let spec = api.get(&name).await.expect("get").spec.expect("spec");
        assert_eq!(spec.lease_transitions, Some(4));
    }
    // A missing lease: created by one of two racing candidates, the other gets 409.
    let (a, b) = futures::join!(
        leader::take_over(&api, "fresh", None, "a", Duration::from_secs(15)),
        leader::take_over(&api, "fresh", None, "b", Duration::from_secs(15)),
    );
    let mut outcomes = [a.expect("a"), b.expect("b")];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Attempt::Acquired, Attempt::Lost]);
}

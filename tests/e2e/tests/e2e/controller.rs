//! The controller on the real control plane: children, rollouts, self-healing, garbage
//! collection, refusal of invalid specs, zero writes when converged, and no fight over
//! replicas with autoscalers or `kubectl scale`.

use std::time::Duration;

use serde_json::Value;
use shoal_e2e::{audit, testbed, wait_for};

use crate::helpers::*;

const EXAMPLES: [(&str, &str); 4] = [
    ("minimal.yaml", "hello"),
    ("web-with-ingress.yaml", "checkout"),
    ("request-rate.yaml", "api"),
    ("cpu-only.yaml", "worker"),
];

fn assert_owned(child: &Value, ms: &Value) {
    let owner = &child["metadata"]["ownerReferences"][0];
    assert_eq!(
        owner["kind"], "Microservice",
        "owner kind of {}",
        child["metadata"]["name"]
    );
    assert_eq!(
        owner["uid"], ms["metadata"]["uid"],
        "owner uid of {}",
        child["metadata"]["name"]
    );
    assert_eq!(owner["controller"], true);
    let labels = &child["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "shoal");
    assert_eq!(labels["app.kubernetes.io/name"], ms["metadata"]["name"]);
    assert_eq!(labels["app.kubernetes.io/instance"], ms["metadata"]["name"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_become_ready_with_their_children() {
    let bed = testbed();
    let ns = bed.namespace("examples");
    let _op = bed.operator(&ns, &[]);
    for (file, _) in EXAMPLES {
        apply_example(bed, &ns, file);
    }
    for (file, name) in EXAMPLES {
        let ms = wait_ready(bed, &ns, name).await;
        let cm_name = ms["status"]["configMap"]
            .as_str()
            .expect("status.configMap")
            .to_string();
        assert!(
            cm_name.starts_with(&format!("{name}-config-")),
            "{file}: {cm_name}"
        );
        for (kind, child) in [
            ("configmap", cm_name.as_str()),
            ("deployment", name),
            ("service", name),
        ] {
            let object = get(bed, &ns, kind, child)
                .unwrap_or_else(|| panic!("{file}: {kind} {child} missing"));
            assert_owned(&object, &ms);
        }
        let ingress = get(bed, &ns, "ingress", name);
        assert_eq!(
            ingress.is_some(),
            file == "web-with-ingress.yaml",
            "{file}: ingress"
        );
        if let Some(ingress) = ingress {
            assert_owned(&ingress, &ms);
            assert_eq!(ingress["spec"]["rules"][0]["host"], "checkout.example.com");
        }
        let hpa = get(bed, &ns, "hpa", name);
        assert_eq!(hpa.is_some(), file == "cpu-only.yaml", "{file}: hpa");
        if let Some(hpa) = hpa {
            assert_owned(&hpa, &ms);
            assert_eq!(
                hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
                60
            );
        }
        // Every desired pod is Running and Ready (KWOK plays the kubelet).
        let desired = ms["status"]["desiredReplicas"]
            .as_i64()
            .expect("desiredReplicas");
        let pods: Value = serde_json::from_str(&bed.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            &format!("app.kubernetes.io/instance={name}"),
            "-o",
            "json",
        ]))
        .expect("pods json");
        let ready_pods = pods["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count() as i64;
        assert_eq!(ready_pods, desired, "{file}: ready pods");
        assert_eq!(
            ms["status"]["readyReplicas"].as_i64(),
            Some(desired),
            "{file}"
        );
    }
    // The request-rate example starts at its minReplicas, set by the autoscaler's manager.
    assert_eq!(replicas(bed, &ns, "api"), 2);
    assert_eq!(replicas(bed, &ns, "checkout"), 2);
    // Printer columns.
    let table = bed.kubectl_ok(&["get", "ms", "-n", &ns]);
    let header = table.lines().next().expect("header");
    for column in ["NAME", "IMAGE", "DESIRED", "READY", "STATUS", "AGE"] {
        assert!(
            header.contains(column),
            "kubectl get ms lacks {column}: {header}"
        );
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("checkout"))
        .expect("checkout row");
    assert!(
        row.contains("registry.example/checkout:1.4.2") && row.contains("True"),
        "row: {row}"
    );
    let short = bed.kubectl_ok(&["get", "msvc", "-n", &ns, "-o", "name"]);
    assert_eq!(short.lines().count(), 4, "short name msvc: {short}");
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_image_rolls_out_a_new_revision() {
    let bed = testbed();
    let ns = bed.namespace("image-edit");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "minimal.yaml");
    wait_ready(bed, &ns, "hello").await;
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "hello",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"registry.example/hello:1.1.0"}}"#,
    ]);
    wait_for(
        "the Deployment template to carry the new image",
        TIMEOUT,
        || async {
            let d = get(bed, &ns, "deployment", "hello")?;
            (d["spec"]["template"]["spec"]["containers"][0]["image"]
                == "registry.example/hello:1.1.0")
                .then_some(())
        },
    )
    .await;
    bed.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/hello",
        "-n",
        &ns,
        "--timeout=90s",
    ]);
    let ms = wait_ready(bed, &ns, "hello").await;
    assert_eq!(ms["status"]["observedGeneration"], 2);
    let rs = bed.kubectl_ok(&[
        "get",
        "rs",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/instance=hello",
        "-o",
        "name",
    ]);
    assert_eq!(rs.lines().count(), 2, "two revisions: {rs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_or_edited_children_are_restored() {
    let bed = testbed();
    let ns = bed.namespace("self-heal");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "web-with-ingress.yaml");
    let ms = wait_ready(bed, &ns, "checkout").await;
    let cm_name = ms["status"]["configMap"]
        .as_str()
        .expect("configMap")
        .to_string();
    for (kind, name) in [("service", "checkout"), ("configmap", cm_name.as_str())] {
        let before = get(bed, &ns, kind, name).expect("child")["metadata"]["uid"].clone();
        bed.kubectl_ok(&["delete", kind, name, "-n", &ns, "--wait=true"]);
        wait_for(
            &format!("{kind} {name} to be recreated"),
            TIMEOUT,
            || async {
                let after = get(bed, &ns, kind, name)?;
                (after["metadata"]["uid"] != before).then_some(())
            },
        )
        .await;
    }
    // A hand edit of a field Shoal sets is put back.
    bed.kubectl_ok(&[
        "patch",
        "service",
        "checkout",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"app.kubernetes.io/name":"elsewhere"}}}"#,
    ]);
    wait_for("the Service selector to be restored", TIMEOUT, || async {
        let svc = get(bed, &ns, "service", "checkout")?;
        (svc["spec"]["selector"]["app.kubernetes.io/name"] == "checkout").then_some(())
    })
    .await;
    bed.kubectl_ok(&[
        "patch",
        "deployment",
        "checkout",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":999}}"#,
    ]);
    wait_for(
        "the Deployment's progress deadline to be restored",
        TIMEOUT,
        || async {
            let d = get(bed, &ns, "deployment", "checkout")?;
            (d["spec"]["progressDeadlineSeconds"] == 120).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_ingress_deletes_it_and_adding_it_back_recreates_it() {
    let bed = testbed();
    let ns = bed.namespace("ingress");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "web-with-ingress.yaml");
    wait_ready(bed, &ns, "checkout").await;
    assert!(get(bed, &ns, "ingress", "checkout").is_some());
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "checkout",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ingress"}]"#,
    ]);
    wait_gone(bed, &ns, "ingress", "checkout").await;
    wait_for("a Deleted event naming the Ingress", TIMEOUT, || async {
        let events = bed.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "reason=Deleted",
            "-o",
            "json",
        ]);
        events.contains("Deleted Ingress checkout").then_some(())
    })
    .await;
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "checkout",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"ingress":{"host":"shop.example.com"}}}"#,
    ]);
    let ingress = wait_exists(bed, &ns, "ingress", "checkout").await;
    assert_eq!(ingress["spec"]["rules"][0]["host"], "shop.example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_microservice_garbage_collects_every_child() {
    let bed = testbed();
    let ns = bed.namespace("gc");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "web-with-ingress.yaml");
    let ms = wait_ready(bed, &ns, "checkout").await;
    let cm_name = ms["status"]["configMap"]
        .as_str()
        .expect("configMap")
        .to_string();
    bed.kubectl_ok(&["delete", "ms", "checkout", "-n", &ns, "--wait=true"]);
    for (kind, name) in [
        ("deployment", "checkout"),
        ("service", "checkout"),
        ("ingress", "checkout"),
        ("configmap", cm_name.as_str()),
    ] {
        wait_gone(bed, &ns, kind, name).await;
    }
    wait_for("the pods to go", TIMEOUT, || async {
        let pods = bed.kubectl_ok(&["get", "pods", "-n", &ns, "-o", "name"]);
        pods.trim().is_empty().then_some(())
    })
    .await;
}

const INVALID: [(&str, &str); 12] = [
    ("image: ''", "spec.image must not be empty"),
    (
        "image: x\n  port: 0",
        "spec.port must be between 1 and 65535",
    ),
    (
        "image: x\n  port: 70000",
        "spec.port must be between 1 and 65535",
    ),
    (
        "image: x\n  replicas: 2\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}}",
        "spec.replicas and spec.autoscaling are mutually exclusive",
    ),
    (
        "image: x\n  autoscaling: {minReplicas: 5, maxReplicas: 3, requestRate: {targetPerReplica: 5}}",
        "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
    ),
    (
        "image: x\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 0}}",
        "spec.autoscaling.cpu.targetUtilization must be greater than 0",
    ),
    (
        "image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 0}}",
        "spec.autoscaling.requestRate.targetPerReplica must be greater than 0",
    ),
    (
        "image: x\n  autoscaling: {maxReplicas: 3}",
        "spec.autoscaling needs at least one target",
    ),
    (
        "image: x\n  ingress: {host: 'Not A Host'}",
        "spec.ingress.host must be a lowercase DNS name",
    ),
    (
        "image: x\n  service: {port: 0}",
        "spec.service.port must be between 1 and 65535",
    ),
    (
        "image: x\n  replicas: -1",
        "spec.replicas must not be negative",
    ),
    ("port: 8080", "spec.image: Required value"),
];

#[tokio::test(flavor = "multi_thread")]
async fn invalid_microservices_are_refused_naming_the_field() {
    let bed = testbed();
    let ns = bed.namespace("invalid");
    let _op = bed.operator(&ns, &[]);
    for (i, (spec, message)) in INVALID.iter().enumerate() {
        let yaml = format!(
            "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: bad-{i}}}\nspec:\n  {spec}\n"
        );
        let out = apply_yaml(bed, &ns, &yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} was accepted:\n{yaml}");
        assert!(
            stderr.contains(message),
            "case {i}: expected {message:?} in {stderr}"
        );
    }
    let listed = bed.kubectl_ok(&[
        "get",
        "ms,deploy,svc,cm",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/managed-by=shoal",
        "-o",
        "name",
    ]);
    assert!(listed.trim().is_empty(), "nothing is created: {listed}");
    assert!(
        bed.kubectl_ok(&["get", "ms", "-n", &ns, "-o", "name"])
            .trim()
            .is_empty()
    );

    // What only the operator can check: Ready=False/InvalidSpec, and no child is touched.
    apply_example(bed, &ns, "minimal.yaml");
    wait_ready(bed, &ns, "hello").await;
    let before = get(bed, &ns, "deployment", "hello").expect("deployment");
    bed.kubectl_ok(&[
        "patch", "ms", "hello", "-n", &ns, "--type=merge", "-p",
        r#"{"spec":{"image":"registry.example/hello:2","resources":{"requests":{"cpu":"banana"}}}}"#,
    ]);
    let (_, _, message) = wait_for("Ready=False with reason InvalidSpec", TIMEOUT, || async {
        let ms = get(bed, &ns, "ms", "hello")?;
        let c = condition(&ms, "Ready")?;
        (c.0 == "False" && c.1 == "InvalidSpec" && ms["status"]["observedGeneration"] == 2)
            .then_some(c)
    })
    .await;
    assert!(
        message.contains("spec.resources.requests.cpu"),
        "message names the field: {message}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = get(bed, &ns, "deployment", "hello").expect("deployment kept");
    assert_eq!(
        before["metadata"]["generation"], after["metadata"]["generation"],
        "the Deployment was not touched"
    );
    let events = bed.kubectl_ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "reason=InvalidSpec",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "an InvalidSpec Warning event");
    // Fixing the spec resumes.
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "hello",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"cpu":"100m"}}}}"#,
    ]);
    wait_ready(bed, &ns, "hello").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn converged_microservices_cause_zero_writes_after_resync_and_restart() {
    let bed = testbed();
    let ns = bed.namespace("zero-writes");
    let mut op = bed.operator(&ns, &[]);
    for (file, _) in EXAMPLES {
        apply_example(bed, &ns, file);
    }
    for (_, name) in EXAMPLES {
        wait_ready(bed, &ns, name).await;
    }
    let audit_log = bed.audit_log();
    // Let in-flight status updates settle: wait until the operator's write count is stable.
    let mut settled = audit::writes(&audit_log, &ns, "shoal/").len();
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let now = audit::writes(&audit_log, &ns, "shoal/").len();
        if now == settled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator kept writing: {now} writes"
        );
        settled = now;
    }
    let converged = audit::writes(&audit_log, &ns, "shoal/");
    assert!(
        !converged.is_empty(),
        "the audit log must show the operator's writes (is auditing on?)"
    );
    // Creation cost: at most one write per child, one scale, one status write per pass
    // that saw a change, and events.
    eprintln!("writes to converge 4 Microservices: {}", converged.len());
    // The budget of a new Microservice (issue 14): each child written once (and the
    // scale of an autoscaled one), two status writes from the controller (when the
    // children exist, when Ready; the metrics loop adds its own for `api`), and one
    // Event, for the children (a new Microservice's first rollout is no news).
    let mut by_kind = std::collections::BTreeMap::<(String, String), usize>::new();
    for w in &converged {
        let o = w.object_ref.as_ref().expect("object");
        // Events are `<name>.<id>`, ConfigMaps `<name>-config-<hash>`.
        let owner = o.name.split('.').next().unwrap_or_default();
        let owner = owner.split("-config-").next().unwrap_or(owner).to_string();
        let kind = format!(
            "{} {}{}",
            w.verb,
            o.resource,
            if o.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", o.subresource)
            }
        );
        *by_kind.entry((owner, kind)).or_default() += 1;
    }
    eprintln!("writes by Microservice, verb and resource: {by_kind:#?}");
    for ((owner, kind), count) in &by_kind {
        let budget = match kind.as_str() {
            "create events" => 1,
            "patch microservices/status" if owner == "api" => 3,
            "patch microservices/status" => 2,
            _ => 1,
        };
        assert!(
            *count <= budget,
            "{owner}: {count} × {kind}, budget {budget}: {by_kind:#?}"
        );
    }

    // Forced resync: touch every Microservice (metadata only) and let several periodic
    // resyncs (3 s) pass.
    bed.kubectl_ok(&["annotate", "ms", "--all", "-n", &ns, "e2e/touched=1"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_resync = audit::writes(&audit_log, &ns, "shoal/");
    assert_eq!(
        after_resync.len(),
        converged.len(),
        "writes after a forced resync: {:#?}",
        &after_resync[converged.len()..]
    );

    // Operator restart: a new process with empty caches must write nothing either.
    op.stop();
    let _op = bed.operator(&ns, &[]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after_restart = audit::writes(&audit_log, &ns, "shoal/");
    assert_eq!(
        after_restart.len(),
        converged.len(),
        "writes after an operator restart: {:#?}",
        &after_restart[converged.len()..]
    );
    // The apiserver's audit trail is complete: kubectl's own annotate shows up in it.
    assert!(
        !audit::writes(&audit_log, &ns, "kubectl").is_empty(),
        "the audit log records kubectl's writes too"
    );
}

/// `count` Microservices of the `web-with-ingress` shape (one replica), `<prefix>-NN`, as
/// one multi-document YAML.
fn many_web_services(prefix: &str, count: usize) -> String {
    let example = std::fs::read_to_string(
        shoal_e2e::repo_root().join("manifests/examples/web-with-ingress.yaml"),
    )
    .expect("example");
    (0..count)
        .map(|i| {
            example
                .replace("checkout", &format!("{prefix}-{i:02}"))
                .replace("replicas: 2", "replicas: 1")
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// A burst of creates (12 Microservices of 5 children each, one apply: more than the 40
/// child creates in 2 s that make a burst) holds first statuses and `Created` Events until
/// the burst is over; they must still come, within the budget. Then a burst of
/// Microservices that are Ready at once (0 replicas): their statuses follow the child
/// writes and come soon after them. Then a burst interrupted by a restart: the new process
/// writes the statuses the old one held.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_new_microservices_gets_its_statuses_and_events_after_it() {
    let bed = testbed();
    let ns = bed.namespace("burst");
    let mut op = bed.operator(&ns, &[]);
    let names: Vec<String> = (0..12).map(|i| format!("web-{i:02}")).collect();
    apply(bed, &ns, &many_web_services("web", 12));
    for name in &names {
        wait_ready(bed, &ns, name).await;
    }
    for name in &names {
        wait_for(
            "the Created Event that followed the burst",
            TIMEOUT,
            || async { (!events(bed, &ns, name, "Created").is_empty()).then_some(()) },
        )
        .await;
    }
    let writes = audit::writes(&bed.audit_log(), &ns, "shoal/");
    for name in &names {
        let refs = writes.iter().filter_map(|w| w.object_ref.as_ref());
        let status = refs
            .clone()
            .filter(|o| o.resource == "microservices" && o.subresource == "status")
            .filter(|o| o.name == *name)
            .count();
        // Events are named `<object>.<id>`.
        let created = refs
            .filter(|o| o.resource == "events")
            .filter(|o| o.name.starts_with(&format!("{name}.")))
            .count();
        assert!(
            (1..=2).contains(&status),
            "{name}: {status} status writes (budget: when the children exist, when Ready)"
        );
        assert_eq!(created, 1, "{name}: one Event for its children");
    }

    // Ready at once (0 replicas): the Deployment controller makes them Ready while the
    // burst's children are still being created. Those first statuses are held too (not
    // written among the child writes) and released when the burst is over, not at the
    // hold's limit of minutes: no child changes after it to wake them.
    let zero: Vec<String> = (0..24).map(|i| format!("zero-{i:02}")).collect();
    let applied = std::time::Instant::now();
    apply(
        bed,
        &ns,
        &many_web_services("zero", 24).replace("replicas: 1", "replicas: 0"),
    );
    for name in &zero {
        wait_ready(bed, &ns, name).await;
    }
    let took = applied.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "the burst's held statuses came {took:?} after it"
    );
    let writes = audit::writes(&bed.audit_log(), &ns, "shoal/");
    let of_batch = |w: &&audit::AuditEvent| {
        w.object_ref
            .as_ref()
            .is_some_and(|o| o.name.starts_with("zero-"))
    };
    let resource = |w: &audit::AuditEvent| {
        w.object_ref
            .as_ref()
            .map(|o| (o.resource.clone(), o.subresource.clone()))
            .unwrap_or_default()
    };
    let last_child = writes
        .iter()
        .filter(of_batch)
        .filter(|w| !matches!(resource(w).0.as_str(), "microservices" | "events"))
        .map(audit::answered)
        .max()
        .expect("the batch's children were written");
    let statuses: Vec<_> = writes
        .iter()
        .filter(of_batch)
        .filter(|w| resource(w) == ("microservices".into(), "status".into()))
        .collect();
    assert!(
        statuses.len() >= zero.len(),
        "{} status writes",
        statuses.len()
    );
    let early = statuses
        .iter()
        .filter(|w| w.received() < last_child)
        .count();
    // A burst is 40 child creates within 2 s: the first 8 Microservices' statuses may go
    // before it is one (their Deployments can be Ready within 0.2 s here); without the
    // hold nearly all 24 were written among the child writes.
    assert!(
        early <= 8,
        "{early} of {} first statuses were written among the burst's child writes",
        statuses.len()
    );

    // Interrupted: the operator is stopped while the second burst's statuses are held.
    let more: Vec<String> = (0..12).map(|i| format!("late-{i:02}")).collect();
    apply(bed, &ns, &many_web_services("late", 12));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op.stop();
    let _op = bed.operator(&ns, &[]);
    for name in &more {
        let (ms, _) = wait_condition(bed, &ns, name, "Ready", "True", "Available").await;
        assert_eq!(
            ms.pointer("/status/observedGeneration"),
            ms.pointer("/metadata/generation"),
            "{name}: {ms}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscaled_replicas_are_never_set_back() {
    let bed = testbed();
    let ns = bed.namespace("no-fight");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "request-rate.yaml");
    wait_ready(bed, &ns, "api").await;
    bed.kubectl_ok(&["scale", "deployment/api", "-n", &ns, "--replicas=5"]);
    wait_for(
        "the Microservice to report 5 desired replicas",
        TIMEOUT,
        || async {
            let ms = get(bed, &ns, "ms", "api")?;
            (ms["status"]["desiredReplicas"] == 5).then_some(())
        },
    )
    .await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            replicas(bed, &ns, "api"),
            5,
            "the controller set kubectl's replica count back"
        );
    }

    // Turning autoscaling on for a fixed-size service keeps its count (never drops to 1).
    let fixed = "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: steady}\nspec:\n  image: registry.example/steady:1\n  replicas: 3\n";
    assert!(apply_yaml(bed, &ns, fixed).status.success());
    wait_ready(bed, &ns, "steady").await;
    assert_eq!(replicas(bed, &ns, "steady"), 3);
    bed.kubectl_ok(&[
        "patch", "ms", "steady", "-n", &ns, "--type=json", "-p",
        r#"[{"op":"remove","path":"/spec/replicas"},{"op":"add","path":"/spec/autoscaling","value":{"minReplicas":1,"maxReplicas":10,"requestRate":{"targetPerReplica":10}}}]"#,
    ]);
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            replicas(bed, &ns, "steady"),
            3,
            "turning autoscaling on changed the replica count"
        );
    }
    let ms = wait_ready(bed, &ns, "steady").await;
    assert_eq!(ms["status"]["scalingEngine"], "Shoal");
    let managed = bed.kubectl_ok(&[
        "get",
        "deployment",
        "steady",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let deployment: Value = serde_json::from_str(&managed).expect("json");
    let owners: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|m| m["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        owners,
        vec!["shoal-autoscaler"],
        "spec.replicas belongs to the autoscaler's manager"
    );
}

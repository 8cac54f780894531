//! Every refusal shows up where users look: a child the apiserver refuses gives
//! `Ready=False, reason=ApplyFailed` naming the field, and pods the ReplicaSet cannot
//! create give `Ready=False, reason=FailedCreate` long before the progress deadline.

use std::time::Duration;

use shoal_e2e::testbed;

use crate::helpers::*;

/// One reconcile (plus the watch delay): far below the backoff's later steps and the
/// 600 s progress deadline.
const ONE_RECONCILE: Duration = Duration::from_secs(20);

/// Waits at most [`ONE_RECONCILE`] for Ready=False with `reason`; returns its message.
async fn wait_refused(bed: &shoal_e2e::TestBed, ns: &str, name: &str, reason: &str) -> String {
    let (_, message) = shoal_e2e::wait_for(
        &format!("{name} Ready=False ({reason})"),
        ONE_RECONCILE,
        || async {
            let ms = get(bed, ns, "ms", name)?;
            let c = condition(&ms, "Ready")?;
            let current =
                ms.pointer("/status/observedGeneration") == ms.pointer("/metadata/generation");
            (c.0 == "False" && c.1 == reason && current).then_some((ms, c.2))
        },
    )
    .await;
    message
}

/// Waits for a Warning Event with `reason` whose message contains `text`; returns the messages.
async fn wait_warning(bed: &shoal_e2e::TestBed, ns: &str, reason: &str, text: &str) -> String {
    shoal_e2e::wait_for(
        &format!("a Warning Event {reason} about {text}"),
        ONE_RECONCILE,
        || async {
            // `kubectl get events` lists core/v1 Events, whose note is `message`.
            let messages = bed.kubectl_ok(&[
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                &format!("reason={reason},type=Warning"),
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            messages.contains(text).then_some(messages)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn children_the_apiserver_refuses_give_apply_failed_naming_the_field() {
    let bed = testbed();
    let ns = bed.namespace("apply-failed");
    let _op = bed.operator(&ns, &[]);
    // Admitted (maxSurge is int-or-string), refused when the Deployment is applied.
    apply(
        bed,
        &ns,
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: surge}\nspec:\n  image: registry.example/surge:1\n  rollout: {maxSurge: half}\n",
    );
    let message = wait_refused(bed, &ns, "surge", "ApplyFailed").await;
    assert!(
        message.contains("Deployment surge") && message.contains("maxSurge"),
        "the message names the child and the field: {message}"
    );
    wait_warning(bed, &ns, "ApplyFailed", "maxSurge").await;
    assert!(
        get(bed, &ns, "deployment", "surge").is_none(),
        "nothing was created"
    );

    // An env var name the schema admits (a string) but the Deployment's validation refuses
    // (not printable ASCII): the same, naming that field. (An entry without a name is
    // refused at admission now that env has EnvVar's own schema.)
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "surge",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"rollout":null,"env":[{"name":"DÉJÀ","value":"x"}]}}"#,
    ]);
    let message = wait_refused(bed, &ns, "surge", "ApplyFailed").await;
    assert!(
        message.contains("env[0].name"),
        "the message names the field: {message}"
    );

    // Fixing the spec resumes (the change wakes the reconcile; no waiting out the backoff).
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "surge",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"env":[{"name":"X","value":"x"}]}}"#,
    ]);
    wait_ready(bed, &ns, "surge").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_refused_by_pod_security_give_failed_create_and_the_defaults_are_admitted() {
    let bed = testbed();
    let ns = restricted_namespace(bed, "failed-create");
    let _op = bed.operator(&ns, &[]);
    // A container that asks for privilege escalation: Pod Security refuses its pods.
    apply(
        bed,
        &ns,
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: escalate}\nspec:\n  image: registry.example/escalate:1\n  securityContext: {allowPrivilegeEscalation: true}\n",
    );
    let message = wait_refused(bed, &ns, "escalate", "FailedCreate").await;
    assert!(
        message.contains("PodSecurity") && message.contains("allowPrivilegeEscalation"),
        "the ReplicaSet's reason: {message}"
    );
    // Back to Shoal's defaults: admitted, Ready.
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "escalate",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/securityContext"}]"#,
    ]);
    wait_ready(bed, &ns, "escalate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_becomes_ready_under_pod_security_restricted() {
    let bed = testbed();
    let ns = restricted_namespace(bed, "restricted");
    let _op = bed.operator(&ns, &[]);
    let examples = [
        ("minimal.yaml", "hello"),
        ("web-with-ingress.yaml", "checkout"),
        ("request-rate.yaml", "api"),
        ("cpu-only.yaml", "worker"),
    ];
    for (file, _) in examples {
        apply_example(bed, &ns, file);
    }
    for (_, name) in examples {
        wait_ready(bed, &ns, name).await;
    }
    let pods = bed.kubectl_ok(&["get", "pods", "-n", &ns, "-o", "name"]);
    assert!(
        pods.lines().count() >= examples.len(),
        "pods were admitted: {pods}"
    );
}

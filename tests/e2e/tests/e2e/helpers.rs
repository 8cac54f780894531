//! Small helpers over kubectl output.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_e2e::{TestBed, audit, repo_root, wait_for};

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// `kubectl get -o json`, or None when the object does not exist.
pub fn get(bed: &TestBed, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let out = bed.kubectl(&["get", "-n", ns, kind, name, "-o", "json"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "kubectl get {kind} {name}: {err}"
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("kubectl json"))
}

/// The messages of the Events of `reason` about the object `name`.
pub fn events(bed: &TestBed, ns: &str, name: &str, reason: &str) -> Vec<String> {
    bed.kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        &format!("reason={reason},involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect()
}

/// Applies an example from manifests/examples into the namespace.
pub fn apply_example(bed: &TestBed, ns: &str, file: &str) {
    let path = repo_root().join("manifests/examples").join(file);
    bed.kubectl_ok(&["apply", "-n", ns, "-f", &path.to_string_lossy()]);
}

/// Applies YAML from a string.
pub fn apply_yaml(bed: &TestBed, ns: &str, yaml: &str) -> std::process::Output {
    bed.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)
}

/// The status of condition `type_` of a Microservice: (status, reason, message).
pub fn condition(ms: &Value, type_: &str) -> Option<(String, String, String)> {
    ms.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Waits until the Microservice is Ready=True for its current generation; returns it.
pub async fn wait_ready(bed: &TestBed, ns: &str, name: &str) -> Value {
    wait_for(
        &format!("Microservice {ns}/{name} Ready=True"),
        TIMEOUT,
        || async {
            let ms = get(bed, ns, "microservice", name)?;
            let ready = condition(&ms, "Ready")?.0 == "True";
            let current =
                ms.pointer("/status/observedGeneration") == ms.pointer("/metadata/generation");
            (ready && current).then_some(ms)
        },
    )
    .await
}

/// Waits until `kind/name` no longer exists.
pub async fn wait_gone(bed: &TestBed, ns: &str, kind: &str, name: &str) {
    wait_for(
        &format!("{kind} {ns}/{name} to be deleted"),
        TIMEOUT,
        || async { get(bed, ns, kind, name).is_none().then_some(()) },
    )
    .await
}

/// Waits until `kind/name` exists; returns it.
pub async fn wait_exists(bed: &TestBed, ns: &str, kind: &str, name: &str) -> Value {
    wait_for(&format!("{kind} {ns}/{name} to exist"), TIMEOUT, || async {
        get(bed, ns, kind, name)
    })
    .await
}

/// `.spec.replicas` of a Deployment.
pub fn replicas(bed: &TestBed, ns: &str, name: &str) -> i64 {
    get(bed, ns, "deployment", name)
        .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_i64))
        .unwrap_or(-1)
}

/// Applies YAML and fails the test with kubectl's message if it is refused.
pub fn apply(bed: &TestBed, ns: &str, yaml: &str) {
    let out = apply_yaml(bed, ns, yaml);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until condition `type_` of Microservice `name` has this status and reason;
/// returns the Microservice and the condition's message.
pub async fn wait_condition(
    bed: &TestBed,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> (Value, String) {
    wait_for(
        &format!("{name} {type_}={status} ({reason})"),
        TIMEOUT,
        || async {
            let ms = get(bed, ns, "ms", name)?;
            let c = condition(&ms, type_)?;
            (c.0 == status && c.1 == reason).then_some((ms, c.2))
        },
    )
    .await
}

/// Waits until the operator's writes in `ns` stop changing; returns how many there are.
pub async fn settled_writes(bed: &TestBed, ns: &str) -> usize {
    let audit_log = bed.audit_log();
    let mut settled = audit::writes(&audit_log, ns, "shoal/").len();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let now = audit::writes(&audit_log, ns, "shoal/").len();
        if now == settled {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the operator kept writing: {now} writes"
        );
        settled = now;
    }
}

/// Writes of the operator to `resource/name` in `ns`.
pub fn writes_to(bed: &TestBed, ns: &str, resource: &str, name: &str) -> usize {
    audit::writes(&bed.audit_log(), ns, "shoal/")
        .iter()
        .filter(|w| {
            w.object_ref.as_ref().is_some_and(|o| {
                o.resource == resource && o.name == name && o.subresource.is_empty()
            })
        })
        .count()
}

/// Writes of the operator in `ns` per `(resource, name)` of the object itself (not its
/// subresources), from one reading of the audit log.
pub fn writes_per_object(bed: &TestBed, ns: &str) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for w in audit::writes(&bed.audit_log(), ns, "shoal/") {
        if let Some(o) = w.object_ref.filter(|o| o.subresource.is_empty()) {
            *counts.entry((o.resource, o.name)).or_default() += 1;
        }
    }
    counts
}

/// A fresh namespace for `test` where Pod Security `restricted` is enforced.
pub fn restricted_namespace(bed: &TestBed, test: &str) -> String {
    let ns = bed.namespace(test);
    bed.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    ns
}

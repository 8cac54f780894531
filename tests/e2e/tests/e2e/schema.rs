//! What the apiserver refuses at admission, from the CRD's schema and CEL rules: typos in
//! the Kubernetes types Shoal reuses (`env`, `envFrom`, `resources`) with
//! `--validate=strict`, and each CEL rule with a message naming the field.

use shoal_e2e::testbed;

fn microservice(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

/// `kubectl apply --dry-run=server --validate=strict`: Ok(stdout) or Err(stderr).
fn dry_run(ns: &str, yaml: &str) -> Result<String, String> {
    let out = testbed().kubectl_stdin(
        &[
            "apply",
            "-n",
            ns,
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
        ],
        yaml,
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apiserver_refuses_typos_and_broken_rules_naming_the_field() {
    let bed = testbed();
    let ns = bed.namespace("schema");
    let cases = [
        (
            "  image: a:1\n  env: [{name: A, valueFORM: {secretKeyRef: {name: s, key: k}}}]\n",
            "spec.env[0].valueFORM",
        ),
        (
            "  image: a:1\n  envFrom: [{secretRef: {name: s}, prefixx: A_}]\n",
            "spec.envFrom[0].prefixx",
        ),
        (
            "  image: a:1\n  resources: {requets: {cpu: 100m}}\n",
            "spec.resources.requets",
        ),
        (
            "  image: 'registry.example/app:1 '\n",
            "spec.image must not contain whitespace",
        ),
        (
            "  image: a:1\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}, fallback: {replicas: 4}}\n",
            "spec.autoscaling.fallback.replicas must be less than or equal to spec.autoscaling.maxReplicas",
        ),
        (
            "  image: a:1\n  config: {'1ST': v}\n",
            "spec.config keys must be environment variable names",
        ),
        (
            "  image: a:1\n  replicas: 3\n  disruption: {maxUnavailable: 1, minAvailable: 2}\n",
            "spec.disruption: set maxUnavailable or minAvailable, not both",
        ),
        (
            "  image: a:1\n  schedules: [{name: r, schedule: '* * *'}]\n",
            "spec.schedules[].schedule must be five cron fields",
        ),
        (
            "  image: a:1\n  schedules: [{name: r, schedule: '@hourly'}, {name: r, schedule: '@daily'}]\n",
            "spec.schedules[1]: Duplicate value",
        ),
        (
            "  image: a:1\n  schedules: [{name: Nightly, schedule: '@daily'}]\n",
            "spec.schedules[].name must be lowercase letters",
        ),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let refused = dry_run(&ns, &microservice(&format!("bad-{i}"), spec))
            .expect_err(&format!("refused: {spec}"));
        assert!(
            refused.contains(field),
            "{spec:?}: the refusal names {field:?}: {refused}"
        );
    }
    // The same without the mistakes is admitted.
    dry_run(
        &ns,
        &microservice(
            "good",
            "  image: a:1\n  env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n  envFrom: [{secretRef: {name: s}, prefix: A_}]\n  resources: {requests: {cpu: 100m}}\n  config: {LOG_LEVEL: debug, app.name: x}\n  replicas: 3\n  disruption: {minAvailable: 2}\n",
        ),
    )
    .expect("a valid Microservice is admitted");
    // `kubectl explain` documents the subfields.
    let explain = bed.kubectl_ok(&["explain", "microservice.spec.env.valueFrom"]);
    assert!(
        explain.contains("secretKeyRef"),
        "kubectl explain shows env's subfields: {explain}"
    );
}

//! Bad input: the CRD's schema rules (evaluated client-side with the same CEL rules the
//! apiserver runs) and the operator's own validation refuse it with a message naming the field.

mod support;

use shoal::validate::validate;

const BASE: &str =
    "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: bad}\nspec:\n";

fn cel_errors(spec: &str) -> String {
    let ms = support::microservice_from_yaml(&format!("{BASE}{spec}"));
    match kube::core::cel::validate_cel(&ms) {
        Ok(()) => String::new(),
        Err(errors) => format!("{errors:?}"),
    }
}

#[test]
fn schema_rules_refuse_bad_specs_naming_the_field() {
    let cases = [
        ("  image: ''\n", "spec.image must not be empty"),
        ("  image: '  '\n", "spec.image must not be empty"),
        (
            "  image: x\n  port: 0\n",
            "spec.port must be between 1 and 65535",
        ),
        (
            "  image: x\n  port: 70000\n",
            "spec.port must be between 1 and 65535",
        ),
        (
            "  image: x\n  replicas: 2\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}}\n",
            "spec.replicas and spec.autoscaling are mutually exclusive",
        ),
        (
            "  image: x\n  autoscaling: {minReplicas: 5, maxReplicas: 3, cpu: {targetUtilization: 50}}\n",
            "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 0}}\n",
            "spec.autoscaling.cpu.targetUtilization must be greater than 0",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 0}}\n",
            "spec.autoscaling.requestRate.targetPerReplica must be greater than 0",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3}\n",
            "spec.autoscaling needs at least one target",
        ),
        (
            "  image: x\n  ingress: {host: 'Not A Host!'}\n",
            "spec.ingress.host must be a lowercase DNS name",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: nope}\n",
            "spec.ingress.path must start with '/'",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: /api//v1}\n",
            "spec.ingress.path must not contain '//'",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: '//'}\n",
            "spec.ingress.path must not contain '//'",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: /a/../b}\n",
            "spec.ingress.path must not contain '//'",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: /a%2Fb}\n",
            "spec.ingress.path must not contain '//'",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: /a/.}\n",
            "spec.ingress.path must not contain '//'",
        ),
        (
            "  image: x\n  service: {port: 0}\n",
            "spec.service.port must be between 1 and 65535",
        ),
        (
            "  image: x\n  replicas: -1\n",
            "spec.replicas must not be negative",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}, behavior: {scaleUp: {policies: []}}}\n",
            "policies must specify at least one policy",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}, behavior: {scaleDown: {tolerance: '-0.1'}}}\n",
            "tolerance must be a non-negative quantity",
        ),
        (
            "  image: x\n  metrics: {port: 0}\n",
            "spec.metrics.port must be between 1 and 65535",
        ),
        (
            "  image: x\n  metrics: {path: metrics}\n",
            "spec.metrics.path must start with '/'",
        ),
        (
            "  image: 'registry.example/app:1 '\n",
            "spec.image must not contain whitespace",
        ),
        (
            "  image: \"registry.example/app\\t:1\"\n",
            "spec.image must not contain whitespace",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}, fallback: {replicas: 4}}\n",
            "spec.autoscaling.fallback.replicas must be less than or equal to spec.autoscaling.maxReplicas",
        ),
        (
            "  image: x\n  config: {'1ST': v}\n",
            "spec.config keys must be environment variable names",
        ),
        (
            "  image: x\n  config: {'a:b': v}\n",
            "spec.config keys must be environment variable names",
        ),
        (
            "  image: x\n  replicas: 3\n  disruption: {maxUnavailable: 1, minAvailable: 2}\n",
            "spec.disruption: set maxUnavailable or minAvailable, not both",
        ),
    ];
    for (spec, message) in cases {
        let errors = cel_errors(spec);
        assert!(
            errors.contains(message),
            "spec {spec:?}: expected {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn valid_variants_pass_the_schema_rules() {
    for spec in [
        "  image: x\n",
        "  image: x\n  ingress: {host: '*.example.com'}\n",
        "  image: x\n  ingress: {host: a.example.com, path: /api/v1/}\n",
        "  image: x\n  ingress: {host: a.example.com, path: /a.b/..c/.well-known}\n",
        "  image: x\n  metrics: {enabled: false}\n",
        "  image: x\n  config: {LOG_LEVEL: debug, app.name: shop, -x: '1', _y: '2'}\n",
        "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}, fallback: {replicas: 3}}\n",
        "  image: x\n  replicas: 3\n  disruption: {minAvailable: '50%'}\n",
        "  image: x\n  metrics: {port: 9090, path: /internal/metrics}\n",
        "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 0.5}}\n",
        "  image: x\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}, behavior: {scaleUp: {tolerance: 50m}, scaleDown: {tolerance: '0.2'}}}\n",
    ] {
        assert_eq!(cel_errors(spec), "", "spec {spec:?} should be valid");
    }
}

fn operator_error(spec: &str, name: &str) -> String {
    let mut ms = support::microservice_from_yaml(&format!("{BASE}{spec}"));
    ms.metadata.name = Some(name.to_string());
    match validate(&ms) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn operator_validation_names_the_field() {
    let cases = [
        ("  image: x\n", "1st-service", "metadata.name"),
        (
            "  image: x\n  resources: {requests: {cpu: banana}}\n",
            "ok",
            "spec.resources.requests.cpu",
        ),
        (
            "  image: x\n  config: {'bad key': v}\n",
            "ok",
            "spec.config.bad key",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}}\n",
            "ok",
            "spec.resources.requests.cpu",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5, query: 'sum(rate(x[1m])'}}\n",
            "ok",
            "spec.autoscaling.requestRate.query",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5, selector: 'code=~'}}\n",
            "ok",
            "spec.autoscaling.requestRate.selector",
        ),
        (
            "  image: x\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}, behavior: {scaleUp: {tolerance: ten}}}\n",
            "ok",
            "spec.autoscaling.behavior.scaleUp.tolerance",
        ),
        (
            "  image: x\n  schedules: [{name: r, schedule: '61 * * * *'}]\n",
            "ok",
            "spec.schedules[0].schedule",
        ),
        (
            "  image: x\n  schedules: [{name: a-task-name-long-enough-to-overflow-the-cronjob, schedule: '@daily'}]\n",
            "a-service-with-a-long-name",
            "spec.schedules[0].name",
        ),
        (
            "  image: x\n  ingress: {host: a.example.com, path: /api//v1}\n",
            "ok",
            "spec.ingress.path",
        ),
    ];
    for (spec, name, field) in cases {
        let error = operator_error(spec, name);
        assert!(
            error.starts_with(field),
            "spec {spec:?} name {name}: expected field {field}, got {error:?}"
        );
    }
    assert_eq!(operator_error("  image: x\n", "fine-name"), "");
}

/// The CRD's rule on `spec.ingress.path` and the operator's own check agree, on paths the
/// apiserver refuses in an Ingress and on paths it takes.
#[test]
fn ingress_path_rule_and_operator_validation_agree() {
    for (path, refused) in [
        ("/", false),
        ("/api", false),
        ("/api/v1/", false),
        ("/a.b/..c/.well-known", false),
        ("/a%2", false),
        ("//", true),
        ("/api//v1", true),
        ("/a/./b", true),
        ("/a/../b", true),
        ("/a%2fb", true),
        ("/a%2Fb", true),
        ("/a/.", true),
        ("/a/..", true),
    ] {
        let spec = format!("  image: x\n  ingress: {{host: a.example.com, path: '{path}'}}\n");
        let cel = cel_errors(&spec);
        assert_eq!(!cel.is_empty(), refused, "path {path:?}: CEL says {cel:?}");
        let operator = operator_error(&spec, "ok");
        assert_eq!(
            operator.starts_with("spec.ingress.path"),
            refused,
            "path {path:?}: operator says {operator:?}"
        );
        assert_eq!(
            shoal::validate::ingress_path_problem(path).is_some(),
            refused,
            "path {path:?}"
        );
    }
}

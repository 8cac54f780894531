//! Generated files are committed; these tests fail when they are stale (`make generate`).

mod support;

#[test]
fn crd_yaml_matches_shoal_crd_output() {
    let generated = shoal::app::crd_yaml().expect("CRD serialises");
    let committed = std::fs::read_to_string(support::repo_root().join("crds/microservice.yaml"))
        .expect("crds/microservice.yaml exists");
    assert!(
        committed == generated,
        "crds/microservice.yaml is stale: run `make generate` (shoal crd > crds/microservice.yaml)"
    );
}

#[test]
fn crd_carries_the_cel_rules_and_list_map_conditions() {
    let crd =
        std::fs::read_to_string(support::repo_root().join("crds/microservice.yaml")).expect("crd");
    for rule in [
        "!(has(self.replicas) && has(self.autoscaling))",
        "self.minReplicas <= self.maxReplicas",
        "self >= 1 && self <= 65535",
        "self.trim() != ''",
        "self > 0.0",
    ] {
        assert!(crd.contains(rule), "CEL rule {rule:?} missing from the CRD");
    }
    assert!(
        crd.contains("x-kubernetes-list-type: map"),
        "conditions must be a list-map"
    );
    assert!(
        crd.contains("- ms\n") && crd.contains("- msvc\n"),
        "short names ms and msvc"
    );
    assert!(crd.contains("status: {}"), "status subresource");
}

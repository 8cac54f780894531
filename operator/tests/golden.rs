//! Golden files: the rendered children of every example Microservice, committed under
//! `tests/golden/` and regenerated with `UPDATE_GOLDEN=1` (`make generate`).

mod support;

use shoal::controller::render as build;
use shoal::validate;

fn render_yaml(children: &build::Children) -> String {
    let mut docs = vec![
        serde_yaml::to_string(&children.config_map).expect("yaml"),
        serde_yaml::to_string(&children.deployment).expect("yaml"),
        serde_yaml::to_string(&children.service).expect("yaml"),
    ];
    if let Some(ingress) = &children.ingress {
        docs.push(serde_yaml::to_string(ingress).expect("yaml"));
    }
    if let Some(hpa) = &children.hpa {
        docs.push(serde_yaml::to_string(hpa).expect("yaml"));
    }
    if let Some(pdb) = &children.pod_disruption_budget {
        docs.push(serde_yaml::to_string(pdb).expect("yaml"));
    }
    for cron_job in &children.cron_jobs {
        docs.push(serde_yaml::to_string(cron_job).expect("yaml"));
    }
    if let Some(pod_monitor) = &children.pod_monitor {
        docs.push(serde_yaml::to_string(pod_monitor).expect("yaml"));
    }
    docs.join("---\n")
}

#[test]
fn every_example_renders_as_its_golden_file() {
    let examples = support::examples();
    assert!(
        examples.len() >= 4,
        "expected the four examples, found {}",
        examples.len()
    );
    for (stem, yaml) in examples {
        let ms = support::microservice_from_yaml(&yaml);
        let valid =
            validate::validate(&ms).unwrap_or_else(|e| panic!("example {stem} is invalid: {e}"));
        let rendered = render_yaml(&build::render(&valid));
        support::assert_golden(
            support::repo_root().join(format!("tests/golden/{stem}.yaml")),
            &rendered,
        );
    }
}

#[test]
fn examples_pass_the_crd_schema_rules() {
    for (stem, yaml) in support::examples() {
        let ms = support::microservice_from_yaml(&yaml);
        if let Err(errors) = kube::core::cel::validate_cel(&ms) {
            panic!("example {stem} breaks a CEL rule: {errors:?}");
        }
    }
}

//! The chart's alerts: `promtool check rules` on the one rules file the chart ships
//! (`charts/shoal/rules/shoal.rules.yaml`) and `promtool test rules` on its unit tests
//! (`tests/alerts/shoal.rules.test.yaml`), with a firing case for every alert.
//!
//! These tests run the real `promtool` (Debian's `prometheus` package: `make deps`) and fail,
//! never skip, when it is missing.

mod support;

use std::process::Command;

use serde_yaml::Value;

const RULES: &str = "charts/shoal/rules/shoal.rules.yaml";
const TESTS: &str = "tests/alerts/shoal.rules.test.yaml";

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .current_dir(support::repo_root())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool could not be run ({e}): install Debian's prometheus package (make deps)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(support::repo_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn alert_names() -> Vec<String> {
    let rules = yaml(RULES);
    let names: Vec<String> = rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    assert!(names.len() >= 7, "the alerts: {names:?}");
    names
}

#[test]
fn rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_passes_its_promtool_unit_tests() {
    let out = promtool(&["test", "rules", TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_firing_and_a_silent_case() {
    let tests = yaml(TESTS);
    let cases: Vec<&Value> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| {
            t["alert_rule_test"]
                .as_sequence()
                .map(|s| s.iter().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    for alert in alert_names() {
        let of_alert = || {
            cases
                .iter()
                .filter(|c| c["alertname"].as_str() == Some(&alert))
        };
        let fires =
            of_alert().any(|c| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()));
        let silent =
            of_alert().any(|c| c["exp_alerts"].as_sequence().is_some_and(|a| a.is_empty()));
        assert!(fires, "{alert} has no unit test where it fires ({TESTS})");
        assert!(
            silent,
            "{alert} has no unit test where it stays silent ({TESTS})"
        );
    }
}

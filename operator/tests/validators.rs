//! Third-party validators on what Shoal ships: kube-score and kubectl-validate (both built
//! from the Go module proxy by hack/tools.sh, which `make test` runs through `make tools`)
//! check the rendered children of every example (the golden files, `tests/golden/`) and the
//! chart (`helm template`, with its defaults and with every optional object on).
//!
//! `docs/validators.md` lists the findings that are left, each with a reason, and the
//! kube-score checks that are switched off, each with a reason. The test fails, naming the
//! finding, when a finding appears that the list does not hold, and when a listed finding no
//! longer appears (so the list stays true). A tool that is missing fails the test, never skips.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Kubernetes version kube-score checks against (the test bed's minor version).
const KUBE_SCORE_VERSION: &str = "v1.36";

/// Where hack/tools.sh installs the tools ($SHOAL_TOOLS, default ~/.cache/shoal/tools).
fn tools_dir() -> PathBuf {
    std::env::var_os("SHOAL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/shoal/tools")
        })
}

/// A file or directory hack/tools.sh made: it must exist.
fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash hack/tools.sh` (make test does)",
        path.display()
    );
    path
}

/// The text after `prefix` up to `end` in a repository file: how hack/tools.sh reads the
/// pinned versions too.
fn pinned(file: &str, prefix: &str, end: char) -> String {
    let text = std::fs::read_to_string(support::repo_root().join(file)).expect("read pin file");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{file} has no line starting with {prefix}"));
    line.split(end).next().unwrap_or_default().to_string()
}

/// The OpenAPI v3 schemas of the test bed's Kubernetes (tests/cluster/build.sh's K8S),
/// laid out by hack/tools.sh for `--local-schemas` (kubectl-validate's built-in schemas stop
/// at 1.30 and it would fetch newer ones from GitHub).
fn kube_schemas() -> PathBuf {
    tool(&format!(
        "kube-openapi-{}",
        pinned("tests/cluster/build.sh", "K8S=", ' ')
    ))
}

/// The Prometheus Operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule), of the
/// version the end-to-end tests install.
fn prometheus_operator_crds() -> PathBuf {
    tool(&format!(
        "prometheus-operator-crds-{}",
        pinned(
            "tests/e2e/src/lib.rs",
            "pub const PROMETHEUS_OPERATOR_VERSION: &str = \"",
            '"'
        )
    ))
}

/// A scratch directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("shoal-validators-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The chart renders that are checked: name and extra `helm template` arguments.
const CHART_RENDERS: &[(&str, &[&str])] = &[
    ("chart", &[]),
    (
        "chart-all",
        &[
            "--set",
            "replicas=2,networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true,\
             metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true",
        ],
    ),
];

/// Every input, by source name: one golden file per example, and the chart renders (written
/// into `scratch`). The golden files must cover every example.
fn inputs(scratch: &Path) -> Vec<(String, PathBuf)> {
    let root = support::repo_root();
    let mut out = Vec::new();
    let examples: Vec<String> = support::examples().into_iter().map(|(s, _)| s).collect();
    assert!(
        examples.len() >= 4,
        "expected the four examples, found {examples:?}"
    );
    for stem in examples {
        let golden = root.join(format!("tests/golden/{stem}.yaml"));
        assert!(
            golden.exists(),
            "{} is missing: run `make generate`",
            golden.display()
        );
        out.push((stem, golden));
    }
    for (name, extra) in CHART_RENDERS {
        let rendered = Command::new(support::helm())
            .current_dir(&root)
            .args([
                "template",
                "shoal",
                "charts/shoal",
                "--namespace",
                "shoal-system",
            ])
            .args(*extra)
            .output()
            .expect("running helm template");
        assert!(
            rendered.status.success(),
            "helm template {extra:?} failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let path = scratch.join(format!("{name}.yaml"));
        std::fs::write(&path, &rendered.stdout).expect("write chart render");
        out.push(((*name).to_string(), path));
    }
    out
}

/// Finding key -> what the tool said. Keys are `<tool> <source> <Kind>/<name> <check>`.
type Findings = BTreeMap<String, String>;

/// kube-score's arguments; `ignored` are the switched-off checks of docs/validators.md.
fn kube_score_args(ignored: &[String]) -> Vec<String> {
    let mut args = vec![
        "score".to_string(),
        "--output-format".to_string(),
        "json".to_string(),
        "--color".to_string(),
        "never".to_string(),
        "--kubernetes-version".to_string(),
        KUBE_SCORE_VERSION.to_string(),
    ];
    for check in ignored {
        // A row may name one of kube-score's own switches (`--ignore-container-cpu-limit`).
        if !check.starts_with("--") {
            args.push("--ignore-test".to_string());
        }
        args.push(check.clone());
    }
    args
}

/// Runs kube-score on one file and returns its findings: every check that was not skipped
/// and did not get the full grade (10).
fn kube_score(source: &str, file: &Path, ignored: &[String]) -> Findings {
    let out = Command::new(tool("kube-score"))
        .args(kube_score_args(ignored))
        .arg(file)
        .output()
        .expect("running kube-score");
    // kube-score exits 1 when it has a critical finding; its JSON on stdout is what counts.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-score on {} gave no JSON ({e}), exit {:?}:\n{}{}",
            file.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut findings = Findings::new();
    for object in report
        .as_array()
        .expect("kube-score JSON is a list of objects")
    {
        let kind = object["type_meta"]["kind"].as_str().unwrap_or("?");
        let name = object["object_meta"]["name"].as_str().unwrap_or("?");
        for check in object["checks"].as_array().into_iter().flatten() {
            let grade = check["grade"].as_i64().expect("a check has a grade");
            if check["skipped"].as_bool() == Some(true) || grade >= 10 {
                continue;
            }
            let id = check["check"]["id"].as_str().expect("a check has an id");
            let said: Vec<String> = check["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let path = c["path"].as_str().unwrap_or_default();
                    let summary = c["summary"].as_str().unwrap_or_default();
                    if path.is_empty() {
                        summary.to_string()
                    } else {
                        format!("({path}) {summary}")
                    }
                })
                .collect();
            findings.insert(
                format!("kube-score {source} {kind}/{name} {id}"),
                said.join("; "),
            );
        }
    }
    findings
}

/// The kinds of one YAML file's documents, with their names, in order (kubectl-validate
/// reports per document).
fn documents(file: &Path) -> Vec<(String, String)> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(file).expect("read input");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("input YAML parses"))
        .filter(|v| !v.is_null())
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or("?").to_string(),
                v["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// Runs kubectl-validate on one file and returns one finding per refused document.
fn kubectl_validate(source: &str, file: &Path) -> Findings {
    let root = support::repo_root();
    let out = Command::new(tool("kubectl-validate"))
        .current_dir(&root)
        .arg(file)
        .arg("--local-schemas")
        .arg(kube_schemas())
        .arg("--local-crds")
        .arg(format!("crds,{}", prometheus_operator_crds().display()))
        .args(["--output", "json"])
        .output()
        .expect("running kubectl-validate");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kubectl-validate on {} gave no JSON ({e}), exit {:?}:\n{}{}",
            file.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let statuses = kubectl_validate_statuses(&report, file);
    let docs = documents(file);
    assert_eq!(
        statuses.len(),
        docs.len(),
        "kubectl-validate reported {} results for the {} documents of {}:\n{report:#}",
        statuses.len(),
        docs.len(),
        file.display()
    );
    let mut findings = Findings::new();
    for ((kind, name), status) in docs.iter().zip(statuses) {
        if status["status"].as_str() == Some("Success") {
            continue;
        }
        let reason = status["reason"].as_str().unwrap_or("Failure");
        let message = status["message"].as_str().unwrap_or_default();
        findings.insert(
            format!("kubectl-validate {source} {kind}/{name} {reason}"),
            message.to_string(),
        );
    }
    assert!(
        out.status.success() == findings.is_empty(),
        "kubectl-validate's exit code ({:?}) disagrees with its report on {}: {findings:?}",
        out.status.code(),
        file.display()
    );
    findings
}

/// kubectl-validate's JSON is an object from file path to the list of per-document
/// statuses (or one status when the file could not be read).
fn kubectl_validate_statuses(report: &Value, file: &Path) -> Vec<Value> {
    let map = report
        .as_object()
        .unwrap_or_else(|| panic!("kubectl-validate JSON is not an object: {report}"));
    assert_eq!(map.len(), 1, "one file in, one entry out: {report:#}");
    let (_, entry) = map.iter().next().expect("one entry");
    match entry {
        Value::Array(list) => list.clone(),
        other => panic!(
            "kubectl-validate could not check {}: {other:#}",
            file.display()
        ),
    }
}

/// One allowlisted finding or ignored check of docs/validators.md.
struct Row {
    key: String,
    reason: String,
}

/// The rows of the markdown table between `<!-- name:begin -->` and `<!-- name:end -->`:
/// every cell but the last joined with spaces is the key (backticks dropped), the last is
/// the reason.
fn table(doc: &str, name: &str) -> Vec<Row> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/validators.md has no {begin}"));
    let stop = doc[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/validators.md has no {end}"));
    let mut rows = Vec::new();
    for line in doc[start + begin.len()..start + stop].lines() {
        let line = line.trim();
        if !line.starts_with('|') || line.starts_with("|-") || line.starts_with("| -") {
            continue;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').trim())
            .collect();
        let Some((reason, key)) = cells.split_last() else {
            continue;
        };
        rows.push(Row {
            key: key.join(" "),
            reason: reason.to_string(),
        });
    }
    // The header row names the columns.
    assert!(
        !rows.is_empty(),
        "the {name} table of docs/validators.md is empty"
    );
    rows.remove(0);
    for row in &rows {
        assert!(
            !row.reason.is_empty(),
            "docs/validators.md: `{}` has no reason",
            row.key
        );
    }
    rows
}

fn validators_doc() -> String {
    std::fs::read_to_string(support::repo_root().join("docs/validators.md"))
        .expect("docs/validators.md exists")
}

#[test]
fn findings_of_kube_score_and_kubectl_validate_are_the_listed_ones() {
    let doc = validators_doc();
    let ignored: Vec<String> = table(&doc, "kube-score-ignored")
        .into_iter()
        .map(|r| r.key)
        .collect();
    let allowed: BTreeMap<String, String> = table(&doc, "findings")
        .into_iter()
        .map(|r| (r.key, r.reason))
        .collect();

    let scratch = Scratch::new("run");
    let mut found = Findings::new();
    for (source, file) in inputs(&scratch.0) {
        found.extend(kube_score(&source, &file, &ignored));
        found.extend(kubectl_validate(&source, &file));
    }

    let new: Vec<String> = found
        .iter()
        .filter(|(k, _)| !allowed.contains_key(*k))
        .map(|(k, said)| format!("  | {} | (reason) |   <- {said}", k.replacen(' ', " | ", 3)))
        .collect();
    let gone: Vec<&String> = allowed.keys().filter(|k| !found.contains_key(*k)).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "the validators' findings differ from docs/validators.md.\n\
         New findings (fix them, or list them with a reason):\n{}\n\
         Listed findings that no longer appear (remove them from the list):\n{}",
        new.join("\n"),
        gone.iter()
            .map(|k| format!("  {k}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The tools are not vacuous: a Deployment with a typo and without resources is flagged by
/// both, and a Microservice with an unknown field is refused through the local CRD.
#[test]
fn validators_flag_a_bad_manifest() {
    let scratch = Scratch::new("bad");
    let bad = scratch.0.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: 1\n  \
         selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    \
         spec:\n      containers:\n      - name: app\n        image: registry.example/bad:1\n        \
         imagePullPolicy: Always\n        portz: []\n\
         ---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {name: bad}\n\
         spec: {image: registry.example/bad:1, port: 8080, replicaz: 2}\n",
    )
    .expect("write bad manifest");
    let score = kube_score("bad", &bad, &[]);
    assert!(
        score.contains_key("kube-score bad Deployment/bad container-resources"),
        "kube-score did not flag missing resources: {score:#?}"
    );
    let validate = kubectl_validate("bad", &bad);
    for kind in ["Deployment", "Microservice"] {
        assert!(
            validate
                .keys()
                .any(|k| k.starts_with(&format!("kubectl-validate bad {kind}/bad "))),
            "kubectl-validate did not refuse the {kind} with an unknown field: {validate:#?}"
        );
    }
}

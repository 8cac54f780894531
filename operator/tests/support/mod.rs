//! Shared helpers of the integration tests: the repository root and example fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

use shoal::crd::Microservice;

/// The workspace root (the directory holding `crds/`, `manifests/`, `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Parses a Microservice from YAML and gives it the metadata the apiserver would set.
pub fn microservice_from_yaml(yaml: &str) -> Microservice {
    let mut ms: Microservice =
        serde_yaml::from_str(yaml).expect("example parses as a Microservice");
    ms.metadata
        .namespace
        .get_or_insert_with(|| "default".to_string());
    ms.metadata.uid = Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_string());
    ms.metadata.generation = Some(1);
    ms
}

/// Every example Microservice under `manifests/examples/`, by file stem, sorted.
pub fn examples() -> Vec<(String, String)> {
    let dir = repo_root().join("manifests/examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("manifests/examples exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                stem,
                std::fs::read_to_string(&p).expect("example is readable"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Compares `actual` with the committed file, or rewrites it when UPDATE_GOLDEN=1.
pub fn assert_golden(path: PathBuf, actual: &str) {
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("golden file has a parent"))
            .expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `make generate` (UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} is stale: run `make generate` (UPDATE_GOLDEN=1 cargo test) and review the diff.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// The test bed's helm (`$CLUSTER_BIN/helm`, default `~/.cache/shoal/cluster-bin/helm`);
/// panics with the command that builds it when it is missing.
pub fn helm() -> PathBuf {
    let bin = std::env::var_os("CLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/shoal/cluster-bin")
        });
    let helm = bin.join("helm");
    assert!(
        helm.exists(),
        "{} is missing: run `make cluster-bin` (or set CLUSTER_BIN); the chart tests need the real helm",
        helm.display()
    );
    helm
}

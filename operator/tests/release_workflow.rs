//! The release workflow for a public CI (`.github/workflows/release.yml`) passes `actionlint`
//! (built from the Go module proxy by hack/tools.sh, which `make test` runs through
//! `make image`). It is only checked here, never run.

mod support;

use std::path::PathBuf;
use std::process::Command;

fn actionlint() -> PathBuf {
    let tools = std::env::var_os("SHOAL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/shoal/tools")
        });
    let bin = tools.join("actionlint");
    assert!(
        bin.exists(),
        "{} is missing: run `bash hack/tools.sh` (make test does)",
        bin.display()
    );
    bin
}

#[test]
fn release_workflow_passes_actionlint() {
    let root = support::repo_root();
    let workflow = root.join(".github/workflows/release.yml");
    assert!(workflow.exists(), "{}", workflow.display());
    let out = Command::new(actionlint())
        .current_dir(&root)
        .arg("-no-color")
        .arg(&workflow)
        .output()
        .expect("running actionlint");
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken workflow must fail it: the check is not vacuous.
    let broken = std::env::temp_dir().join(format!("shoal-broken-{}.yml", std::process::id()));
    std::fs::write(
        &broken,
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n",
    )
    .expect("write");
    let bad = Command::new(actionlint())
        .arg("-no-color")
        .arg(&broken)
        .output()
        .expect("running actionlint");
    let _ = std::fs::remove_file(&broken);
    assert!(
        !bad.status.success(),
        "actionlint accepted a broken workflow"
    );
}

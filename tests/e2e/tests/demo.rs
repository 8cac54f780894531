//! `make demo` as a test: the demo binary runs its whole scenario on its own test bed
//! (`demo --exit --fast`) and exits 0 only when every step happened (scale up, scale down,
//! a rollout, an automatic rollback, a manual rollback honoured). Its picture exists and its
//! series show the replicas following the load up and back down.

use std::path::Path;
use std::process::Command;

struct Row {
    phase: String,
    offered: f64,
    desired: i64,
}

fn rows(csv: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(csv)
        .unwrap_or_else(|e| panic!("the demo's series {}: {e}", csv.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name} in {header:?}"))
    };
    let (phase, offered, desired) = (col("phase"), col("offered_rps"), col("desired_replicas"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                phase: f[phase].to_string(),
                offered: f[offered].parse().expect("offered_rps"),
                desired: f[desired].parse().expect("desired_replicas"),
            }
        })
        .collect()
}

#[test]
fn the_demo_runs_its_whole_story_and_draws_it() {
    let dir = std::env::temp_dir().join(format!("shoal-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("output directory");
    let svg = dir.join("shoal-demo.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--exit", "--fast", "--out"])
        .arg(&svg)
        .output()
        .expect("running the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = dir.join("demo.log");
    std::fs::write(&log, format!("{stdout}\n--- stderr ---\n{stderr}")).expect("demo log");
    assert!(
        out.status.success(),
        "the demo failed ({}); its output (also in {}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        log.display()
    );
    for seen in [
        "RolledBack=True ProgressDeadlineExceeded",
        "Degraded=True ProgressDeadlineExceeded",
        "RolledBack=True ManualRollback",
        "canary promoted: :2.0 is the stable revision (weights seen: {25, 50})",
        "RolledBack=True CanaryAnalysisFailed",
        "canary aborted: :2.0 kept serving",
        "every step happened as expected",
    ] {
        assert!(
            stdout.contains(seen),
            "the demo's output lacks {seen:?}: {stdout}"
        );
    }

    // The picture: an SVG with the series drawn.
    let picture = std::fs::read_to_string(&svg)
        .unwrap_or_else(|e| panic!("the picture {}: {e}", svg.display()));
    assert!(picture.starts_with("<svg"), "not an SVG: {}", svg.display());
    assert!(
        picture.len() > 20_000 && picture.matches("<polyline").count() >= 20,
        "the picture is nearly empty ({} bytes)",
        picture.len()
    );
    assert!(picture.contains("offered load") && picture.contains("Replicas"));

    // The series: replicas rose with the load and fell after it.
    let rows = rows(&svg.with_extension("csv"));
    assert!(rows.len() >= 30, "only {} ticks recorded", rows.len());
    let in_phase = |p: &'static str| rows.iter().filter(move |r| r.phase == p);
    let warm = in_phase("warm-up")
        .map(|r| r.desired)
        .max()
        .expect("warm-up ticks");
    assert_eq!(warm, 1, "1 replica at 25 req/s");
    let ramp: Vec<i64> = in_phase("ramp").map(|r| r.desired).collect();
    assert!(
        ramp.last() > ramp.first(),
        "the replicas did not rise with the ramp: {ramp:?}"
    );
    let (peak, peak_load) = rows
        .iter()
        .filter(|r| ["ramp", "hold", "spike"].contains(&r.phase.as_str()))
        .map(|r| (r.desired, r.offered))
        .max_by_key(|(d, _)| *d)
        .expect("load ticks");
    assert!(peak >= 8, "peak of {peak} replicas for a 425 req/s spike");
    assert!(peak_load >= 275.0, "the peak came at {peak_load} req/s");
    let quiet: Vec<i64> = in_phase("quiet").map(|r| r.desired).collect();
    assert_eq!(
        quiet.last(),
        Some(&1),
        "the replicas did not fall back to 1 after the load: {quiet:?}"
    );
}

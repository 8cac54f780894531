//! Rollouts and rollbacks on the real control plane, where the real deployment controller
//! makes ReplicaSets and revisions. Test-bed convention: pods of an image tagged `:broken`
//! never become Ready (a KWOK stage of tests/cluster), so such a rollout fails.

use std::time::Duration;

use shoal_e2e::{TestBed, testbed, wait_for};

use crate::helpers::*;

fn ms_yaml(name: &str, image: &str, config: &str, rollout: &str) -> String {
    format!(
        "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: 2\n  config: {config}\n  rollout: {rollout}\n"
    )
}

fn image_of(bed: &TestBed, ns: &str, name: &str) -> String {
    get(bed, ns, "deployment", name)
        .and_then(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn config_map_of(bed: &TestBed, ns: &str, name: &str) -> String {
    get(bed, ns, "deployment", name)
        .and_then(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

async fn wait_image(bed: &TestBed, ns: &str, name: &str, image: &str) {
    wait_for(&format!("{name} to run {image}"), TIMEOUT, || async {
        (image_of(bed, ns, name) == image).then_some(())
    })
    .await
}

async fn hold_for(bed: &TestBed, ns: &str, name: &str, image: &str, seconds: u64) {
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            image_of(bed, ns, name),
            image,
            "Shoal replaced the held template"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn image_and_config_changes_roll_out_new_revisions() {
    let bed = testbed();
    let ns = bed.namespace("revisions");
    let _op = bed.operator(&ns, &[]);
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:1", "{A: '1'}", "{}"),
    );
    wait_condition(
        bed,
        &ns,
        "web",
        "Progressing",
        "True",
        "NewRevisionAvailable",
    )
    .await;
    let first_cm = config_map_of(bed, &ns, "web");

    // 1. Image change: RolloutInProgress, then NewRevisionAvailable; history grows.
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "web",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"registry.example/web:2"}}"#,
    ]);
    wait_image(bed, &ns, "web", "registry.example/web:2").await;
    let (ms, message) = wait_condition(
        bed,
        &ns,
        "web",
        "Progressing",
        "True",
        "NewRevisionAvailable",
    )
    .await;
    assert!(message.contains("registry.example/web:2"), "{message}");
    wait_for("a RolloutInProgress event", TIMEOUT, || async {
        (!events(bed, &ns, "web", "RolloutInProgress").is_empty()).then_some(())
    })
    .await;
    let history = ms["status"]["rollout"]["history"]
        .as_array()
        .expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["image"], "registry.example/web:2");
    assert_eq!(history[0]["outcome"], "Available");
    assert_eq!(history[1]["outcome"], "Superseded");
    assert_eq!(
        ms["status"]["rollout"]["lastGood"]["image"],
        "registry.example/web:2"
    );

    // 2. Config change alone: a new revision with a new ConfigMap.
    bed.kubectl_ok(&[
        "patch",
        "ms",
        "web",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"config":{"A":"2"}}}"#,
    ]);
    wait_for("the template to use a new ConfigMap", TIMEOUT, || async {
        let cm = config_map_of(bed, &ns, "web");
        (!cm.is_empty() && cm != first_cm).then_some(())
    })
    .await;
    bed.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=90s",
    ]);
    let cm = config_map_of(bed, &ns, "web");
    let data = get(bed, &ns, "configmap", &cm).expect("new config map");
    assert_eq!(data["data"]["A"], "2");
    assert!(
        get(bed, &ns, "configmap", &first_cm).is_some(),
        "the old config is kept while its revision is retained"
    );
    let (ms, _) = wait_condition(
        bed,
        &ns,
        "web",
        "Progressing",
        "True",
        "NewRevisionAvailable",
    )
    .await;
    assert_eq!(
        ms["status"]["rollout"]["history"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_rollout_is_rolled_back_and_not_retried() {
    let bed = testbed();
    let ns = bed.namespace("autorollback");
    let mut op = bed.operator(&ns, &[]);
    let rollout = "{progressDeadlineSeconds: 10}";
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:1", "{A: '1'}", rollout),
    );
    wait_ready(bed, &ns, "web").await;

    // 3. A broken image exceeds its progress deadline: Shoal restores revision 1.
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:broken", "{A: '1'}", rollout),
    );
    wait_image(bed, &ns, "web", "registry.example/web:broken").await;
    let (ms, message) = wait_condition(
        bed,
        &ns,
        "web",
        "RolledBack",
        "True",
        "ProgressDeadlineExceeded",
    )
    .await;
    assert!(
        message.contains("registry.example/web:1"),
        "names the restored revision: {message}"
    );
    assert_eq!(
        condition(&ms, "Degraded").map(|c| (c.0, c.1)),
        Some(("True".into(), "ProgressDeadlineExceeded".into()))
    );
    wait_image(bed, &ns, "web", "registry.example/web:1").await;
    bed.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=90s",
    ]);
    wait_for("a RolledBack warning event", TIMEOUT, || async {
        (!events(bed, &ns, "web", "RolledBack").is_empty()).then_some(())
    })
    .await;
    // Not retried across resyncs (3 s) and an operator restart.
    hold_for(bed, &ns, "web", "registry.example/web:1", 8).await;
    op.stop();
    let _op = bed.operator(&ns, &[]);
    hold_for(bed, &ns, "web", "registry.example/web:1", 8).await;
    let ms = get(bed, &ns, "ms", "web").expect("ms");
    assert_eq!(
        condition(&ms, "RolledBack").map(|c| c.0),
        Some("True".into())
    );
    // A later spec change rolls forward.
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:3", "{A: '1'}", rollout),
    );
    wait_image(bed, &ns, "web", "registry.example/web:3").await;
    wait_condition(
        bed,
        &ns,
        "web",
        "Progressing",
        "True",
        "NewRevisionAvailable",
    )
    .await;
    wait_condition(bed, &ns, "web", "RolledBack", "False", "NoRollback").await;
    wait_condition(bed, &ns, "web", "Degraded", "False", "Healthy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auto_rollback_a_failure_is_reported_only() {
    let bed = testbed();
    let ns = bed.namespace("norollback");
    let _op = bed.operator(&ns, &[]);
    let rollout = "{progressDeadlineSeconds: 10, autoRollback: false}";
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:1", "{}", rollout),
    );
    wait_ready(bed, &ns, "web").await;
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:broken", "{}", rollout),
    );
    let (ms, message) = wait_condition(
        bed,
        &ns,
        "web",
        "Degraded",
        "True",
        "ProgressDeadlineExceeded",
    )
    .await;
    assert!(message.contains("autoRollback is false"), "{message}");
    assert_eq!(
        condition(&ms, "RolledBack").map(|c| c.0),
        Some("False".into())
    );
    hold_for(bed, &ns, "web", "registry.example/web:broken", 6).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_rollout_undo_is_honoured_until_the_spec_changes() {
    let bed = testbed();
    let ns = bed.namespace("undo");
    let mut op = bed.operator(&ns, &[]);
    for (i, image) in [
        "registry.example/web:1",
        "registry.example/web:2",
        "registry.example/web:3",
    ]
    .iter()
    .enumerate()
    {
        apply(
            bed,
            &ns,
            &ms_yaml("web", image, &format!("{{A: '{}'}}", i + 1), "{}"),
        );
        wait_image(bed, &ns, "web", image).await;
        bed.kubectl_ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            &ns,
            "--timeout=90s",
        ]);
        wait_condition(
            bed,
            &ns,
            "web",
            "Progressing",
            "True",
            "NewRevisionAvailable",
        )
        .await;
    }

    // 5. Plain undo: back to revision 2, kept, reported.
    bed.kubectl_ok(&["rollout", "undo", "deployment/web", "-n", &ns]);
    let (_, message) =
        wait_condition(bed, &ns, "web", "RolledBack", "True", "ManualRollback").await;
    assert!(message.contains("registry.example/web:2"), "{message}");
    assert!(
        message.contains("revision 4"),
        "names the new revision number: {message}"
    );
    hold_for(bed, &ns, "web", "registry.example/web:2", 8).await;
    op.stop();
    let mut op = bed.operator(&ns, &[]);
    hold_for(bed, &ns, "web", "registry.example/web:2", 8).await;

    // 6. --to-revision restores that revision's image and its config.
    bed.kubectl_ok(&[
        "rollout",
        "undo",
        "deployment/web",
        "-n",
        &ns,
        "--to-revision=1",
    ]);
    wait_image(bed, &ns, "web", "registry.example/web:1").await;
    let cm = config_map_of(bed, &ns, "web");
    let config = get(bed, &ns, "configmap", &cm).expect("revision 1's ConfigMap still exists");
    assert_eq!(config["data"]["A"], "1");
    wait_condition(bed, &ns, "web", "RolledBack", "True", "ManualRollback").await;
    hold_for(bed, &ns, "web", "registry.example/web:1", 6).await;
    op.stop();
    let _op = bed.operator(&ns, &[]);

    // Editing the Microservice rolls forward.
    apply(
        bed,
        &ns,
        &ms_yaml("web", "registry.example/web:4", "{A: '4'}", "{}"),
    );
    wait_image(bed, &ns, "web", "registry.example/web:4").await;
    wait_condition(bed, &ns, "web", "RolledBack", "False", "NoRollback").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_config_maps_are_pruned_with_their_revisions() {
    let bed = testbed();
    let ns = bed.namespace("prune");
    let _op = bed.operator(&ns, &[]);
    let rollout = "{revisionHistoryLimit: 1}";
    let mut names = Vec::new();
    for i in 1..=4 {
        apply(
            bed,
            &ns,
            &ms_yaml(
                "web",
                "registry.example/web:1",
                &format!("{{A: '{i}'}}"),
                rollout,
            ),
        );
        wait_for("the new config in the template", TIMEOUT, || async {
            let cm = config_map_of(bed, &ns, "web");
            (!cm.is_empty() && !names.contains(&cm)).then_some(())
        })
        .await;
        names.push(config_map_of(bed, &ns, "web"));
        bed.kubectl_ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            &ns,
            "--timeout=90s",
        ]);
    }
    // Revisions 1 and 2 are gone (history limit 1), so their configs go too; 3 and 4 stay.
    for gone in &names[..2] {
        wait_gone(bed, &ns, "configmap", gone).await;
    }
    for kept in &names[2..] {
        assert!(
            get(bed, &ns, "configmap", kept).is_some(),
            "{kept} must be kept"
        );
    }
}

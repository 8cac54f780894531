//! Scheduled tasks: a `spec.schedules` entry becomes a CronJob with the service's current
//! image and config; a Job made from it runs (KWOK completes its pod); an image change
//! updates the CronJob's template; removing the entry deletes the CronJob.

use serde_json::Value;
use shoal_e2e::{testbed, wait_for};

use crate::helpers::*;

fn job_image(job: &Value) -> Option<&str> {
    job.pointer("/spec/jobTemplate/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_runs_jobs_with_the_current_image_and_goes_with_its_entry() {
    let bed = testbed();
    let ns = restricted_namespace(bed, "schedules");
    let _op = bed.operator(&ns, &[]);
    let spec = |image: &str, schedules: &str| {
        format!(
            "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: shop}}\nspec:\n  image: {image}\n  config: {{GREETING: hello}}\n  schedules:{schedules}\n"
        )
    };
    let report = "\n  - {name: report, schedule: '0 3 * * *', args: [report]}";
    apply(bed, &ns, &spec("registry.example/shop:1", report));
    wait_ready(bed, &ns, "shop").await;
    let cron = wait_exists(bed, &ns, "cronjob", "shop-report").await;
    assert_eq!(job_image(&cron), Some("registry.example/shop:1"));
    assert_eq!(cron["spec"]["schedule"], "0 3 * * *");
    assert_eq!(
        cron["metadata"]["ownerReferences"][0]["kind"], "Microservice",
        "owned by the Microservice"
    );
    let config_map = cron
        .pointer("/spec/jobTemplate/spec/template/spec/containers/0/envFrom/0/configMapRef/name")
        .and_then(Value::as_str)
        .expect("the config ConfigMap")
        .to_string();
    assert!(config_map.starts_with("shop-config-"), "{config_map}");

    // A run now rather than at 03:00: a Job from the CronJob's template; KWOK completes it
    // (the namespace enforces Pod Security restricted: the task's pod is admitted).
    bed.kubectl_ok(&[
        "create",
        "job",
        "-n",
        &ns,
        "--from=cronjob/shop-report",
        "report-now",
    ]);
    bed.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Complete",
        "job/report-now",
        "--timeout=60s",
    ]);
    let job = get(bed, &ns, "job", "report-now").expect("the Job");
    assert_eq!(
        job.pointer("/spec/template/spec/containers/0/image"),
        Some(&Value::from("registry.example/shop:1"))
    );

    // A new image: the CronJob follows, and its config stays the one the service uses.
    apply(bed, &ns, &spec("registry.example/shop:2", report));
    wait_for("the CronJob on image 2", TIMEOUT, || async {
        let cron = get(bed, &ns, "cronjob", "shop-report")?;
        (job_image(&cron) == Some("registry.example/shop:2")).then_some(())
    })
    .await;
    wait_ready(bed, &ns, "shop").await;
    assert!(
        get(bed, &ns, "configmap", &config_map).is_some(),
        "the config the CronJob uses is kept"
    );

    // The entry removed: the CronJob goes.
    apply(bed, &ns, &spec("registry.example/shop:2", " []"));
    wait_gone(bed, &ns, "cronjob", "shop-report").await;
    wait_ready(bed, &ns, "shop").await;
}

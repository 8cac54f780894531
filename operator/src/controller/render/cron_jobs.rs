//! The CronJobs of `spec.schedules`: one per entry, with the service's image, config and
//! pod settings, no probes and no Service traffic.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::deployment::{app_container, app_pod_spec};
use super::meta::{
    CONFIG_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, object_meta, with_applied_hash,
};
use crate::validate::{ScheduledTask, ValidatedMicroservice};

/// Label of a task's pods and CronJob: the name of its `spec.schedules` entry.
pub const SCHEDULE_LABEL: &str = "shoal.dev/schedule";
/// Label of a task's pods: the Microservice they belong to. Not the service's selector
/// labels, so that neither the Service, the Deployment nor the PodDisruptionBudget
/// selects them.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";

/// Renders one CronJob per `spec.schedules` entry, named `<microservice>-<name>`.
pub fn render_cron_jobs(ms: &ValidatedMicroservice) -> Vec<CronJob> {
    ms.schedules
        .iter()
        .map(|task| render_cron_job(ms, task))
        .collect()
}

fn render_cron_job(ms: &ValidatedMicroservice, task: &ScheduledTask) -> CronJob {
    let mut metadata = object_meta(ms, ms.cron_job_name(&task.name), "schedule");
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(SCHEDULE_LABEL.to_string(), task.name.clone());
    let mut container = app_container(ms);
    if task.command.is_some() {
        container.command = task.command.clone();
    }
    if task.args.is_some() {
        container.args = task.args.clone();
    }
    let mut pod = app_pod_spec(ms, container);
    pod.restart_policy = Some(task.restart_policy.as_str().to_string());
    // The user's pod labels, then Shoal's (which win); no selector labels of the service.
    let mut labels = ms.pod.labels.clone();
    labels.remove(INSTANCE_LABEL);
    labels.extend([
        (PART_OF_LABEL.to_string(), ms.name.clone()),
        (MANAGED_BY_LABEL.to_string(), "shoal".to_string()),
        (SCHEDULE_LABEL.to_string(), task.name.clone()),
    ]);
    let mut annotations = ms.pod.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), ms.config_hash.clone());
    with_applied_hash(CronJob {
        metadata,
        spec: CronJobSpec {
            schedule: task.schedule.clone(),
            time_zone: task.time_zone.clone(),
            concurrency_policy: Some(task.concurrency_policy.as_str().to_string()),
            suspend: Some(task.suspend),
            starting_deadline_seconds: task.starting_deadline_seconds,
            successful_jobs_history_limit: task.successful_jobs_history_limit,
            failed_jobs_history_limit: task.failed_jobs_history_limit,
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: task.backoff_limit,
                    active_deadline_seconds: task.active_deadline_seconds,
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            annotations: Some(annotations),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::valid;

    const SPEC: &str = "  image: app:7\n  replicas: 2\n  config: {A: '1'}\n  command: [serve]\n  schedules:\n  - {name: report, schedule: '*/5 * * * *', args: [report, --daily]}\n  - {name: cleanup, schedule: '@hourly', command: [cleanup], concurrencyPolicy: Replace, timeZone: Europe/Berlin, restartPolicy: Never}\n";

    #[test]
    fn one_cron_job_per_schedule_with_the_service_image_config_and_pod_settings() {
        let ms = valid(SPEC);
        let jobs = render_cron_jobs(&ms);
        let names: Vec<_> = jobs
            .iter()
            .map(|j| j.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["shop-report", "shop-cleanup"]);
        let owner = &jobs[0].metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Microservice", Some(true))
        );

        let report = &jobs[0].spec;
        assert_eq!(report.schedule, "*/5 * * * *");
        assert_eq!(report.concurrency_policy.as_deref(), Some("Forbid"));
        let template = &report.job_template.spec.as_ref().expect("job").template;
        let pod = template.spec.as_ref().expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("app:7"));
        assert_eq!(
            c.command,
            Some(vec!["serve".to_string()]),
            "the service's command"
        );
        assert_eq!(
            c.args,
            Some(vec!["report".to_string(), "--daily".to_string()])
        );
        let env_from = c.env_from.as_ref().expect("envFrom");
        assert_eq!(
            env_from[0].config_map_ref.as_ref().map(|r| r.name.clone()),
            Some(ms.config_map_name()),
            "the same hashed ConfigMap"
        );
        assert!(c.readiness_probe.is_none() && c.liveness_probe.is_none() && c.lifecycle.is_none());
        assert_eq!(
            c.security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true),
            "the restricted defaults"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert!(
            !labels.contains_key(INSTANCE_LABEL),
            "not selected by the Service: {labels:?}"
        );
        assert_eq!(labels[PART_OF_LABEL], "shop");

        let cleanup = &jobs[1].spec;
        assert_eq!(cleanup.concurrency_policy.as_deref(), Some("Replace"));
        assert_eq!(cleanup.time_zone.as_deref(), Some("Europe/Berlin"));
        let pod = cleanup
            .job_template
            .spec
            .as_ref()
            .expect("job")
            .template
            .spec
            .as_ref()
            .expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers[0].command, Some(vec!["cleanup".to_string()]));
    }

    #[test]
    fn no_schedules_no_cron_jobs() {
        assert!(render_cron_jobs(&valid("  image: app:1\n")).is_empty());
    }
}

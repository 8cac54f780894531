//! `spec.schedules`: tasks run on a schedule beside the service, as CronJobs.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

// Five cron fields (minute hour day-of-month month day-of-week) or one of the macros the
// CronJob controller accepts. Each field's content is checked by the operator.
const CRON_RULE: &str = r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^\\s]+([ \\t]+[^\\s]+){4})$')";
const NAME_RULE: &str = r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// A task run on a schedule with the service's image, config and pod settings: Shoal
/// renders one CronJob named `<microservice>-<name>` per entry, and deletes it when the
/// entry is removed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Name of the task, unique in the list: lowercase letters, digits and '-'. The CronJob
    /// is `<microservice>-<name>` (at most 52 characters).
    #[schemars(length(min = 1, max = 40))]
    #[x_kube(validation = Rule::new(NAME_RULE).message("spec.schedules[].name must be lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    pub name: String,
    /// When to run, in cron syntax: five fields (`*/15 * * * *`) or a macro such as
    /// `@hourly`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(CRON_RULE).message("spec.schedules[].schedule must be five cron fields (minute hour day-of-month month day-of-week) or a macro such as @hourly"))]
    pub schedule: String,
    /// Entrypoint of the task (the container's `command`); the service's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments of the task (the container's `args`); the service's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// What to do when a run is due while the previous one still runs: Allow, Forbid
    /// (default: skip the new run) or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// Time zone of the schedule, an IANA name such as `Europe/Berlin`. The
    /// kube-controller-manager's local time zone when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Stop starting new runs (running ones go on). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Seconds after its scheduled time a missed run may still start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.schedules[].startingDeadlineSeconds must not be negative"))]
    pub starting_deadline_seconds: Option<i64>,
    /// Finished successful Jobs to keep. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.schedules[].successfulJobsHistoryLimit must not be negative"))]
    pub successful_jobs_history_limit: Option<i32>,
    /// Failed Jobs to keep. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.schedules[].failedJobsHistoryLimit must not be negative"))]
    pub failed_jobs_history_limit: Option<i32>,
    /// Retries of a failed run before its Job fails. Default 6 (the Job's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("spec.schedules[].backoffLimit must not be negative"))]
    pub backoff_limit: Option<i32>,
    /// Seconds a run may take before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("spec.schedules[].activeDeadlineSeconds must be greater than 0"))]
    pub active_deadline_seconds: Option<i64>,
    /// Restart a failed container in place (OnFailure, default) or start a new pod (Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<TaskRestartPolicy>,
}

/// What a CronJob does with a run that is due while another runs.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// Skip the new run (default).
    #[default]
    Forbid,
    /// Stop the running one and start the new one.
    Replace,
}

/// Restart policy of a task's pod.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum TaskRestartPolicy {
    /// Restart the failed container in the same pod (default).
    #[default]
    OnFailure,
    /// Start a new pod for each retry.
    Never,
}

impl ConcurrencyPolicy {
    /// The CronJob's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Allow => "Allow",
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Replace => "Replace",
        }
    }
}

impl TaskRestartPolicy {
    /// The pod's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRestartPolicy::OnFailure => "OnFailure",
            TaskRestartPolicy::Never => "Never",
        }
    }
}

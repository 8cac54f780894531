//! `spec.schedules`: what CEL cannot say about a task (the CronJob name's length, each
//! cron field's values), checked by the operator.

use std::collections::BTreeSet;

use super::{InvalidSpec, invalid};
use crate::crd::{MicroserviceSpec, Schedule};

/// Longest CronJob name: the CronJob controller appends an 11-character suffix to name
/// its Jobs, which must stay within 63 characters.
pub const MAX_CRON_JOB_NAME: usize = 52;

/// A `spec.schedules` entry, defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledTask {
    /// `name`: the CronJob is `<microservice>-<name>`.
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    /// `command` (the service's when None).
    pub command: Option<Vec<String>>,
    /// `args` (the service's when None).
    pub args: Option<Vec<String>>,
    /// `concurrencyPolicy` (default Forbid).
    pub concurrency_policy: crate::crd::ConcurrencyPolicy,
    /// `timeZone`.
    pub time_zone: Option<String>,
    /// `suspend` (default false).
    pub suspend: bool,
    /// `startingDeadlineSeconds`.
    pub starting_deadline_seconds: Option<i64>,
    /// `successfulJobsHistoryLimit`.
    pub successful_jobs_history_limit: Option<i32>,
    /// `failedJobsHistoryLimit`.
    pub failed_jobs_history_limit: Option<i32>,
    /// `backoffLimit`.
    pub backoff_limit: Option<i32>,
    /// `activeDeadlineSeconds`.
    pub active_deadline_seconds: Option<i64>,
    /// `restartPolicy` (default OnFailure).
    pub restart_policy: crate::crd::TaskRestartPolicy,
}

/// Name of the CronJob of task `task` of Microservice `name`.
pub fn cron_job_name(name: &str, task: &str) -> String {
    format!("{name}-{task}")
}

/// The tasks of `spec.schedules`, checked.
pub fn scheduled_tasks(
    spec: &MicroserviceSpec,
    name: &str,
) -> Result<Vec<ScheduledTask>, InvalidSpec> {
    let mut seen = BTreeSet::new();
    let mut tasks = Vec::new();
    for (i, s) in spec.schedules.iter().flatten().enumerate() {
        let field = |f: &str| format!("spec.schedules[{i}].{f}");
        if !seen.insert(s.name.as_str()) {
            return Err(invalid(
                field("name"),
                format!("{:?} is used by two entries", s.name),
            ));
        }
        let label = s
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !label || s.name.is_empty() || s.name.starts_with('-') || s.name.ends_with('-') {
            return Err(invalid(
                field("name"),
                "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
            ));
        }
        let cron_job = cron_job_name(name, &s.name);
        if cron_job.len() > MAX_CRON_JOB_NAME {
            return Err(invalid(
                field("name"),
                format!(
                    "the CronJob name {cron_job:?} is {} characters; at most {MAX_CRON_JOB_NAME} fit (shorten the Microservice's or the task's name)",
                    cron_job.len()
                ),
            ));
        }
        check_cron(&s.schedule).map_err(|message| invalid(field("schedule"), message))?;
        tasks.push(task(s));
    }
    Ok(tasks)
}

fn task(s: &Schedule) -> ScheduledTask {
    ScheduledTask {
        name: s.name.clone(),
        schedule: s.schedule.clone(),
        command: s.command.clone(),
        args: s.args.clone(),
        concurrency_policy: s.concurrency_policy.unwrap_or_default(),
        time_zone: s.time_zone.clone(),
        suspend: s.suspend.unwrap_or(false),
        starting_deadline_seconds: s.starting_deadline_seconds,
        successful_jobs_history_limit: s.successful_jobs_history_limit,
        failed_jobs_history_limit: s.failed_jobs_history_limit,
        backoff_limit: s.backoff_limit,
        active_deadline_seconds: s.active_deadline_seconds,
        restart_policy: s.restart_policy.unwrap_or_default(),
    }
}

const MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// Checks a cron expression as the CronJob controller reads it: a macro, or five fields of
/// `*`, values, ranges `a-b`, lists `a,b` and steps `/n` within each field's bounds (month
/// and weekday names such as JAN or MON also count as values).
pub fn check_cron(expression: &str) -> Result<(), String> {
    let expression = expression.trim();
    if expression.starts_with('@') {
        return if MACROS.contains(&expression) {
            Ok(())
        } else {
            Err(format!(
                "{expression:?} is not one of the macros {}",
                MACROS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "{expression:?} has {} fields; a schedule has five (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    for (field, (what, low, high)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            let bad =
                || format!("{part:?} is not a valid {what} ({low}-{high}, *, a-b, a,b or */n)");
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |n| n == 0)
            {
                return Err(bad());
            }
            if range == "*" || range == "?" {
                continue;
            }
            let value_ok = |v: &str| {
                v.parse::<u32>().map_or_else(
                    |_| {
                        (what == "month" || what == "day of week")
                            && v.len() == 3
                            && v.bytes().all(|b| b.is_ascii_alphabetic())
                    },
                    |n| (low..=high).contains(&n),
                )
            };
            let ok = match range.split_once('-') {
                Some((a, b)) => value_ok(a) && value_ok(b),
                None => value_ok(range),
            };
            if !ok {
                return Err(bad());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_are_checked_field_by_field() {
        for good in [
            "* * * * *",
            "*/15 0-6 1,15 JAN-MAR MON",
            "@hourly",
            "0 3 * * 0",
            "5 4 ? * 7",
        ] {
            assert_eq!(check_cron(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("*/0 * * * *", "minute"),
            ("* * * *", "has 4 fields"),
            ("@sometimes", "macros"),
        ] {
            let err = check_cron(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

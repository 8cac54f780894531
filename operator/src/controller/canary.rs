//! Canary releases as one pure transition, beside [`super::rollout`]: from the policy, the
//! previous `status.rollout.canary`, the live stable and canary Deployments and the latest
//! analysis sample to the canary's new status, the size of the canary Deployment (or none),
//! whether the stable Deployment takes the new template, and the rollout conditions.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::render::TEMPLATE_HASH_ANNOTATION;
use crate::analysis::{Sample, Track};
use crate::conditions::ConditionSpec;
use crate::crd::{CanaryChecks, CanaryPhase, CanaryStatus};
use crate::progress::Progress;
use crate::validate::{AnalysisPolicy, CanaryPolicy, Step};
use crate::vocabulary::{ConditionType, Reason};

/// Annotation on a Microservice that promotes its canary once; Shoal removes it.
pub const PROMOTE_ANNOTATION: &str = "shoal.dev/promote";
/// How often a reconcile looks at a canary in flight.
pub const CANARY_REQUEUE: Duration = Duration::from_secs(5);

/// Whether `status.rollout.canary` shows a canary in flight.
pub fn in_flight(rollout: &crate::crd::RolloutStatus) -> bool {
    rollout.canary.as_ref().is_some_and(|c| c.phase.in_flight())
}

pub use crate::tracks::{canary_replicas, stable_share};

/// Everything the canary transition looks at.
pub struct Observed<'a> {
    /// The resolved policy.
    pub policy: &'a CanaryPolicy,
    /// The Microservice's generation.
    pub generation: i64,
    /// Hash and image of the template this generation asks for.
    pub desired_hash: &'a str,
    /// The image this generation asks for.
    pub desired_image: &'a str,
    /// Hash of the stable Deployment's live template.
    pub stable_hash: &'a str,
    /// The stable Deployment.
    pub stable: &'a Deployment,
    /// The live canary Deployment.
    pub canary: Option<&'a Deployment>,
    /// `status.rollout.canary` as stored.
    pub previous: Option<&'a CanaryStatus>,
    /// A promote was asked for (spec or annotation).
    pub promote: bool,
    /// The latest analysis of this Microservice.
    pub sample: Option<&'a Sample>,
    /// Now.
    pub now: Timestamp,
}

/// What to do about the canary.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The new `status.rollout.canary`.
    pub status: CanaryStatus,
    /// Replicas of the canary Deployment; None: it must not exist.
    pub canary_replicas: Option<i32>,
    /// The stable Deployment takes the desired template (promotion).
    pub promote_stable: bool,
    /// The conditions, when the canary sets them (else the rollout's own apply).
    pub conditions: Option<Vec<ConditionSpec>>,
    /// Hold this generation (aborted): its template is not tried again until the spec changes.
    pub hold: bool,
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

fn since(now: Timestamp, t: &Time) -> Duration {
    now.duration_since(ts(t))
        .try_into()
        .unwrap_or(Duration::ZERO)
}

fn short(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

/// The verdict of one analysis check.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every criterion met: the figures in words.
    Pass(String),
    /// A criterion failed: which, with the values.
    Fail(String),
    /// Too few canary requests to judge.
    NoData(String),
}

fn figures(canary: &Track, stable: &Track) -> String {
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}%"));
    let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} ms"));
    format!(
        "success rate {} (stable {}), p99 {} (stable {}), {:.0} canary requests",
        pct(canary.success_rate),
        pct(stable.success_rate),
        ms(canary.p99_ms),
        ms(stable.p99_ms),
        canary.requests.unwrap_or(0.0)
    )
}

/// Judges one sample against the policy.
pub fn evaluate(policy: &AnalysisPolicy, sample: &Sample) -> Verdict {
    if let Some(error) = &sample.error {
        return Verdict::NoData(format!("no figures from Prometheus: {error}"));
    }
    let (c, s) = (&sample.canary, &sample.stable);
    let requests = c.requests.unwrap_or(0.0);
    let window = sample.window.as_secs();
    let Some(success) = c.success_rate.filter(|_| requests >= policy.min_requests) else {
        return Verdict::NoData(format!(
            "{requests:.0} canary requests in the last {window}s, fewer than analysis.minRequests {}",
            policy.min_requests
        ));
    };
    let mut failed = Vec::new();
    if success < policy.min_success_rate {
        failed.push(format!(
            "success rate {success:.2}% is below analysis.minSuccessRate {}%",
            policy.min_success_rate
        ));
    }
    if let Some(stable) = s.success_rate
        && stable - success > policy.max_success_rate_drop
    {
        failed.push(format!(
            "success rate {success:.2}% is {:.2} points below the stable track's {stable:.2}% (analysis.maxSuccessRateDrop {})",
            stable - success,
            policy.max_success_rate_drop
        ));
    }
    if let Some(p99) = c.p99_ms {
        if let Some(max) = policy.max_p99_latency_ms
            && p99 > max
        {
            failed.push(format!(
                "p99 latency {p99:.0} ms is above analysis.maxP99LatencyMs {max}"
            ));
        }
        if let Some(stable) = s.p99_ms.filter(|v| *v > 0.0)
            && p99 > stable * policy.max_p99_latency_ratio
        {
            failed.push(format!(
                "p99 latency {p99:.0} ms is {:.1}x the stable track's {stable:.0} ms (analysis.maxP99LatencyRatio {})",
                p99 / stable,
                policy.max_p99_latency_ratio
            ));
        }
    }
    let text = figures(c, s);
    if failed.is_empty() {
        Verdict::Pass(text)
    } else {
        Verdict::Fail(format!("{} ({text})", failed.join("; ")))
    }
}

fn template_hash(d: &Deployment) -> Option<&str> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

/// The canary Deployment runs `hash` with all its replicas available.
fn canary_ready(canary: Option<&Deployment>, hash: &str, wanted: i32) -> bool {
    canary.is_some_and(|d| {
        let p = Progress::of(d);
        template_hash(d) == Some(hash) && p.observed && p.updated >= wanted && p.available >= wanted
    })
}

fn stable_replicas(stable: &Deployment) -> i32 {
    stable.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

impl Observed<'_> {
    fn fresh(&self) -> CanaryStatus {
        let now = Time(self.now);
        CanaryStatus {
            phase: CanaryPhase::Progressing,
            template_hash: self.desired_hash.to_string(),
            image: Some(self.desired_image.to_string()),
            generation: self.generation,
            stable_template_hash: Some(self.stable_hash.to_string()),
            step: 0,
            steps: self.policy.steps.len() as i32,
            weight: 0,
            started_at: now.clone(),
            step_started_at: now,
            canary_replicas: None,
            stable_replicas: None,
            checks: CanaryChecks::default(),
            message: None,
        }
    }

    fn describe(&self, st: &CanaryStatus) -> String {
        format!(
            "canary of {} ({})",
            st.image.as_deref().unwrap_or("?"),
            short(&st.template_hash)
        )
    }
}

fn progressing(reason: Reason, message: String) -> Vec<ConditionSpec> {
    super::rollout::healthy(ConditionSpec::of(
        ConditionType::Progressing,
        true,
        reason,
        message,
    ))
}

fn aborted(st: &mut CanaryStatus, reason: Reason, why: String, stable: String) -> Outcome {
    use ConditionType::{Degraded, Progressing, RolledBack};
    st.phase = CanaryPhase::Aborted;
    st.canary_replicas = Some(0);
    st.message = Some(why.clone());
    Outcome {
        status: st.clone(),
        canary_replicas: None,
        promote_stable: false,
        conditions: Some(vec![
            ConditionSpec::of(
                Progressing,
                true,
                Reason::NewRevisionAvailable,
                format!("the stable revision keeps serving ({stable})"),
            ),
            ConditionSpec::of(Degraded, true, reason, why.clone()),
            ConditionSpec::of(
                RolledBack,
                true,
                reason,
                format!(
                    "{why}; the canary was removed and the stable revision serves. The failed spec is not retried until the Microservice changes"
                ),
            ),
        ]),
        hold: true,
    }
}

/// Ends a canary that is no longer wanted (the spec went back to the stable revision).
pub fn superseded(previous: Option<&CanaryStatus>) -> Option<CanaryStatus> {
    let mut st = previous.filter(|p| p.phase.in_flight())?.clone();
    st.phase = if st.phase == CanaryPhase::Promoting {
        CanaryPhase::Promoted
    } else {
        CanaryPhase::Superseded
    };
    st.canary_replicas = Some(0);
    st.message = Some(match st.phase {
        CanaryPhase::Promoted => "promoted: the stable Deployment runs this revision".to_string(),
        _ => "superseded: the spec no longer asks for this revision".to_string(),
    });
    Some(st)
}

/// The canary transition, while the desired template differs from the stable one (or the
/// stable one is still taking it after a promotion).
pub fn transition(o: &Observed) -> Outcome {
    let policy = o.policy;
    let mut st = match o.previous {
        Some(p)
            if p.template_hash == o.desired_hash
                && (p.phase.in_flight() || p.generation == o.generation) =>
        {
            p.clone()
        }
        _ => o.fresh(),
    };
    st.steps = policy.steps.len() as i32;
    let stable_text = format!("image of template {}", short(o.stable_hash));
    if !st.phase.in_flight() {
        // Ended for this template (aborted, or promoted and then undone): leave it.
        return Outcome {
            canary_replicas: None,
            promote_stable: false,
            conditions: None,
            hold: st.phase == CanaryPhase::Aborted,
            status: st,
        };
    }
    // Someone changed the stable Deployment's template during the canary (`kubectl
    // rollout undo`): the canary ends and the Deployment is left as they set it.
    if st.phase != CanaryPhase::Promoting
        && st
            .stable_template_hash
            .as_deref()
            .is_some_and(|h| h != o.stable_hash)
    {
        let why = format!(
            "the stable Deployment's template was changed by hand (kubectl rollout undo?) during the {}; the canary is aborted and Shoal keeps the Deployment as it is until the Microservice changes",
            o.describe(&st)
        );
        let mut out = aborted(&mut st, Reason::ManualRollback, why, stable_text);
        if let Some(c) = out.conditions.as_mut() {
            c[1] = ConditionSpec::of(
                ConditionType::Degraded,
                false,
                Reason::Healthy,
                "no failed rollout",
            );
        }
        return out;
    }
    let stable = stable_replicas(o.stable);
    if o.promote && st.phase != CanaryPhase::Promoting {
        st.phase = CanaryPhase::Promoting;
        st.step = st.steps;
        st.message = Some("promoted by hand: the remaining steps are skipped".to_string());
    }
    if st.phase == CanaryPhase::Promoting {
        let replicas = o
            .canary
            .and_then(|c| c.spec.as_ref()?.replicas)
            .unwrap_or_else(|| canary_replicas(stable, st.weight));
        st.canary_replicas = Some(replicas);
        st.stable_replicas = Some(stable);
        return Outcome {
            status: st,
            canary_replicas: Some(replicas),
            promote_stable: true,
            conditions: None,
            hold: false,
        };
    }

    // The analysis: one check per interval, from a sample taken after the previous check
    // and at least one interval into the canary.
    let analysis = &policy.analysis;
    let due = o.sample.filter(|s| {
        let after_start = since(s.at, &st.started_at) >= analysis.interval;
        let after_last = st
            .checks
            .last_check_at
            .as_ref()
            .is_none_or(|t| since(s.at, t) >= analysis.interval.mul_f64(0.9));
        after_start && after_last && s.at > ts(&st.started_at)
    });
    if let Some(sample) = due {
        let checks = &mut st.checks;
        checks.last_check_at = Some(Time(sample.at));
        checks.requests = sample.canary.requests;
        checks.success_rate = sample.canary.success_rate;
        checks.stable_success_rate = sample.stable.success_rate;
        checks.p99_latency_ms = sample.canary.p99_ms;
        checks.stable_p99_latency_ms = sample.stable.p99_ms;
        match evaluate(analysis, sample) {
            Verdict::Pass(text) => {
                checks.failed = 0;
                // A pass counts for the step only when its whole window lies in the step
                // (at this weight); a failure counts whenever it comes.
                if since(sample.at, &st.step_started_at) >= analysis.interval {
                    checks.passed_at_step += 1;
                }
                checks.no_data_since = None;
                checks.last_result = Some(format!("passed: {text}"));
            }
            Verdict::Fail(text) => {
                checks.failed += 1;
                checks.no_data_since = None;
                checks.last_result = Some(format!("failed: {text}"));
                if checks.failed >= analysis.failure_limit {
                    let why = format!(
                        "the {} failed its analysis {} times in a row: {text}",
                        o.describe(&st),
                        analysis.failure_limit
                    );
                    return aborted(&mut st, Reason::CanaryAnalysisFailed, why, stable_text);
                }
            }
            Verdict::NoData(text) => {
                let since_when = checks
                    .no_data_since
                    .get_or_insert_with(|| st.started_at.clone())
                    .clone();
                checks.last_result = Some(format!("no data: {text}"));
                let waited = since(o.now, &since_when);
                if waited >= analysis.no_data_timeout {
                    let why = format!(
                        "the {} had no analysis data for {}s (analysis.noDataTimeout): {text}",
                        o.describe(&st),
                        waited.as_secs()
                    );
                    return aborted(&mut st, Reason::CanaryAnalysisFailed, why, stable_text);
                }
            }
        }
    } else if st.checks.last_check_at.is_none()
        && st.checks.no_data_since.is_none()
        && o.sample.is_none()
        && since(o.now, &st.started_at) >= analysis.no_data_timeout
    {
        // Prometheus never answered for this canary: no data is never a success.
        let why = format!(
            "the {} had no analysis data for {}s (analysis.noDataTimeout): Prometheus returned nothing for it",
            o.describe(&st),
            since(o.now, &st.started_at).as_secs()
        );
        return aborted(&mut st, Reason::CanaryAnalysisFailed, why, stable_text);
    }

    // The steps.
    let mut reason = Reason::CanaryStep;
    if let Some(step) = policy.steps.get(st.step as usize).copied() {
        if let Step::Weight(w) = step {
            st.weight = w;
        }
        let wanted = canary_replicas(stable, st.weight);
        let done = match step {
            Step::Weight(_) => {
                canary_ready(o.canary, &st.template_hash, wanted) && st.checks.passed_at_step >= 1
            }
            Step::Pause(Some(d)) => since(o.now, &st.step_started_at) >= d,
            Step::Pause(None) => {
                reason = Reason::CanaryPaused;
                false
            }
        };
        st.phase = if reason == Reason::CanaryPaused {
            CanaryPhase::Paused
        } else {
            CanaryPhase::Progressing
        };
        if done {
            st.step += 1;
            st.step_started_at = Time(o.now);
            st.checks.passed_at_step = 0;
            if let Some(Step::Weight(w)) = policy.steps.get(st.step as usize) {
                st.weight = *w;
            }
        }
    }
    if st.step >= st.steps {
        st.phase = CanaryPhase::Promoting;
        st.message = Some("every step passed: promoting".to_string());
        return transition(&Observed {
            previous: Some(&st),
            promote: false,
            ..*o
        });
    }
    let replicas = canary_replicas(stable, st.weight);
    st.canary_replicas = Some(replicas);
    st.stable_replicas = Some(stable);
    let step_text = match policy.steps.get(st.step as usize) {
        Some(Step::Weight(w)) => format!("weight {w}%"),
        Some(Step::Pause(Some(d))) => format!("pause {}s", d.as_secs()),
        Some(Step::Pause(None)) => {
            "paused until promoted (spec.rollout.canary.promote or annotation shoal.dev/promote=true)".to_string()
        }
        None => String::new(),
    };
    let last = st
        .checks
        .last_result
        .as_deref()
        .map_or("no check yet".to_string(), |r| format!("last check {r}"));
    let message = format!(
        "{} at step {}/{} ({step_text}): weight {}%, {replicas} canary and {stable} stable replicas; {last}",
        o.describe(&st),
        st.step + 1,
        st.steps,
        st.weight
    );
    st.message = Some(message.clone());
    Outcome {
        status: st,
        canary_replicas: Some(replicas),
        promote_stable: false,
        conditions: Some(progressing(reason, message)),
        hold: false,
    }
}

#[cfg(test)]
mod tests;

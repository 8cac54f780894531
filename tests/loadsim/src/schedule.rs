//! Load schedules: per service, a list of steps that set (and optionally ramp) the request rate.
//!
//! ```yaml
//! services:
//!   api:
//!     - {at: 0, rps: 20}
//!     - {at: 30, rps: 200}
//!     - {at: 60, rps: 200, rampTo: 50, over: 20}
//! ```

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;

/// One step of a service's schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Seconds since the simulator started at which this step takes effect.
    pub at: f64,
    /// Request rate (requests/second) from `at` on.
    pub rps: f64,
    /// If set, the rate moves linearly from `rps` to `ramp_to` over `over` seconds, then stays.
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// Duration of the ramp in seconds; required (and > 0) when `rampTo` is given.
    #[serde(default)]
    pub over: Option<f64>,
}

/// A load schedule for several services.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub services: BTreeMap<String, Vec<Step>>,
}

impl Schedule {
    /// Parses and validates a schedule; steps of each service are sorted by `at`.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let mut schedule: Schedule =
            serde_yaml::from_str(text).context("parsing the load schedule YAML")?;
        schedule.validate()?;
        for steps in schedule.services.values_mut() {
            steps.sort_by(|a, b| a.at.total_cmp(&b.at));
        }
        Ok(schedule)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (service, steps) in &self.services {
            for (i, step) in steps.iter().enumerate() {
                let ctx = || format!("schedule of service {service:?}, step {i}");
                if !(step.at.is_finite() && step.at >= 0.0) {
                    bail!("{}: `at` must be a finite number >= 0", ctx());
                }
                if !(step.rps.is_finite() && step.rps >= 0.0) {
                    bail!("{}: `rps` must be a finite number >= 0", ctx());
                }
                match (step.ramp_to, step.over) {
                    (Some(to), Some(over)) => {
                        if !(to.is_finite() && to >= 0.0) {
                            bail!("{}: `rampTo` must be a finite number >= 0", ctx());
                        }
                        if !(over.is_finite() && over > 0.0) {
                            bail!("{}: `over` must be a finite number > 0", ctx());
                        }
                    }
                    (Some(_), None) => bail!("{}: `rampTo` needs `over` (seconds)", ctx()),
                    (None, Some(_)) => bail!("{}: `over` is only meaningful with `rampTo`", ctx()),
                    (None, None) => {}
                }
            }
        }
        Ok(())
    }

    /// The scheduled rate of `service` at `t` seconds, or `None` if the schedule does not
    /// mention the service.
    pub fn rate_at(&self, service: &str, t: f64) -> Option<f64> {
        self.services.get(service).map(|steps| rate_at(steps, t))
    }
}

/// Rate given by `steps` (sorted by `at`) at `t` seconds since start.
///
/// Before the first step the rate is 0. The last step with `at <= t` applies; during its ramp
/// the rate is interpolated linearly, after the ramp it is `rampTo`.
pub fn rate_at(steps: &[Step], t: f64) -> f64 {
    let Some(step) = steps.iter().rev().find(|s| s.at <= t) else {
        return 0.0;
    };
    match (step.ramp_to, step.over) {
        (Some(to), Some(over)) if over > 0.0 => {
            let elapsed = t - step.at;
            if elapsed >= over {
                to
            } else {
                step.rps + (to - step.rps) * (elapsed / over)
            }
        }
        _ => step.rps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "services:
  api:
    - {at: 0, rps: 20}
    - {at: 30, rps: 200}
    - {at: 60, rps: 200, rampTo: 50, over: 20}
  web:
    - {at: 10, rps: 5}
";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn parses_example() {
        let s = Schedule::from_yaml(EXAMPLE).expect("valid");
        assert_eq!(s.services.len(), 2);
        assert_eq!(
            s.services["api"][2],
            Step {
                at: 60.0,
                rps: 200.0,
                ramp_to: Some(50.0),
                over: Some(20.0)
            }
        );
    }

    #[test]
    fn steps_and_ramp() {
        let s = Schedule::from_yaml(EXAMPLE).expect("valid");
        let api = |t| s.rate_at("api", t).expect("api scheduled");
        assert!(close(api(0.0), 20.0));
        assert!(close(api(29.999), 20.0));
        assert!(close(api(30.0), 200.0));
        assert!(close(api(59.0), 200.0));
        assert!(close(api(60.0), 200.0));
        assert!(close(api(65.0), 162.5));
        assert!(close(api(70.0), 125.0));
        assert!(close(api(80.0), 50.0));
        assert!(close(api(1000.0), 50.0));
        // Before the first step: nothing.
        assert!(close(s.rate_at("web", 9.0).expect("web scheduled"), 0.0));
        assert!(close(s.rate_at("web", 10.0).expect("web scheduled"), 5.0));
        assert_eq!(s.rate_at("other", 10.0), None);
    }

    #[test]
    fn ramp_up_and_unsorted_input() {
        let s = Schedule::from_yaml(
            "services: {api: [{at: 10, rps: 0, rampTo: 100, over: 10}, {at: 0, rps: 7}]}",
        )
        .expect("valid");
        let api = |t| s.rate_at("api", t).expect("api");
        assert!(close(api(5.0), 7.0));
        assert!(close(api(10.0), 0.0));
        assert!(close(api(12.5), 25.0));
        assert!(close(api(20.0), 100.0));
    }

    #[test]
    fn a_later_step_cuts_a_ramp_short() {
        let steps = [
            Step {
                at: 0.0,
                rps: 0.0,
                ramp_to: Some(100.0),
                over: Some(100.0),
            },
            Step {
                at: 10.0,
                rps: 3.0,
                ramp_to: None,
                over: None,
            },
        ];
        assert!(close(rate_at(&steps, 5.0), 5.0));
        assert!(close(rate_at(&steps, 50.0), 3.0));
        assert!(close(rate_at(&[], 50.0), 0.0));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "services: {api: [{at: -1, rps: 1}]}",
            "services: {api: [{at: 0, rps: -1}]}",
            "services: {api: [{at: 0, rps: 1, rampTo: 5}]}",
            "services: {api: [{at: 0, rps: 1, over: 5}]}",
            "services: {api: [{at: 0, rps: 1, rampTo: 5, over: 0}]}",
            "services: {api: [{at: 0, rps: 1, bogus: 1}]}",
            "servics: {}",
        ] {
            assert!(Schedule::from_yaml(bad).is_err(), "accepted {bad}");
        }
    }
}

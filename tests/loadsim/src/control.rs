//! Nominal load per service: the schedule, overridden per service by the control API.

use std::collections::BTreeMap;

use crate::schedule::Schedule;

/// Where a service's nominal load comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Schedule,
    Override,
}

#[derive(Debug, Clone, Default)]
pub struct LoadControl {
    schedule: Schedule,
    overrides: BTreeMap<String, f64>,
}

impl LoadControl {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            overrides: BTreeMap::new(),
        }
    }

    /// Sets `service`'s load to `rps` from now on, replacing its schedule.
    pub fn set(&mut self, service: &str, rps: f64) {
        self.overrides.insert(service.to_owned(), rps);
    }

    /// Drops the override of `service` so its schedule (or no load) applies again.
    /// Returns whether there was an override.
    pub fn clear(&mut self, service: &str) -> bool {
        self.overrides.remove(service).is_some()
    }

    /// Nominal load of every service that has a schedule or an override, `t` seconds after
    /// start.
    pub fn loads_at(&self, t: f64) -> BTreeMap<String, (f64, Source)> {
        let mut out: BTreeMap<String, (f64, Source)> = self
            .schedule
            .services
            .iter()
            .map(|(s, steps)| {
                (
                    s.clone(),
                    (crate::schedule::rate_at(steps, t), Source::Schedule),
                )
            })
            .collect();
        for (s, rps) in &self.overrides {
            out.insert(s.clone(), (*rps, Source::Override));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_replaces_schedule_until_cleared() {
        let schedule =
            Schedule::from_yaml("services: {api: [{at: 0, rps: 20}, {at: 30, rps: 200}]}")
                .expect("valid");
        let mut c = LoadControl::new(schedule);
        assert_eq!(c.loads_at(40.0)["api"], (200.0, Source::Schedule));
        c.set("api", 5.0);
        c.set("web", 7.0);
        assert_eq!(c.loads_at(40.0)["api"], (5.0, Source::Override));
        assert_eq!(c.loads_at(0.0)["web"], (7.0, Source::Override));
        assert!(c.clear("api"));
        assert!(!c.clear("api"));
        assert_eq!(c.loads_at(10.0)["api"], (20.0, Source::Schedule));
    }
}

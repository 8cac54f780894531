//! A `shoal run` process started by a test.

use std::path::PathBuf;
use std::process::Child;

use crate::{http_request, openmetrics, signal, strip_ansi};

/// A running operator process.
pub struct Operator {
    pub(crate) child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// Stops it with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// The process id of `shoal run` itself (the child of its `sh` leash), once started.
    pub fn pid(&self) -> Option<u32> {
        let leash = self.child.id();
        std::fs::read_to_string(format!("/proc/{leash}/task/{leash}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Kills `shoal run` with SIGKILL (no shutdown, no lease release), then reaps its leash.
    pub fn kill(&mut self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("no shoal process to kill; see {}", self.log.display()));
        signal(pid, "KILL");
        self.stop();
    }

    /// Freezes `shoal run` with SIGSTOP (its connections stay open, it reads nothing) until
    /// [`Operator::resume`].
    pub fn pause(&self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("no shoal process to pause; see {}", self.log.display()));
        signal(pid, "STOP");
    }

    /// Lets a paused `shoal run` carry on (SIGCONT).
    pub fn resume(&self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("no shoal process to resume; see {}", self.log.display()));
        signal(pid, "CONT");
    }

    /// The operator's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's log so far, without terminal colour codes.
    pub fn plain_log_text(&self) -> String {
        strip_ansi(&self.log_text())
    }

    /// The `host:port` of its /metrics, /healthz and /readyz, once it logged it.
    pub fn metrics_address(&self) -> Option<String> {
        self.plain_log_text()
            .lines()
            .filter(|l| l.contains("serving /metrics"))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                    .map(str::to_string)
            })
    }
}

impl Operator {
    /// The operator's `/metrics` text now (panics when it has not logged its address yet
    /// or does not answer).
    pub fn metrics_text(&self) -> String {
        let addr = self.metrics_address().unwrap_or_else(|| {
            panic!(
                "the operator has not logged its /metrics address yet; see {}",
                self.log.display()
            )
        });
        let response = http_request(&addr, "GET", "/metrics", "");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "GET /metrics: {response}"
        );
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// The value of the sample `name` (as exposed, e.g. `shoal_autoscaler_ticks_total`)
    /// whose labels include every pair of `labels`, summed over all such samples; None when
    /// there is none.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        openmetrics::value(&self.metrics_text(), name, labels)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

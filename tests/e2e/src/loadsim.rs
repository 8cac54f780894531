//! The load simulator (`loadsim`) as a child process of a test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{TestBed, http_request, sibling_bin};

/// A running load simulator for one namespace, scraped by a Prometheus through a file_sd file.
pub struct LoadSim {
    child: Child,
    /// Its `host:port`.
    pub addr: String,
}

impl LoadSim {
    /// Starts `loadsim` for `namespace`, registering it in `sd_dir` for Prometheus.
    pub fn start(bed: &TestBed, namespace: &str, sd_dir: &Path, noise_percent: f64) -> LoadSim {
        let log = bed
            .dir
            .join("logs")
            .join(format!("loadsim-{namespace}.log"));
        let mut child = Command::new(sibling_bin("loadsim"))
            .args([
                "--namespace",
                namespace,
                "--exit-on-stdin-eof",
                "--tick-ms",
                "250",
            ])
            .arg("--noise")
            .arg(noise_percent.to_string())
            .arg("--sd-file")
            .arg(sd_dir.join(format!("loadsim-{namespace}.json")))
            .env("KUBECONFIG", &bed.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("loadsim log"))
            .spawn()
            .expect("starting loadsim");
        let stdout = child.stdout.take().expect("stdout");
        let addr = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("LOADSIM_ADDR=").map(str::to_string))
            .unwrap_or_else(|| panic!("loadsim did not start; see {}", log.display()));
        LoadSim { child, addr }
    }

    /// Sets the offered load of `service` in requests per second.
    pub fn set_load(&self, service: &str, rps: f64) {
        let body = format!("{{\"rps\": {rps}}}");
        let response = http_request(&self.addr, "PUT", &format!("/load/{service}"), &body);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "loadsim refused the load: {response}"
        );
    }
}

impl Drop for LoadSim {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

//! A Prometheus of a test's own, and instant queries against any Prometheus.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestBed, cluster_bin, http_request, signal};

/// A Prometheus of the test's own (Debian's `prometheus`), for tests that stop it or count
/// the queries it serves. Scrapes every file_sd target in `sd_dir` every 2 s.
pub struct Prometheus {
    /// The executable: Debian's `prometheus` from PATH, or `prometheus-k8s-sd` of the
    /// cluster binaries (see [`Prometheus::start_with_kubernetes_sd`]).
    binary: PathBuf,
    child: Option<Child>,
    paused: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    port: u16,
    /// Directory of its file_sd target files.
    pub sd_dir: PathBuf,
}

impl Prometheus {
    /// Starts a Prometheus in a fresh directory under the test bed's.
    pub fn start(bed: &TestBed, name: &str) -> Prometheus {
        Prometheus::start_with_args(bed, name, &[], &[])
    }

    /// Starts a Prometheus in a fresh directory under the test bed's, with extra flags
    /// (e.g. `--query.timeout=10s`) and environment (e.g. `GOMAXPROCS`).
    pub fn start_with_args(
        bed: &TestBed,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Prometheus {
        Prometheus::start_with_config(bed, name, args, env, "")
    }

    /// Starts a Prometheus in a fresh directory under the test bed's, with more scrape
    /// jobs: `scrape_configs` is appended to the `scrape_configs:` list of its config.
    pub fn start_with_scrape_configs(
        bed: &TestBed,
        name: &str,
        scrape_configs: &str,
    ) -> Prometheus {
        Prometheus::start_with_config(bed, name, &[], &[], scrape_configs)
    }

    /// Like [`Prometheus::start_with_scrape_configs`], with the Prometheus 3 of the cluster
    /// binaries that has Kubernetes service discovery (`kubernetes_sd_configs`), which
    /// Debian's package lacks. `tests/cluster/build.sh` builds it (`make cluster-bin`).
    pub fn start_with_kubernetes_sd(bed: &TestBed, name: &str, scrape_configs: &str) -> Prometheus {
        let binary = cluster_bin().join("prometheus-k8s-sd");
        assert!(
            binary.exists(),
            "{} is missing: run `make cluster-bin` (tests/cluster/build.sh builds it)",
            binary.display()
        );
        Prometheus::start_binary(binary, bed, name, &[], &[], scrape_configs)
    }

    fn start_with_config(
        bed: &TestBed,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        scrape_configs: &str,
    ) -> Prometheus {
        Prometheus::start_binary(
            PathBuf::from("prometheus"),
            bed,
            name,
            args,
            env,
            scrape_configs,
        )
    }

    fn start_binary(
        binary: PathBuf,
        bed: &TestBed,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        scrape_configs: &str,
    ) -> Prometheus {
        let dir = bed.dir.join(format!("prometheus-{name}"));
        let sd_dir = dir.join("targets");
        std::fs::create_dir_all(&sd_dir).expect("prometheus dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            "global: {{scrape_interval: 2s, evaluation_interval: 2s}}\nscrape_configs:\n- job_name: prometheus\n  static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n- job_name: targets\n  file_sd_configs:\n  - files: ['{}/*.json']\n    refresh_interval: 1s\n",
            sd_dir.display()
        ) + scrape_configs;
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let mut p = Prometheus {
            binary,
            child: None,
            paused: false,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
            port,
            sd_dir,
        };
        p.resume();
        p
    }

    /// Freezes it with SIGSTOP: it keeps its port (connections are accepted by the kernel
    /// and then hang, so clients run into their timeout), scrapes nothing and answers
    /// nothing until [`Prometheus::unpause`]. Its data stays; the time frozen becomes a gap
    /// in every series. This is "Prometheus paused": the same process carries on afterwards,
    /// with no restart, no WAL replay and no lost head block, so the gap is exactly as long
    /// as the pause.
    pub fn pause(&mut self) {
        let child = self.child.as_ref().expect("prometheus is running");
        signal(child.id(), "STOP");
        self.paused = true;
    }

    /// Continues it after [`Prometheus::pause`] (SIGCONT).
    pub fn unpause(&mut self) {
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), "CONT");
        }
        self.paused = false;
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM through `kill`, then wait).
    pub fn stop(&mut self) {
        if self.paused {
            // A stopped process would not act on SIGTERM: continue it first.
            self.unpause();
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("prometheus.log")).expect("log");
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} ({e}): make deps installs prometheus, make cluster-bin prometheus-k8s-sd",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::net::TcpStream::connect(("127.0.0.1", self.port))
            .map(|_| {
                http_request(&format!("127.0.0.1:{}", self.port), "GET", "/-/ready", "")
                    .contains(" 200 ")
            })
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of an instant query returning one series (or None).
    pub fn query_value(&self, promql: &str) -> Option<f64> {
        prometheus_value(&format!("127.0.0.1:{}", self.port), promql)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sum of the values of an instant query at the Prometheus at `addr` (None when empty).
pub fn prometheus_value(addr: &str, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let response = http_request(addr, "GET", &format!("/api/v1/query?query={encoded}"), "");
    let body = response.split("\r\n\r\n").nth(1)?;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let result = json["data"]["result"].as_array()?;
    if result.is_empty() {
        return None;
    }
    Some(
        result
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum(),
    )
}

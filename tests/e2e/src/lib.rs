//! End-to-end test support: one real local control plane per test run (tests/cluster's
//! `kube up`), a namespace per test, the `shoal` binary as a local process per test, and
//! the real `kubectl`. Nothing here is mocked; if the test bed cannot start, tests fail
//! with the reason.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod admission;
pub mod audit;
pub mod openmetrics;
pub mod recorder;
pub mod signalbench;
pub mod slowproxy;

/// The running test bed.
pub struct TestBed {
    /// Directory of the cluster: kubeconfig, logs, Prometheus data.
    pub dir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where the Go-built binaries (kubectl, helm, ...) are.
    pub bin: PathBuf,
    /// Prometheus base URL.
    pub prometheus_url: String,
    /// Directory of Prometheus file_sd target files.
    pub prometheus_sd_dir: PathBuf,
    _cluster: std::sync::Mutex<Child>,
}

static TESTBED: OnceLock<Result<TestBed, String>> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Directory of the cluster binaries: `$CLUSTER_BIN` or `~/.cache/shoal/cluster-bin`.
pub fn cluster_bin() -> PathBuf {
    std::env::var_os("CLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/shoal/cluster-bin")
        })
}

/// The shared test bed, started on first use. Panics with the reason when it cannot start.
pub fn testbed() -> &'static TestBed {
    // Started once: if it fails, every test fails with the same reason (no second attempt
    // on the same directory).
    let bed = TESTBED.get_or_init(|| {
        std::panic::catch_unwind(start_testbed).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        })
    });
    match bed {
        Ok(bed) => bed,
        Err(reason) => panic!("the test bed could not start: {reason}"),
    }
}

fn start_testbed() -> TestBed {
    let bin = cluster_bin();
    let kube = bin.join("kube");
    assert!(
        kube.exists(),
        "test bed binary {} is missing: run `bash tests/cluster/build.sh` (make test does)",
        kube.display()
    );
    let dir = std::env::temp_dir().join(format!("shoal-e2e-{}", std::process::id()));
    let started = Instant::now();
    // A `ready` left by an earlier, killed run would fool the wait below.
    let _ = std::fs::remove_file(dir.join("ready"));
    let mut child = Command::new(&kube)
        .args([
            "up",
            "--prometheus",
            "--exit-on-stdin-eof",
            "--keep",
            "--dir",
        ])
        .arg(&dir)
        .arg("--bin")
        .arg(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kube.display()));
    // `kube up` prints KEY=VALUE lines and writes DIR/env and DIR/ready once ready; its
    // stdin stays open as long as this process lives, and the cluster is torn down when it
    // closes. Read its stdout until it is ready (or gone).
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(drop)
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    while !dir.join("ready").exists() && Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !dir.join("ready").exists() {
        let status = child.try_wait().ok().flatten();
        panic!(
            "the test bed did not become ready (kube up exited: {status:?}); logs in {}/logs",
            dir.display()
        );
    }
    let env: std::collections::HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
        .expect("kube up writes DIR/env")
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for key in ["KUBECONFIG", "PROMETHEUS_URL", "PROMETHEUS_SD_DIR"] {
        assert!(env.contains_key(key), "kube up's env file lacks {key}");
    }
    eprintln!(
        "test bed ready in {:.1}s at {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    let bed = TestBed {
        kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
        prometheus_url: env["PROMETHEUS_URL"].clone(),
        prometheus_sd_dir: PathBuf::from(&env["PROMETHEUS_SD_DIR"]),
        dir,
        bin,
        _cluster: std::sync::Mutex::new(child),
    };
    bed.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &repo_root().join("crds").to_string_lossy(),
    ]);
    bed.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/microservices.shoal.dev",
        "--timeout=60s",
    ]);
    bed
}

impl TestBed {
    /// Runs the test bed's kubectl (same version as the cluster) with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl");
        child.wait_with_output().expect("kubectl output")
    }

    /// A kube client for the cluster (one per test: clients belong to a tokio runtime).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Creates a fresh namespace for one test.
    pub fn namespace(&self, test: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!(
            "{}-{}-{n}",
            test.replace('_', "-"),
            std::process::id() % 10000
        );
        let ns: String = ns.chars().take(63).collect();
        self.kubectl_ok(&["create", "namespace", &ns]);
        ns
    }

    /// Starts `shoal run` for one namespace; stopped (SIGTERM) when the guard drops.
    pub fn operator(&self, namespace: &str, extra: &[&str]) -> Operator {
        self.operator_with_prometheus(namespace, &self.prometheus_url, extra)
    }

    /// Starts `shoal run` for one namespace reading metrics from `prometheus_url`.
    pub fn operator_with_prometheus(
        &self,
        namespace: &str,
        prometheus_url: &str,
        extra: &[&str],
    ) -> Operator {
        self.spawn_operator(namespace, &self.kubeconfig, prometheus_url, extra)
    }

    /// Starts `shoal run --namespace <namespace> <extra>` as the user of `kubeconfig` (for
    /// example a ServiceAccount's token), with the test bed's Prometheus; stopped (SIGTERM)
    /// when the guard drops.
    pub fn operator_with_kubeconfig(
        &self,
        namespace: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Operator {
        self.spawn_operator(namespace, kubeconfig, &self.prometheus_url, extra)
    }

    fn spawn_operator(
        &self,
        namespace: &str,
        kubeconfig: &Path,
        prometheus_url: &str,
        extra: &[&str],
    ) -> Operator {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = self
            .dir
            .join("logs")
            .join(format!("shoal-{namespace}-{n}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        // `sh` keeps the operator on a leash: when our end of its stdin closes (the guard
        // drops, or this test process dies), it sends SIGTERM and waits.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" & pid=$!; cat >/dev/null; kill -TERM $pid 2>/dev/null; wait $pid"#)
            .arg("sh")
            .arg(sibling_bin("shoal"))
            .args(["run", "--namespace", namespace, "--resync-seconds", "3"])
            .args(if extra.contains(&"--tick-seconds") {
                &[][..]
            } else {
                &["--tick-seconds", "2"][..]
            })
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("SHOAL_LOG", "info,shoal=debug")
            .env("SHOAL_PROMETHEUS_URL", prometheus_url)
            // Many operators run at once: each serves /metrics on a free port (see its log).
            .env("SHOAL_METRICS_ADDRESS", "127.0.0.1:0")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .expect("starting shoal run");
        Operator { child, log }
    }

    /// Path of the apiserver's audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("logs").join("audit.log")
    }
}

/// Extra flags of `shoal run` for a metrics loop that reacts within seconds (2 s ticks,
/// 10 s rate and burst windows) with a scale-down stabilization window of
/// `scale_down_window_seconds`: what the demo and the reaction benchmark run.
pub fn fast_loop_flags(scale_down_window_seconds: &str) -> Vec<String> {
    [
        "--tick-seconds",
        "2",
        "--rate-window",
        "10s",
        "--burst-window",
        "10s",
        "--scale-down-window-seconds",
        scale_down_window_seconds,
    ]
    .map(str::to_string)
    .to_vec()
}

/// A running operator process.
pub struct Operator {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// Stops it with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
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

/// `text` without ANSI escape sequences (`ESC [ ... letter`), as text logs carry colours.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `[`, parameters and the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `check` every 500 ms until it returns Some, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The binary `name` built next to this executable (`cargo build --workspace --bins`): in
/// `target/<profile>/` for a test (which runs from `target/<profile>/deps/`) or for a binary
/// that itself runs from `target/<profile>/` (the demo, the benchmark).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("target directory");
    let dir = if dir.file_name().is_some_and(|d| d == "deps") {
        dir.parent().expect("target directory")
    } else {
        dir
    };
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` (make test does)",
        bin.display()
    );
    bin
}

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

/// A minimal HTTP/1.1 request over loopback; returns the whole response.
pub fn http_request(addr: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

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

/// Sends `SIG<name>` to process `pid` with kill(1) (the crate forbids unsafe code, so no libc).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
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

/// Version of the Prometheus Operator whose `PodMonitor` CRD the tests install.
pub const PROMETHEUS_OPERATOR_VERSION: &str = "v0.85.0";

/// Path of the Prometheus Operator's `PodMonitor` CRD YAML, from its Go module
/// (`go mod download`, cached in Go's module cache; no container image involved). Panics
/// with the reason when Go or the module proxy is unavailable.
pub fn pod_monitor_crd() -> PathBuf {
    let module =
        format!("github.com/prometheus-operator/prometheus-operator@{PROMETHEUS_OPERATOR_VERSION}");
    let out = Command::new("go")
        .args(["mod", "download", "-json", &module])
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `go mod download {module}` (is Go installed?): {e}")
        });
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`go mod download -json {module}` printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let dir = info["Dir"].as_str().unwrap_or_else(|| {
        panic!(
            "`go mod download {module}` failed: {}",
            info["Error"].as_str().unwrap_or("no Dir in its output")
        )
    });
    let crd = Path::new(dir)
        .join("example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml");
    assert!(crd.exists(), "{} is missing from {module}", crd.display());
    crd
}

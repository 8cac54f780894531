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

pub mod audit;

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

static TESTBED: OnceLock<TestBed> = OnceLock::new();
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

/// The `shoal` binary built next to this test executable (`cargo build -p shoal` first;
/// `make test` does).
pub fn shoal_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/shoal
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("shoal"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "the shoal binary is missing at {}: run `cargo build -p shoal` (make test does)",
        bin.display()
    );
    bin
}

/// The shared test bed, started on first use. Panics with the reason when it cannot start.
pub fn testbed() -> &'static TestBed {
    TESTBED.get_or_init(start_testbed)
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
    let mut child = Command::new(&kube)
        .args(["up", "--prometheus", "--exit-on-stdin-eof", "--dir"])
        .arg(&dir)
        .arg("--bin")
        .arg(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kube.display()));
    // `kube up` prints KEY=VALUE lines once ready; its stdin stays open as long as this
    // process lives, and the cluster is torn down when it closes.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut env = std::collections::HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading kube up output");
        if let Some((k, v)) = line.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
        if dir.join("ready").exists()
            && env.contains_key("KUBECONFIG")
            && env.contains_key("PROMETHEUS_URL")
        {
            break;
        }
    }
    if !dir.join("ready").exists() {
        let status = child.try_wait().ok().flatten();
        panic!(
            "the test bed did not become ready (kube up exited: {status:?}); logs in {}/logs",
            dir.display()
        );
    }
    eprintln!(
        "test bed ready in {:.1}s at {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    let bed = TestBed {
        kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
        prometheus_url: env["PROMETHEUS_URL"].clone(),
        prometheus_sd_dir: PathBuf::from(env.get("PROMETHEUS_SD_DIR").cloned().unwrap_or_default()),
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
            .arg(shoal_bin())
            .args(["run", "--namespace", namespace, "--resync-seconds", "3"])
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("SHOAL_LOG", "info,shoal=debug")
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
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
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

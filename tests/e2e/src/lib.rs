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
pub mod cpubench;
mod loadsim;
pub mod openmetrics;
mod operator;
mod private;
mod prometheus;
pub mod reaction;
pub mod recorder;
pub mod signalbench;
pub mod slowproxy;

pub use loadsim::LoadSim;
pub use operator::Operator;
pub use prometheus::{Prometheus, prometheus_value};

/// The running test bed.
pub struct TestBed {
    /// Directory of the cluster: kubeconfig, logs, Prometheus data.
    pub dir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where the Go-built binaries (kubectl, helm, ...) are.
    pub bin: PathBuf,
    /// Prometheus base URL (of a private bed without Prometheus: a closed port).
    pub prometheus_url: String,
    /// Directory of Prometheus file_sd target files.
    pub prometheus_sd_dir: PathBuf,
    _cluster: std::sync::Mutex<Child>,
    /// A private bed ([`TestBed::private`]) is torn down when dropped.
    private: bool,
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
    let dir = std::env::temp_dir().join(format!("shoal-e2e-{}", std::process::id()));
    start_bed(dir, &["--prometheus"])
}

fn start_bed(dir: PathBuf, flags: &[&str]) -> TestBed {
    let bin = cluster_bin();
    let kube = bin.join("kube");
    assert!(
        kube.exists(),
        "test bed binary {} is missing: run `bash tests/cluster/build.sh` (make test does)",
        kube.display()
    );
    let started = Instant::now();
    // A `ready` left by an earlier, killed run would fool the wait below.
    let _ = std::fs::remove_file(dir.join("ready"));
    let mut child = Command::new(&kube)
        .args(["up", "--exit-on-stdin-eof", "--keep"])
        .args(flags)
        .arg("--dir")
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
    let mut keys = vec!["KUBECONFIG"];
    if flags.contains(&"--prometheus") {
        keys.extend(["PROMETHEUS_URL", "PROMETHEUS_SD_DIR"]);
    }
    for key in keys {
        assert!(env.contains_key(key), "kube up's env file lacks {key}");
    }
    eprintln!(
        "test bed ready in {:.1}s at {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    let bed = TestBed {
        kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
        // Port 9 (discard) is closed on loopback: queries fail at once.
        prometheus_url: env
            .get("PROMETHEUS_URL")
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:9".to_string()),
        prometheus_sd_dir: env
            .get("PROMETHEUS_SD_DIR")
            .map_or_else(|| dir.join("prometheus"), PathBuf::from),
        dir,
        bin,
        _cluster: std::sync::Mutex::new(child),
        private: false,
    };
    bed.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &repo_root().join("crds").to_string_lossy(),
    ]);
    // Right after the apply the CRD may have no conditions yet, and `kubectl wait` fails
    // on that at once instead of waiting: try again for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let wait = [
        "wait",
        "--for=condition=Established",
        "crd/microservices.shoal.dev",
        "--timeout=60s",
    ];
    while !bed.kubectl(&wait).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    bed.kubectl_ok(&wait);
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

    /// Writes a kubeconfig for the cluster that authenticates with `token` only (for
    /// example a ServiceAccount's, from `kubectl create token`).
    pub fn token_kubeconfig(&self, token: &str, path: &Path) {
        let admin: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig"))
                .expect("kubeconfig YAML");
        let cluster = admin["clusters"][0]["cluster"].clone();
        assert!(
            cluster["server"].is_string(),
            "admin kubeconfig has a server"
        );
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": cluster}],
            "users": [{"name": "shoal", "user": {"token": token}}],
            "contexts": [{"name": "shoal", "context": {"cluster": "test", "user": "shoal"}}],
            "current-context": "shoal",
        });
        std::fs::write(path, serde_yaml::to_string(&config).expect("kubeconfig")).expect("write");
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

/// Sends `SIG<name>` to process `pid` with kill(1) (the crate forbids unsafe code, so no libc).
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
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

/// Version of the Gateway API whose standard-channel CRDs (HTTPRoute and the kinds it
/// refers to) the traffic-router tests install; hack/tools.sh reads it from this line.
pub const GATEWAY_API_VERSION: &str = "v1.6.3";

/// The kinds of the Gateway API's standard channel the tests install.
pub const GATEWAY_API_KINDS: [&str; 4] = [
    "gatewayclasses",
    "gateways",
    "httproutes",
    "referencegrants",
];

/// The Gateway API CRD files, laid out by hack/tools.sh (`make tools`, which `make test`
/// runs) from the Go module `sigs.k8s.io/gateway-api` in
/// `$SHOAL_TOOLS/gateway-api-crds-<version>/` (default `~/.cache/shoal/tools`). Panics,
/// naming the command that makes them, when they are missing.
pub fn gateway_api_crds() -> Vec<PathBuf> {
    let tools = std::env::var_os("SHOAL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/shoal/tools")
        });
    let dir = tools.join(format!("gateway-api-crds-{GATEWAY_API_VERSION}"));
    GATEWAY_API_KINDS
        .iter()
        .map(|kind| {
            let crd = dir.join(format!("gateway.networking.k8s.io_{kind}.yaml"));
            assert!(
                crd.exists(),
                "{} is missing: run `bash hack/tools.sh` (make test does)",
                crd.display()
            );
            crd
        })
        .collect()
}

//! Test beds of one test's own ([`TestBed::private`]) and `kube up`'s control commands.

use std::time::{Duration, Instant};

use crate::{TestBed, start_bed};

impl TestBed {
    /// A test bed of one test's own, for what would disturb the shared one (restarting its
    /// apiserver, throttling it): `kube up <flags>` (for example `--apf`, `--audit-reads`;
    /// no Prometheus unless `--prometheus`), with the CRD installed. Torn down when dropped;
    /// its directory is removed too unless the test failed. Panics when it cannot start.
    pub fn private(label: &str, flags: &[&str]) -> TestBed {
        let dir = std::env::temp_dir().join(format!("shoal-e2e-{}-{label}", std::process::id()));
        let mut bed = start_bed(dir, flags);
        bed.private = true;
        bed
    }

    /// Runs `kube up`'s control command `name` with argument `arg` (docs/test-bed.md:
    /// `restart-apiserver`, `compact-etcd`) and returns its outcome (after `ok `); panics
    /// when it fails or takes more than 4 minutes.
    pub fn control(&self, name: &str, arg: &str) -> String {
        let dir = self.dir.join("control");
        let done = dir.join(format!("{name}.done"));
        let _ = std::fs::remove_file(&done);
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, arg).expect("writing a control file");
        std::fs::rename(&tmp, dir.join(name)).expect("renaming a control file");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Ok(text) = std::fs::read_to_string(&done)
                && text.ends_with('\n')
            {
                let text = text.trim();
                return text
                    .strip_prefix("ok ")
                    .unwrap_or_else(|| panic!("kube up {name} {arg}: {text}"))
                    .to_string();
            }
            assert!(
                Instant::now() < deadline,
                "kube up did not carry out {name} within 4 minutes; see {}/logs",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        // Closing kube up's stdin tears the cluster down.
        let child = self._cluster.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(child.stdin.take());
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!("test bed kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

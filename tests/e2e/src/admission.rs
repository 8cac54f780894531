//! A ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) that refuses every write
//! to the `scale` subresource of Deployments in one namespace, as a cluster's policy would:
//! the way to make an autoscaler's scale write fail for real.

use std::time::{Duration, Instant};

use crate::TestBed;

/// The refusal message the policy answers with.
pub const MESSAGE: &str = "scale writes are refused in this namespace (shoal e2e policy)";

/// An active policy refusing scale writes in one namespace; lifted by [`ScaleWriteBlock::lift`]
/// or when dropped.
pub struct ScaleWriteBlock<'a> {
    bed: &'a TestBed,
    name: String,
    lifted: bool,
}

impl<'a> ScaleWriteBlock<'a> {
    /// Applies the policy and its binding for `namespace`, and returns once the apiserver
    /// enforces it: a server-side dry-run scale of Deployment `probe` (which must exist) is
    /// refused. Dry runs go through admission but change nothing; the audit helpers skip them.
    pub fn new(bed: &'a TestBed, namespace: &str, probe: &str) -> ScaleWriteBlock<'a> {
        let name = format!("deny-scale-{namespace}");
        let name: String = name.chars().take(63).collect();
        let yaml = format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["*"]
      operations: ["UPDATE", "CREATE"]
      resources: ["deployments/scale"]
  validations:
  - expression: "false"
    message: "{MESSAGE}"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
"#
        );
        let out = bed.kubectl_stdin(&["apply", "-f", "-"], &yaml);
        assert!(
            out.status.success(),
            "applying the scale-refusing policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let block = ScaleWriteBlock {
            bed,
            name,
            lifted: false,
        };
        block.wait_until(namespace, probe, false);
        block
    }

    /// Deletes the binding and the policy, and returns once a dry-run scale of `probe` is
    /// accepted again (the moment writes are allowed, as far as a client can tell).
    pub fn lift(&mut self, namespace: &str, probe: &str) -> Instant {
        self.delete();
        self.wait_until(namespace, probe, true)
    }

    fn delete(&mut self) {
        if self.lifted {
            return;
        }
        self.lifted = true;
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = self
                .bed
                .kubectl(&["delete", kind, &self.name, "--ignore-not-found"]);
        }
    }

    /// Polls a dry-run scale of `probe` until it is accepted (`allowed`) or refused by
    /// this policy; returns when that was first seen.
    fn wait_until(&self, namespace: &str, probe: &str, allowed: bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.bed.kubectl(&[
                "patch",
                "deployment",
                probe,
                "-n",
                namespace,
                "--subresource=scale",
                "--type=merge",
                "--dry-run=server",
                "-p",
                r#"{"spec":{"replicas":1}}"#,
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            if allowed && out.status.success() {
                return Instant::now();
            }
            if !allowed && err.contains(MESSAGE) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "the scale-refusing policy was not {} within 30 s: {err}",
                if allowed { "lifted" } else { "enforced" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ScaleWriteBlock<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

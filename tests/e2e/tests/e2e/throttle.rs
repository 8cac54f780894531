//! Throttling by API Priority and Fairness (issue 16), on a test bed of its own
//! (`kube up --apf --audit-reads`): the operator runs as a ServiceAccount whose requests a
//! FlowSchema sends to a PriorityLevelConfiguration of one seat with queuing off, so
//! whatever comes beyond one request at a time is refused with 429 and a `Retry-After`.
//! From the audit log (every request of the ServiceAccount, reads included):
//!
//! - the limit bites (the apiserver refused requests with 429: otherwise the test proves
//!   nothing);
//! - Shoal respects `Retry-After`: a refused request is not sent again within the second
//!   the apiserver asked for (kube-client's retry layer sleeps at least `Retry-After`).
//!   The audit log has no request ids, so a retry is the next request with the same verb,
//!   URI and object name; two watches list Deployments with the same URI, so a few
//!   "early" ones may be another stream's first try: at most a tenth are allowed;
//! - no request storm: at most 40 refusals in any one second (16 reconciles, 8 watches and
//!   the autoscaler, each refused at most once per `Retry-After`) and at most 150 requests
//!   (one seat serves short requests fast); a client retrying at once sends hundreds;
//! - once the FlowSchema is deleted (the limit lifted), every Microservice converges.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use shoal_e2e::TestBed;
use shoal_e2e::audit::{self, AuditEvent};

use crate::helpers::*;

const MICROSERVICES: usize = 20;
/// How long the operator works under the limit.
const THROTTLED: Duration = Duration::from_secs(40);
/// A refused request may come again after `Retry-After` (at least 1 s) minus this slack.
const RETRY_SLACK: Duration = Duration::from_millis(100);
/// Most requests in any one second.
const MOST_PER_SECOND: usize = 150;
/// Most refused requests in any one second.
const MOST_REFUSED_PER_SECOND: usize = 40;

fn microservice(i: usize) -> String {
    let web = if i % 2 == 1 {
        format!("  port: 8080\n  config: {{A: b}}\n  ingress: {{host: ms-{i}.example.com}}\n")
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata:\n  name: ms-{i}\nspec:\n  image: registry.example/app:1\n{web}"
    )
}

/// One seat for the ServiceAccount `ns/shoal` (nominal shares 1 beside a ballast level
/// of 10000 shares that nothing uses: the apiserver's 600 seats are shared out in
/// proportion), no borrowing, queuing off.
fn flow_control(ns: &str) -> String {
    format!(
        r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: shoal-tight}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: ballast}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 10000
    lendablePercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: shoal-tight}}
spec:
  matchingPrecedence: 200
  priorityLevelConfiguration: {{name: shoal-tight}}
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {{name: shoal, namespace: {ns}}}
    resourceRules:
    - verbs: ["*"]
      apiGroups: ["*"]
      resources: ["*"]
      namespaces: ["*"]
      clusterScope: true
    nonResourceRules:
    - verbs: ["*"]
      nonResourceURLs: ["*"]
"#
    )
}

/// Every request of `user` received in [from, to).
fn requests(bed: &TestBed, user: &str, from: Timestamp, to: Timestamp) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = audit::completed(&bed.audit_log())
        .into_iter()
        .filter(|e| e.user.username == user && e.received() >= from && e.received() < to)
        .collect();
    events.sort_by_key(AuditEvent::received);
    events
}

/// Refused requests sent again sooner than 1 s (the least `Retry-After`) after the refusal.
fn early_retries(events: &[AuditEvent]) -> Vec<String> {
    let mut refused: HashMap<(String, String, Option<String>), Timestamp> = HashMap::new();
    let mut early = Vec::new();
    for e in events {
        let name = e.object_ref.as_ref().map(|o| o.name.clone());
        let key = (e.verb.clone(), e.request_uri.clone(), name);
        if let Some(at) = refused.remove(&key) {
            let gap = e.received().duration_since(at).as_secs_f64();
            if gap < 1.0 - RETRY_SLACK.as_secs_f64() {
                early.push(format!(
                    "{} {} again after {gap:.3}s",
                    e.verb, e.request_uri
                ));
            }
        }
        if e.code() == 429 {
            // The refusal is answered at its stage time: the wait starts there.
            refused.insert(key, e.stage_timestamp.unwrap_or(e.received()));
        }
    }
    early
}

/// The most requests received within one second (a sliding window).
fn peak_per_second<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> usize {
    let times: Vec<Timestamp> = events.into_iter().map(AuditEvent::received).collect();
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]).as_secs_f64() >= 1.0 {
            start += 1;
        }
        peak = peak.max(end + 1 - start);
    }
    peak
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_operator_respects_429_and_converges_once_lifted() {
    let bed = &TestBed::private("throttle", &["--apf", "--audit-reads"]);
    let ns = bed.namespace("throttle");
    bed.kubectl_ok(&["create", "serviceaccount", "shoal", "-n", &ns]);
    bed.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &ns,
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={ns}:shoal"),
    ]);
    let token = bed.kubectl_ok(&["create", "token", "shoal", "-n", &ns, "--duration=1h"]);
    let kubeconfig = bed.dir.join("kubeconfig-shoal");
    bed.token_kubeconfig(token.trim(), &kubeconfig);
    let user = format!("system:serviceaccount:{ns}:shoal");
    let out = bed.kubectl_stdin(&["apply", "-f", "-"], &flow_control(&ns));
    assert!(
        out.status.success(),
        "the flow control objects are refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml: String = (0..MICROSERVICES).map(microservice).collect();
    apply(bed, &ns, &yaml);

    let from = Timestamp::now();
    let _op = bed.operator_with_kubeconfig(&ns, &kubeconfig, &[]);
    tokio::time::sleep(THROTTLED).await;
    let lifted_at = Timestamp::now();
    let throttled = requests(bed, &user, from, lifted_at);
    let refused = throttled.iter().filter(|e| e.code() == 429).count();
    let ready_before = (0..MICROSERVICES)
        .filter(|i| {
            get(bed, &ns, "ms", &format!("ms-{i}"))
                .and_then(|ms| condition(&ms, "Ready"))
                .is_some_and(|c| c.0 == "True")
        })
        .count();

    // Lift the limit: the ServiceAccount's requests fall to the default flow schemas.
    let lifted = Instant::now();
    bed.kubectl_ok(&["delete", "flowschema", "shoal-tight"]);
    for i in 0..MICROSERVICES {
        wait_ready(bed, &ns, &format!("ms-{i}")).await;
    }
    let converged = lifted.elapsed();

    let seconds = THROTTLED.as_secs_f64();
    let peak = peak_per_second(&throttled);
    let peak_refused = peak_per_second(throttled.iter().filter(|e| e.code() == 429));
    let early = early_retries(&throttled);
    eprintln!(
        "throttle: {} requests in {seconds:.0}s under one seat ({:.1}/s, peak {peak} in one second), {refused} refused with 429 (peak {peak_refused} in one second), {} retried within 1 s; {ready_before}/{MICROSERVICES} Ready before the limit was lifted, all {:.1}s after",
        throttled.len(),
        throttled.len() as f64 / seconds,
        early.len(),
        converged.as_secs_f64()
    );
    assert!(
        refused > 0,
        "the apiserver refused none of the operator's {} requests: the limit did not bite, so this test proves nothing",
        throttled.len()
    );
    assert!(
        early.len() * 10 <= refused,
        "requests sent again within 1 s of a 429: {early:#?}"
    );
    assert!(
        peak <= MOST_PER_SECOND && peak_refused <= MOST_REFUSED_PER_SECOND,
        "{peak} requests and {peak_refused} refusals within one second: a request storm"
    );
}

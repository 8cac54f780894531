//! Chaos, the way Knative's chaosduck works (issue 16): two `shoal run` processes with
//! leader election over 30 Microservices of every kind; every 30 s the lease holder is
//! SIGKILLed and started again, while a Microservice changes every 10 s. Each process has
//! a ServiceAccount of its own, so the apiserver's audit log says who wrote what, and the
//! assertions come from it:
//!
//! - fencing: every write of an operator lands while the last lease write was its own (no
//!   two processes write in overlapping tenures);
//! - handover: the first lease write after a kill comes within the lease duration plus one
//!   retry period;
//! - first reconcile: the new holder's first write comes within seconds of its takeover
//!   (there is always work waiting: a change was made during the gap);
//! - convergence: every Microservice Ready at its generation, one ReplicaSet per template.
//!
//! `SHOAL_CHAOS_SECONDS` sets how long the chaos lasts: 75 s in `make test`, 300 s with
//! `make chaos`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use shoal::leader::{LEASE_DURATION, LEASE_NAME, RETRY_PERIOD};
use shoal_e2e::audit::{self, AuditEvent};
use shoal_e2e::{Operator, TestBed, testbed, wait_for};

use crate::helpers::*;

const MICROSERVICES: usize = 30;
const KILL_EVERY: Duration = Duration::from_secs(30);
const CHANGE_EVERY: Duration = Duration::from_secs(10);
/// Slack on top of lease duration + retry period for the requests of one attempt.
const REQUEST_SLACK: Duration = Duration::from_millis(500);
/// "Within seconds": far below the 60 s reconcile timeout.
const FIRST_WRITE_WITHIN: Duration = Duration::from_secs(10);

fn chaos_duration() -> Duration {
    let seconds = std::env::var("SHOAL_CHAOS_SECONDS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("SHOAL_CHAOS_SECONDS is a number of seconds")
        })
        .unwrap_or(75);
    Duration::from_secs(seconds)
}

/// Microservice `i`, of kind `i % 4`: minimal, web with Ingress and config, CPU-only
/// (a native HPA), request rate (Shoal's metrics loop).
fn microservice(i: usize) -> String {
    let spec = match i % 4 {
        0 => "  image: registry.example/hello:1.0.0\n".to_string(),
        1 => format!(
            "  image: registry.example/web:1.0.0\n  port: 8080\n  replicas: 2\n  config: {{LOG_LEVEL: info}}\n  ingress: {{host: ms-{i}.example.com}}\n"
        ),
        2 => "  image: registry.example/worker:1.0.0\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {minReplicas: 1, maxReplicas: 4, cpu: {targetUtilization: 60}}\n".to_string(),
        _ => "  image: registry.example/api:1.0.0\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {minReplicas: 2, maxReplicas: 6, cpu: {targetUtilization: 70}, requestRate: {targetPerReplica: 50}}\n".to_string(),
    };
    format!(
        "---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata:\n  name: ms-{i}\nspec:\n{spec}"
    )
}

/// The operator processes of the test, each with a ServiceAccount of its own.
struct Fleet<'a> {
    bed: &'a TestBed,
    ns: String,
    started: usize,
    /// (audit user name, process)
    running: Vec<(String, Operator)>,
}

impl Fleet<'_> {
    /// Starts one more operator as ServiceAccount `chaos-<n>`.
    fn start(&mut self) {
        let sa = format!("chaos-{}", self.started);
        self.started += 1;
        let ns = &self.ns;
        self.bed
            .kubectl_ok(&["create", "serviceaccount", &sa, "-n", ns]);
        let token = self
            .bed
            .kubectl_ok(&["create", "token", &sa, "-n", ns, "--duration=1h"]);
        let kubeconfig = self.bed.dir.join(format!("kubeconfig-{ns}-{sa}"));
        self.bed.token_kubeconfig(token.trim(), &kubeconfig);
        let op = self.bed.operator_with_kubeconfig(
            ns,
            &kubeconfig,
            &["--leader-election", "--leader-election-namespace", ns],
        );
        self.running
            .push((format!("system:serviceaccount:{ns}:{sa}"), op));
    }

    /// The lease holder's index in `running`, from the Lease's `holderIdentity`
    /// (`<host>-<pid>`).
    fn holder(&self) -> Option<usize> {
        let lease = get(self.bed, &self.ns, "lease", LEASE_NAME)?;
        let holder = lease["spec"]["holderIdentity"].as_str()?;
        let pid: u32 = holder.rsplit('-').next()?.parse().ok()?;
        self.running
            .iter()
            .position(|(_, op)| op.pid() == Some(pid))
    }
}

/// What the audit log says about one kill.
struct Handover {
    killed: String,
    /// Kill to the first lease write of another process.
    takeover: Duration,
    /// That takeover to the new holder's first other write.
    first_write: Option<Duration>,
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    later
        .duration_since(earlier)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

/// Writes by the operators (ServiceAccounts `chaos-*` of `ns`) that the apiserver carried
/// out, in the order it received them: (lease writes, other writes).
fn operator_writes(bed: &TestBed, ns: &str) -> (Vec<AuditEvent>, Vec<AuditEvent>) {
    let prefix = format!("system:serviceaccount:{ns}:chaos-");
    let mut writes: Vec<AuditEvent> = audit::completed(&bed.audit_log())
        .into_iter()
        .filter(|e| audit::WRITE_VERBS.contains(&e.verb.as_str()) && e.succeeded())
        .filter(|e| e.user.username.starts_with(&prefix))
        .filter(|e| !e.request_uri.contains("dryRun="))
        .collect();
    writes.sort_by_key(AuditEvent::received);
    writes.into_iter().partition(|e| {
        e.object_ref
            .as_ref()
            .is_some_and(|o| o.resource == "leases" && o.name == LEASE_NAME)
    })
}

/// Writes (other than to the lease) of a process while the last lease write before it
/// was another's, as messages.
fn fencing_violations(leases: &[AuditEvent], others: &[AuditEvent]) -> Vec<String> {
    others
        .iter()
        .filter_map(|w| {
            let holder = leases
                .iter()
                .take_while(|l| l.received() <= w.received())
                .last()
                .map(|l| l.user.username.as_str());
            (holder != Some(w.user.username.as_str())).then(|| {
                format!(
                    "{} {} {:?} at {} by {} while the lease was last written by {holder:?}",
                    w.verb,
                    w.request_uri,
                    w.object_ref.as_ref().map(|o| &o.name),
                    w.received(),
                    w.user.username
                )
            })
        })
        .collect()
}

fn summary(label: &str, mut values: Vec<Duration>) -> String {
    values.sort();
    if values.is_empty() {
        return format!("{label}: none");
    }
    let s = |d: Duration| format!("{:.1}s", d.as_secs_f64());
    format!(
        "{label}: n={} min {} median {} max {}",
        values.len(),
        s(values[0]),
        s(values[values.len() / 2]),
        s(values[values.len() - 1])
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_leader_elected_operators_survive_a_sigkill_every_30s() {
    let bed = testbed();
    let ns = bed.namespace("chaos");
    // Every ServiceAccount of the namespace may do what the operator does.
    bed.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &ns,
        "--clusterrole=cluster-admin",
        &format!("--group=system:serviceaccounts:{ns}"),
    ]);
    let mut fleet = Fleet {
        bed,
        ns: ns.clone(),
        started: 0,
        running: Vec::new(),
    };
    fleet.start();
    fleet.start();
    let yaml: String = (0..MICROSERVICES).map(microservice).collect();
    apply(bed, &ns, &yaml);
    for i in 0..MICROSERVICES {
        wait_ready(bed, &ns, &format!("ms-{i}")).await;
    }

    let duration = chaos_duration();
    let started = Instant::now();
    let mut kills: Vec<(Timestamp, String)> = Vec::new();
    let mut changes = 0usize;
    let mut next_change = started + CHANGE_EVERY;
    let mut next_kill = started + KILL_EVERY;
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_change {
            let i = changes % MICROSERVICES;
            changes += 1;
            let patch =
                format!(r#"{{"spec":{{"env":[{{"name":"CHANGE","value":"{changes}"}}]}}}}"#);
            bed.kubectl_ok(&[
                "patch",
                "ms",
                &format!("ms-{i}"),
                "-n",
                &ns,
                "--type=merge",
                "-p",
                &patch,
            ]);
            next_change += CHANGE_EVERY;
        }
        if now >= next_kill {
            let holder = wait_for(
                "a lease holder among the processes",
                LEASE_DURATION * 2,
                || async { fleet.holder() },
            )
            .await;
            let (user, mut op) = fleet.running.remove(holder);
            op.kill();
            kills.push((Timestamp::now(), user.clone()));
            eprintln!(
                "chaos: killed the holder {user} at {:.0}s",
                started.elapsed().as_secs_f64()
            );
            fleet.start();
            next_kill += KILL_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "chaos: {} kills, {changes} changes in {:.0}s",
        kills.len(),
        started.elapsed().as_secs_f64()
    );

    // Convergence: every Microservice at its generation and Ready, one ReplicaSet per
    // template of each Deployment.
    for i in 0..MICROSERVICES {
        wait_ready(bed, &ns, &format!("ms-{i}")).await;
    }
    let rs_list: Value =
        serde_json::from_str(&bed.kubectl_ok(&["get", "rs", "-n", &ns, "-o", "json"])).expect("rs");
    let mut per_template: HashMap<(String, String), usize> = HashMap::new();
    for rs in rs_list["items"].as_array().expect("items") {
        let owner = rs["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let hash = rs["spec"]["template"]["metadata"]["annotations"]["shoal.dev/template-hash"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *per_template.entry((owner, hash)).or_default() += 1;
    }
    let duplicates: Vec<_> = per_template.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "ReplicaSets of the same template: {duplicates:?}"
    );
    for i in 0..MICROSERVICES {
        let name = format!("ms-{i}");
        let d = get(bed, &ns, "deployment", &name).expect("deployment");
        let current =
            d["spec"]["template"]["metadata"]["annotations"]["shoal.dev/template-hash"].clone();
        let matching = rs_list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["name"] == name.as_str())
            .filter(|rs| {
                rs["spec"]["template"]["metadata"]["annotations"]["shoal.dev/template-hash"]
                    == current
            })
            .count();
        assert_eq!(matching, 1, "{name}: one ReplicaSet of its final template");
    }

    // What the audit log says.
    let (leases, others) = operator_writes(bed, &ns);
    eprintln!(
        "chaos: {} lease writes and {} other writes of {} processes checked",
        leases.len(),
        others.len(),
        fleet.started
    );
    let violations = fencing_violations(&leases, &others);
    assert!(
        violations.is_empty(),
        "writes outside the writer's tenure:\n{}",
        violations.join("\n")
    );
    let mut handovers = Vec::new();
    for (at, killed) in &kills {
        assert!(
            !leases
                .iter()
                .chain(&others)
                .any(|w| &w.user.username == killed && w.received() > *at),
            "{killed} wrote after it was killed"
        );
        let takeover = leases
            .iter()
            .find(|l| l.received() > *at)
            .unwrap_or_else(|| panic!("no takeover after the kill of {killed}"));
        let first_write = others
            .iter()
            .find(|w| {
                w.user.username == takeover.user.username && w.received() > takeover.received()
            })
            .map(|w| since(w.received(), takeover.received()));
        handovers.push(Handover {
            killed: killed.clone(),
            takeover: since(takeover.received(), *at),
            first_write,
        });
    }
    eprintln!(
        "chaos: {}",
        summary(
            "kill to takeover",
            handovers.iter().map(|h| h.takeover).collect()
        )
    );
    eprintln!(
        "chaos: {}",
        summary(
            "takeover to first write",
            handovers.iter().filter_map(|h| h.first_write).collect()
        )
    );
    for h in &handovers {
        assert!(
            h.takeover <= LEASE_DURATION + RETRY_PERIOD + REQUEST_SLACK,
            "handover after the kill of {} took {:?}",
            h.killed,
            h.takeover
        );
        let first = h
            .first_write
            .unwrap_or_else(|| panic!("the holder after {} never wrote", h.killed));
        assert!(
            first <= FIRST_WRITE_WITHIN,
            "first write {first:?} after the takeover that followed the kill of {}",
            h.killed
        );
    }
    assert!(
        !kills.is_empty(),
        "the chaos killed nobody (SHOAL_CHAOS_SECONDS too short)"
    );
}

//! Watch desync (issue 16), on a test bed of its own (its apiserver is restarted): with
//! Microservices converged, the operator's watches are broken twice.
//!
//! 1. The apiserver restarts while the operator runs: its watches fail and come back
//!    (resumed where etcd still has the history, listed again where the apiserver answers
//!    410 Gone); nothing is written.
//! 2. The operator is frozen (SIGSTOP) while the apiserver restarts, some Microservices
//!    change, one is created, a child is deleted and etcd is compacted; then it carries
//!    on. Every change is reconciled, no object is written twice, the untouched ones get
//!    no write at all, and its memory comes back to its steady level.
//!
//! Reads are audited too (`kube up --audit-reads`): the lists after each break prove the
//! relist. The figures are printed for docs/resilience.md.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use shoal_e2e::audit::{self, AuditEvent};
use shoal_e2e::{Operator, TestBed, wait_for};

use crate::helpers::*;

const MICROSERVICES: usize = 12;
/// The resources the operator watches (PodMonitors only where their CRD is installed).
const WATCHED: [&str; 7] = [
    "microservices",
    "deployments",
    "services",
    "ingresses",
    "horizontalpodautoscalers",
    "configmaps",
    "replicasets",
];

fn microservice(i: usize, image: &str) -> String {
    let web = if i % 2 == 1 {
        format!(
            "  port: 8080\n  config: {{LOG_LEVEL: info}}\n  ingress: {{host: ms-{i}.example.com}}\n"
        )
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata:\n  name: ms-{i}\nspec:\n  image: registry.example/app:{image}\n{web}"
    )
}

/// The operator's requests (User-Agent `shoal/`) received since `since`.
fn operator_requests(bed: &TestBed, ns: &str, since: Timestamp) -> Vec<AuditEvent> {
    audit::completed(&bed.audit_log())
        .into_iter()
        .filter(|e| e.user_agent.starts_with("shoal/") && e.received() >= since)
        .filter(|e| {
            // Cluster-scoped requests (discovery) have no namespace.
            e.object_ref
                .as_ref()
                .is_none_or(|o| o.namespace.is_empty() || o.namespace == ns)
        })
        .collect()
}

/// When the last of the watched resources was listed (or, with `or_watched`, listed or
/// watched) successfully by the operator since `since`; None until every one was.
fn relisted(bed: &TestBed, ns: &str, since: Timestamp, or_watched: bool) -> Option<Timestamp> {
    let mut first: HashMap<String, Timestamp> = HashMap::new();
    let started = audit::events(&bed.audit_log())
        .into_iter()
        .filter(|e| e.stage == "ResponseStarted" && e.verb == "watch");
    let requests = operator_requests(bed, ns, since);
    let watches = started
        .filter(|e| or_watched && e.user_agent.starts_with("shoal/") && e.received() >= since)
        .filter(|e| e.object_ref.as_ref().is_some_and(|o| o.namespace == ns));
    for e in requests.into_iter().chain(watches) {
        if (e.verb == "list" || e.verb == "watch") && e.code() == 200 {
            let resource = e
                .object_ref
                .as_ref()
                .map(|o| o.resource.clone())
                .unwrap_or_default();
            first.entry(resource).or_insert(e.received());
        }
    }
    WATCHED
        .iter()
        .map(|r| first.get(*r).copied())
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// Writes per object (resource, name, subresource) by the operator since `since`. Its
/// children are named after it (`ms-3`, `ms-3-config-<hash>`), its Events `ms-3.<id>`.
fn writes_since(bed: &TestBed, ns: &str, since: Timestamp) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for e in operator_requests(bed, ns, since) {
        if audit::WRITE_VERBS.contains(&e.verb.as_str())
            && let Some(o) = e.object_ref
        {
            let resource = if o.subresource.is_empty() {
                o.resource
            } else {
                format!("{}/{}", o.resource, o.subresource)
            };
            *counts.entry((resource, o.name)).or_default() += 1;
        }
    }
    counts
}

fn rss_mib(op: &Operator) -> f64 {
    op.metric("process_resident_memory_bytes", &[])
        .expect("process_resident_memory_bytes on /metrics")
        / 1048576.0
}

/// The largest resident memory over a few samples 1 s apart.
async fn rss_level(op: &Operator) -> f64 {
    let mut level = 0f64;
    for _ in 0..5 {
        level = level.max(rss_mib(op));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    level
}

fn secs(later: Timestamp, earlier: Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64()
}

async fn all_ready(bed: &TestBed, ns: &str, names: &[String]) {
    for name in names {
        wait_ready(bed, ns, name).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_during_a_watch_desync_are_reconciled_once() {
    let bed = &TestBed::private("desync", &["--audit-reads"]);
    let ns = bed.namespace("desync");
    let yaml: String = (0..MICROSERVICES).map(|i| microservice(i, "1")).collect();
    apply(bed, &ns, &yaml);
    let op = bed.operator(&ns, &[]);
    let names: Vec<String> = (0..MICROSERVICES).map(|i| format!("ms-{i}")).collect();
    all_ready(bed, &ns, &names).await;
    settled_writes(bed, &ns).await;
    let steady = rss_level(&op).await;

    // 1. The apiserver restarts under the running operator.
    let t0 = Timestamp::now();
    let restart = bed.control("restart-apiserver", "2");
    let back = Timestamp::now();
    let relist = wait_for("every watch of the operator back", TIMEOUT, || async {
        relisted(bed, &ns, back, true)
    })
    .await;
    let listed: Vec<String> = operator_requests(bed, &ns, t0)
        .into_iter()
        .filter(|e| e.verb == "list" && e.code() == 200)
        .filter_map(|e| e.object_ref.map(|o| o.resource))
        .collect();
    settled_writes(bed, &ns).await;
    let written = writes_since(bed, &ns, t0);
    assert!(
        written.is_empty(),
        "writes after a restart with nothing changed: {written:?}"
    );
    let after_restart = rss_level(&op).await;
    eprintln!(
        "desync: restart ({restart}): every watch back {:.1}s after the apiserver (listed again: {listed:?}), no write; RSS {steady:.1} MiB before, {after_restart:.1} MiB after",
        secs(relist, back)
    );

    // 2. Frozen operator; restart, changes, compaction; then it carries on.
    op.pause();
    let t1 = Timestamp::now();
    let restart = bed.control("restart-apiserver", "0");
    let changed = ["ms-0", "ms-1", "ms-2"];
    for name in changed {
        bed.kubectl_ok(&[
            "patch",
            "-n",
            &ns,
            "ms",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"image":"registry.example/app:2"}}"#,
        ]);
    }
    bed.kubectl_ok(&[
        "patch",
        "-n",
        &ns,
        "ms",
        "ms-3",
        "--type=merge",
        "-p",
        r#"{"spec":{"config":{"LOG_LEVEL":"debug"}}}"#,
    ]);
    bed.kubectl_ok(&["delete", "-n", &ns, "service", "ms-5", "--wait=false"]);
    apply(bed, &ns, &microservice(MICROSERVICES, "1"));
    let compacted = bed.control("compact-etcd", "");
    let resumed_at = Timestamp::now();
    let resumed = Instant::now();
    op.resume();
    let relist = wait_for("the operator to list again", TIMEOUT, || async {
        relisted(bed, &ns, resumed_at, false)
    })
    .await;
    let new = format!("ms-{MICROSERVICES}");
    let touched: Vec<String> = ["ms-0", "ms-1", "ms-2", "ms-3", "ms-5", &new]
        .map(str::to_string)
        .to_vec();
    all_ready(bed, &ns, &touched).await;
    for name in changed {
        let image = get(bed, &ns, "deployment", name).expect("deployment")
            ["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone();
        assert_eq!(image, "registry.example/app:2", "{name}'s Deployment image");
    }
    wait_exists(bed, &ns, "service", "ms-5").await;
    let converged = resumed.elapsed();
    settled_writes(bed, &ns).await;
    let after = rss_level(&op).await;
    let peak = op
        .metric("process_resident_memory_peak_bytes", &[])
        .expect("process_resident_memory_peak_bytes")
        / 1048576.0;

    let written = writes_since(bed, &ns, t1);
    let twice: Vec<_> = written
        .iter()
        .filter(|((resource, _), n)| !resource.ends_with("/status") && **n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "objects written more than once: {twice:?}"
    );
    let untouched: Vec<_> = written
        .keys()
        .filter(|(_, name)| {
            !touched.iter().any(|t| {
                name == t
                    || name.starts_with(&format!("{t}-"))
                    || name.starts_with(&format!("{t}."))
            })
        })
        .collect();
    assert!(
        untouched.is_empty(),
        "writes to what did not change: {untouched:?} (all writes: {written:?})"
    );
    for name in changed {
        assert_eq!(
            written.get(&("deployments".to_string(), name.to_string())),
            Some(&1),
            "{name}'s Deployment: one write (all writes: {written:?})"
        );
    }
    assert_eq!(
        written.get(&("services".to_string(), "ms-5".to_string())),
        Some(&1),
        "the deleted Service: created once again (all writes: {written:?})"
    );
    let objects: usize = written
        .iter()
        .filter(|((r, _), _)| !r.ends_with("/status"))
        .map(|(_, n)| n)
        .sum();
    let statuses: usize = written
        .iter()
        .filter(|((r, _), _)| r.ends_with("/status"))
        .map(|(_, n)| n)
        .sum();
    // Memory: back to its steady level (allocator noise allowed: 20 % or 8 MiB).
    let ceiling = (steady * 1.2).max(steady + 8.0);
    assert!(
        after <= ceiling,
        "RSS {after:.1} MiB after the relist, steady {steady:.1} MiB (ceiling {ceiling:.1})"
    );
    eprintln!(
        "desync: frozen operator, restart ({restart}), 5 changes, compaction ({compacted}): listed again {:.1}s after resuming, converged in {:.1}s; {objects} object writes (each once) and {statuses} status writes, none to the {} untouched Microservices; RSS {steady:.1} MiB steady, {after:.1} MiB after, peak {peak:.1} MiB",
        secs(relist, resumed_at),
        converged.as_secs_f64(),
        MICROSERVICES - 5,
    );
}

//! Zero downtime through a node drain: two fake nodes of the test's own, a 4-replica
//! Microservice spread over both by Shoal's default topology spread, `kubectl drain` of
//! one of them. The PodDisruptionBudget Shoal renders makes the drain evict one pod at a
//! time, so the service never drops below 3 ready pods (never to 0). The pods become
//! Ready 3 s after they are created (the test bed's slow-start image tag), as real pods
//! take a while: without the budget, both pods of the drained node would go at once.

use std::collections::BTreeMap;

use serde_json::Value;
use shoal_e2e::recorder::{ReplicaRecorder, describe};
use shoal_e2e::{TestBed, testbed, wait_for};

use crate::helpers::*;

/// Nodes that only the test's own pods may use (a taint keeps every other test's pods
/// off them), deleted when dropped. KWOK manages every Node annotated
/// `kwok.x-k8s.io/node: fake`, as it manages the test bed's `kwok-node-0`.
struct FakeNodes<'a> {
    bed: &'a TestBed,
    names: Vec<String>,
}

impl<'a> FakeNodes<'a> {
    fn create(bed: &'a TestBed, pool: &str, zones: &[&str]) -> FakeNodes<'a> {
        let mut names = Vec::new();
        for zone in zones {
            let name = format!("{pool}-{zone}");
            let node = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": format!("{pool}-{zone}"),
                        "shoal.dev/test-pool": pool,
                    },
                },
                "spec": {"taints": [{"key": "shoal.dev/test-pool", "value": pool, "effect": "NoSchedule"}]},
                "status": {
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                },
            });
            let out = bed.kubectl_stdin(&["create", "-f", "-"], &node.to_string());
            assert!(
                out.status.success(),
                "creating node {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            names.push(name);
        }
        FakeNodes { bed, names }
    }
}

impl Drop for FakeNodes<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ =
                self.bed
                    .kubectl(&["delete", "node", name, "--wait=false", "--ignore-not-found"]);
        }
    }
}

/// Pods of `instance` that are not terminating, by node.
fn pods_by_node(bed: &TestBed, ns: &str, instance: &str) -> BTreeMap<String, usize> {
    let pods: Value = serde_json::from_str(&bed.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("app.kubernetes.io/instance={instance}"),
        "-o",
        "json",
    ]))
    .expect("pods json");
    let mut by_node = BTreeMap::new();
    for pod in pods["items"].as_array().into_iter().flatten() {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("<unscheduled>");
        *by_node.entry(node.to_string()).or_insert(0) += 1;
    }
    by_node
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_drain_never_leaves_a_multi_replica_service_without_ready_pods() {
    let bed = testbed();
    let ns = bed.namespace("drain");
    let nodes = FakeNodes::create(bed, &ns, &["a", "b"]);
    let (node_a, node_b) = (nodes.names[0].clone(), nodes.names[1].clone());
    for node in &nodes.names {
        bed.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("node/{node}"),
            "--timeout=60s",
        ]);
    }
    let _op = bed.operator(&ns, &[]);
    let client = bed.client().await;
    let recorder = ReplicaRecorder::start(client, &ns, "web");
    apply(
        bed,
        &ns,
        &format!(
            "apiVersion: shoal.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: web}}\nspec:\n  image: registry.example/web:1-ready-after-3s\n  replicas: 4\n  nodeSelector: {{shoal.dev/test-pool: {ns}}}\n  tolerations: [{{key: shoal.dev/test-pool, value: {ns}, effect: NoSchedule}}]\n"
        ),
    );
    wait_ready(bed, &ns, "web").await;

    // Shoal's default spread put the pods on both nodes, two each.
    let spread = wait_for("4 pods scheduled", TIMEOUT, || async {
        let by_node = pods_by_node(bed, &ns, "web");
        (by_node.values().sum::<usize>() == 4).then_some(by_node)
    })
    .await;
    assert_eq!(
        spread,
        BTreeMap::from([(node_a.clone(), 2), (node_b.clone(), 2)]),
        "spread over both nodes"
    );

    // The budget: one pod at a time, unhealthy pods always evictable.
    let pdb = wait_for(
        "the PodDisruptionBudget allowing 1 disruption",
        TIMEOUT,
        || async {
            let pdb = get(bed, &ns, "pdb", "web")?;
            (pdb.pointer("/status/disruptionsAllowed") == Some(&Value::from(1))
                && pdb.pointer("/status/expectedPods") == Some(&Value::from(4)))
            .then_some(pdb)
        },
    )
    .await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(
        pdb["metadata"]["ownerReferences"][0]["kind"], "Microservice",
        "owned by the Microservice"
    );

    let drained_at = std::time::Instant::now();
    let drain = {
        let node = node_a.clone();
        tokio::task::spawn_blocking(move || {
            testbed().kubectl(&[
                "drain",
                &node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=120s",
            ])
        })
        .await
        .expect("kubectl drain")
    };
    let stderr = String::from_utf8_lossy(&drain.stderr);
    assert!(drain.status.success(), "kubectl drain failed: {stderr}");
    eprintln!(
        "kubectl drain: {}{stderr}",
        String::from_utf8_lossy(&drain.stdout)
    );
    // Both pods of the node were evicted at once: the budget refused the second one until
    // the first one's replacement was Ready (kubectl retries every 5 s).
    assert!(
        stderr.contains("disruption budget"),
        "the budget held back an eviction: {stderr}"
    );

    let by_node = wait_for("4 pods on the remaining node", TIMEOUT, || async {
        let by_node = pods_by_node(bed, &ns, "web");
        (by_node == BTreeMap::from([(node_b.clone(), 4)])).then_some(by_node)
    })
    .await;
    assert_eq!(by_node.values().sum::<usize>(), 4);
    wait_for("4 ready replicas", TIMEOUT, || async {
        (recorder.last()?.ready == 4).then_some(())
    })
    .await;
    let during = recorder.since(drained_at);
    let fewest = during.iter().map(|s| s.ready).min().unwrap_or(0);
    assert!(
        fewest >= 3,
        "at most one pod unavailable at any time (never 0 ready): {}",
        describe(&recorder.samples())
    );
    wait_ready(bed, &ns, "web").await;
}

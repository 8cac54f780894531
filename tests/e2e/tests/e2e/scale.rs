//! `kubectl scale ms` and where the service answers: the scale subresource sets
//! `spec.replicas` of a non-autoscaled Microservice, is refused for an autoscaled one, and
//! `kubectl get ms` shows the service's URL.

use serde_json::Value;
use shoal_e2e::{testbed, wait_for};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_scale_scales_a_fixed_service_and_is_refused_for_an_autoscaled_one() {
    let bed = testbed();
    let ns = bed.namespace("scale-ms");
    let _op = bed.operator(&ns, &[]);
    apply_example(bed, &ns, "minimal.yaml");
    apply_example(bed, &ns, "cpu-only.yaml");
    let hello = wait_ready(bed, &ns, "hello").await;
    assert_eq!(
        hello["status"]["url"],
        format!("http://hello.{ns}.svc.cluster.local"),
        "status.url"
    );
    assert_eq!(
        hello["status"]["selector"],
        "app.kubernetes.io/instance=hello,app.kubernetes.io/name=hello"
    );
    let table = bed.kubectl_ok(&["get", "ms", "hello", "-n", &ns]);
    assert!(
        table.contains("URL") && table.contains(&format!("http://hello.{ns}.svc.cluster.local")),
        "the URL column: {table}"
    );

    bed.kubectl_ok(&["scale", "ms/hello", "-n", &ns, "--replicas=4"]);
    wait_for("the Deployment at 4 replicas", TIMEOUT, || async {
        (replicas(bed, &ns, "hello") == 4).then_some(())
    })
    .await;
    let scale: Value = serde_json::from_str(&bed.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/apis/shoal.dev/v1alpha1/namespaces/{ns}/microservices/hello/scale"),
    ]))
    .expect("scale json");
    assert_eq!(scale["spec"]["replicas"], 4);
    wait_for("status.replicas at 4", TIMEOUT, || async {
        let ms = get(bed, &ns, "ms", "hello")?;
        (ms["status"]["replicas"] == 4).then_some(())
    })
    .await;

    wait_ready(bed, &ns, "worker").await;
    let before = replicas(bed, &ns, "worker");
    let out = bed.kubectl(&["scale", "ms/worker", "-n", &ns, "--replicas=4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "scaling an autoscaled service is refused"
    );
    assert!(
        stderr.contains("autoscaling owns the replica count") && stderr.contains("maxReplicas"),
        "the message says to use the autoscaling bounds: {stderr}"
    );
    assert_eq!(replicas(bed, &ns, "worker"), before, "nothing changed");
}

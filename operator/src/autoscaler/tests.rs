//! The autoscaler's gathering and status steps without a cluster: `inputs::observe` from
//! canned Prometheus responses (parsed as the source parses them), and the status builder's
//! "no patch when nothing changed".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_http_query::response::Data;

use super::decision::{self, Behavior, Inputs, MetricKind, PodState, Reading, State};
use super::inputs::{self, Batches, Target};
use super::source::tests::config;
use super::source::{self, MetricError};
use super::status;
use crate::test_support::{DeploymentAt, deployment, microservice};

const SPEC: &str = "  image: app:1\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 10\n    requestRate: {targetPerReplica: 50}\n";

fn target() -> Target {
    let ms = Arc::new(microservice(SPEC));
    let valid = crate::validate::validate(&ms).expect("valid");
    let settings = inputs::settings(&valid).expect("the Shoal engine");
    Target {
        ms,
        valid,
        settings,
    }
}

fn pod(name: &str, ready: bool) -> Arc<Pod> {
    let phase = if ready { "Running" } else { "Pending" };
    let status = if ready { "True" } else { "False" };
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "prod", "labels": {"app.kubernetes.io/instance": "shop"}},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": status}]},
        }))
        .expect("pod"),
    )
}

/// A Prometheus instant vector as the HTTP API returns it, one series per (pod, value).
fn vector(series: &[(&str, f64)]) -> Data {
    let result: Vec<serde_json::Value> = series
        .iter()
        .map(|(pod, v)| {
            serde_json::json!({
                "metric": {"namespace": "prod", "service": "shop", "pod": pod},
                "value": [1, v.to_string()],
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({"resultType": "vector", "result": result}))
        .expect("data")
}

fn batches(rate: &[(&str, f64)], span: &[(&str, f64)], burst: Option<f64>) -> Batches {
    let by_pod = |d: &Data| source::by_labels(d, "namespace", &["service", "pod"]);
    let burst = burst.map(|b| vec![("x", b)]).unwrap_or_default();
    Batches {
        rate: by_pod(&vector(rate)),
        span: by_pod(&vector(span)),
        burst: source::by_labels(&vector(&burst), "namespace", &["service"]),
        cpu: Ok(HashMap::new()),
        own: HashMap::new(),
    }
}

fn observe(b: &Batches, pods: &[Arc<Pod>]) -> inputs::Observed {
    let d = Arc::new(deployment(DeploymentAt::complete(1, pods.len() as i32)));
    inputs::observe(&config(), vec![target()], |_| Some(d.clone()), pods, b)
        .pop()
        .expect("one observed")
}

#[test]
fn a_whole_window_is_read_per_pod_and_the_burst_per_service() {
    let pods = [pod("a", true), pod("b", true), pod("c", false)];
    let o = observe(
        &batches(
            &[("a", 100.0), ("b", 110.0)],
            &[("a", 60.0), ("b", 61.0)],
            Some(215.0),
        ),
        &pods,
    );
    assert_eq!(o.current, 3);
    let Ok(Reading::Pods {
        pods,
        window_complete,
        burst,
    }) = &o.metrics[0].reading
    else {
        panic!("{:?}", o.metrics[0].reading)
    };
    assert!(window_complete);
    assert_eq!(*burst, Some(215.0));
    let states: Vec<(PodState, Option<f64>)> = pods.iter().map(|p| (p.state, p.value)).collect();
    assert_eq!(
        states,
        [
            (PodState::Ready, Some(100.0)),
            (PodState::Ready, Some(110.0)),
            (PodState::Unready, None)
        ]
    );
    assert_eq!(o.queries[0].1, config().request_rate_query());
}

#[test]
fn a_span_well_over_the_window_marks_a_gap_and_a_new_pod_has_no_value() {
    let pods = [pod("a", true), pod("new", true)];
    // Prometheus was paused: the newest sample one window older is 150 s back.
    let o = observe(&batches(&[("a", 180.0)], &[("a", 150.0)], None), &pods);
    let Ok(Reading::Pods {
        pods,
        window_complete,
        ..
    }) = &o.metrics[0].reading
    else {
        panic!()
    };
    assert!(!window_complete);
    assert_eq!(
        pods[1].value, None,
        "the new pod's series has no sample a window old"
    );
    // The decision holds at 2 (a gap may raise, never lower) though 180 req/s asks for 4:
    // scale up is allowed, scale down would not be.
    let inputs = Inputs {
        current: o.current,
        min: 1,
        max: 10,
        behavior: Behavior::resolve(None, 0),
        metrics: o.metrics.clone(),
        rollout_in_progress: false,
        paused: false,
        fallback: None,
    };
    let (d, _) = decision::decide(&inputs, &State::default(), 0);
    assert!(d.desired >= 2, "{d:?}");
}

#[test]
fn a_failed_batch_is_an_error_for_every_microservice() {
    let mut b = batches(&[], &[], None);
    b.rate = Err(MetricError::Timeout(Duration::from_secs(5)));
    let o = observe(&b, &[pod("a", true)]);
    assert_eq!(o.metrics[0].kind, MetricKind::RequestRate);
    assert_eq!(
        o.metrics[0].reading.as_ref().err().map(|e| e.reason()),
        Some("timeout")
    );
}

#[test]
fn the_status_builder_writes_nothing_when_nothing_but_noise_changed() {
    let pods = [pod("a", true), pod("b", true)];
    let o = observe(
        &batches(
            &[("a", 50.0), ("b", 50.0)],
            &[("a", 60.0), ("b", 60.0)],
            Some(100.0),
        ),
        &pods,
    );
    let inputs = Inputs {
        current: o.current,
        min: 1,
        max: 10,
        behavior: Behavior::resolve(None, 300),
        metrics: o.metrics.clone(),
        rollout_in_progress: false,
        paused: false,
        fallback: None,
    };
    let (d, _) = decision::decide(&inputs, &State::default(), 0);
    let now = Time("2026-01-01T00:00:00Z".parse().expect("time"));
    let s = status::autoscaler_status(&o, &d, None);
    let conditions = status::conditions(
        &[],
        &[
            d.able_to_scale.clone(),
            d.scaling_active.clone(),
            d.scaling_limited.clone(),
        ],
        3,
        &now,
    );
    assert_eq!(
        s.request_rate.as_ref().and_then(|r| r.window.as_deref()),
        Some("stable")
    );
    assert!(
        status::patch(None, &s, &conditions).is_some(),
        "a first status is written"
    );
    let stored = crate::crd::MicroserviceStatus {
        autoscaler: Some(s.clone()),
        conditions: conditions.clone(),
        ..Default::default()
    };
    // The same decision a tick later, with 3% more traffic: no patch.
    let o2 = observe(
        &batches(
            &[("a", 51.5), ("b", 51.5)],
            &[("a", 60.0), ("b", 60.0)],
            Some(103.0),
        ),
        &pods,
    );
    let later = Time("2026-01-01T00:00:02Z".parse().expect("time"));
    let s2 = status::autoscaler_status(&o2, &d, None);
    let c2 = status::conditions(
        &conditions,
        &[
            d.able_to_scale.clone(),
            d.scaling_active.clone(),
            d.scaling_limited.clone(),
        ],
        3,
        &later,
    );
    assert!(status::patch(Some(&stored), &s2, &c2).is_none());
    // A real change of the value is written.
    let o3 = observe(
        &batches(
            &[("a", 80.0), ("b", 80.0)],
            &[("a", 60.0), ("b", 60.0)],
            Some(160.0),
        ),
        &pods,
    );
    let (d3, _) = decision::decide(
        &Inputs {
            metrics: o3.metrics.clone(),
            ..inputs
        },
        &State::default(),
        0,
    );
    let s3 = status::autoscaler_status(&o3, &d3, None);
    assert_eq!(
        s3.request_rate.as_ref().and_then(|r| r.current),
        Some(160.0)
    );
    assert!(status::patch(Some(&stored), &s3, &c2).is_some());
}

/// The loop passes over a Microservice it found not to be a target without unpacking it
/// until its version moves: same version, other contents, still skipped (the apiserver
/// never does this; here it shows the skip); a new version is read again and becomes a
/// target; a deleted one leaves the skipped set.
#[test]
fn a_non_target_is_skipped_until_its_version_moves() {
    use crate::caches::PackedMicroservice;
    const OTHER_ENGINE: &str = "  image: app:1\n  autoscaling:\n    engine: HPA\n    minReplicas: 1\n    maxReplicas: 10\n    cpu: {targetUtilization: 70}\n";
    let at = |spec: &str, version: &str| {
        let mut ms = microservice(spec);
        ms.metadata.uid = Some("0b6b8f1e-5c1d-4f8e-9a57-3f0f1c2d3e4f".into());
        ms.metadata.resource_version = Some(version.into());
        Arc::new(PackedMicroservice::pack(&ms).expect("packs"))
    };
    let mut skipped = std::collections::HashSet::new();
    let found = super::select_targets(vec![at(OTHER_ENGINE, "1")], &mut skipped);
    assert!(found.is_empty(), "the HPA engine is not the loop's");
    assert_eq!(skipped.len(), 1, "remembered as not a target");
    // Same version, now the Shoal engine: not unpacked, so still skipped.
    let found = super::select_targets(vec![at(SPEC, "1")], &mut skipped);
    assert!(found.is_empty(), "a remembered version is not read again");
    assert_eq!(skipped.len(), 1);
    // A new version is read again.
    let found = super::select_targets(vec![at(SPEC, "2")], &mut skipped);
    assert_eq!(found.len(), 1, "the new version is the Shoal engine's");
    assert!(skipped.is_empty(), "a target is not remembered as skipped");
    // Invalid, then gone: remembered, then forgotten.
    let found = super::select_targets(vec![at("  image: ''\n", "3")], &mut skipped);
    assert!(found.is_empty());
    assert_eq!(skipped.len(), 1);
    super::select_targets(Vec::new(), &mut skipped);
    assert!(skipped.is_empty(), "a deleted Microservice is forgotten");
}

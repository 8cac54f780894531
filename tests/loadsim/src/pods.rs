//! Turning Kubernetes Pods into [`PodView`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use k8s_openapi::api::core::v1::Pod;

use crate::sim::{PodView, Track};

/// Label selector of the pods the simulator follows.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=shoal";
/// Label naming the service a pod belongs to.
pub const SERVICE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the pod's release track: `canary`, or `stable` (the same as no label).
pub const TRACK_LABEL: &str = "shoal.dev/track";
/// Annotation: share of the pod's requests answered 5xx, a number from 0 to 1.
pub const ERROR_RATIO_ANNOTATION: &str = "loadsim.shoal.dev/error-ratio";
/// Annotation: median latency of the pod's requests in milliseconds, a number > 0.
pub const LATENCY_ANNOTATION: &str = "loadsim.shoal.dev/latency-ms";

/// Image tag that makes a pod answer [`BAD_ERROR_RATIO`] of its requests with a 5xx.
pub const BAD_TAG: &str = "bad";
/// Error ratio of a pod whose image tag is [`BAD_TAG`] (without the annotation).
pub const BAD_ERROR_RATIO: f64 = 0.2;
/// Image tag that makes a pod slow: median latency [`SLOW_LATENCY_MS`].
pub const SLOW_TAG: &str = "slow";
/// Median latency of a pod whose image tag is [`SLOW_TAG`] (without the annotation).
pub const SLOW_LATENCY_MS: f64 = 800.0;
/// Median latency of any other pod, in milliseconds.
pub const DEFAULT_LATENCY_MS: f64 = 50.0;

/// Whether the pod is Running, has condition Ready=True and is not being deleted.
pub fn is_serving(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The simulator's view of a pod, with what was wrong in its track label or loadsim
/// annotations (each ignored in favour of the default); `None` when the pod has no name or
/// no service label.
pub fn pod_view(pod: &Pod) -> Option<(PodView, Vec<String>)> {
    let name = pod.metadata.name.clone()?;
    let labels = pod.metadata.labels.as_ref()?;
    let service = labels.get(SERVICE_LABEL)?.clone();
    let mut warnings = Vec::new();
    let track = match labels.get(TRACK_LABEL).map(String::as_str) {
        None | Some("stable") => Track::Stable,
        Some("canary") => Track::Canary,
        Some(other) => {
            warnings.push(format!(
                "label {TRACK_LABEL}={other:?} is neither \"stable\" nor \"canary\"; counting the pod as stable"
            ));
            Track::Stable
        }
    };
    let tag = first_image(pod).and_then(image_tag);
    let error_ratio = annotation(
        pod,
        ERROR_RATIO_ANNOTATION,
        "a number from 0 to 1",
        |v| (0.0..=1.0).contains(&v),
        &mut warnings,
    )
    .unwrap_or(if tag == Some(BAD_TAG) {
        BAD_ERROR_RATIO
    } else {
        0.0
    });
    let latency_ms = annotation(
        pod,
        LATENCY_ANNOTATION,
        "a number of milliseconds > 0",
        |v| v > 0.0,
        &mut warnings,
    )
    .unwrap_or(if tag == Some(SLOW_TAG) {
        SLOW_LATENCY_MS
    } else {
        DEFAULT_LATENCY_MS
    });
    let view = PodView {
        name,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        service,
        serving: is_serving(pod),
        track,
        error_ratio,
        latency_median: latency_ms / 1000.0,
    };
    Some((view, warnings))
}

/// The finite number in annotation `key` if `valid` accepts it; a warning and `None` for
/// anything else, `None` alone when the annotation is absent.
fn annotation(
    pod: &Pod,
    key: &str,
    expected: &str,
    valid: impl Fn(f64) -> bool,
    warnings: &mut Vec<String>,
) -> Option<f64> {
    let raw = pod.metadata.annotations.as_ref()?.get(key)?;
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && valid(v) => Some(v),
        _ => {
            warnings.push(format!(
                "annotation {key}={raw:?} is not {expected}; ignoring it"
            ));
            None
        }
    }
}

fn first_image(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers.first()?.image.as_deref()
}

/// The tag of an image reference: `example/app:bad` -> `bad`; none for `example/app`,
/// `registry:5000/app` or a digest alone.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment.split_once(':').map(|(_, tag)| tag)
}

/// An address clients on this machine can connect to: the unspecified address (`0.0.0.0`,
/// `::`) becomes loopback.
pub fn connect_addr(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

/// Prometheus `file_sd` content for one target.
pub fn file_sd_json(target: SocketAddr) -> String {
    serde_json::json!([{"targets": [target.to_string()], "labels": {"job": "loadsim"}}]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(phase: &str, ready: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("api-1".into()),
                uid: Some("u".into()),
                labels: Some([(SERVICE_LABEL.to_owned(), "api".to_owned())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn serving_rules() {
        assert!(is_serving(&pod("Running", "True")));
        assert!(!is_serving(&pod("Running", "False")));
        assert!(!is_serving(&pod("Pending", "True")));
        let mut deleting = pod("Running", "True");
        deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(!is_serving(&deleting));
        assert!(!is_serving(&Pod::default()));
    }

    #[test]
    fn views() {
        let (v, warnings) = pod_view(&pod("Running", "True")).expect("view");
        assert_eq!(
            v,
            PodView {
                name: "api-1".into(),
                uid: "u".into(),
                service: "api".into(),
                serving: true,
                track: Track::Stable,
                error_ratio: 0.0,
                latency_median: 0.05,
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut unlabelled = pod("Running", "True");
        unlabelled.metadata.labels = None;
        assert_eq!(pod_view(&unlabelled), None);
    }

    fn with(labels: &[(&str, &str)], annotations: &[(&str, &str)], image: &str) -> Pod {
        let mut p = pod("Running", "True");
        let all = p.metadata.labels.get_or_insert_default();
        all.extend(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        p.spec = Some(PodSpec {
            containers: vec![
                Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                },
                Container {
                    name: "sidecar".into(),
                    image: Some("example/sidecar:slow".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        p
    }

    /// Track, error ratio, median latency (seconds) and warning count of a pod.
    fn profile(p: &Pod) -> (Track, f64, f64, usize) {
        let (v, warnings) = pod_view(p).expect("view");
        (v.track, v.error_ratio, v.latency_median, warnings.len())
    }

    #[test]
    fn track_comes_from_the_label() {
        let canary = with(&[(TRACK_LABEL, "canary")], &[], "example/app:1");
        assert_eq!(profile(&canary), (Track::Canary, 0.0, 0.05, 0));
        let stable = with(&[(TRACK_LABEL, "stable")], &[], "example/app:1");
        assert_eq!(profile(&stable), (Track::Stable, 0.0, 0.05, 0));
        let odd = with(&[(TRACK_LABEL, "blue")], &[], "example/app:1");
        assert_eq!(profile(&odd), (Track::Stable, 0.0, 0.05, 1));
    }

    #[test]
    fn image_tags_set_the_defaults() {
        // Only the first container's image counts (the sidecar is `:slow`).
        assert_eq!(
            profile(&with(&[], &[], "example/app:bad")),
            (Track::Stable, 0.2, 0.05, 0)
        );
        assert_eq!(
            profile(&with(&[], &[], "registry:5000/example/app:slow")),
            (Track::Stable, 0.0, 0.8, 0)
        );
        assert_eq!(
            profile(&with(&[], &[], "registry:5000/bad")),
            (Track::Stable, 0.0, 0.05, 0)
        );
        assert_eq!(image_tag("example/app:bad"), Some("bad"));
        assert_eq!(image_tag("example/app:slow@sha256:0123"), Some("slow"));
        assert_eq!(image_tag("example/app@sha256:0123"), None);
        assert_eq!(image_tag("registry:5000/app"), None);
        assert_eq!(image_tag("app"), None);
    }

    #[test]
    fn annotations_win_over_image_tags() {
        let p = with(
            &[(TRACK_LABEL, "canary")],
            &[
                (ERROR_RATIO_ANNOTATION, "0.05"),
                (LATENCY_ANNOTATION, " 120 "),
            ],
            "example/app:bad",
        );
        assert_eq!(profile(&p), (Track::Canary, 0.05, 0.12, 0));
        let p = with(
            &[],
            &[(ERROR_RATIO_ANNOTATION, "0"), (LATENCY_ANNOTATION, "50")],
            "example/app:slow",
        );
        assert_eq!(profile(&p), (Track::Stable, 0.0, 0.05, 0));
        let p = with(&[], &[(ERROR_RATIO_ANNOTATION, "1")], "example/app:1");
        assert_eq!(profile(&p), (Track::Stable, 1.0, 0.05, 0));
    }

    #[test]
    fn bad_annotations_fall_back_with_a_warning() {
        for (ratio, latency) in [
            ("1.5", "0"),
            ("-0.1", "-5"),
            ("NaN", "inf"),
            ("20%", "50ms"),
            ("", ""),
        ] {
            let p = with(
                &[],
                &[
                    (ERROR_RATIO_ANNOTATION, ratio),
                    (LATENCY_ANNOTATION, latency),
                ],
                "example/app:bad",
            );
            let (v, warnings) = pod_view(&p).expect("view");
            assert_eq!(
                (v.error_ratio, v.latency_median),
                (0.2, 0.05),
                "{ratio} {latency}"
            );
            assert_eq!(warnings.len(), 2, "{warnings:?}");
            assert!(warnings[0].contains(ERROR_RATIO_ANNOTATION), "{warnings:?}");
            assert!(warnings[1].contains(LATENCY_ANNOTATION), "{warnings:?}");
        }
        let p = with(&[], &[(LATENCY_ANNOTATION, "fast")], "example/app:slow");
        assert_eq!(profile(&p), (Track::Stable, 0.0, 0.8, 1));
    }

    #[test]
    fn sd_file() {
        let bound: SocketAddr = "0.0.0.0:9100".parse().expect("addr");
        let target = connect_addr(bound);
        assert_eq!(target.to_string(), "127.0.0.1:9100");
        let json: serde_json::Value =
            serde_json::from_str(&file_sd_json(target)).expect("valid json");
        assert_eq!(
            json,
            serde_json::json!([{"targets": ["127.0.0.1:9100"], "labels": {"job": "loadsim"}}])
        );
        let v6: SocketAddr = "[::]:1".parse().expect("addr");
        assert_eq!(connect_addr(v6).to_string(), "[::1]:1");
    }
}

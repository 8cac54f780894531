//! Turning Kubernetes Pods into [`PodView`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use k8s_openapi::api::core::v1::Pod;

use crate::sim::PodView;

/// Label selector of the pods the simulator follows.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=shoal";
/// Label naming the service a pod belongs to.
pub const SERVICE_LABEL: &str = "app.kubernetes.io/instance";

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

/// The simulator's view of a pod; `None` when it has no name or no service label.
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let name = pod.metadata.name.clone()?;
    let service = pod.metadata.labels.as_ref()?.get(SERVICE_LABEL)?.clone();
    Some(PodView {
        name,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        service,
        serving: is_serving(pod),
    })
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
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
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
        let v = pod_view(&pod("Running", "True")).expect("view");
        assert_eq!(
            v,
            PodView {
                name: "api-1".into(),
                uid: "u".into(),
                service: "api".into(),
                serving: true
            }
        );
        let mut unlabelled = pod("Running", "True");
        unlabelled.metadata.labels = None;
        assert_eq!(pod_view(&unlabelled), None);
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

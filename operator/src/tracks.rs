//! The tracks of a canary release, shared by the controller and the metrics loop: the
//! names and labels of the canary's objects, and how replicas split between the tracks.

/// Pod label naming the track of a canary release: `canary` on canary pods; `stable` on the
/// stable Deployment's pods only when a traffic router needs a Service of its own for them
/// (`nginx`, `gatewayAPI`). Pods without it are the stable track, so turning canaries on
/// with the default routing (replica ratio) restarts no pod.
pub const TRACK_LABEL: &str = "shoal.dev/track";
/// Value of [`TRACK_LABEL`] on canary pods.
pub const CANARY_TRACK: &str = "canary";
/// Value of [`TRACK_LABEL`] on the stable Deployment's pods when a traffic router is set.
pub const STABLE_TRACK: &str = "stable";

/// Name of the canary Deployment (and of the canary Service and Ingress).
pub fn canary_name(name: &str) -> String {
    format!("{name}-canary")
}

/// Name of the Service that selects only the stable track (traffic routers).
pub fn stable_name(name: &str) -> String {
    format!("{name}-stable")
}

/// Canary replicas beside `stable` stable ones so that the canary's share of the pods is
/// about `weight` percent: at least one.
pub fn canary_replicas(stable: i32, weight: i32) -> i32 {
    if weight <= 0 || weight >= 100 {
        return 1;
    }
    let c = (f64::from(stable.max(0)) * f64::from(weight) / f64::from(100 - weight)).round();
    (c as i32).max(1)
}

/// The stable replicas that, with their canary ([`canary_replicas`]), make at least
/// `total`: what an autoscaler asking for `total` writes to the stable Deployment.
pub fn stable_share(total: i32, weight: i32) -> i32 {
    (1..=total.max(1))
        .find(|&s| s + canary_replicas(s, weight) >= total)
        .unwrap_or(1)
}

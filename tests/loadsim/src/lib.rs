//! Pure parts of the Shoal load simulator (`loadsim`).
//!
//! The simulator invents per-pod request, latency and CPU figures for the serving pods it sees
//! in a namespace, so that Prometheus can scrape them and the autoscaler can close the loop
//! load -> metric -> scale decision -> new pods -> lower per-pod load (and canary analysis
//! can compare the error ratio and latency of the tracks).
//!
//! Everything here is free of I/O so it can be unit-tested; `main.rs` wires it to the
//! Kubernetes API, a clock and an HTTP server.

pub mod control;
pub mod expo;
pub mod latency;
pub mod pods;
pub mod schedule;
pub mod sim;

pub use control::LoadControl;
pub use expo::{CODE_ERROR, CODE_OK, CONTENT_TYPE, render, render_pod};
pub use latency::LatencyHistogram;
pub use pods::{
    ERROR_RATIO_ANNOTATION, LATENCY_ANNOTATION, MANAGED_SELECTOR, SERVICE_LABEL, TRACK_LABEL,
    connect_addr, file_sd_json, pod_view,
};
pub use schedule::{Schedule, Step, rate_at};
pub use sim::{
    CostModel, PodCounters, PodView, ServiceStats, SimState, Track, advance, apply_noise,
};

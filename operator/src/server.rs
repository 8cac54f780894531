//! The operator's HTTP endpoint: `/metrics`, `/healthz` and `/readyz`.
//!
//! - `/healthz` answers 200 whenever the process serves HTTP (the liveness probe).
//! - `/readyz` answers 200 once the process is either following (waiting for the leader
//!   lease, ready to take over) or leading with its loops started, and 503 while it starts
//!   up (connecting, checking the CRD) or shuts down. A follower is ready on purpose: a
//!   rolling update of a two-replica Deployment needs the standby pod Ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting to the cluster and checking the CRD.
    Starting = 0,
    /// Waiting for the leader lease; ready to take over.
    Following = 1,
    /// Running the controller and the metrics loop.
    Leading = 2,
    /// Stopping after SIGTERM.
    Stopping = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Following,
            2 => Phase::Leading,
            3 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }

    /// Whether `/readyz` answers 200 in this phase.
    pub fn is_ready(self) -> bool {
        matches!(self, Phase::Following | Phase::Leading)
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Following => "following",
            Phase::Leading => "leading",
            Phase::Stopping => "stopping",
        }
    }
}

/// The phase the probes report, shared between the run loop and the server.
#[derive(Debug, Default)]
pub struct Health {
    phase: AtomicU8,
}

impl Health {
    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the endpoint's address (port 0 picks a free port; see the returned listener's
/// `local_addr`).
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics and probe address {address}"))
}

/// The endpoint's routes.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, health })
}

/// Serves the endpoint until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    if let Err(err) = axum::serve(listener, router(metrics, health)).await {
        tracing::error!(error = %err, "the metrics and probe endpoint stopped");
    }
}

async fn serve_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let phase = state.health.phase();
    let code = if phase.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", phase.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_followers_and_leaders_are_ready() {
        let health = Health::default();
        assert_eq!(health.phase(), Phase::Starting);
        assert!(!health.phase().is_ready());
        for (phase, ready) in [
            (Phase::Following, true),
            (Phase::Leading, true),
            (Phase::Stopping, false),
            (Phase::Starting, false),
        ] {
            health.set(phase);
            assert_eq!(health.phase(), phase);
            assert_eq!(health.phase().is_ready(), ready, "{phase:?}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let listener = bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(serve(listener, metrics, health.clone()));
        let get = |path: &'static str| async move {
            let response = http_get(addr, path).await;
            let code: u16 = response
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (code, response)
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503);
        health.set(Phase::Following);
        assert_eq!(get("/readyz").await.0, 200);
        let (code, body) = get("/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("shoal_reconciles_total 0"), "{body}");
        assert!(body.contains("application/openmetrics-text"), "{body}");
    }

    /// A bare HTTP/1.1 GET (keeps the test free of an HTTP client dependency).
    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }
}

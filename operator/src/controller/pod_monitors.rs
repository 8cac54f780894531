//! The Prometheus Operator's `PodMonitor` resource, when its CRD is installed: detected
//! through API discovery at start and re-checked periodically, so a CRD installed (or
//! removed) after Shoal started is picked up without a restart. While it is installed a
//! watch cache of Shoal's PodMonitors feeds the reconciles; without it Shoal renders only
//! the `prometheus.io/*` pod annotations.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kube::Client;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::render::{MONITORING_GROUP, PodMonitor};
use crate::kube_ext::{self, scoped};
use crate::vocabulary::MANAGED_SELECTOR;

/// Default seconds between two discovery checks for the PodMonitor CRD.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(30);

/// Whether PodMonitors can be written, and the watch cache of Shoal's PodMonitors.
#[derive(Default)]
pub struct PodMonitors {
    store: RwLock<Option<Store<PodMonitor>>>,
}

impl PodMonitors {
    /// The watch cache while the PodMonitor CRD is installed and the cache holds its first
    /// list; None otherwise (the controller then leaves PodMonitors alone).
    pub fn store(&self) -> Option<Store<PodMonitor>> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, store: Option<Store<PodMonitor>>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = store;
    }
}

/// Whether the apiserver serves `podmonitors` in `monitoring.coreos.com/v1`, asked through
/// API discovery (readable by every authenticated user: no RBAC needed).
pub async fn crd_installed(client: &Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{MONITORING_GROUP}/v1"))
        .await
    {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "podmonitors")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err),
    }
}

/// The channels [`watch`] sends on: each PodMonitor it sees (to wake its owner), and a
/// unit each time PodMonitors become writable (to reconcile every Microservice).
pub struct Triggers {
    /// PodMonitors the watch saw change (as the controller's `owns_stream` takes them;
    /// watch errors are logged here, never sent).
    pub touched: mpsc::Sender<Result<PodMonitor, watcher::Error>>,
    /// PodMonitors became available.
    pub available: mpsc::Sender<()>,
}

/// Checks for the PodMonitor CRD every `recheck` until the process ends: starts a watch
/// cache of Shoal's PodMonitors when the CRD appears, drops it when the CRD goes.
pub async fn watch(
    client: Client,
    namespace: Option<String>,
    recheck: Duration,
    shared: Arc<PodMonitors>,
    mut triggers: Triggers,
) {
    let mut running: Option<(JoinHandle<()>, Store<PodMonitor>)> = None;
    loop {
        match crd_installed(&client).await {
            Ok(true) => {
                if running.is_none() {
                    info!(
                        "the PodMonitor CRD is installed: Shoal manages a PodMonitor per Microservice"
                    );
                    let (reader, writer) = reflector::store();
                    let api = scoped::<PodMonitor>(&client, namespace.as_deref());
                    let mut touched = triggers.touched.clone();
                    let task = tokio::spawn(async move {
                        let mut objects = kube_ext::reflected(api, Some(MANAGED_SELECTOR), writer)
                            .touched_objects()
                            .boxed();
                        while let Some(event) = objects.next().await {
                            match event {
                                Ok(pm) => {
                                    let _ = touched.send(Ok(pm)).await;
                                }
                                Err(err) => warn!(error = %err, "watching PodMonitors"),
                            }
                        }
                    });
                    running = Some((task, reader));
                }
                if let Some((_, reader)) = &running
                    && shared.store().is_none()
                    && tokio::time::timeout(recheck, reader.wait_until_ready())
                        .await
                        .is_ok()
                {
                    shared.set(Some(reader.clone()));
                    let _ = triggers.available.send(()).await;
                }
            }
            Ok(false) => {
                if let Some((task, _)) = running.take() {
                    info!("the PodMonitor CRD is gone: Shoal stops managing PodMonitors");
                    task.abort();
                    shared.set(None);
                }
            }
            Err(err) => warn!(error = %err, "checking whether the PodMonitor CRD is installed"),
        }
        tokio::time::sleep(recheck).await;
    }
}

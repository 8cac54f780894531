//! Kubernetes Events for users. Each publish creates a new Event: kube-runtime's Recorder
//! folds repeats of one (reason, action, object) into a series that keeps the first
//! message, which would hide "New size: 8" behind "New size: 5".

use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Publishes Events as one reporting controller.
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    reporter: Reporter,
}

impl EventSink {
    /// An event sink reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Publishes one event about `reference`.
    pub async fn publish(
        &self,
        event: &Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(event, reference)
            .await
    }
}

//! Reading the apiserver's audit log: the apiserver's own record of who wrote what.

use std::path::Path;

use k8s_openapi::jiff::Timestamp;

/// Verbs that change state.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// One audited request.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Request verb (create, patch, ...).
    pub verb: String,
    /// The client's User-Agent.
    #[serde(default)]
    pub user_agent: String,
    /// Who sent it, as authenticated.
    #[serde(default)]
    pub user: User,
    /// Audit stage; each request is counted at ResponseComplete.
    pub stage: String,
    /// The object acted on.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// Request URI (names the field manager of an apply).
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    /// When the apiserver received the request.
    #[serde(default)]
    pub request_received_timestamp: Option<Timestamp>,
    /// When the apiserver reached this stage (for ResponseComplete: when it answered).
    #[serde(default)]
    pub stage_timestamp: Option<Timestamp>,
    /// The answer's status (its `code` is the HTTP status).
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
}

/// The authenticated user of a request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct User {
    /// User name (`system:serviceaccount:<namespace>:<name>` for a ServiceAccount).
    #[serde(default)]
    pub username: String,
}

/// What an audited request touched.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ObjectRef {
    /// Resource (deployments, configmaps, ...).
    #[serde(default)]
    pub resource: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Subresource (status, scale).
    #[serde(default)]
    pub subresource: String,
}

/// The status part of an audited answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ResponseStatus {
    /// HTTP status code.
    #[serde(default)]
    pub code: u16,
    /// Message of a refusal.
    #[serde(default)]
    pub message: String,
}

impl AuditEvent {
    /// True when the apiserver carried the request out (2xx).
    pub fn succeeded(&self) -> bool {
        self.response_status
            .as_ref()
            .is_none_or(|s| (200..300).contains(&s.code))
    }

    /// The HTTP status code (200 when the event has none: the apiserver omits it on success
    /// at some levels).
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map_or(200, |s| s.code)
    }

    /// When the apiserver received the request (falls back to the stage time).
    pub fn received(&self) -> Timestamp {
        self.request_received_timestamp
            .or(self.stage_timestamp)
            .unwrap_or_default()
    }
}

/// Every event of the audit log, any stage (a watch has `ResponseStarted` when it starts
/// and `ResponseComplete` only when it ends).
pub fn events(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .collect()
}

/// Every completed request in the audit log.
pub fn completed(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .filter(|e| e.stage == "ResponseComplete")
        .collect()
}

/// Completed write requests in `namespace` sent by a client whose User-Agent starts with `agent`.
pub fn writes(path: &Path, namespace: &str, agent: &str) -> Vec<AuditEvent> {
    completed(path)
        .into_iter()
        .filter(|e| WRITE_VERBS.contains(&e.verb.as_str()))
        .filter(|e| e.user_agent.starts_with(agent))
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.namespace == namespace)
        })
        .collect()
}

/// Writes (patch or update) of the operator (User-Agent `shoal...`) to the `scale`
/// subresource of Deployment `namespace/name`, refused ones included, in the order the
/// apiserver received them. Dry runs are left out. The audit log is at Metadata level, so
/// it has no body: the replica count of each write comes from a [`crate::recorder::ReplicaRecorder`]
/// or from the `SuccessfulRescale` Events.
pub fn scale_writes(path: &Path, namespace: &str, name: &str) -> Vec<AuditEvent> {
    let mut writes: Vec<AuditEvent> = completed(path)
        .into_iter()
        .filter(|e| e.verb == "patch" || e.verb == "update")
        .filter(|e| e.user_agent.starts_with("shoal"))
        .filter(|e| !e.request_uri.contains("dryRun="))
        .filter(|e| {
            e.object_ref.as_ref().is_some_and(|o| {
                o.resource == "deployments"
                    && o.subresource == "scale"
                    && o.namespace == namespace
                    && o.name == name
            })
        })
        .collect();
    writes.sort_by_key(AuditEvent::received);
    writes
}

/// Who writes a Deployment's replica count, as the audit log shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleWriter {
    /// Shoal's metrics loop: field manager `shoal-autoscaler` (User-Agent `shoal...`).
    ShoalAutoscaler,
    /// The controller-manager's HPA controller: an update of the `scale` subresource by
    /// the controller-manager (its User-Agent, or its `horizontal-pod-autoscaler`
    /// ServiceAccount when it runs with per-controller credentials).
    HpaController,
}

impl ScaleWriter {
    /// True when `e` is a write of this writer's kind (any status, any object).
    pub fn wrote(&self, e: &AuditEvent) -> bool {
        match self {
            ScaleWriter::ShoalAutoscaler => {
                e.user_agent.starts_with("shoal")
                    && e.request_uri.contains("fieldManager=shoal-autoscaler")
            }
            ScaleWriter::HpaController => {
                e.object_ref
                    .as_ref()
                    .is_some_and(|o| o.subresource == "scale")
                    && (e.user_agent.starts_with("kube-controller-manager")
                        || e.user.username.ends_with(":horizontal-pod-autoscaler"))
            }
        }
    }
}

/// The successful writes (patch or update) of `writer` to Deployment `namespace/name` or
/// its `scale` subresource, dry runs left out, in the order the apiserver received them.
/// Only lines naming the Deployment are parsed, so a long log is read quickly.
pub fn replica_writes(
    path: &Path,
    namespace: &str,
    name: &str,
    writer: ScaleWriter,
) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let quoted = format!("\"{name}\"");
    let mut writes: Vec<AuditEvent> = text
        .lines()
        .filter(|line| line.contains("ResponseComplete") && line.contains(&quoted))
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .filter(|e| e.stage == "ResponseComplete")
        .filter(|e| e.verb == "patch" || e.verb == "update")
        .filter(|e| !e.request_uri.contains("dryRun="))
        .filter(|e| {
            e.object_ref.as_ref().is_some_and(|o| {
                o.resource == "deployments"
                    && (o.subresource.is_empty() || o.subresource == "scale")
                    && o.namespace == namespace
                    && o.name == name
            })
        })
        .filter(|e| e.succeeded() && writer.wrote(e))
        .collect();
    writes.sort_by_key(AuditEvent::received);
    writes
}

/// When the apiserver answered the request (its ResponseComplete `stageTimestamp`; the
/// time received when absent).
pub fn answered(e: &AuditEvent) -> Timestamp {
    e.stage_timestamp.unwrap_or_else(|| e.received())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_and_status() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/n/deployments/api/scale?fieldManager=shoal-autoscaler\u0026force=true","verb":"patch","user":{"username":"kube-admin"},"userAgent":"shoal/0.1.0","objectRef":{"resource":"deployments","namespace":"n","name":"api","apiGroup":"apps","apiVersion":"v1","subresource":"scale"},"responseStatus":{"metadata":{},"status":"Failure","message":"refused","reason":"Invalid","code":422},"requestReceivedTimestamp":"2026-11-30T05:44:42.123456Z","stageTimestamp":"2026-11-30T05:44:42.133456Z"}"#;
        let e: AuditEvent = serde_json::from_str(line).expect("audit event");
        assert!(!e.succeeded());
        assert_eq!(e.code(), 422);
        assert_eq!(e.received().to_string(), "2026-11-30T05:44:42.123456Z");
        let ok = line.replace(
            r#""responseStatus":{"metadata":{},"status":"Failure","message":"refused","reason":"Invalid","code":422},"#,
            r#""responseStatus":{"metadata":{},"code":200},"#,
        );
        let e: AuditEvent = serde_json::from_str(&ok).expect("audit event");
        assert!(e.succeeded());
    }
}

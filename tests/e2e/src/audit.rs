//! Reading the apiserver's audit log: the apiserver's own record of who wrote what.

use std::path::Path;

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
    /// Audit stage; each request is counted at ResponseComplete.
    pub stage: String,
    /// The object acted on.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// Request URI (names the field manager of an apply).
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
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

/// Completed write requests in `namespace` sent by a client whose User-Agent starts with `agent`.
pub fn writes(path: &Path, namespace: &str, agent: &str) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
        .filter(|e| e.stage == "ResponseComplete")
        .filter(|e| WRITE_VERBS.contains(&e.verb.as_str()))
        .filter(|e| e.user_agent.starts_with(agent))
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.namespace == namespace)
        })
        .collect()
}

//! Pruning of the content-addressed config ConfigMaps: those neither current nor used by a
//! retained revision (a ReplicaSet) or a scheduled task (a CronJob) are deleted.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use super::super::Context;
use super::super::render::MANAGED_BY_LABEL;
use crate::error::{Error, Result};
use crate::validate::ValidatedMicroservice;

/// Deletes this Microservice's config ConfigMaps that are neither current nor used by a
/// ReplicaSet the Deployment keeps for rollbacks.
pub(super) async fn prune_config_maps(ctx: &Context, ms: &ValidatedMicroservice) -> Result<()> {
    let current = ms.config_map_name();
    let stores = &ctx.stores;
    // The ReplicaSets of the Deployment and of its canary (through the owner indexes: no
    // walk over every cached object).
    let deployments = [ms.name.clone(), crate::tracks::canary_name(&ms.name)]
        .into_iter()
        .filter_map(|name| {
            stores
                .deployments
                .get(&ObjectRef::new(&name).within(&ms.namespace))
        })
        .filter_map(|d| d.metadata.uid.clone());
    let in_use: BTreeSet<String> = deployments
        .flat_map(|uid| {
            stores
                .replica_sets_by_owner
                .owned_by(&stores.replica_sets, &uid)
        })
        .filter(|rs| rs.namespace().as_deref() == Some(ms.namespace.as_str()))
        .flat_map(|rs| referenced_config_maps(&rs))
        .chain(
            stores
                .cron_jobs_by_owner
                .owned_by(&stores.cron_jobs, &ms.uid)
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(ms.namespace.as_str()))
                .flat_map(|c| cron_job_config_maps(c)),
        )
        .collect();
    let stale: Vec<String> = stores
        .config_maps_by_owner
        .owned_by(&stores.config_maps, &ms.uid)
        .iter()
        .filter(|cm| cm.namespace().as_deref() == Some(ms.namespace.as_str()))
        .filter(|cm| cm.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some("shoal"))
        .map(|cm| cm.name_any())
        .filter(|name| *name != current && !in_use.contains(name))
        .collect();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ms.namespace);
    for name in stale {
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => info!(configmap = %name, "pruned a config no retained revision uses"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: "ConfigMap",
                    name,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Names of the ConfigMaps a ReplicaSet's pod template takes its environment from.
pub fn referenced_config_maps(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .iter()
        .flat_map(|s| s.template.iter())
        .flat_map(|t| t.spec.iter())
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.env_from.iter().flatten())
        .filter_map(|e| e.config_map_ref.as_ref().map(|r| r.name.clone()))
        .collect()
}

/// Names of the ConfigMaps a CronJob's Job template takes its environment from.
pub fn cron_job_config_maps(cron_job: &CronJob) -> Vec<String> {
    cron_job
        .spec
        .job_template
        .spec
        .iter()
        .flat_map(|j| j.template.spec.iter())
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.env_from.iter().flatten())
        .filter_map(|e| e.config_map_ref.as_ref().map(|r| r.name.clone()))
        .collect()
}

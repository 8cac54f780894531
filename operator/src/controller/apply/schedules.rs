//! The CronJobs of `spec.schedules`: applied when they differ, deleted (those Shoal owns)
//! when their entry is gone.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::CronJob;
use kube::ResourceExt;

use super::{Step, needs_apply, owned_by};
use crate::error::Result;

impl Step<'_> {
    /// Applies each rendered CronJob that differs from its live copy, then deletes the
    /// owned live CronJobs no entry asks for any more.
    pub(super) async fn cron_jobs(
        &mut self,
        desired: &[CronJob],
        live: &[Arc<CronJob>],
    ) -> Result<()> {
        for job in desired {
            let current = live.iter().find(|l| l.name_any() == job.name_any());
            if needs_apply(job, current.map(|c| &**c)) {
                self.apply(job, current.map(|c| &**c)).await?;
            }
        }
        let wanted: BTreeSet<String> = desired.iter().map(ResourceExt::name_any).collect();
        for stale in live
            .iter()
            .filter(|l| owned_by(&***l, self.valid) && !wanted.contains(&l.name_any()))
        {
            let name = stale.name_any();
            self.delete_child::<CronJob>(&name, "its schedule is no longer in the spec")
                .await?;
        }
        Ok(())
    }
}

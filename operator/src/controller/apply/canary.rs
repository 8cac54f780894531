//! The canary Deployment of strategy Canary: applied at the size the canary transition
//! asks for, deleted once the canary ended; and the one-off promote annotation removed
//! once it was acted on.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::{Live, Step, needs_apply, owned_by};
use crate::controller::canary::PROMOTE_ANNOTATION;
use crate::controller::render;
use crate::controller::render::routing::Plan;
use crate::controller::rollout::Transition;
use crate::crd::{CanaryPhase, Microservice};
use crate::error::Result;

impl Step<'_> {
    /// Applies or deletes the canary Deployment as `transition` says.
    pub(super) async fn canary(
        &mut self,
        rendered: &Deployment,
        live: &Live,
        transition: &Transition,
        routing: &Plan,
    ) -> Result<()> {
        // First: traffic leaves a canary before its Deployment goes (apply/routing.rs).
        self.routing(routing).await?;
        let current = live
            .canary
            .as_ref()
            .filter(|c| owned_by(&***c, self.valid))
            .map(Arc::clone);
        match (transition.canary_replicas, current) {
            (Some(replicas), current) => {
                let wanted = render::render_canary_deployment(self.valid, rendered, replicas);
                if needs_apply(&wanted, current.as_deref()) {
                    self.apply(&wanted, current.as_deref()).await?;
                }
            }
            (None, Some(current)) => {
                let name = current.name_any();
                self.delete_child::<Deployment>(&name, "the canary ended")
                    .await?;
            }
            (None, None) => {}
        }
        self.clear_promote(transition).await
    }

    /// Removes `shoal.dev/promote` once the canary it promoted is being promoted.
    async fn clear_promote(&mut self, transition: &Transition) -> Result<()> {
        let asked = self.ms.annotations().contains_key(PROMOTE_ANNOTATION);
        let acted = transition
            .status
            .canary
            .as_ref()
            .is_some_and(|c| matches!(c.phase, CanaryPhase::Promoting | CanaryPhase::Promoted));
        if !(asked && acted) {
            return Ok(());
        }
        let api: Api<Microservice> =
            Api::namespaced(self.ctx.client.clone(), &self.valid.namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {PROMOTE_ANNOTATION: null}}});
        match api
            .patch(
                &self.valid.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            // The promote happened; the annotation stays until a later pass removes it
            // (with it, a next canary would be promoted at once: say so, do not fail).
            Err(err) => {
                tracing::warn!(name = %self.valid.name, error = %err, "could not remove the shoal.dev/promote annotation");
                Ok(())
            }
        }
    }
}

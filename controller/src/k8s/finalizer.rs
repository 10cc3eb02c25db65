//! The CanaryRollout's finalizer: deleting a rollout that manages a release (or asks for
//! `revertOnDeletion`) first puts users back on stable when asked, and always forgets the
//! rollout's `/metrics` series and in-memory state, before the API server removes it.
//!
//! Both finalizer writes are merge patches that replace `metadata.finalizers` whole and
//! carry the `resourceVersion` that was read: a merge patch replaces lists, so without the
//! precondition a concurrent writer's finalizer could be dropped; with it the API server
//! answers 409 and the next reconcile reads again. (kube-runtime's `finalizer()` helper does
//! the same with a JSON patch `test` op; see kube-runtime/src/finalizer.rs.) Once the list
//! is empty on an object with a `deletionTimestamp`, the API server deletes it
//! (k8s.io/apiserver/pkg/registry/generic/registry/store.go, `shouldDeleteDuringUpdate`).

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use serde_json::json;
use tracing::{info, warn};

use super::reconcile::Context;
use crate::crd::CanaryRollout;
use crate::error::Error;
use crate::target::wasmplugin::{WasmPluginTarget, FIELD_MANAGER};
use crate::target::{TargetError, WeightTarget};

pub const FINALIZER: &str = "stickycanary.dev/cleanup";

/// Rollouts that need a clean-up: those running the release lifecycle or reverting the
/// weight on deletion. Others are deleted as before, without a finalizer.
pub fn wanted(rollout: &CanaryRollout) -> bool {
    rollout.spec.stable.is_some() || rollout.spec.revert_on_deletion
}

fn has_ours(rollout: &CanaryRollout) -> bool {
    rollout.finalizers().iter().any(|f| f == FINALIZER)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// The merge patch that sets `finalizers`, conditional on the read `resourceVersion`.
pub fn finalizers_patch(rollout: &CanaryRollout, finalizers: &[String]) -> serde_json::Value {
    json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": rollout.resource_version(),
    }})
}

/// Adds the finalizer when the rollout needs one and does not have it yet.
pub async fn ensure(ctx: &Context, rollout: &CanaryRollout) -> Result<(), Error> {
    if !wanted(rollout) || has_ours(rollout) {
        return Ok(());
    }
    let mut finalizers = rollout.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let api: Api<CanaryRollout> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    api.patch(
        &rollout.name_any(),
        &params(),
        &Patch::Merge(finalizers_patch(rollout, &finalizers)),
    )
    .await?;
    Ok(())
}

/// A deleted rollout: revert the weight when asked, forget it, remove the finalizer.
pub async fn clean_up(ctx: &Context, rollout: &CanaryRollout, key: &str) -> Result<Requeue, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    if has_ours(rollout) && rollout.spec.revert_on_deletion {
        let plugin_namespace = rollout
            .spec
            .wasm_plugin
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.clone());
        let target = WasmPluginTarget::new(
            ctx.client.clone(),
            &plugin_namespace,
            &rollout.spec.wasm_plugin.name,
            ctx.patch_timeout,
        );
        match target.set_weight(&rollout.rollout_key(), 0.0).await {
            Ok(()) => info!(%name, "rollout deleted: weight set to 0 (revertOnDeletion)"),
            // Nothing left to revert: the deletion must not hang on it.
            Err(e @ (TargetError::NotFound { .. } | TargetError::MissingKey { .. })) => {
                warn!(%name, error = %e, "rollout deleted: no weight to revert");
            }
            Err(e) => return Err(e.into()),
        }
    }
    ctx.metrics.forget_rollout(&namespace, &name);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.remove(key);
    }
    if has_ours(rollout) {
        let finalizers: Vec<String> = rollout
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let api: Api<CanaryRollout> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch(
            &name,
            &params(),
            &Patch::Merge(finalizers_patch(rollout, &finalizers)),
        )
        .await?;
    }
    Ok(Requeue::await_change())
}

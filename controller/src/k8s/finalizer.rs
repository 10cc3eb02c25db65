//! The CanaryRollout's finalizer: every rollout carries it, so deleting one first puts users
//! back on stable when `revertOnDeletion` asks for it, and always forgets the rollout's
//! `/metrics` series and in-memory state, before the API server removes it.
//!
//! Adding the finalizer writes `metadata.finalizers` of the main resource, so it needs
//! `patch` on canaryrollouts (the chart grants it). A DELETE of an object whose finalizers
//! list is not empty only sets `deletionTimestamp`; the object stays, and keeps being
//! watched, until the list is empty (Kubernetes docs, "Finalizers" and "Using Finalizers to
//! Control Deletion"; apiserver `registry/generic/registry/store.go`, `Delete` and
//! `updateForGracefulDeletionAndFinalizers`). The API server refuses a finalizer added to
//! an object already being deleted (apimachinery `ValidateObjectMetaUpdate`: "no new
//! finalizers can be added if the object is being deleted"), so `ensure` never tries.
//!
//! A rollout deleted before this controller ever added the finalizer (created before an
//! upgrade, deleted while no replica led) vanishes without a reconcile: `forget` is also
//! called for the Controller's `ObjectNotFound` and for watch deletions (see `super::run`).
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

use super::context::Context;
use crate::crd::CanaryRollout;
use crate::error::Error;
use crate::field_managers;
use crate::target::wasmplugin::WasmPluginTarget;
use crate::target::{TargetError, WeightTarget};

pub const FINALIZER: &str = "stickycanary.dev/cleanup";

/// Whether the rollout carries our finalizer.
pub fn has_ours(rollout: &CanaryRollout) -> bool {
    rollout.finalizers().iter().any(|f| f == FINALIZER)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(field_managers::CONTROLLER.to_string()),
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

/// Adds the finalizer to a live rollout that does not have it yet (every rollout gets it:
/// its metrics and state must be dropped on deletion, whatever its spec). Returns the object
/// as written when it wrote one: later writes of this reconcile that are conditional on a
/// resourceVersion (the status's ownership move) must name the new one.
pub async fn ensure(
    ctx: &Context,
    rollout: &CanaryRollout,
) -> Result<Option<CanaryRollout>, Error> {
    if has_ours(rollout) || rollout.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let mut finalizers = rollout.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let api: Api<CanaryRollout> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let written = api
        .patch(
            &rollout.name_any(),
            &params(),
            &Patch::Merge(finalizers_patch(rollout, &finalizers)),
        )
        .await?;
    Ok(Some(written))
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
        match target.set_weight(&rollout.rollout_key(), 0.0, None).await {
            Ok(()) => info!(%name, "rollout deleted: weight set to 0 (revertOnDeletion)"),
            // Nothing left to revert: the deletion must not hang on it.
            Err(e @ (TargetError::NotFound { .. } | TargetError::MissingKey { .. })) => {
                warn!(%name, error = %e, "rollout deleted: no weight to revert");
            }
            Err(e) => return Err(e.into()),
        }
    }
    forget(ctx, &namespace, &name, key);
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

/// Drops a rollout's `/metrics` series and in-memory state (analysis tick, error backoff).
pub fn forget(ctx: &Context, namespace: &str, name: &str, key: &str) {
    ctx.metrics.forget_rollout(namespace, name);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.remove(key);
    }
    ctx.backoff.reset(key);
}

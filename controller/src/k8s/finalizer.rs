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

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::context::Context;
use super::deployments::{revision_of, workload_state, Deployments};
use crate::crd::CanaryRollout;
use crate::error::Error;
use crate::field_managers;
use crate::observation::WorkloadState;
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

/// How often a deletion that waits for stable to serve looks again.
const DELETION_RECHECK: Duration = Duration::from_secs(5);

/// A deleted rollout: hand the canary's autoscaler back, revert the weight when asked (once
/// stable serves), forget it, remove the finalizer.
///
/// Never leaves users without a serving version:
/// - KEDA's `paused-replicas` annotation is removed from the canary's ScaledObject, so its
///   autoscaler owns the canary again (a rolled-back canary does not stay at 0 for good).
/// - With `revertOnDeletion` the weight goes to 0 only once stable is rolled out on the
///   template it has (observed: `observedGeneration`, updated and available replicas). A
///   stable still rolling, e.g. a rollout deleted during `Promoting`, whose copy is already
///   on stable, is waited for (the finalizer stays; the promotion finishes), up to
///   `progressDeadline` after the deletion began. A stable that failed, has no replicas or
///   missed that deadline keeps the weight where it is (users stay on the canary), with a
///   Warning Event.
/// - Without `revertOnDeletion` the weight and both Deployments are left as they are: a
///   canary holding users is up (the engine never scales down a canary with weight).
pub async fn clean_up(ctx: &Context, rollout: &CanaryRollout, key: &str) -> Result<Requeue, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    if has_ours(rollout) {
        resume_autoscaler(ctx, rollout, &namespace).await?;
        if rollout.spec.revert_on_deletion {
            match stable_serves(ctx, rollout, &namespace).await? {
                Serving::Yes => revert_weight(ctx, rollout, &namespace).await?,
                Serving::NotYet(why) => {
                    info!(%name, why, "rollout deleted: waiting for stable before the weight goes to 0");
                    return Ok(Requeue::requeue(DELETION_RECHECK));
                }
                Serving::No(why) => {
                    let message = format!(
                        "deleted with revertOnDeletion, but stable does not serve ({why}): the weight stays where it is, users stay on the canary"
                    );
                    warn!(%name, message);
                    publish(ctx, rollout, "DeletionKeptWeight", message).await;
                }
            }
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

/// Whether stable can take every user.
enum Serving {
    Yes,
    /// Still rolling out, within the deadline.
    NotYet(String),
    No(String),
}

/// The canary's Deployments, when the rollout has a release lifecycle.
fn deployments(ctx: &Context, rollout: &CanaryRollout, namespace: &str) -> Option<Deployments> {
    rollout.spec.stable.as_ref()?;
    let canary_namespace = rollout
        .spec
        .canary
        .namespace
        .as_deref()
        .unwrap_or(namespace);
    Some(Deployments::new(ctx.client.clone(), canary_namespace))
}

/// Lifts KEDA's pause on the canary's ScaledObject (a missing one is skipped).
async fn resume_autoscaler(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<(), Error> {
    let (Some(deployments), Some(scaled_object)) = (
        deployments(ctx, rollout, namespace),
        rollout.spec.canary.scaled_object.as_deref(),
    ) else {
        return Ok(());
    };
    match deployments.pause_scaled_object(scaled_object, None).await {
        Ok(()) => {
            info!(
                scaled_object,
                "rollout deleted: KEDA's pause lifted from the canary"
            );
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(Error::Workload(Box::new(e))),
    }
}

/// Stable rolled out on its own template? Without a release lifecycle there is no stable
/// Deployment to look at: stable is the user's and is taken to serve, as before.
async fn stable_serves(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<Serving, Error> {
    let (Some(deployments), Some(stable)) = (
        deployments(ctx, rollout, namespace),
        rollout.spec.stable.as_ref(),
    ) else {
        return Ok(Serving::Yes);
    };
    let deployment = match deployments.get(&stable.deployment).await {
        Ok(deployment) => deployment,
        Err(e) if e.is_not_found() => {
            return Ok(Serving::No(format!(
                "Deployment {} not found",
                stable.deployment
            )))
        }
        Err(e) => return Err(Error::Workload(Box::new(e))),
    };
    let state = workload_state(&deployment, &revision_of(&deployment));
    let waited = rollout
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|since| crate::engine::stages::elapsed(Timestamp::now(), since))
        .unwrap_or_default();
    Ok(match state {
        WorkloadState::Ready => Serving::Yes,
        WorkloadState::Starting if waited <= rollout.spec.progress_deadline => {
            Serving::NotYet(format!("stable {} is still rolling out", stable.deployment))
        }
        WorkloadState::Starting => Serving::No(format!(
            "stable {} did not roll out within progressDeadline {}",
            stable.deployment, rollout.spec.progress_deadline
        )),
        WorkloadState::Stopped => {
            Serving::No(format!("stable {} has no replicas", stable.deployment))
        }
        WorkloadState::Failed(why) => Serving::No(format!(
            "stable {}'s rollout failed: {why}",
            stable.deployment
        )),
    })
}

/// Weight 0 on the plugin (a missing plugin or key is skipped: nothing to revert).
async fn revert_weight(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<(), Error> {
    let name = rollout.name_any();
    let plugin_namespace = rollout
        .spec
        .wasm_plugin
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_string());
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
    Ok(())
}

/// An Event on the rollout being deleted (best effort).
async fn publish(ctx: &Context, rollout: &CanaryRollout, reason: &str, message: String) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(message),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// Drops a rollout's `/metrics` series and in-memory state (analysis tick, error backoff).
pub fn forget(ctx: &Context, namespace: &str, name: &str, key: &str) {
    ctx.metrics.forget_rollout(namespace, name);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.remove(key);
    }
    ctx.backoff.reset(key);
}

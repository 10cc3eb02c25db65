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
use kube::ResourceExt;
use serde_json::json;
use tracing::{info, warn};

use super::autoscalers::{self, Autoscalers};
use super::context::Context;
use super::deployments::{rollout_state, Deployments};
use super::primary::{self, Primaries};
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

/// A deleted rollout: hand the workload's autoscaler back, then either hand users back to the
/// workload (`revertOnDeletion`) or leave the generated stable serving, forget the rollout,
/// remove the finalizer.
///
/// Never leaves users without a serving version:
/// - KEDA's `paused-replicas` annotation is removed from the workload's ScaledObject, so its
///   autoscaler owns the workload again.
/// - Release lifecycle, `revertOnDeletion`: the workload is scaled back up (to the generated
///   stable's replicas, or by KEDA), and once it is rolled out every user goes to it (weight
///   100) and drains from stable for `scaleDownDelay`; only then does the finalizer go, and
///   the garbage collector deletes the generated stable (its ownerReference). A workload
///   that does not roll out within `progressDeadline` of the deletion keeps users where they
///   are: the generated stable is orphaned instead, with a Warning Event.
/// - Release lifecycle without it: the generated stable is orphaned (its ownerReference
///   removed) and keeps serving; the weight and the workload stay as they are.
/// - No lifecycle: `revertOnDeletion` sets the weight to 0 (stable is the user's own).
pub async fn clean_up(ctx: &Context, rollout: &CanaryRollout, key: &str) -> Result<Requeue, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    if has_ours(rollout) {
        resume_autoscaler(ctx, rollout, &namespace).await?;
        let lifecycle = rollout.spec.stable.is_some();
        match (lifecycle, rollout.spec.revert_on_deletion) {
            (true, true) => {
                if let Some(wait) = hand_back_to_workload(ctx, rollout, &namespace).await? {
                    return Ok(Requeue::requeue(wait));
                }
            }
            (true, false) => orphan_stable(ctx, rollout, &namespace).await?,
            (false, true) => set_weight(ctx, rollout, &namespace, 0.0).await?,
            (false, false) => {}
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

/// The workload Deployment and the generated stable's API, in the workload's namespace.
fn apis(ctx: &Context, rollout: &CanaryRollout, namespace: &str) -> (Deployments, Primaries) {
    let namespace = rollout.spec.workload_namespace(namespace);
    (
        Deployments::new(ctx.client.clone(), namespace),
        Primaries::new(ctx.client.clone(), namespace),
    )
}

/// Lifts KEDA's pause on the workload's ScaledObject (a missing one is skipped).
async fn resume_autoscaler(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<(), Error> {
    let Some(scaled_object) = rollout.spec.canary.scaled_object.as_deref() else {
        return Ok(());
    };
    let (deployments, _) = apis(ctx, rollout, namespace);
    match deployments.pause_scaled_object(scaled_object, None).await {
        Ok(()) => {
            info!(
                scaled_object,
                "rollout deleted: KEDA's pause lifted from the workload"
            );
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(Error::Workload(Box::new(e))),
    }
}

/// `revertOnDeletion` with a generated stable: scale the workload up, wait for it, then
/// weight 100 and the drain. `Some(wait)` while a step is under way (the finalizer stays);
/// `None` once users are on the workload, or when it cannot serve (then the generated
/// stable is orphaned and keeps serving).
async fn hand_back_to_workload(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<Option<Duration>, Error> {
    let spec = &rollout.spec;
    let (deployments, primaries) = apis(ctx, rollout, namespace);
    let stable_name = spec.stable_name().unwrap_or_default();
    let workload = match deployments.get(&spec.canary.deployment).await {
        Ok(workload) => workload,
        Err(e) if e.is_not_found() => {
            let why = format!("the workload {} is gone", spec.canary.deployment);
            return keep_stable(ctx, rollout, namespace, &why)
                .await
                .map(|()| None);
        }
        Err(e) => return Err(Error::Workload(Box::new(e))),
    };
    let waited = rollout
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|since| crate::engine::stages::elapsed(Timestamp::now(), since))
        .unwrap_or_default();
    let state = rollout_state(&workload);
    if let WorkloadState::Failed(why) = &state {
        let why = format!("the workload's rollout failed: {why}");
        return keep_stable(ctx, rollout, namespace, &why)
            .await
            .map(|()| None);
    }
    // The workload takes every user: at least stable's size (mid-run it runs at the run's),
    // unless an autoscaler sizes it.
    let autoscaled =
        spec.canary.scaled_object.is_some() || spec.canary.horizontal_pod_autoscaler.is_some();
    let stable = primaries.get(&stable_name).await.map_err(workload_error)?;
    let wanted = primary::replicas(stable.as_ref(), &workload, spec.canary.replicas);
    if !autoscaled
        && workload.spec.replicas.unwrap_or(1) < wanted
        && waited <= spec.progress_deadline
    {
        deployments
            .scale(&spec.canary.deployment, wanted)
            .await
            .map_err(workload_error)?;
        info!(
            replicas = wanted,
            "rollout deleted: the workload is scaled up to stable's size to take every user"
        );
        return Ok(Some(DELETION_RECHECK));
    }
    match state {
        WorkloadState::Ready => {}
        _ if waited > spec.progress_deadline => {
            let why = format!(
                "the workload did not roll out within progressDeadline {}",
                spec.progress_deadline
            );
            return keep_stable(ctx, rollout, namespace, &why)
                .await
                .map(|()| None);
        }
        _ => {
            info!("rollout deleted: waiting for the workload to roll out before users move to it");
            return Ok(Some(DELETION_RECHECK));
        }
    }
    let Some(weight) = plugin_weight(ctx, rollout, namespace).await? else {
        return Ok(None);
    };
    if weight != 100.0 {
        set_weight(ctx, rollout, namespace, 100.0).await?;
    }
    // Users drain from the generated stable before the garbage collector removes it. The
    // drain's start is kept on the rollout, so an earlier reconcile (a watch event, a
    // restart) waits for the rest of it.
    let delay = spec.scale_down_delay.as_std();
    let Some(since) = drain_started(rollout) else {
        mark_drain(ctx, rollout).await?;
        return Ok(Some(delay));
    };
    let drained = crate::engine::stages::elapsed(Timestamp::now(), &since).as_std();
    Ok(delay.checked_sub(drained).filter(|left| !left.is_zero()))
}

/// On the rollout being deleted: when users started draining from the generated stable.
const DRAIN_ANNOTATION: &str = "stickycanary.dev/deletion-drain-since";

fn drain_started(
    rollout: &CanaryRollout,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    let value = rollout.annotations().get(DRAIN_ANNOTATION)?;
    value
        .parse()
        .ok()
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
}

async fn mark_drain(ctx: &Context, rollout: &CanaryRollout) -> Result<(), Error> {
    let api: Api<CanaryRollout> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let patch =
        json!({"metadata": {"annotations": {DRAIN_ANNOTATION: Timestamp::now().to_string()}}});
    api.patch(&rollout.name_any(), &params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn workload_error(e: crate::k8s::deployments::WorkloadError) -> Error {
    Error::Workload(Box::new(e))
}

/// The workload cannot take the users: they stay where they are, on a generated stable that
/// outlives the rollout.
async fn keep_stable(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
    why: &str,
) -> Result<(), Error> {
    let message = format!(
        "deleted with revertOnDeletion, but {why}: the weight stays where it is and the generated stable {} is kept (no longer owned) to serve",
        rollout.spec.stable_name().unwrap_or_default()
    );
    warn!(name = %rollout.name_any(), message);
    super::front::publish(ctx, rollout, "DeletionKeptWeight", &message, true).await;
    orphan_stable(ctx, rollout, namespace).await
}

/// Removes the generated stable's ownerReference (and its autoscaler's), so it keeps serving
/// after the rollout.
async fn orphan_stable(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<(), Error> {
    let Some(stable_name) = rollout.spec.stable_name() else {
        return Ok(());
    };
    let (_, primaries) = apis(ctx, rollout, namespace);
    let ours = primaries
        .get(&stable_name)
        .await
        .map_err(workload_error)?
        .is_some_and(|live| primary::is_generated_by(&live, rollout));
    if !ours {
        return Ok(());
    }
    primaries
        .orphan(&stable_name)
        .await
        .map_err(workload_error)?;
    if let Some((kind, source)) = autoscalers::named(rollout) {
        let workload_namespace = rollout.spec.workload_namespace(namespace);
        Autoscalers::new(ctx.client.clone(), workload_namespace)
            .orphan(kind, &source)
            .await
            .map_err(workload_error)?;
    }
    info!(stable = %stable_name, "rollout deleted: the generated stable (and its autoscaler) is kept and serves on");
    Ok(())
}

fn target(ctx: &Context, rollout: &CanaryRollout, namespace: &str) -> WasmPluginTarget {
    WasmPluginTarget::new(
        ctx.client.clone(),
        rollout.spec.plugin_namespace(namespace),
        &rollout.spec.wasm_plugin.name,
        ctx.patch_timeout,
    )
}

/// The rollout's weight on the plugin (`None`: no plugin or key, nothing to hand back).
async fn plugin_weight(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<Option<f64>, Error> {
    match target(ctx, rollout, namespace)
        .current(&rollout.rollout_key())
        .await
    {
        Ok(view) => Ok(Some(view.weight)),
        Err(TargetError::NotFound { .. } | TargetError::MissingKey { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets the weight on the plugin (a missing plugin or key is skipped: nothing to revert).
async fn set_weight(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
    weight: f64,
) -> Result<(), Error> {
    let name = rollout.name_any();
    match target(ctx, rollout, namespace)
        .set_weight(&rollout.rollout_key(), weight, None)
        .await
    {
        Ok(()) => info!(%name, weight, "rollout deleted: weight set (revertOnDeletion)"),
        // Nothing left to revert: the deletion must not hang on it.
        Err(e @ (TargetError::NotFound { .. } | TargetError::MissingKey { .. })) => {
            warn!(%name, error = %e, "rollout deleted: no weight to revert");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Drops a rollout's `/metrics` series and in-memory state (analysis tick, error backoff).
pub fn forget(ctx: &Context, namespace: &str, name: &str, key: &str) {
    ctx.metrics.forget_rollout(namespace, name);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.remove(key);
    }
    ctx.backoff.reset(key);
    ctx.wakes.forget(key);
}

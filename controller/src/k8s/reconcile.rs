//! The CanaryRollout reconciler (controller-rs shape): the cluster's adapter of the shared
//! tick ([`driver::tick`]). It handles what only the cluster has (leadership, the finalizer,
//! one tick per interval although our own writes trigger the watch), reads the WasmPlugin and
//! the Deployments, and hands the tick a [`KubeFront`]; then it records the metrics.
//!
//! A failed action leaves the status as it was (the driver's rule) and records `Degraded`;
//! the error policy retries with backoff, so the status never records a weight Envoy did not
//! get.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use tracing::{instrument, warn};

use super::finalizer;
use super::front::{read_workloads, subject_of, KubeFront};
use super::manual::manual_input;
use super::status;
use crate::crd::conditions::{set_condition, DEGRADED};
use crate::crd::{CanaryRollout, CanaryRolloutStatus, Outcome, Phase};
use crate::driver::{self, TickError};
use crate::error::Error;
use crate::observation::{MetricsObservation, Observations};
use crate::target::wasmplugin::WasmPluginTarget;
use crate::target::WeightTarget;

pub use super::context::Context;

/// How long a follower waits before checking leadership again.
const FOLLOWER_REQUEUE: Duration = Duration::from_secs(5);

pub(super) fn object_key(rollout: &CanaryRollout) -> String {
    format!(
        "{}/{}",
        rollout.namespace().unwrap_or_default(),
        rollout.name_any()
    )
}

/// The analysis result label for `stickycanary_analysis_total{result}`.
pub fn analysis_result(metrics: &MetricsObservation, status: &CanaryRolloutStatus) -> &'static str {
    if matches!(metrics, MetricsObservation::Unavailable { .. }) {
        return "unavailable";
    }
    let checks = status
        .last_analysis
        .as_ref()
        .map(|a| a.checks.as_slice())
        .unwrap_or_default();
    if checks.iter().any(|c| c.verdict == Outcome::Fail) {
        "fail"
    } else if checks.iter().any(|c| c.verdict == Outcome::Inconclusive) {
        "inconclusive"
    } else {
        "pass"
    }
}

/// The status conditions with `Degraded` set to True for `reason`; `Ready` and any other
/// condition are kept (the list is atomic: an apply replaces it whole).
pub fn degraded_conditions(
    status: &CanaryRolloutStatus,
    reason: &str,
    message: &str,
) -> Vec<Condition> {
    let mut conditions = status.conditions.clone();
    let degraded = Condition {
        type_: DEGRADED.to_string(),
        status: "True".to_string(),
        reason: reason.to_string(),
        message: message.chars().take(1000).collect(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: status.observed_generation,
    };
    set_condition(&mut conditions, degraded);
    conditions
}

/// Records a weight-target failure as `Degraded` (best effort) and passes the error on, so
/// the error policy retries with backoff. Nothing else in the status changes: no weight is
/// recorded that was not applied.
///
/// Only the conditions are applied, under their own field manager (see
/// `status::write_conditions`): the rest of the status is left as the API server has it.
async fn degraded(ctx: &Context, rollout: &CanaryRollout, error: Error) -> Error {
    let reason = match &error {
        Error::Target(crate::target::TargetError::NotFound { .. }) => "WasmPluginNotFound",
        Error::Target(crate::target::TargetError::MissingKey { .. }) => "RolloutKeyMissing",
        Error::Target(crate::target::TargetError::InvalidConfig { .. }) => "InvalidPluginConfig",
        Error::Target(crate::target::TargetError::Timeout { .. }) => "WasmPluginTimeout",
        Error::Workload(_) => "DeploymentUnavailable",
        _ => "WasmPluginUnavailable",
    };
    let status = rollout.status.clone().unwrap_or_default();
    let conditions = degraded_conditions(&status, reason, &error.to_string());
    let api: Api<CanaryRollout> = Api::namespaced(
        ctx.client.clone(),
        &rollout.namespace().unwrap_or_else(|| "default".to_string()),
    );
    if let Err(e) = status::write_conditions(&api, &rollout.name_any(), &conditions).await {
        warn!(error = %e, "could not record the Degraded condition");
    }
    error
}

#[instrument(skip(rollout, ctx), fields(rollout = %rollout.name_any(), namespace = rollout.namespace()))]
pub async fn reconcile(rollout: Arc<CanaryRollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !ctx.leader.load(Ordering::Relaxed) {
        return Ok(Requeue::requeue(FOLLOWER_REQUEUE));
    }
    let started = Instant::now();
    let result = reconcile_leader(&rollout, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.reset(&object_key(&rollout));
    }
    result
}

async fn reconcile_leader(rollout: &CanaryRollout, ctx: &Context) -> Result<Requeue, Error> {
    let subject = subject_of(rollout);
    let key = object_key(rollout);
    if rollout.metadata.deletion_timestamp.is_some() {
        return finalizer::clean_up(ctx, rollout, &key).await;
    }
    // The object as last written, for the status write's conditional ownership move.
    let written = finalizer::ensure(ctx, rollout).await?;
    let spec = &rollout.spec;
    let interval = driver::interval(spec);
    let manual = manual_input(rollout);
    let status = rollout.status.clone().unwrap_or_default();
    let spec_changed = status.observed_generation != rollout.metadata.generation;
    let lifecycle = spec.stable.is_some();

    // One analysis per interval: watch events from our own writes land here too. A canary
    // Deployment on a revision the status has not seen (the Deployment watch) ticks at once.
    let woken = ctx.wakes.take(&key);
    if manual.consumed.is_none() && manual.action.is_none() && !spec_changed && !woken {
        let last = ctx.last_tick.lock().ok().and_then(|t| t.get(&key).copied());
        if let Some(last) = last {
            let since = last.elapsed();
            if since < interval {
                return Ok(Requeue::requeue(interval - since));
            }
        }
    }
    // Without a revision source a final phase is the end. With one, a new canary revision
    // (a Deployment change, which does not touch this object) must be noticed: keep polling.
    if status.phase.is_terminal() && manual.consumed.is_none() && !spec_changed && !lifecycle {
        ctx.metrics.set_rollout(
            &subject.namespace,
            &subject.name,
            status.weight,
            status.phase,
        );
        return Ok(Requeue::await_change());
    }

    let target = WasmPluginTarget::with_outcomes(
        ctx.client.clone(),
        spec.plugin_namespace(&subject.namespace),
        &spec.wasm_plugin.name,
        ctx.patch_timeout,
        ctx.metrics.clone(),
    );
    let view = match target.current(&subject.rollout_key).await {
        Ok(view) => view,
        Err(e) => return Err(degraded(ctx, rollout, e.into()).await),
    };
    let workloads = match &spec.stable {
        Some(_) => Some(read_workloads(ctx, rollout, &subject.namespace).await?),
        None => None,
    };
    let action = manual.action;
    let front = KubeFront {
        ctx,
        rollout,
        latest: written.as_ref().unwrap_or(rollout),
        target: &target,
        subject,
        view,
        workloads,
        manual,
    };
    let ticked = driver::tick(&front, &status, action, Timestamp::now()).await;
    let carried = match ticked.outcome {
        Ok(carried) => carried,
        Err(TickError::Action(failed)) => {
            warn!(action = %failed.action, "action failed; the status keeps the last applied state");
            return Err(degraded(ctx, rollout, failed.error).await);
        }
        Err(TickError::Save(error)) => return Err(error),
    };
    if let Some((found, weight)) = carried.restored_drift {
        warn!(found, weight, "weight drifted; restored");
    }
    let new_status = &ticked.decision.status;
    record_metrics(ctx, rollout, &ticked.observations, &status, new_status);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.insert(key, Instant::now());
    }
    Ok(if new_status.phase.is_terminal() && !lifecycle {
        Requeue::await_change()
    } else {
        Requeue::requeue(interval)
    })
}

fn record_metrics(
    ctx: &Context,
    rollout: &CanaryRollout,
    observations: &Observations,
    old: &CanaryRolloutStatus,
    new: &CanaryRolloutStatus,
) {
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_string());
    let name = rollout.name_any();
    ctx.metrics
        .count_analysis(analysis_result(&observations.metrics, new));
    ctx.metrics.init_rollbacks(&namespace, &name, &rollout.spec);
    if new.phase == Phase::RolledBack && old.phase != Phase::RolledBack {
        ctx.metrics.count_rollback(
            &namespace,
            &name,
            new.rollback_reason.as_deref().unwrap_or("unknown"),
        );
    }
    ctx.metrics
        .set_rollout(&namespace, &name, new.weight, new.phase);
}

/// Counts the failure and retries with a backoff that grows with the rollout's consecutive
/// failures, up to a cap, with jitter (see [`super::backoff`]).
pub fn error_policy(rollout: Arc<CanaryRollout>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(rollout = %rollout.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_reconcile_error(error.metric_label());
    let base = match error {
        Error::Target(crate::target::TargetError::Timeout { .. }) => Duration::from_secs(10),
        Error::Target(crate::target::TargetError::NotFound { .. }) => Duration::from_secs(30),
        _ => Duration::from_secs(5),
    };
    Requeue::requeue(ctx.backoff.next(&object_key(&rollout), base))
}

//! The CanaryRollout reconciler (controller-rs shape): read the world, let the pure engine
//! decide, apply its weight to the WasmPlugin, then record the status, Events and metrics.
//!
//! Ordering matters for crash safety: the weight is written before the status that claims
//! it. If the weight write fails, the status is not written and the error policy retries
//! with backoff, so the status never records a weight Envoy did not get.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::Recorder;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use super::batch::MetricsBatcher;
use super::deployments::{revision_of, workload_state, Deployments};
use super::executor::{KubeExecutor, Workloads};
use super::finalizer;
use super::manual::{manual_input, HANDLED_ANNOTATION};
use super::pods::canary_health;
use super::status;
use crate::crd::{CanaryRollout, CanaryRolloutStatus, Phase, Verdict};
use crate::driver;
use crate::engine;
use crate::error::Error;
use crate::gates::approve::ApproveTarget;
use crate::metrics::Metrics;
use crate::observation::{ManualAction, MetricsObservation, Observations, ReleaseObservation};
use crate::prometheus::RolloutSeries;
use crate::target::wasmplugin::{WasmPluginTarget, FIELD_MANAGER};
use crate::target::{RolloutView, WeightTarget};

/// Everything a reconcile needs (shared by all of them).
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub batcher: MetricsBatcher,
    /// Only the Lease holder acts; followers requeue.
    pub leader: Arc<AtomicBool>,
    pub patch_timeout: Duration,
    pub webhook: reqwest::Client,
    /// When each rollout was last analysed. Our own status writes trigger the watch again;
    /// this keeps the analysis at one tick per interval regardless.
    pub last_tick: Mutex<HashMap<String, Instant>>,
    /// Consecutive reconcile failures per rollout, for the error policy's backoff.
    pub backoff: super::backoff::ErrorBackoff,
}

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
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        "fail"
    } else if checks.iter().any(|c| c.verdict == Verdict::Inconclusive) {
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
    let now = Time(Timestamp::now());
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != "Degraded")
        .cloned()
        .collect();
    let last_transition_time = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    conditions.push(Condition {
        type_: "Degraded".to_string(),
        status: "True".to_string(),
        reason: reason.to_string(),
        message: message.chars().take(1000).collect(),
        last_transition_time,
        observed_generation: status.observed_generation,
    });
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
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_string());
    let name = rollout.name_any();
    let key = object_key(rollout);
    if rollout.metadata.deletion_timestamp.is_some() {
        return finalizer::clean_up(ctx, rollout, &key).await;
    }
    // The object as last written, for the status write's conditional ownership move.
    let written = finalizer::ensure(ctx, rollout).await?;
    let latest = written.as_ref().unwrap_or(rollout);
    let spec = &rollout.spec;
    let interval = spec.analysis.interval.as_std().max(Duration::from_secs(1));
    let manual = manual_input(rollout);
    let status = rollout.status.clone().unwrap_or_default();
    let spec_changed = status.observed_generation != rollout.metadata.generation;
    let lifecycle = spec.stable.is_some();

    // One analysis per interval: watch events from our own writes land here too.
    if manual.consumed.is_none() && manual.action.is_none() && !spec_changed {
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
        ctx.metrics
            .set_rollout(&namespace, &name, status.weight, status.phase);
        return Ok(Requeue::await_change());
    }

    let plugin_namespace = spec
        .wasm_plugin
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.clone());
    let target = WasmPluginTarget::with_outcomes(
        ctx.client.clone(),
        &plugin_namespace,
        &spec.wasm_plugin.name,
        ctx.patch_timeout,
        ctx.metrics.clone(),
    );
    let rollout_key = rollout.rollout_key();
    let view = match target.current(&rollout_key).await {
        Ok(view) => view,
        Err(e) => return Err(degraded(ctx, rollout, e.into()).await),
    };
    let workloads = match &spec.stable {
        Some(_) => Some(read_workloads(ctx, rollout, &namespace).await?),
        None => None,
    };
    let release = workloads
        .as_ref()
        .map(|w| release_observation(&w.canary, &w.stable, &status, &rollout_key));
    let observations = observe(ctx, rollout, &rollout_key, &view, &namespace, manual.action).await;
    // Gates: the webhooks due at this point of the run are asked first.
    let now = Timestamp::now();
    let subject = crate::gates::webhook::Subject {
        name: name.clone(),
        namespace: namespace.clone(),
        rollout_key: rollout_key.clone(),
    };
    let gate_caller = crate::gates::webhook::shared();
    let mut gate_input = gate_caller
        .before_decision(&subject, spec, &status, release.as_ref(), now)
        .await;
    gate_input.approve_target = Some(ApproveTarget::in_cluster(&name, &namespace));
    let decision = engine::decide_gated(
        spec,
        &status,
        now,
        &observations,
        release.as_ref(),
        &gate_input,
    );
    let mut new_status = decision.status.clone();
    new_status.observed_generation = rollout.metadata.generation;

    // 1. The world (weight, salt, scale, stable template), before any record of it.
    let executor = KubeExecutor {
        ctx,
        rollout,
        target: &target,
        rollout_key: rollout_key.clone(),
        observed_weight: view.weight,
        workloads,
    };
    match driver::carry_out(&executor, &decision).await {
        Ok(carried) => {
            if let Some((found, weight)) = carried.restored_drift {
                warn!(found, weight, "weight drifted; restored");
            }
        }
        Err(failed) => {
            warn!(action = %failed.action, "action failed; the status keeps the last applied state");
            return Err(degraded(ctx, rollout, failed.error).await);
        }
    }

    // 2. The status, applied whole (see `super::status`).
    let api: Api<CanaryRollout> = Api::namespaced(ctx.client.clone(), &namespace);
    status::write(&api, latest, &new_status).await?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };

    // 3. The manual request is handled only once the status says so.
    if let Some(value) = &manual.consumed {
        let annotations = json!({"metadata": {"annotations": {HANDLED_ANNOTATION: value}}});
        api.patch(&name, &params, &Patch::Merge(&annotations))
            .await?;
    }

    // 4. Events, notifications and metrics: best effort.
    driver::announce(&executor, &decision).await;
    gate_caller
        .after_decision(&subject, spec, &status, &decision)
        .await;
    record_metrics(ctx, rollout, &observations, &status, &new_status);
    if let Ok(mut ticks) = ctx.last_tick.lock() {
        ticks.insert(key, Instant::now());
    }
    Ok(if new_status.phase.is_terminal() && !lifecycle {
        Requeue::await_change()
    } else {
        Requeue::requeue(interval)
    })
}

/// Reads the canary and stable Deployments of the release lifecycle.
async fn read_workloads(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<Workloads, Error> {
    let spec = &rollout.spec;
    let canary_namespace = spec.canary.namespace.as_deref().unwrap_or(namespace);
    let stable = spec
        .stable
        .as_ref()
        .ok_or_else(|| Error::Invalid("spec.stable is not set".into()))?;
    let stable_namespace = stable.namespace.as_deref().unwrap_or(namespace);
    if stable_namespace != canary_namespace {
        return Err(Error::Invalid(format!(
            "spec.stable.namespace {stable_namespace} differs from the canary's {canary_namespace}: both Deployments must share a namespace"
        )));
    }
    let deployments = Deployments::new(ctx.client.clone(), canary_namespace);
    let workload = |e| Error::Workload(Box::new(e));
    let canary = deployments
        .get(&spec.canary.deployment)
        .await
        .map_err(workload)?;
    let stable = deployments
        .get(&stable.deployment)
        .await
        .map_err(workload)?;
    Ok(Workloads {
        deployments,
        canary,
        stable,
    })
}

/// The lifecycle's view of the two Deployments: the canary on its own revision, stable on
/// the run's revision (the one a promotion copies onto it).
pub fn release_observation(
    canary: &Deployment,
    stable: &Deployment,
    status: &CanaryRolloutStatus,
    rollout_key: &str,
) -> ReleaseObservation {
    let canary_revision = revision_of(canary);
    let run_revision = status
        .canary_revision
        .clone()
        .unwrap_or_else(|| canary_revision.clone());
    ReleaseObservation {
        rollout_key: rollout_key.to_string(),
        canary: workload_state(canary, &canary_revision),
        stable: workload_state(stable, &run_revision),
        stable_revision: Some(revision_of(stable)),
        canary_revision,
    }
}

/// The engine's input besides the release: metrics, custom checks, pod health, manual.
async fn observe(
    ctx: &Context,
    rollout: &CanaryRollout,
    rollout_key: &str,
    view: &RolloutView,
    namespace: &str,
    manual: Option<ManualAction>,
) -> Observations {
    let spec = &rollout.spec;
    let interval = spec.analysis.interval.as_std().max(Duration::from_secs(1));
    let series = RolloutSeries {
        rollout: rollout_key.to_string(),
        stable_version: view.stable_version.clone(),
        canary_version: view.canary_version.clone(),
    };
    let address = &spec.prometheus.address;
    let window = spec.analysis.effective_window().as_std();
    let metrics = ctx
        .batcher
        .observation(address, window, &series, interval / 2)
        .await;
    let custom = driver::custom_observations(spec, rollout_key, |query| async move {
        ctx.batcher.scalar(address, &query).await
    })
    .await;
    let resources = match crate::resources::ResourceSelectors::for_spec(spec, namespace) {
        Some(selectors) => {
            ctx.batcher
                .resources(address, window, &selectors, interval / 2)
                .await
        }
        None => crate::resources::ResourceObservation::NotQueried,
    };
    let canary_namespace = spec.canary.namespace.as_deref().unwrap_or(namespace);
    let canary_health = canary_health(&ctx.client, canary_namespace, &spec.canary.deployment).await;
    Observations {
        metrics,
        custom,
        resources,
        canary_health,
        manual,
    }
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

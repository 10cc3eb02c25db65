//! A manual action applied when no local loop runs (`stickycanary promote|abort|pause|resume
//! --status-file F` with no live lock): the action's effect, and nothing an analysis
//! window would have changed.
//!
//! The engine always wants a metrics window, and there is none here. It gets an empty one,
//! and everything that window would have touched in the status is put back afterwards:
//! `lastAnalysis` keeps the last real window, `prometheusUnavailableSince` keeps the
//! outage's start (clearing it would restart the grace period), and breach, inconclusive
//! and comparative state stay as the loop left them. The "Inconclusive" Event the empty
//! window raises is dropped too, so no webhook hears about a window that never happened.

use std::path::Path;

use k8s_openapi::jiff::Timestamp;

use super::{load_rollout, state, LocalRunner};
use crate::crd::conditions::{set_condition, DEGRADED};
use crate::crd::CanaryRolloutStatus;
use crate::driver::FrontEnd;
use crate::engine::{self, reasons, Action, Decision};
use crate::error::Error;
use crate::observation::{
    CanaryHealth, ManualAction, MetricsObservation, Observations, VersionWindow,
};

/// Puts back the status fields the analysis of the empty window changed. Only for a
/// rollout still in flight: promote and abort end the rollout before any analysis runs,
/// and their own clean-up (promote clears the outage and breach timers) stands.
pub fn keep_observed_state(before: &CanaryRolloutStatus, after: &mut CanaryRolloutStatus) {
    if after.phase.is_terminal() {
        return;
    }
    after.last_analysis = before.last_analysis.clone();
    after.breach_started_at = before.breach_started_at.clone();
    after.inconclusive_since = before.inconclusive_since.clone();
    after.comparative = before.comparative.clone();
    if before.prometheus_unavailable_since.is_some() {
        after.prometheus_unavailable_since = before.prometheus_unavailable_since.clone();
        // Degraded said so (with its original transition time) before the empty window
        // flipped it; an in-flight rollout's Degraded follows the outage alone.
        if let Some(degraded) = before.conditions.iter().find(|c| c.type_ == DEGRADED) {
            set_condition(&mut after.conditions, degraded.clone());
        }
    }
}

/// The decision with only the action's effect: see the module comment.
pub fn action_only(before: &CanaryRolloutStatus, mut decision: Decision) -> Decision {
    keep_observed_state(before, &mut decision.status);
    let inconclusive_note = format!("{}: ", reasons::INCONCLUSIVE);
    decision.actions.retain(|action| match action {
        Action::Event { reason, .. } => *reason != reasons::INCONCLUSIVE,
        Action::Notify(message) => !message.starts_with(&inconclusive_note),
        _ => true,
    });
    decision
}

/// Applies a manual action when no local loop is running: loads the spec and ECDS path
/// recorded in the status file, runs the engine once with the action (and an empty window
/// whose traces are removed), and concludes the tick as the loop would (weight, status
/// file, announcements).
pub async fn apply_directly(
    status_file: &Path,
    name: &str,
    action: ManualAction,
) -> Result<CanaryRolloutStatus, Error> {
    let status_error = |reason: String| Error::StatusFile {
        path: status_file.display().to_string(),
        reason,
    };
    let local = state::load(status_file)?.ok_or_else(|| {
        status_error("does not exist; start `stickycanary local` first".to_string())
    })?;
    if local.rollout != name {
        return Err(status_error(format!(
            "holds rollout {:?}, not {name:?}",
            local.rollout
        )));
    }
    let (Some(rollout_file), Some(envoy_ecds)) =
        (local.rollout_file.clone(), local.envoy_ecds.clone())
    else {
        return Err(status_error(
            "does not record the rollout and ECDS files; run `stickycanary local` once".to_string(),
        ));
    };
    let rollout = load_rollout(&rollout_file)?;
    let prometheus = local.prometheus.clone().unwrap_or_default();
    let before = local.status.clone();
    let runner = LocalRunner::new(
        rollout,
        &envoy_ecds,
        &super::prometheus::PrometheusAccess::from(prometheus.as_str()),
        None,
        super::hooks::Hooks::default(),
        status_file,
        local,
    )?;
    let metrics = MetricsObservation::Window {
        canary: VersionWindow::default(),
        stable: VersionWindow::default(),
    };
    let observations = Observations {
        metrics: metrics.clone(),
        custom: Vec::new(),
        resources: crate::resources::ResourceObservation::NotQueried,
        canary_health: CanaryHealth::Unknown,
        manual: Some(action),
        stable_before_run: None,
    };
    let release = runner.release(&before);
    let decision = engine::decide_release(
        &runner.rollout.spec,
        &before,
        Timestamp::now(),
        &observations,
        release.as_ref(),
    );
    let decision = action_only(&before, decision);
    let report = runner.conclude(&before, decision, metrics).await?;
    Ok(report.status)
}

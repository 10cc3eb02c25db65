//! Adapter for the stateful comparative check (`spec.analysis.comparative`): it folds each
//! window into cumulative evidence kept in `status.comparative`, so unlike the stateless
//! [`super::checks::Check`]s it reads and writes the status.

use super::checks::{Evaluation, Outcome};
use super::judge::Judged;
use super::record::Tick;
use super::stages;
use crate::analysis::comparative::{self, WindowInput, ERRORS_CHECK, LATENCY_CHECK};
use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::duration::Duration;
use crate::observation::{MetricsObservation, Observations};

/// Judges both comparative tests when the spec enables them. A Fail is final in the test
/// itself (the e-value crossed 1/α), so it rolls back at once (`for` is zero).
pub(super) fn judge(
    spec: &CanaryRolloutSpec,
    observations: &Observations,
    tick: &mut Tick,
) -> Vec<Judged> {
    let analysis = &spec.analysis;
    let Some(check) = analysis.comparative.as_ref().filter(|check| check.enabled) else {
        return Vec::new();
    };
    let (canary, stable) = match &observations.metrics {
        MetricsObservation::Window { canary, stable } => (canary, stable),
        MetricsObservation::Unavailable { reason } => {
            return [ERRORS_CHECK, LATENCY_CHECK]
                .into_iter()
                .map(|name| Judged {
                    name: name.to_string(),
                    breach_for: Duration::ZERO,
                    evaluation: Evaluation::new(
                        Outcome::Unavailable,
                        None,
                        None,
                        format!("metrics unavailable: {reason}"),
                    ),
                    shared_with_stable: false,
                })
                .collect();
        }
    };
    let input = WindowInput {
        canary,
        stable,
        weight: tick.status.weight,
        stage_started_at: tick.status.stage_started_at.as_ref(),
        window: analysis.effective_window(),
        handover: handover(spec, tick),
        stable_before_run: observations.stable_before_run.as_deref(),
        now: tick.now,
    };
    let (mut state, reports) = comparative::step(check, tick.status.comparative.as_ref(), &input);
    // With shard series, have the filter count its shards' `slow` outcome at the latency
    // test's threshold, so that the latency test can judge shards as the error test does.
    if !canary.shards.is_empty() {
        if let Some(ms) = state.filter_threshold_to_write() {
            tick.actions.push(super::Action::SetSlowThreshold(ms));
            state.filter_threshold_written(check, ms, tick.now);
        }
    }
    tick.status.comparative = Some(state);
    reports
        .into_iter()
        .map(|report| Judged {
            name: report.check.to_string(),
            breach_for: Duration::ZERO,
            evaluation: Evaluation::new(
                report.decision,
                Some(report.e_value),
                Some(report.threshold),
                report.message,
            ),
            shared_with_stable: false,
        })
        .collect()
}

/// Whether the tick after `status` should read stable's shard series over the hour before
/// ([`comparative::STABLE_LOOKBACK`]): the comparative check runs and this run has not
/// recorded them yet. One query per run, not per interval.
pub fn reads_stable_before_run(spec: &CanaryRolloutSpec, status: &CanaryRolloutStatus) -> bool {
    let enabled = spec
        .analysis
        .comparative
        .as_ref()
        .is_some_and(|check| check.enabled);
    enabled
        && status.stage_started_at.is_some()
        && matches!(status.phase, Phase::Progressing | Phase::Paused)
        && status
            .comparative
            .as_ref()
            .is_none_or(|state| state.stable_before_run.is_none())
}

/// `Some` when passing this stage would give canary all the traffic
/// ([`comparative::Handover`]); extendable while the stage has run less than twice its
/// duration, so that a healthy canary that leans by chance waits one stage duration at most.
fn handover(spec: &CanaryRolloutSpec, tick: &Tick) -> Option<comparative::Handover> {
    let index = stages::clamp_index(spec, tick.status.stage_index);
    let stage = stages::stage(spec, index)?;
    if !stages::hands_over(spec, index) {
        return None;
    }
    let hold_for = stages::hold_for(stage).as_std();
    let ran = super::gates::clock_elapsed(&tick.status, tick.now);
    Some(comparative::Handover {
        extendable: ran.is_some_and(|ran| ran.as_std() < hold_for * 2),
    })
}

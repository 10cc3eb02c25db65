//! Phase changes: starting, entering a stage, pausing and resuming, promoting, rolling
//! back, and parking an invalid spec in `InvalidSpec`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::record::Tick;
use super::{reasons, stages};
use crate::crd::{CanaryRolloutSpec, Phase};
use crate::observation::ManualAction;

/// Validates the spec; moves to `InvalidSpec` (holding the weight) while it is invalid, and
/// back to the phase it left (`status.phaseBeforeInvalidSpec`) once it is fixed: a run
/// that was handing over to stable goes on handing over, it never returns to the stages.
pub(super) fn spec_is_usable(spec: &CanaryRolloutSpec, tick: &mut Tick) -> bool {
    if let Err(errors) = crate::validate::validate_spec(spec) {
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if tick.status.phase != Phase::InvalidSpec {
            tick.status.phase_before_invalid_spec = Some(tick.status.phase);
            tick.transition(Phase::InvalidSpec, "invalid-spec");
            let message = format!("holding weight {}%: {text}", tick.status.weight);
            tick.event(reasons::INVALID_SPEC, message, true);
        }
        tick.spec_error = Some(text);
        return false;
    }
    if tick.status.phase == Phase::InvalidSpec {
        let lifecycle = tick.scale_down_delay.is_some();
        let status = &mut tick.status;
        status.stage_index = stages::clamp_index(spec, status.stage_index);
        let recorded = status
            .phase_before_invalid_spec
            .take()
            .filter(|phase| *phase != Phase::InvalidSpec);
        // A status written before the phase was recorded: derive it as before.
        let to = recorded.unwrap_or(if status.paused_at.is_some() {
            Phase::Paused
        } else if status.stage_started_at.is_none() && lifecycle {
            // A run that had not started its stages waits for its canary again.
            Phase::ScalingUp
        } else if status.stage_started_at.is_some() {
            Phase::Progressing
        } else {
            Phase::Pending
        });
        tick.transition(to, "spec-fixed");
        let message = format!("the spec is valid again; continuing as {to}");
        tick.event(reasons::RESUMED, message, false);
    }
    true
}

/// Pause and resume (manual or `spec.paused`). A pause holds the weight and the stage clock
/// in the phases that move the run on by themselves (`Pending`, `ScalingUp`, `Progressing`);
/// the hand-over (`Promoting`, `Finalising`) completes whatever `spec.paused` says.
pub(super) fn apply_pause_intent(
    spec: &CanaryRolloutSpec,
    manual: Option<ManualAction>,
    tick: &mut Tick,
) {
    match manual {
        Some(ManualAction::Pause) => tick.status.manual_pause = true,
        Some(ManualAction::Resume) => tick.status.manual_pause = false,
        _ => {}
    }
    let want_paused = spec.paused || tick.status.manual_pause;
    let phase = tick.status.phase;
    if matches!(phase, Phase::Promoting | Phase::Finalising) {
        hand_over_despite_pause(spec, tick);
        return;
    }
    let pausable = matches!(
        phase,
        Phase::Pending | Phase::ScalingUp | Phase::Progressing
    );
    if want_paused && pausable {
        // A closed window's frozen span is given back now, so that resuming does not
        // count it twice.
        super::gates::end_schedule_wait(tick);
        tick.status.paused_at = Some(tick.now_time());
        tick.transition(Phase::Paused, "paused");
        let why = if spec.paused {
            "spec.paused is true"
        } else {
            "paused by an operator"
        };
        let message = if tick.status.stage_started_at.is_some() {
            format!(
                "holding weight {}% with the stage timer frozen: {why}",
                tick.status.weight
            )
        } else {
            format!(
                "holding weight {}% before the first stage: {why}",
                tick.status.weight
            )
        };
        tick.event(reasons::PAUSED, message, false);
    } else if !want_paused && phase == Phase::Paused {
        let now = tick.now;
        let lifecycle = tick.scale_down_delay.is_some();
        let status = &mut tick.status;
        if let (Some(started), Some(paused_at)) = (&status.stage_started_at, &status.paused_at) {
            // Freeze the stage clock: the paused span does not count toward the stage.
            status.stage_started_at =
                Some(stages::shifted(started, stages::elapsed(now, paused_at)));
        }
        let paused_for = status
            .paused_at
            .take()
            .map(|paused_at| stages::elapsed(now, &paused_at))
            .unwrap_or_default();
        let to = if status.stage_started_at.is_some() {
            Phase::Progressing
        } else if lifecycle {
            // Paused before the first weight: the run waits for its canary again, with a
            // fresh progressDeadline.
            status.phase_started_at = Some(Time(now));
            Phase::ScalingUp
        } else {
            Phase::Pending
        };
        tick.transition(to, "resumed");
        let message = format!(
            "resumed after {paused_for} paused at weight {}%",
            tick.status.weight
        );
        tick.event(reasons::RESUMED, message, false);
    } else if manual == Some(ManualAction::Resume) && spec.paused {
        let message = "resume ignored: spec.paused is true (set it to false)".to_string();
        tick.event(reasons::PAUSED, message, true);
    }
}

/// `spec.paused` set during the hand-over to stable is not honoured (stopping would leave
/// stable half rolled out): one Warning says so, `pausedAt` marking that it was said.
fn hand_over_despite_pause(spec: &CanaryRolloutSpec, tick: &mut Tick) {
    if !spec.paused {
        tick.status.paused_at = None;
        return;
    }
    if tick.status.paused_at.is_some() {
        return;
    }
    tick.status.paused_at = Some(tick.now_time());
    let message = format!(
        "spec.paused is true, but the rollout is {}: the hand-over to stable completes \
         (stopping it would leave stable half rolled out); the next run starts paused",
        tick.status.phase
    );
    tick.event(reasons::PAUSED, message, true);
}

pub(super) fn start(spec: &CanaryRolloutSpec, tick: &mut Tick) {
    if super::gates::hold(spec, tick, super::gates::Point::Start) {
        return;
    }
    let status = &mut tick.status;
    status.breach_started_at.clear();
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.rollback_reason = None;
    status.comparative = None;
    enter_stage(spec, tick, 0, "started");
}

/// Make `index` the current stage: set its weight and restart the stage clock.
pub(super) fn enter_stage(spec: &CanaryRolloutSpec, tick: &mut Tick, index: u32, reason: &str) {
    let Some(stage) = stages::stage(spec, index) else {
        return;
    };
    // Stages only go up (validated), but never let a mid-rollout spec edit lower the weight.
    let weight = stage.weight.max(tick.status.weight);
    tick.status.stage_index = index;
    tick.status.stage_started_at = Some(tick.now_time());
    tick.status.inconclusive_since = None;
    if stages::is_last(spec, index) && stages::hold_for(stage).is_zero() {
        let message = format!("reached the last stage; canary promoted to {weight}%");
        promote(tick, spec, "promoted", message);
        return;
    }
    tick.set_weight(weight);
    tick.transition(Phase::Progressing, reason);
    let message = format!(
        "{}: weight set to {weight}% for {}",
        stages::describe(spec, index, weight),
        stages::hold_for(stage)
    );
    tick.event(reasons::STAGE_ADVANCED, message, false);
}

pub(super) fn promote(tick: &mut Tick, spec: &CanaryRolloutSpec, reason: &str, message: String) {
    if tick.status.weight != 100.0 {
        tick.set_weight(100.0);
    }
    if tick.finalize {
        // The release lifecycle: stable takes over the revision before the run is done.
        let revision = tick.status.canary_revision.clone().unwrap_or_default();
        let now = tick.now_time();
        let status = &mut tick.status;
        status.stage_index = stages::clamp_index(spec, u32::MAX);
        status.paused_at = None;
        status.manual_pause = false;
        status.inconclusive_since = None;
        status.prometheus_unavailable_since = None;
        status.breach_started_at.clear();
        status.phase_started_at = Some(now);
        tick.actions.push(super::Action::PromoteStable {
            revision: revision.clone(),
        });
        tick.transition(Phase::Promoting, reason);
        let message = format!(
            "{message}; rolling revision {revision} out on the stable Deployment (within {})",
            spec.progress_deadline
        );
        tick.event(reasons::PROMOTING, message, false);
        return;
    }
    let status = &mut tick.status;
    status.stage_index = stages::clamp_index(spec, u32::MAX);
    status.paused_at = None;
    status.manual_pause = false;
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.breach_started_at.clear();
    tick.transition(Phase::Promoted, reason);
    tick.event(reasons::PROMOTED, message, false);
}

pub(super) fn roll_back(tick: &mut Tick, reason: String, detail: String) {
    tick.set_weight(0.0);
    let status = &mut tick.status;
    status.rollback_reason = Some(reason.clone());
    status.paused_at = None;
    status.manual_pause = false;
    status.inconclusive_since = None;
    if let Some(delay) = tick.scale_down_delay {
        let at = stages::shifted(&tick.now_time(), delay);
        let status = &mut tick.status;
        status.failed_revision = status.canary_revision.clone();
        status.phase_started_at = None;
        status.scale_down_at = Some(at);
    }
    tick.transition(Phase::RolledBack, &reason);
    let message = format!("rolling back to 0% ({reason}): {detail}");
    tick.event(reasons::ROLLING_BACK, message, true);
}

//! Stable is observed, never assumed (contract 5, "Release lifecycle", rules 11 to 13).
//!
//! Every tick with a revision source starts from what the stable Deployment says now: its
//! template's revision becomes `status.stableRevision`, and the revision the controller last
//! copied onto it (its `stickycanary.dev/revision` annotation) tells a drifted stable from
//! one the controller rolled out. A promotion records the revision stable ran before it
//! (`status.promotedFrom`), so a canary reverted to that revision while stable is taking
//! the run over undoes the promotion instead of leaving stable on the reverted-from
//! revision.

use super::record::Tick;
use super::{reasons, Action};
use crate::crd::{CanaryRolloutStatus, Phase};
use crate::observation::ReleaseObservation;

/// The transition reason of a rollout held in `InvalidSpec` by its Deployments.
const HELD: &str = "invalid-workloads";

/// Stable is taking the run's revision over (or failed to): a revert must undo the copy.
fn handing_over(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Promoting | Phase::Finalising | Phase::PromotionFailed
    )
}

/// First rule of every tick with a revision source: the status takes stable's observed
/// revision, and a stable on a revision the rollout does not expect is reported (an Event
/// once, `Degraded` with reason `StableDrifted`, and `Ready` false while it lasts).
pub(super) fn observe(release: &ReleaseObservation, tick: &mut Tick) {
    let status = &mut tick.status;
    if handing_over(status.phase)
        && status.promoted_from.is_none()
        && status.stable_revision != status.canary_revision
    {
        // A status written before `promotedFrom` existed kept the pre-promotion revision
        // here until `Succeeded`.
        status.promoted_from = status.stable_revision.clone();
    }
    if let Some(observed) = &release.stable_revision {
        status.stable_revision = Some(observed.clone());
    }
    if status.canary_revision.is_none() && status.last_promoted_revision.is_none() {
        // A new or wiped status: the annotation on stable remembers the last promotion.
        status.last_promoted_revision = release.recorded.promoted.clone();
    }
    let Some(observed) = release.stable_revision.as_deref() else {
        return;
    };
    let expected = match status.phase {
        // At rest, stable runs the canary's revision (promoted, or never changed).
        Phase::WaitingForRelease | Phase::Initialized | Phase::Succeeded => {
            status.canary_revision.as_deref()
        }
        // Otherwise stable keeps what the controller last copied onto it.
        _ => release.recorded.promoted.as_deref(),
    };
    let Some(expected) = expected.filter(|expected| *expected != observed) else {
        return;
    };
    let message = format!(
        "the stable Deployment runs revision {observed}, not {expected}: something else changed its pod template (keep it out of GitOps sync, see the README)"
    );
    if !was_drifted(status) {
        tick.event(reasons::STABLE_DRIFTED, message.clone(), true);
    }
    tick.stable_drift = Some(message);
}

fn was_drifted(status: &CanaryRolloutStatus) -> bool {
    status.conditions.iter().any(|c| {
        c.type_ == crate::crd::conditions::DEGRADED
            && c.status == "True"
            && c.reason == reasons::STABLE_DRIFTED
    })
}

/// Whether the rollout is in `InvalidSpec` because of its Deployments (not its spec).
pub(super) fn held_by_workloads(status: &CanaryRolloutStatus) -> bool {
    status.phase == Phase::InvalidSpec && status.history.last().is_some_and(|t| t.reason == HELD)
}

/// The two Deployments cannot run a release lifecycle (`release.problem`): hold the weight
/// in `InvalidSpec` with the one-line reason, as an invalid spec does. Returns false then.
/// Fixed, the rollout goes back to the phase it was held in (the history's last entry).
pub(super) fn workloads_are_usable(release: &ReleaseObservation, tick: &mut Tick) -> bool {
    let Some(problem) = &release.problem else {
        let held = tick
            .status
            .history
            .last()
            .filter(|t| t.reason == HELD && tick.status.phase == Phase::InvalidSpec)
            .map(|t| t.from);
        if let Some(from) = held {
            tick.transition(from, "workloads-fixed");
            let message = format!(
                "the Deployments can run the release lifecycle again; continuing as {from}"
            );
            tick.event(reasons::RESUMED, message, false);
        }
        return true;
    };
    if tick.status.phase != Phase::InvalidSpec {
        tick.transition(Phase::InvalidSpec, HELD);
        let message = format!("holding weight {}%: {problem}", tick.status.weight);
        tick.event(reasons::INVALID_SPEC, message, true);
    }
    tick.spec_error = Some(problem.clone());
    false
}

/// The canary went back to the revision stable ran before the promotion, while stable is
/// taking the run over (`Promoting`, `Finalising`) or failed to (`PromotionFailed`). The
/// promotion is undone: the canary's template (now the reverted revision) is copied back
/// onto stable, and the run continues as a promotion of the reverted revision. The weight
/// stays where users are served (100 on the canary while stable is rolling or failed; 0 in
/// `Finalising`, where stable serves) until stable has rolled back; then weight 0, the
/// drain and the scale-down follow as in any promotion, ending in `WaitingForRelease`.
/// Returns true when the tick is decided.
pub(super) fn undo_promotion(release: &ReleaseObservation, tick: &mut Tick) -> bool {
    let phase = tick.status.phase;
    let revision = release.canary_revision.clone();
    if !handing_over(phase)
        || tick.status.canary_revision.as_deref() == Some(revision.as_str())
        || tick.status.promoted_from.as_deref() != Some(revision.as_str())
    {
        return false;
    }
    let from = tick.status.canary_revision.clone().unwrap_or_default();
    let now = tick.now_time();
    let status = &mut tick.status;
    status.canary_revision = Some(revision.clone());
    status.reverted_from = Some(from.clone());
    status.phase_started_at = Some(now);
    status.failure_reason = None;
    status.scale_down_at = None;
    tick.actions.push(Action::PromoteStable {
        revision: revision.clone(),
    });
    let to = match phase {
        Phase::Finalising => Phase::Finalising,
        _ => Phase::Promoting,
    };
    tick.transition(to, "reverted-during-promotion");
    let weight = tick.status.weight;
    let message = format!(
        "the canary was reverted to {revision} during {phase} of {from}: undoing the promotion; stable goes back to {revision}, the weight stays at {weight}% until it has rolled back, then 0, the drain and the scale-down"
    );
    tick.event(reasons::REVERTED, message, true);
    true
}

/// After the rules: the tick that starts a promotion records what stable ran before it;
/// a run that failed this tick asks for its revision to be recorded on the canary
/// Deployment (so a wiped status does not run it again on the same cohort).
pub(super) fn after(old: &CanaryRolloutStatus, tick: &mut Tick) {
    let status = &mut tick.status;
    if status.phase == Phase::ScalingUp {
        // A new run (or a retry) is not the undo of an earlier promotion any more.
        status.reverted_from = None;
    }
    if status.phase == Phase::Promoting
        && status.promoted_from.is_none()
        && status.stable_revision != status.canary_revision
    {
        status.promoted_from = status.stable_revision.clone();
    }
    if let Some(failed) = &status.failed_revision {
        if old.failed_revision.as_ref() != Some(failed) {
            tick.actions.push(Action::RecordFailedRevision {
                revision: failed.clone(),
            });
        }
    }
}

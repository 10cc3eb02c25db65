//! The release lifecycle (contract 5, "Release lifecycle"): a new canary revision starts a
//! run by itself, the weight stays at 0 until the canary has ready pods, a promotion copies
//! the canary onto stable and hands users back to it, and a rollback scales the canary down
//! after a drain delay.
//!
//! Every timer and every "already did that" lives in the status (`phaseStartedAt`,
//! `scaleDownAt`, `canaryRevision`, `salt`), so a restarted controller resumes a run where
//! the last one stopped. The actions asked for here are idempotent (scale to N, copy this
//! template) and are asked again whenever the observed workload says they have not
//! happened, so a lost action is repeated rather than forgotten.

use super::lifecycle::{roll_back, start};
use super::record::Tick;
use super::{reasons, stages, Action};
use crate::crd::{CanaryRolloutSpec, Phase};
use crate::observation::{ManualAction, ReleaseObservation, WorkloadState};

/// The salt of run `attempt` of `revision`: `<rolloutKey>-<revision>` (then `-2`, `-3`... for
/// retries), so each run draws a different cohort of users.
pub fn salt_for(rollout_key: &str, revision: &str, attempt: u32) -> String {
    if attempt <= 1 {
        format!("{rollout_key}-{revision}")
    } else {
        format!("{rollout_key}-{revision}-{attempt}")
    }
}

/// Rules that come before everything else: first sight, a new revision (also mid-run), a
/// pending scale-down and `retry`. Returns true when the tick is fully decided.
pub(super) fn before(
    spec: &CanaryRolloutSpec,
    manual: Option<ManualAction>,
    release: &ReleaseObservation,
    tick: &mut Tick,
) -> bool {
    let revision = release.canary_revision.as_str();
    if let Some(stable) = &release.stable_revision {
        if tick.status.stable_revision.is_none() {
            tick.status.stable_revision = Some(stable.clone());
        }
    }
    // A request on the tick a revision is first seen is answered, not dropped: what it was
    // meant for is not what runs now.
    let answer = |tick: &mut Tick, why: String| super::manual::refuse(manual, &why, tick);
    if tick.status.canary_revision.is_none()
        && tick.status.stable_revision.as_deref() == Some(revision)
    {
        answer(
            tick,
            format!("revision {revision} is seen for the first time and is stable's: no run"),
        );
        tick.status.canary_revision = Some(revision.to_string());
        if release.stable != WorkloadState::Ready {
            begin_initializing(release, tick);
            return true;
        }
        tick.transition(Phase::WaitingForRelease, "first-sight");
        let message =
            format!("the canary runs the stable revision {revision}; waiting for a release");
        tick.event(reasons::WAITING, message, false);
        drain_a_canary_left_up(release, tick);
        return true;
    }
    if tick.status.canary_revision.is_none() && release.recorded.failed.as_deref() == Some(revision)
    {
        answer(
            tick,
            format!("revision {revision} is seen for the first time"),
        );
        not_rerun(release, tick);
        return true;
    }
    if tick.status.canary_revision.as_deref() != Some(revision) {
        answer(
            tick,
            format!("revision {revision} arrived on this tick and replaces the run; ask again if it still applies"),
        );
        new_revision(spec, release, tick);
        return true;
    }
    // A retry comes first: it cancels a pending scale-down of the same revision.
    if manual == Some(ManualAction::Retry) {
        if matches!(
            tick.status.phase,
            Phase::RolledBack | Phase::PromotionFailed
        ) {
            let attempt = tick.status.attempt.max(1) + 1;
            begin_run(spec, release, tick, attempt, "retry");
        } else {
            let message = format!(
                "retry ignored: the run of {revision} is {} (retry reruns a failed run)",
                tick.status.phase
            );
            tick.event(reasons::RETRY_IGNORED, message, true);
        }
        return true;
    }
    scale_down_when_due(tick);
    false
}

/// Rules for the lifecycle's own phases; returns true when the tick is fully decided.
pub(super) fn during(
    spec: &CanaryRolloutSpec,
    release: &ReleaseObservation,
    tick: &mut Tick,
) -> bool {
    match tick.status.phase {
        Phase::Initializing => initializing(spec, release, tick),
        Phase::ScalingUp => scaling_up(spec, release, tick),
        Phase::Promoting => promoting(spec, release, tick),
        Phase::Finalising => finalising(spec, release, tick),
        _ => return false,
    }
    true
}

/// First sight of a stable that is not rolled out on the workload's revision (the bootstrap:
/// the generated stable was just created from the workload): users stay on the workload,
/// which serves, until stable is ready.
fn begin_initializing(release: &ReleaseObservation, tick: &mut Tick) {
    if release.canary == WorkloadState::Ready && tick.status.weight != 100.0 {
        tick.set_weight(100.0);
    }
    tick.status.phase_started_at = Some(tick.now_time());
    tick.transition(Phase::Initializing, "bootstrap");
    let message = format!(
        "stable is rolling out revision {} for the first time; users stay on the workload (weight {}%) until it is ready",
        release.canary_revision, tick.status.weight
    );
    tick.event(reasons::INITIALIZING, message, false);
}

/// The bootstrap: once stable is ready every user goes to it (weight 0, no run) and the
/// workload is scaled down after the drain. A stable that does not roll out keeps users on
/// the workload, with a Warning (once), until it does.
fn initializing(spec: &CanaryRolloutSpec, release: &ReleaseObservation, tick: &mut Tick) {
    let revision = tick.status.canary_revision.clone().unwrap_or_default();
    let problem = match &release.stable {
        WorkloadState::Ready => {
            if tick.status.weight != 0.0 {
                tick.set_weight(0.0);
            }
            let now = tick.now_time();
            let status = &mut tick.status;
            status.phase_started_at = None;
            status.failure_reason = None;
            status.stable_revision = Some(revision.clone());
            if release.canary != WorkloadState::Stopped {
                status.scale_down_at = Some(stages::shifted(&now, spec.scale_down_delay));
            }
            tick.transition(Phase::Initialized, "initialized");
            let message = format!(
                "stable runs revision {revision} and takes every user (weight 0, no run); the workload is scaled down after scaleDownDelay {}",
                spec.scale_down_delay
            );
            tick.event(reasons::INITIALIZED, message, false);
            return;
        }
        WorkloadState::Failed(why) => format!("the stable rollout of {revision} failed: {why}"),
        _ if deadline_passed(spec, tick) => format!(
            "stable has no ready pods of {revision} within progressDeadline {}",
            spec.progress_deadline
        ),
        _ => return,
    };
    if tick.status.failure_reason.as_deref() != Some(problem.as_str()) {
        let message = format!(
            "{problem}; users stay on the workload at {}%",
            tick.status.weight
        );
        tick.status.failure_reason = Some(problem);
        tick.event(reasons::INITIALIZING, message, true);
    }
}

/// A revision the status has not seen: weight to 0, forget the old run, then either a
/// revert (the stable revision again: no run) or a new run.
fn new_revision(spec: &CanaryRolloutSpec, release: &ReleaseObservation, tick: &mut Tick) {
    let revision = release.canary_revision.clone();
    let previous = tick.status.canary_revision.clone();
    // Users on the canary now, or a drain already under way, mean a revert must drain.
    let had_users = tick.status.weight != 0.0;
    let draining = tick.status.scale_down_at.clone();
    if tick.status.weight != 0.0 {
        // Users leave the old revision before anything else happens.
        tick.set_weight(0.0);
    }
    let status = &mut tick.status;
    status.stage_index = 0;
    status.stage_started_at = None;
    status.paused_at = None;
    status.manual_pause = false;
    status.breach_started_at.clear();
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.comparative = None;
    status.last_analysis = None;
    status.rollback_reason = None;
    status.failure_reason = None;
    status.scale_down_at = None;
    status.phase_started_at = None;
    status.attempt = 0;
    status.phase_before_invalid_spec = None;
    if status.stable_revision.as_deref() == Some(revision.as_str()) {
        status.canary_revision = Some(revision.clone());
        status.salt = None;
        // The weight went to 0 above; Envoy takes a moment to get it, and until then the
        // canary's cohort still reaches the canary. So, as after a rollback, the canary is
        // scaled down only after the drain delay (`scaleDownAt`, which survives a restart).
        let scale_down = if had_users {
            Some(stages::shifted(&tick.now_time(), spec.scale_down_delay))
        } else {
            draining
        };
        let when = match &scale_down {
            Some(at) => format!("scaled down at {} (after the drain)", at.0),
            None => {
                tick.actions.push(Action::ScaleCanaryDown {
                    revision: revision.clone(),
                });
                "scaled down (no user was on it)".to_string()
            }
        };
        tick.status.scale_down_at = scale_down;
        tick.transition(Phase::WaitingForRelease, "revert");
        let message = format!(
            "the canary is back on the stable revision {revision}: no run; weight 0 and the canary is {when}"
        );
        tick.event(reasons::REVERTED, message, false);
        return;
    }
    if let Some(previous) = previous {
        if !tick.status.phase.is_waiting() && !tick.status.phase.is_terminal() {
            let message = format!(
                "revision {revision} replaced {previous} mid-run: weight 0, the run starts over"
            );
            tick.event(reasons::RESTARTED, message, true);
        }
    }
    begin_run(spec, release, tick, 1, "new-revision");
}

/// Start run `attempt` of the observed revision: a new cohort, then scale up.
fn begin_run(
    spec: &CanaryRolloutSpec,
    release: &ReleaseObservation,
    tick: &mut Tick,
    attempt: u32,
    reason: &str,
) {
    let revision = release.canary_revision.clone();
    if tick.status.weight != 0.0 {
        // A retry after PromotionFailed (weight 100): every run starts at 0, so its first
        // weight leaves 0 with the new cohort's salt.
        tick.set_weight(0.0);
    }
    let now = tick.now_time();
    let status = &mut tick.status;
    status.canary_revision = Some(revision.clone());
    status.attempt = attempt;
    status.salt = spec
        .cohort
        .rotate
        .then(|| salt_for(&release.rollout_key, &revision, attempt));
    status.phase_started_at = Some(now);
    status.scale_down_at = None;
    status.stage_index = 0;
    status.stage_started_at = None;
    status.rollback_reason = None;
    status.failure_reason = None;
    status.breach_started_at.clear();
    status.comparative = None;
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.paused_at = None;
    status.phase_before_invalid_spec = None;
    tick.transition(Phase::ScalingUp, reason);
    let cohort = match &tick.status.salt {
        Some(salt) => format!("new cohort (salt {salt})"),
        None => "the fixed cohort".to_string(),
    };
    let message = format!(
        "run {attempt} of revision {revision} with {cohort}: weight 0 until the canary has ready pods"
    );
    tick.event(reasons::RELEASE_STARTED, message, false);
    // `spec.paused` holds a run from its first tick: not even the canary is scaled up.
    super::lifecycle::apply_pause_intent(spec, None, tick);
    if tick.status.phase == Phase::Paused {
        return;
    }
    // Only ask when needed: a canary already up on this revision (a retry before the
    // scale-down) goes straight on at the next tick.
    if release.canary != WorkloadState::Ready
        && !super::gates::hold(spec, tick, super::gates::Point::ScaleUp)
    {
        tick.actions.push(Action::ScaleCanaryUp { revision });
    }
}

/// Weight 0 until the canary is ready on the run's revision, within `progressDeadline`.
fn scaling_up(spec: &CanaryRolloutSpec, release: &ReleaseObservation, tick: &mut Tick) {
    let revision = release.canary_revision.clone();
    match &release.canary {
        WorkloadState::Ready => {
            tick.status.phase_started_at = None;
            start(spec, tick);
        }
        WorkloadState::Failed(why) => {
            let detail = format!("the canary did not start on revision {revision}: {why}");
            tick.status.failure_reason = Some(detail.clone());
            fail_run(tick, "scale-up-failed".to_string(), detail);
        }
        state => {
            if super::gates::hold(spec, tick, super::gates::Point::ScaleUp) {
                // The deadline is for the scale-up, which has not been asked for yet.
                tick.status.phase_started_at = Some(tick.now_time());
                return;
            }
            if deadline_passed(spec, tick) {
                let detail = format!(
                    "the canary had no ready pods of revision {revision} within progressDeadline {}",
                    spec.progress_deadline
                );
                tick.status.failure_reason = Some(detail.clone());
                fail_run(tick, "scale-up-deadline".to_string(), detail);
            } else if *state == WorkloadState::Stopped {
                tick.actions.push(Action::ScaleCanaryUp { revision });
            }
        }
    }
}

/// The analysis passed: stable is being rolled out on the run's revision (weight 100).
fn promoting(spec: &CanaryRolloutSpec, release: &ReleaseObservation, tick: &mut Tick) {
    let revision = tick.status.canary_revision.clone().unwrap_or_default();
    match &release.stable {
        WorkloadState::Ready => {
            tick.status.phase_started_at = Some(tick.now_time());
            tick.set_weight(0.0);
            tick.transition(Phase::Finalising, "stable-ready");
            let message = format!(
                "stable runs revision {revision}: weight back to 0; the canary is scaled down in {}",
                spec.scale_down_delay
            );
            tick.event(reasons::FINALISING, message, false);
        }
        WorkloadState::Failed(why) => promotion_failed(
            tick,
            format!("the stable rollout of {revision} failed: {why}"),
        ),
        state => {
            if deadline_passed(spec, tick) {
                let why = format!(
                    "the stable rollout of {revision} missed progressDeadline {}",
                    spec.progress_deadline
                );
                promotion_failed(tick, why);
            } else if *state == WorkloadState::Stopped {
                tick.actions.push(Action::PromoteStable { revision });
            }
        }
    }
}

/// Users are on stable again; after the drain delay the canary is scaled down and the run
/// has succeeded (or, for a promotion being undone, the rollout waits for a release). The
/// canary only goes once stable is observed rolled out on the run's revision: a stable
/// still rolling back (an undo) or changed meanwhile is waited for, re-copied when its
/// template is not the run's, and past `progressDeadline` fails the promotion with the
/// canary still up.
fn finalising(spec: &CanaryRolloutSpec, release: &ReleaseObservation, tick: &mut Tick) {
    let revision = tick.status.canary_revision.clone().unwrap_or_default();
    match &release.stable {
        WorkloadState::Ready => {}
        WorkloadState::Failed(why) => {
            let why = format!("the stable rollout of {revision} failed: {why}");
            return promotion_failed(tick, why);
        }
        state => {
            if deadline_passed(spec, tick) {
                let why = format!(
                    "the stable rollout of {revision} missed progressDeadline {}",
                    spec.progress_deadline
                );
                promotion_failed(tick, why);
            } else if *state == WorkloadState::Stopped {
                tick.actions.push(Action::PromoteStable { revision });
            }
            return;
        }
    }
    let since = tick.status.phase_started_at.clone();
    let drained =
        since.is_none_or(|since| stages::elapsed(tick.now, &since) >= spec.scale_down_delay);
    if !drained {
        return;
    }
    tick.actions.push(Action::ScaleCanaryDown {
        revision: revision.clone(),
    });
    let status = &mut tick.status;
    status.phase_started_at = None;
    status.paused_at = None;
    status.stable_revision = Some(revision.clone());
    status.promoted_from = None;
    if let Some(from) = status.reverted_from.take() {
        tick.transition(Phase::WaitingForRelease, "revert-undone");
        let message = format!(
            "stable is back on {revision} (the promotion of {from} is undone); the canary is scaled down"
        );
        tick.event(reasons::REVERTED, message, false);
        return;
    }
    let status = &mut tick.status;
    status.last_promoted_revision = Some(revision.clone());
    tick.transition(Phase::Succeeded, "succeeded");
    let message = format!("revision {revision} is the new stable; the canary is scaled down");
    tick.event(reasons::SUCCEEDED, message, false);
}

fn promotion_failed(tick: &mut Tick, why: String) {
    tick.status.failure_reason = Some(why.clone());
    tick.status.failed_revision = tick.status.canary_revision.clone();
    tick.status.phase_started_at = None;
    tick.status.paused_at = None;
    tick.transition(Phase::PromotionFailed, "promotion-failed");
    let message = format!(
        "holding weight {}% on the canary: {why}",
        tick.status.weight
    );
    tick.event(reasons::PROMOTION_FAILED, message, true);
}

fn fail_run(tick: &mut Tick, reason: String, detail: String) {
    tick.status.phase_started_at = None;
    roll_back(tick, reason, detail);
}

fn deadline_passed(spec: &CanaryRolloutSpec, tick: &Tick) -> bool {
    tick.status
        .phase_started_at
        .as_ref()
        .is_some_and(|since| stages::elapsed(tick.now, since) > spec.progress_deadline)
}

/// First sight (a new or wiped status) of a canary that is up with nothing to do (a run
/// that finished promoting before the status was lost): it is scaled down after the drain
/// delay, as after a rollback.
fn drain_a_canary_left_up(release: &ReleaseObservation, tick: &mut Tick) {
    let Some(delay) = tick.scale_down_delay else {
        return;
    };
    if release.canary == WorkloadState::Stopped {
        return;
    }
    let at = stages::shifted(&tick.now_time(), delay);
    tick.status.scale_down_at = Some(at);
    let message = format!(
        "the canary is up with nothing to do: it is scaled down in {delay} (weight {}%)",
        tick.status.weight
    );
    tick.event(reasons::SCALED_DOWN, message, false);
}

/// First sight of a canary on the revision the generated stable records as failed (a
/// wiped status): the run is not repeated on the same cohort. The rollout stands rolled
/// back on it (weight 0, the canary drained and scaled down); `retry` runs it again with a
/// new cohort.
fn not_rerun(release: &ReleaseObservation, tick: &mut Tick) {
    let revision = release.canary_revision.clone();
    if tick.status.weight != 0.0 {
        tick.set_weight(0.0);
    }
    let status = &mut tick.status;
    status.canary_revision = Some(revision.clone());
    status.failed_revision = Some(revision.clone());
    status.attempt = 1;
    status.rollback_reason = Some("failed-before".to_string());
    tick.transition(Phase::RolledBack, "failed-before");
    let message = format!(
        "revision {revision} failed before (stickycanary.dev/failed-revision on the stable Deployment): not run again on the same cohort; `stickycanary retry` runs it with a new one"
    );
    tick.event(reasons::ROLLING_BACK, message, true);
    drain_a_canary_left_up(release, tick);
}

/// A rollback's drain delay has passed: scale the canary down.
fn scale_down_when_due(tick: &mut Tick) {
    let due = tick
        .status
        .scale_down_at
        .as_ref()
        .is_some_and(|at| tick.now >= at.0);
    if !due {
        return;
    }
    tick.status.scale_down_at = None;
    let revision = tick.status.canary_revision.clone().unwrap_or_default();
    tick.actions.push(Action::ScaleCanaryDown {
        revision: revision.clone(),
    });
    let message = format!("users drained from revision {revision}; the canary is scaled down");
    tick.event(reasons::SCALED_DOWN, message, false);
}

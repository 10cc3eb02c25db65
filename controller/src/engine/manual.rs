//! Which manual actions a phase can take (contract 5, "Decision rules", rule 2a).
//!
//! An operator's one-shot request is consumed on the tick it is seen, in the cluster by
//! marking the request annotation handled. A request the phase cannot take must not vanish
//! without a word: it is refused with a Warning `ActionRefused` Event that names the phase
//! and what happens instead, and the tick goes on as if it had not been asked.
//!
//! `retry` is the release lifecycle's own (see [`super::release`]); without a revision
//! source there is no run to repeat, so it is refused here.

use super::record::Tick;
use super::{reasons, schedule};
use crate::crd::{CanaryRolloutSpec, Phase};
use crate::observation::ManualAction;

/// The action this tick may act on: `manual` itself, or `None` after an `ActionRefused`
/// Event when the phase cannot take it.
pub(super) fn admit(
    spec: &CanaryRolloutSpec,
    manual: Option<ManualAction>,
    tick: &mut Tick,
) -> Option<ManualAction> {
    let action = manual?;
    let Some(why) = refusal(spec, action, tick) else {
        return Some(action);
    };
    refuse(Some(action), &why, tick);
    None
}

/// Refuses `manual` (when there is one) with `why`: for a tick decided before the action
/// could be taken (the undo of a promotion, a rollout held by its Deployments), so that it
/// is answered rather than dropped.
pub(super) fn refuse(manual: Option<ManualAction>, why: &str, tick: &mut Tick) {
    let Some(action) = manual else {
        return;
    };
    let message = format!(
        "{action} refused: the rollout is {}: {why}",
        tick.status.phase
    );
    tick.event(reasons::ACTION_REFUSED, message, true);
}

/// Why an action is refused while the two Deployments cannot run a release lifecycle.
pub(super) fn held_by_workloads(problem: Option<&str>, weight: f64) -> String {
    format!(
        "the Deployments cannot run a release lifecycle ({}); the weight is held at {weight}% \
         until they are fixed",
        problem.unwrap_or("the Degraded condition says why")
    )
}

/// Why the current phase cannot take `action` (`None`: it can).
fn refusal(spec: &CanaryRolloutSpec, action: ManualAction, tick: &Tick) -> Option<String> {
    use ManualAction::*;
    let status = &tick.status;
    let revision = status.canary_revision.as_deref().unwrap_or("the canary");
    let lifecycle = tick.scale_down_delay.is_some();
    if action == Retry && !lifecycle {
        return Some(
            "retry reruns a failed revision, and this rollout has no revision source \
             (spec.stable, or spec.canary.revision in local mode)"
                .to_string(),
        );
    }
    // A canary set back to the revision stable ran before the promotion undoes it
    // (`engine/observed.rs`).
    let undo = match (&status.reverted_from, &status.promoted_from) {
        (Some(from), _) => format!("the promotion of {from} is already being undone"),
        (None, Some(before)) => format!("set the workload Deployment back to revision {before}"),
        (None, None) => {
            "set the workload Deployment back to the revision stable ran before".to_string()
        }
    };
    let held = super::observed::held_by_workloads(status);
    match (status.phase, action) {
        (Phase::Promoting, _) => Some(format!(
            "stable is taking over revision {revision} and the hand-over completes: users stay \
             on the canary at {}% until stable is ready, then go back to stable (stopping now \
             would leave stable half rolled out; to undo the release: {undo})",
            status.weight
        )),
        (Phase::Finalising, _) => Some(format!(
            "stable runs revision {revision} and users are back on it; the canary is scaled \
             down after scaleDownDelay {} (to undo the release: {undo})",
            spec.scale_down_delay
        )),
        (Phase::RolledBack, _) if lifecycle => Some(format!(
            "the run of {revision} rolled back to 0%; `retry` runs it again with a new cohort"
        )),
        (Phase::PromotionFailed, _) => Some(format!(
            "the stable rollout of {revision} failed and users stay on the canary at {}%; \
             `retry` runs the revision again from weight 0, a new revision replaces it; to \
             undo the promotion: {undo}",
            status.weight
        )),
        (Phase::Initializing, _) => Some(
            "the generated stable is rolling out for the first time; no run is in progress"
                .to_string(),
        ),
        (Phase::WaitingForRelease | Phase::Initialized | Phase::Succeeded, _) => Some(match action {
            Pause => "no run is in progress (set spec.paused to hold the next one)".to_string(),
            _ => "no run is in progress".to_string(),
        }),
        (Phase::Promoted | Phase::RolledBack, _) => {
            Some("the rollout is over (a new one starts with a new CanaryRollout)".to_string())
        }
        (Phase::InvalidSpec, Promote | Pause | Resume) if held => {
            Some(held_by_workloads(None, status.weight) + " (abort still rolls back)")
        }
        (Phase::InvalidSpec, Promote | Pause | Resume) => Some(
            "the spec is invalid and the weight is held; fix the spec first (abort still rolls back)"
                .to_string(),
        ),
        (Phase::ScalingUp, Promote) => Some(format!(
            "the canary has no ready pods of {revision} yet; nothing can be promoted"
        )),
        (Phase::Pending | Phase::ScalingUp | Phase::Progressing, Resume) => {
            Some("it is not paused".to_string())
        }
        (Phase::Pending | Phase::Progressing | Phase::Paused, Promote) => {
            let window = schedule::state(spec.schedule.as_ref(), tick.now);
            (!window.is_open()).then(|| {
                format!(
                    "{}; a promotion is a weight increase, which waits for the schedule \
                     (abort still rolls back)",
                    window.describe()
                )
            })
        }
        _ => None,
    }
}

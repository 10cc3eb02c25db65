//! One tick, for the cluster reconciler and for local mode alike (STYLE 17, 20). Each front
//! end implements [`FrontEnd`]: where the status lives, how the world is reached, how to
//! announce. The order and the failure rules live here once (`docs/contracts.md`, "Decision
//! rules"):
//!
//! 1. [`FrontEnd::observe`]: metrics, custom checks, resources, pod health, the manual action.
//! 2. The gate webhooks due before the decision are called.
//! 3. [`engine::decide_gated`] decides.
//! 4. [`carry_out`]: the world-changing actions (weight, salt, scale, stable rollout), in the
//!    engine's order, *before* the status that claims them is written, then a drifted weight
//!    is put back. The first failure stops the tick: nothing is saved or announced, so the
//!    next tick decides again and announces once, when it worked.
//! 5. [`FrontEnd::save_status`]: the status, where the front end keeps it.
//! 6. [`announce`]: Events and notifications, best effort, after the status.
//! 7. The gate webhooks due after the decision (`event`, `post-rollout`), best effort.

mod actions;
mod announce;
mod front;

pub use actions::{carry_out, custom_observations, ActionFailed, Carried, Executor};
pub use announce::{announce, notification_body, notification_client};
pub use front::FrontEnd;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus};
use crate::engine::{self, Decision};
use crate::observation::{ManualAction, Observations};

/// The shortest time between two ticks of one rollout, whatever `analysis.interval` says:
/// each tick queries Prometheus (whose ranges start at 1s) and writes the status.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How long a front end waits between two ticks of `spec`.
pub fn interval(spec: &CanaryRolloutSpec) -> Duration {
    spec.analysis.interval.as_std().max(MIN_INTERVAL)
}

/// What a tick saw, decided and did.
#[derive(Debug)]
pub struct Ticked<E> {
    pub observations: Observations,
    /// The decision; its status is the one saved when `outcome` is `Ok`.
    pub decision: Decision,
    /// `Err` when the tick stopped before announcing anything.
    pub outcome: Result<Carried, TickError<E>>,
}

/// Why a tick stopped before announcing anything.
#[derive(Debug)]
pub enum TickError<E> {
    /// An action failed: the status was not saved.
    Action(ActionFailed<E>),
    /// The world changed but the status could not be saved.
    Save(E),
}

impl<E: std::fmt::Display> std::fmt::Display for TickError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TickError::Action(failed) => failed.fmt(f),
            TickError::Save(error) => write!(f, "save the status: {error}"),
        }
    }
}

/// One tick of one rollout from `status` (as last saved), in the contract's order.
pub async fn tick<F: FrontEnd>(
    front: &F,
    status: &CanaryRolloutStatus,
    manual: Option<ManualAction>,
    now: Timestamp,
) -> Ticked<F::Error> {
    let spec = front.spec();
    let before_run = engine::reads_stable_before_run(&spec, status);
    let observations = front.observe(manual, before_run).await;
    let release = front.release(status);
    let mut gate_input = front
        .gates()
        .before_decision(front.subject(), &spec, status, release.as_ref(), now)
        .await;
    gate_input.approve_target = Some(front.approve_target());
    let decision = engine::decide_gated(
        &spec,
        status,
        now,
        &observations,
        release.as_ref(),
        &gate_input,
    );
    let outcome = conclude(front, status, &decision).await;
    Ticked {
        observations,
        decision,
        outcome,
    }
}

/// The second half of a tick, for a decision already made (local mode's direct manual
/// action makes its own): carry out, save, announce, then the gates after the decision.
pub async fn conclude<F: FrontEnd>(
    front: &F,
    old: &CanaryRolloutStatus,
    decision: &Decision,
) -> Result<Carried, TickError<F::Error>> {
    let carried = carry_out(front, decision)
        .await
        .map_err(TickError::Action)?;
    front
        .save_status(&decision.status)
        .await
        .map_err(TickError::Save)?;
    announce(front, decision).await;
    front
        .gates()
        .after_decision(front.subject(), &front.spec(), old, decision)
        .await;
    Ok(carried)
}

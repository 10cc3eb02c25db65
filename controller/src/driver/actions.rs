//! The world-changing half of a tick: the engine's actions in order, then a drifted weight
//! put back (see the parent module for where this sits in the tick).

use std::future::Future;

use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::engine::{Action, Decision};
use crate::observation::CustomObservation;
use crate::prometheus::render_check_query;

/// How far a weight on the target may be from the status before it counts as drifted.
const WEIGHT_TOLERANCE: f64 = 0.001;

/// Carries out engine actions on one rollout's world.
pub trait Executor: Send + Sync {
    type Error: std::fmt::Display + Send;

    /// The weight the target holds now (for drift detection).
    fn current_weight(&self) -> impl Future<Output = Result<f64, Self::Error>> + Send;

    /// Writes the weight, and the cohort salt in the same write when given.
    fn set_weight(
        &self,
        weight: f64,
        salt: Option<&str>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Brings the canary up on `revision`.
    fn scale_canary_up(
        &self,
        revision: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops the canary.
    fn scale_canary_down(
        &self,
        revision: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Sets the rollout's `slowThresholdMs` in the filter's config.
    fn set_slow_threshold(&self, ms: f64) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Rolls `revision` out on stable.
    fn promote_stable(
        &self,
        revision: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Records on the canary workload that `revision`'s run failed. Best effort: a record
    /// that could not be written must never hold up a rollback (the front end logs it).
    fn record_failed_revision(&self, revision: &str) -> impl Future<Output = ()> + Send {
        let _ = revision;
        async {}
    }
}

/// What [`carry_out`] did besides the engine's own actions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Carried {
    /// `(found, restored)` when a drifted weight was put back.
    pub restored_drift: Option<(f64, f64)>,
}

/// Why [`carry_out`] stopped.
#[derive(Debug)]
pub struct ActionFailed<E> {
    /// The action that failed, in words (`set weight 25`, `scale the canary up`...).
    pub action: String,
    pub error: E,
}

impl<E: std::fmt::Display> std::fmt::Display for ActionFailed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.action, self.error)
    }
}

/// The custom checks' observations, each query rendered for `rollout_key`.
pub async fn custom_observations<F, Fut>(
    spec: &CanaryRolloutSpec,
    rollout_key: &str,
    mut scalar: F,
) -> Vec<CustomObservation>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Option<f64>, String>>,
{
    let mut custom = Vec::with_capacity(spec.analysis.custom.len());
    for check in &spec.analysis.custom {
        let query = render_check_query(&check.query, rollout_key);
        custom.push(CustomObservation {
            name: check.name.clone(),
            value: scalar(query).await,
        });
    }
    custom
}

/// Carries out the decision's world-changing actions in order, then restores a drifted
/// weight. On `Err` nothing after the failed action ran and the caller must keep the old
/// status (and announce nothing).
pub async fn carry_out<E: Executor>(
    executor: &E,
    decision: &Decision,
) -> Result<Carried, ActionFailed<E::Error>> {
    let mut weight_written = false;
    for action in &decision.actions {
        let (what, result) = match action {
            Action::SetWeight(weight) => (
                format!("set weight {weight}%"),
                executor.set_weight(*weight, None).await,
            ),
            Action::SetWeightWithSalt { weight, salt } => (
                format!("set weight {weight}% with salt {salt}"),
                executor.set_weight(*weight, Some(salt)).await,
            ),
            Action::ScaleCanaryUp { revision } => (
                format!("scale the canary up on {revision}"),
                executor.scale_canary_up(revision).await,
            ),
            Action::ScaleCanaryDown { revision } => (
                format!("scale the canary ({revision}) down"),
                executor.scale_canary_down(revision).await,
            ),
            Action::PromoteStable { revision } => (
                format!("roll {revision} out on stable"),
                executor.promote_stable(revision).await,
            ),
            Action::SetSlowThreshold(ms) => (
                format!("set slowThresholdMs {ms}"),
                executor.set_slow_threshold(*ms).await,
            ),
            Action::RecordFailedRevision { revision } => {
                executor.record_failed_revision(revision).await;
                continue;
            }
            Action::Event { .. } | Action::Notify(_) => continue,
        };
        if let Err(error) = result {
            return Err(ActionFailed {
                action: what,
                error,
            });
        }
        weight_written |= action.weight().is_some();
    }
    let mut carried = Carried::default();
    if !weight_written {
        carried.restored_drift = restore_drift(executor, &decision.status).await?;
    }
    Ok(carried)
}

/// Puts the status's weight back on the target when it holds another one. Before the first
/// stage (`Pending`) the weight is not ours yet. A target that cannot be read is left for
/// the next tick (the weight write itself reports real trouble).
async fn restore_drift<E: Executor>(
    executor: &E,
    status: &CanaryRolloutStatus,
) -> Result<Option<(f64, f64)>, ActionFailed<E::Error>> {
    if status.phase == Phase::Pending {
        return Ok(None);
    }
    let Ok(found) = executor.current_weight().await else {
        return Ok(None);
    };
    if (found - status.weight).abs() <= WEIGHT_TOLERANCE {
        return Ok(None);
    }
    executor
        .set_weight(status.weight, None)
        .await
        .map_err(|error| ActionFailed {
            action: format!("restore weight {}% (found {found}%)", status.weight),
            error,
        })?;
    Ok(Some((found, status.weight)))
}

//! What a front end supplies to the shared tick.

use std::borrow::Cow;
use std::future::Future;

use super::actions::Executor;
use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus};
use crate::engine::approve::ApproveTarget;
use crate::gates::webhook::{Caller, Subject};
use crate::observation::{ManualAction, Observations, ReleaseObservation};

/// One front end's side of a tick, on top of the world-changing [`Executor`].
pub trait FrontEnd: Executor {
    /// The spec the engine decides on.
    fn spec(&self) -> Cow<'_, CanaryRolloutSpec>;

    /// Who the rollout is, for the gate webhooks' and the notifications' payloads.
    fn subject(&self) -> &Subject;

    /// How `stickycanary approve` reaches this rollout, for a manual gate's Event.
    fn approve_target(&self) -> ApproveTarget;

    /// The engine's input besides the release and the gates; with `before_run`, stable's
    /// shard series over the hour before as well (`engine::reads_stable_before_run`).
    fn observe(
        &self,
        manual: Option<ManualAction>,
        before_run: bool,
    ) -> impl Future<Output = Observations> + Send;

    /// The release lifecycle's view of the workloads (`None` without a revision source).
    fn release(&self, status: &CanaryRolloutStatus) -> Option<ReleaseObservation>;

    /// Writes the decided status where this front end keeps it.
    fn save_status(
        &self,
        status: &CanaryRolloutStatus,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Raises an Event (best effort).
    fn event(
        &self,
        reason: &'static str,
        message: &str,
        warning: bool,
    ) -> impl Future<Output = ()> + Send;

    /// The HTTP client for `spec.notification` (`None`: notifications are not sent).
    fn notification_client(&self) -> Option<&crate::http::Client>;

    /// The gate webhooks' caller.
    fn gates(&self) -> &Caller {
        crate::gates::webhook::shared()
    }

    /// Where `spec.alerts` go: how providers are resolved here, and a sink that counts each
    /// delivery and raises `AlertFailed` on this rollout. `None`: this front end sends no
    /// alerts.
    fn alerting(&self) -> Option<crate::alerts::Alerting> {
        None
    }
}

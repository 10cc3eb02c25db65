//! Bookkeeping for one decision: the new status, the actions, history and conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::Action;
use crate::crd::conditions::{set_condition, DEGRADED, READY};
use crate::crd::{CanaryRolloutStatus, Phase, Transition, HISTORY_LIMIT};

/// The decision being built: a copy of the status plus the actions to run.
pub(crate) struct Tick {
    pub status: CanaryRolloutStatus,
    pub actions: Vec<Action>,
    pub now: Timestamp,
    /// Also send each Event to the notification webhook.
    pub notify: bool,
    /// The spec's validation errors, one per line, when it is invalid.
    pub spec_error: Option<String>,
    /// With a revision source: the drain delay before a rolled-back canary is scaled down.
    pub scale_down_delay: Option<crate::duration::Duration>,
    /// With a revision source and `promotion.finalize`: a promotion rolls stable out.
    pub finalize: bool,
    /// This tick's gate webhook answers.
    pub gates: super::gates::GateInput,
    /// Why the stable Deployment is not on the revision the rollout expects, when it is not.
    pub stable_drift: Option<String>,
}

impl Tick {
    pub fn now_time(&self) -> Time {
        Time(self.now)
    }

    /// Raise a Kubernetes Event (and a webhook notification when configured).
    pub fn event(&mut self, reason: &'static str, message: String, warning: bool) {
        if self.notify {
            self.actions
                .push(Action::Notify(format!("{reason}: {message}")));
        }
        self.actions.push(Action::Event {
            reason,
            message,
            warning,
        });
    }

    /// Sets the weight. The first weight of a run leaves 0 together with the run's salt, in
    /// one write: the cohort only changes while no user is on the canary.
    pub fn set_weight(&mut self, weight: f64) {
        let salt = match (&self.status.salt, self.scale_down_delay) {
            (Some(salt), Some(_)) if self.status.weight == 0.0 && weight > 0.0 => {
                Some(salt.clone())
            }
            _ => None,
        };
        self.status.weight = weight;
        self.actions.push(match salt {
            Some(salt) => Action::SetWeightWithSalt { weight, salt },
            None => Action::SetWeight(weight),
        });
    }

    /// Move to `to` and append the transition to the bounded history.
    pub fn transition(&mut self, to: Phase, reason: &str) {
        let entry = Transition {
            at: self.now_time(),
            from: self.status.phase,
            to,
            stage_index: self.status.stage_index,
            weight: self.status.weight,
            reason: reason.to_string(),
        };
        self.status.phase = to;
        self.status.history.push(entry);
        let excess = self.status.history.len().saturating_sub(HISTORY_LIMIT);
        self.status.history.drain(..excess);
    }

    /// Recompute `Ready` and `Degraded` from the phase; a condition's
    /// `lastTransitionTime` only moves when its status flips.
    pub fn refresh_conditions(&mut self) {
        let status = &self.status;
        let ready = (
            matches!(
                status.phase,
                Phase::Promoted | Phase::Succeeded | Phase::WaitingForRelease | Phase::Initialized
            ) && self.stable_drift.is_none(),
            status.phase.as_str().to_string(),
            ready_message(status),
        );
        let degraded = match (
            degraded(status, self.spec_error.as_deref()),
            &self.stable_drift,
        ) {
            ((false, _, _), Some(drift)) => (
                true,
                super::reasons::STABLE_DRIFTED.to_string(),
                drift.clone(),
            ),
            (degraded, _) => degraded,
        };
        let generation = status.observed_generation;
        let now = self.now_time();
        // The engine owns these two; any other condition is dropped, as it always was.
        let mut conditions = std::mem::take(&mut self.status.conditions);
        conditions.retain(|c| c.type_ == READY || c.type_ == DEGRADED);
        for (kind, (is_true, reason, message)) in [(READY, ready), (DEGRADED, degraded)] {
            let condition = Condition {
                type_: kind.to_string(),
                status: if is_true { "True" } else { "False" }.to_string(),
                reason,
                message,
                last_transition_time: now.clone(),
                observed_generation: generation,
            };
            set_condition(&mut conditions, condition);
        }
        self.status.conditions = conditions;
    }
}

fn ready_message(status: &CanaryRolloutStatus) -> String {
    match status.phase {
        Phase::Promoted => "canary promoted to 100%".to_string(),
        Phase::Succeeded => format!(
            "revision {} is stable",
            status.stable_revision.as_deref().unwrap_or("?")
        ),
        Phase::WaitingForRelease | Phase::Initialized => format!(
            "stable runs {}; waiting for a release",
            status.stable_revision.as_deref().unwrap_or("?")
        ),
        phase => format!("{phase} at weight {}%", status.weight),
    }
}

/// Degraded: rolled back, invalid spec, or flying blind on metrics.
fn degraded(status: &CanaryRolloutStatus, spec_error: Option<&str>) -> (bool, String, String) {
    match status.phase {
        Phase::RolledBack => (
            true,
            "RolledBack".to_string(),
            format!(
                "rolled back: {}",
                status.rollback_reason.as_deref().unwrap_or("unknown")
            ),
        ),
        Phase::PromotionFailed => (
            true,
            "PromotionFailed".to_string(),
            status
                .failure_reason
                .clone()
                .unwrap_or_else(|| "the stable rollout failed".to_string()),
        ),
        Phase::InvalidSpec => (
            true,
            "InvalidSpec".to_string(),
            spec_error.unwrap_or("the spec is invalid").to_string(),
        ),
        _ if status.prometheus_unavailable_since.is_some() => (
            true,
            "PrometheusUnavailable".to_string(),
            "metrics unavailable; holding the stage".to_string(),
        ),
        _ => (false, "AsExpected".to_string(), String::new()),
    }
}

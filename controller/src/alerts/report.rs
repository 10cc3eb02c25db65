//! The [`OutcomeSink`] the controller installs: each delivery counted in
//! `stickycanary_alerts_total{provider, type, outcome}`, each failure handed to a callback
//! that raises the `AlertFailed` Warning Event on the rollout.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::deliver::{Outcome, OutcomeSink, Unresolved};

/// The Event reason of a failed delivery.
pub const ALERT_FAILED: &str = "AlertFailed";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `<namespace>/<name>` of the AlertProvider.
    pub provider: String,
    pub r#type: String,
    /// `delivered`, or the failure's kind (`timeout`, `status`, `certificate`, ...).
    pub outcome: String,
}

/// The delivery counter (cheap to clone: an `Arc` inside).
#[derive(Clone, Debug, Default)]
pub struct AlertCounter {
    pub deliveries: Family<AlertLabels, Counter>,
}

impl AlertCounter {
    /// Adds `stickycanary_alerts_total` to the controller's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stickycanary_alerts",
            "Alert deliveries by provider, type and outcome (delivered or the kind of failure)",
            self.deliveries.clone(),
        );
    }

    pub fn count(&self, outcome: &Outcome) {
        self.deliveries
            .get_or_create(&AlertLabels {
                provider: format!("{}/{}", outcome.provider_namespace, outcome.provider),
                r#type: outcome.kind.as_str().to_string(),
                outcome: outcome.label().to_string(),
            })
            .inc();
    }

    /// A provider that could not be resolved: `type="unknown"` (its AlertProvider may not
    /// even exist), `outcome="unresolved"`.
    pub fn count_unresolved(&self, unresolved: &Unresolved) {
        self.deliveries
            .get_or_create(&AlertLabels {
                provider: format!("{}/{}", unresolved.provider_namespace, unresolved.provider),
                r#type: "unknown".to_string(),
                outcome: "unresolved".to_string(),
            })
            .inc();
    }
}

/// The Event message of a failed delivery: the provider and the one-line error (never the
/// address), e.g. `alert RollingBack to platform/team-slack (slack) failed after 5
/// attempts: HTTP 503`. None for a delivery that succeeded.
pub fn failure_event(outcome: &Outcome) -> Option<String> {
    let error = outcome.result.as_ref().err()?;
    let attempts = match outcome.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    Some(format!(
        "alert {} to {}/{} ({}) failed after {attempts}: {error}",
        outcome.reason,
        outcome.provider_namespace,
        outcome.provider,
        outcome.kind.as_str()
    ))
}

/// The Event message of a provider that could not be resolved, e.g. `alert RollingBack to
/// platform/team-slack not sent: AlertProvider platform/team-slack not found`.
pub fn unresolved_event(unresolved: &Unresolved) -> String {
    format!(
        "alert {} to {}/{} not sent: {}",
        unresolved.reason, unresolved.provider_namespace, unresolved.provider, unresolved.error
    )
}

/// One failed alert, as the `AlertFailed` Event tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub rollout_namespace: String,
    pub rollout: String,
    /// `<namespace>/<name>` of the AlertProvider.
    pub provider: String,
    /// The Event's note ([`failure_event`], [`unresolved_event`]).
    pub message: String,
}

impl Failure {
    /// The Event's `action`: one per provider (`SendAlert shop/team-slack`, at most the 128
    /// characters the API takes), so Kubernetes' event series (keyed by reason and action,
    /// not the note) keeps one series per failing provider instead of folding them into one.
    pub fn event_action(&self) -> String {
        format!("SendAlert {}", self.provider)
            .chars()
            .take(128)
            .collect()
    }
}

/// Counts every outcome and calls `on_failure` for each failure (the controller publishes
/// the Event with [`ALERT_FAILED`] on that rollout).
pub struct Report<F> {
    pub counter: AlertCounter,
    pub on_failure: F,
}

impl<F> OutcomeSink for Report<F>
where
    F: Fn(Failure) + Send + Sync + 'static,
{
    fn record(&self, outcome: Outcome) {
        self.counter.count(&outcome);
        if let Some(message) = failure_event(&outcome) {
            (self.on_failure)(Failure {
                rollout_namespace: outcome.rollout_namespace.clone(),
                rollout: outcome.rollout.clone(),
                provider: format!("{}/{}", outcome.provider_namespace, outcome.provider),
                message,
            });
        }
    }

    fn unresolved(&self, unresolved: Unresolved) {
        self.counter.count_unresolved(&unresolved);
        (self.on_failure)(Failure {
            message: unresolved_event(&unresolved),
            provider: format!("{}/{}", unresolved.provider_namespace, unresolved.provider),
            rollout_namespace: unresolved.rollout_namespace,
            rollout: unresolved.rollout,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::alerts::ProviderType;
    use crate::http::Error;

    fn outcome(result: Result<(), Error>, attempts: u32) -> Outcome {
        Outcome {
            provider_namespace: "platform".into(),
            provider: "team-slack".into(),
            kind: ProviderType::Slack,
            rollout_namespace: "shop".into(),
            rollout: "checkout".into(),
            reason: "RollingBack".into(),
            attempts,
            result,
        }
    }

    #[test]
    fn outcomes_are_counted_and_failures_reported_as_an_event() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let report = Report {
            counter: AlertCounter::default(),
            on_failure: move |failure: Failure| {
                seen.lock()
                    .unwrap()
                    .push((failure.rollout, failure.message));
            },
        };
        let mut registry = Registry::default();
        report.counter.register(&mut registry);
        report.record(outcome(Ok(()), 1));
        report.record(outcome(Err(Error::Status(503)), 5));
        report.record(outcome(Err(Error::Status(503)), 5));

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "stickycanary_alerts_total{provider=\"platform/team-slack\",type=\"slack\",outcome=\"delivered\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "stickycanary_alerts_total{provider=\"platform/team-slack\",type=\"slack\",outcome=\"status\"} 2"
            ),
            "{text}"
        );
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            (
                "checkout".to_string(),
                "alert RollingBack to platform/team-slack (slack) failed after 5 attempts: HTTP 503"
                    .to_string()
            )
        );
    }
}

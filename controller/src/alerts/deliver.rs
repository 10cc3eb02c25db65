//! Sending an alert: spawned, so the rollout's tick never waits for a chat service;
//! retried with exponential backoff on failures that may heal (timeouts, refused
//! connections, 408, 429, 5xx), within a bounded total time; every outcome reported to an
//! [`OutcomeSink`] (a controller metric and, on failure, an Event on the rollout).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::message::{dashboard_link, AlertMessage};
use super::payload::render;
use crate::crd::alerts::{AlertProviderSpec, ProviderType};
use crate::http::{Client, ClientConfig, Error};

/// An AlertProvider ready to send: its spec, its address (read from its Secret) and a
/// client trusting its CA bundle. The address is a secret: it is never in Debug output,
/// logs or outcomes.
pub struct Provider {
    pub namespace: String,
    pub name: String,
    pub spec: AlertProviderSpec,
    address: String,
    client: Client,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type", &self.spec.kind.as_str())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// `address`: the value of the provider's `secretRef`; `ca_pem`: of its `caSecretRef`.
    pub fn new(
        namespace: &str,
        name: &str,
        spec: AlertProviderSpec,
        address: String,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Provider, Error> {
        let config = ClientConfig {
            timeout: spec
                .timeout
                .map_or(Duration::from_secs(10), |timeout| timeout.as_std()),
            extra_ca_pem: ca_pem,
            // An answer to an alert is never needed beyond its status.
            max_response_bytes: 64 * 1024,
            ..ClientConfig::default()
        };
        Ok(Provider {
            namespace: namespace.to_string(),
            name: name.to_string(),
            client: Client::new(&config)?,
            spec,
            address,
        })
    }
}

/// How hard a delivery tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): doubling from
    /// `first_backoff`, at most `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How one delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub provider_namespace: String,
    pub provider: String,
    pub kind: ProviderType,
    pub rollout_namespace: String,
    pub rollout: String,
    pub reason: String,
    pub attempts: u32,
    /// `Err` holds the last attempt's error: one line, no address or header in it.
    pub result: Result<(), Error>,
}

impl Outcome {
    /// The metric label: `delivered`, or the last error's kind (`timeout`, `status`, ...).
    pub fn label(&self) -> &'static str {
        match &self.result {
            Ok(()) => "delivered",
            Err(error) => error.metric_label(),
        }
    }
}

/// A provider reference that could not be made ready to send: the AlertProvider or its
/// Secret is missing, the provider is invalid, or the API could not be read in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub provider_namespace: String,
    pub provider: String,
    pub rollout_namespace: String,
    pub rollout: String,
    /// The Event reason the alert was for.
    pub reason: String,
    /// One line, never a Secret's content ([`super::resolve::ResolveError`]'s text).
    pub error: String,
}

/// Where outcomes go. The controller counts each in
/// `stickycanary_alerts_total{provider, type, outcome}` and raises a Warning Event
/// `AlertFailed` on the rollout for a failure.
pub trait OutcomeSink: Send + Sync + 'static {
    fn record(&self, outcome: Outcome);

    /// A provider that could not be resolved (nothing was sent). Ignored unless overridden.
    fn unresolved(&self, _unresolved: Unresolved) {}
}

/// Sends `message`, retrying what may heal, and says how it ended. A provider with a
/// `dashboardUrl` template links its own dashboard.
pub async fn deliver(provider: &Provider, message: &AlertMessage, policy: RetryPolicy) -> Outcome {
    deliver_counting(provider, message, policy, &AtomicU32::new(0)).await
}

/// [`deliver`], counting the attempts started in `attempts` as it goes (so a caller that
/// gives up on it can still say how many were made).
pub async fn deliver_counting(
    provider: &Provider,
    message: &AlertMessage,
    policy: RetryPolicy,
    attempts_started: &AtomicU32,
) -> Outcome {
    let linked;
    let message = match &provider.spec.dashboard_url {
        Some(template) => {
            linked = AlertMessage {
                dashboard: Some(dashboard_link(
                    template,
                    &message.namespace,
                    &message.rollout,
                    message.revision.as_deref(),
                )),
                ..message.clone()
            };
            &linked
        }
        None => message,
    };
    let body = render(&provider.spec, message);
    let started = Instant::now();
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        attempts_started.store(attempts, Ordering::Relaxed);
        let result = provider
            .client
            .post_json(&provider.address, &body)
            .await
            .and_then(|answer| answer.error_for_status().map(|_| ()));
        let error = match result {
            Ok(()) => break Ok(()),
            Err(error) => error,
        };
        let wait = policy.backoff(attempts);
        let out_of_time = started.elapsed() + wait > policy.total;
        if !error.is_transient() || attempts >= policy.max_attempts || out_of_time {
            break Err(error);
        }
        tokio::time::sleep(wait).await;
    };
    Outcome {
        provider_namespace: provider.namespace.clone(),
        provider: provider.name.clone(),
        kind: provider.spec.kind,
        rollout_namespace: message.namespace.clone(),
        rollout: message.rollout.clone(),
        reason: message.reason.clone(),
        attempts,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            total: Duration::from_secs(5),
        };
        let waits: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(40), Duration::from_millis(500));
    }
}

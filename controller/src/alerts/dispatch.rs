//! From a tick's Events to deliveries: each Event becomes an [`AlertMessage`], each of the
//! rollout's `alerts` entries that wants its severity gets it, each in its own spawned task
//! that resolves the provider (AlertProvider, Secrets) and delivers with retries, all within
//! a bounded time. The tick that announced never waits for any of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::deliver::{deliver_counting, Outcome, OutcomeSink, Provider, RetryPolicy, Unresolved};
use super::message::AlertMessage;
use super::resolve::{Objects, ProviderCache, ResolveError};
use crate::crd::alerts::{ProviderRef, RolloutAlert};

/// A boxed resolution, so front ends can hand out one resolver behind an `Arc<dyn>`.
pub type Resolving<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Provider>, ResolveError>> + Send + 'a>>;

/// Resolves a rollout's provider references.
pub trait Resolve: Send + Sync + 'static {
    /// The provider `reference` names, in `rollout_namespace` unless it names another.
    fn resolve<'a>(
        &'a self,
        rollout_namespace: &'a str,
        reference: &'a ProviderRef,
    ) -> Resolving<'a>;
}

/// [`Resolve`] over any [`Objects`], with the cache that keeps a provider's client (and its
/// pooled connections) while its objects are unchanged.
pub struct Resolver<O> {
    pub objects: O,
    pub cache: ProviderCache,
}

impl<O: Objects + 'static> Resolver<O> {
    pub fn new(objects: O) -> Resolver<O> {
        Resolver {
            objects,
            cache: ProviderCache::default(),
        }
    }
}

impl<O: Objects + 'static> Resolve for Resolver<O> {
    fn resolve<'a>(
        &'a self,
        rollout_namespace: &'a str,
        reference: &'a ProviderRef,
    ) -> Resolving<'a> {
        Box::pin(
            self.cache
                .resolve(&self.objects, rollout_namespace, reference),
        )
    }
}

/// A sink that drops outcomes: the placeholder of an [`Alerting`] kept for
/// [`Alerting::with_sink`].
pub struct Discard;

impl OutcomeSink for Discard {
    fn record(&self, _outcome: Outcome) {}
}

/// Where one rollout's alerts go: what a front end supplies to the tick's announce step.
#[derive(Clone)]
pub struct Alerting {
    pub resolver: Arc<dyn Resolve>,
    pub sink: Arc<dyn OutcomeSink>,
    pub policy: RetryPolicy,
    /// Resolving a provider (reading the AlertProvider and its Secrets) takes at most this.
    pub resolve_timeout: Duration,
    /// No delivery, resolving included, outlives this; one that would is reported as a
    /// timeout. Longer than the policy's `total` plus an attempt's timeout, so it only
    /// catches what the policy cannot (a server that trickles its answer, a hung API).
    pub deadline: Duration,
}

impl Alerting {
    /// The defaults: [`RetryPolicy::default`], 10 s to resolve, 3 minutes in all.
    pub fn new(resolver: Arc<dyn Resolve>, sink: Arc<dyn OutcomeSink>) -> Alerting {
        Alerting {
            resolver,
            sink,
            policy: RetryPolicy::default(),
            resolve_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(180),
        }
    }

    /// The same routes, reporting to `sink` (a front end's, naming its rollout).
    pub fn with_sink(&self, sink: Arc<dyn OutcomeSink>) -> Alerting {
        Alerting {
            sink,
            ..self.clone()
        }
    }

    /// Sends `message` to every entry of `alerts` that wants its severity, each in a spawned
    /// task, and returns at once with the tasks' handles (a caller may drop them: the
    /// deliveries go on; tests await them).
    pub fn send(
        &self,
        alerts: &[RolloutAlert],
        message: &AlertMessage,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        alerts
            .iter()
            .filter(|alert| alert.wants(message.severity))
            .map(|alert| {
                let this = self.clone();
                let reference = alert.provider_ref.clone();
                let message = message.clone();
                tokio::spawn(async move { this.deliver_one(&reference, &message).await })
            })
            .collect()
    }

    async fn deliver_one(&self, reference: &ProviderRef, message: &AlertMessage) {
        let namespace = reference.namespace.as_deref().unwrap_or(&message.namespace);
        let unresolved = |error: String| Unresolved {
            provider_namespace: namespace.to_string(),
            provider: reference.name.clone(),
            rollout_namespace: message.namespace.clone(),
            rollout: message.rollout.clone(),
            reason: message.reason.clone(),
            error,
        };
        let resolved = tokio::time::timeout(
            self.resolve_timeout,
            self.resolver.resolve(&message.namespace, reference),
        )
        .await;
        let provider = match resolved {
            Ok(Ok(provider)) => provider,
            Ok(Err(error)) => {
                tracing::warn!(%error, rollout = %message.rollout, "alert provider not resolved");
                return self.sink.unresolved(unresolved(error.to_string()));
            }
            Err(_) => {
                let error = format!(
                    "AlertProvider {namespace}/{}: not read within {}",
                    reference.name,
                    crate::duration::Duration::from(self.resolve_timeout)
                );
                tracing::warn!(%error, rollout = %message.rollout, "alert provider not resolved");
                return self.sink.unresolved(unresolved(error));
            }
        };
        let attempts = AtomicU32::new(0);
        let delivered = tokio::time::timeout(
            self.deadline,
            deliver_counting(&provider, message, self.policy, &attempts),
        )
        .await;
        let outcome = delivered.unwrap_or_else(|_| Outcome {
            provider_namespace: provider.namespace.clone(),
            provider: provider.name.clone(),
            kind: provider.spec.kind,
            rollout_namespace: message.namespace.clone(),
            rollout: message.rollout.clone(),
            reason: message.reason.clone(),
            attempts: attempts.load(Ordering::Relaxed),
            result: Err(crate::http::Error::Timeout(self.deadline)),
        });
        match &outcome.result {
            Ok(()) => tracing::debug!(
                provider = %provider.name, rollout = %message.rollout, attempts = outcome.attempts,
                "alert delivered"
            ),
            Err(error) => tracing::warn!(
                provider = %provider.name, rollout = %message.rollout, attempts = outcome.attempts,
                error = %error, "alert not delivered"
            ),
        }
        self.sink.record(outcome);
    }
}

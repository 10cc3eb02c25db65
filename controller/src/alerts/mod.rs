//! Alerts: reusable providers (Slack, Microsoft Teams, Discord, Google Chat, or a plain
//! JSON webhook) that a platform team defines once as `AlertProvider` resources and many
//! CanaryRollouts reference with `alerts: [{providerRef, severity}]`.
//!
//! The pieces, bottom up:
//! - [`crate::crd::alerts`]: the API types (the `AlertProvider` CRD, a rollout's `alerts`
//!   entries), with the other API types (STYLE 21).
//! - [`message`]: each Event's severity, the message (rollout, namespace, revision, phase,
//!   weight, the breached check, the command to run, the dashboard link).
//! - [`payload`]: each service's incoming-webhook JSON.
//! - [`deliver`]: sending with retries and backoff; outcomes to a sink.
//! - [`dispatch`]: from a tick's Events to spawned deliveries, within a bounded time (what
//!   the driver's announce step calls through [`Alerting`]).
//! - [`resolve`]: from a `providerRef` to a ready provider (AlertProvider, Secrets, a cache).
//! - [`report`]: the outcome sink the controller installs (a metric, an Event on failure).
//! - [`validate`]: one-line checks of both API types.
//!
//! Only [`resolve::KubeObjects`] reads Kubernetes (an AlertProvider and its Secrets); the
//! rest is pure or talks HTTP. `docs/alerts-and-prometheus.md` shows the resources.

pub mod deliver;
pub mod dispatch;
pub mod message;
pub mod payload;
pub mod report;
pub mod resolve;
pub mod validate;

pub use crate::crd::alerts::{
    AlertProvider, AlertProviderSpec, ProviderRef, ProviderType, RolloutAlert, Severity,
};
pub use deliver::{Outcome, OutcomeSink, Provider, RetryPolicy, Unresolved};
pub use dispatch::{Alerting, Resolve, Resolver};
pub use message::{severity_of, AlertMessage, Breach};

//! What every reconcile shares: the client, the recorder, the metrics, the batcher, the
//! leadership flag and the per-rollout clocks.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::Recorder;
use kube::Client;

use super::backoff::ErrorBackoff;
use super::batch::MetricsBatcher;
use crate::metrics::Metrics;

/// Everything a reconcile needs (shared by all of them).
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub batcher: MetricsBatcher,
    /// Only the Lease holder acts; followers requeue.
    pub leader: Arc<AtomicBool>,
    pub patch_timeout: Duration,
    /// The notification webhook's client (https with the host's CA certificates).
    pub webhook: crate::http::Client,
    /// When each rollout was last analysed. Our own status writes trigger the watch again;
    /// this keeps the analysis at one tick per interval regardless.
    pub last_tick: Mutex<HashMap<String, Instant>>,
    /// Consecutive reconcile failures per rollout, for the error policy's backoff.
    pub backoff: ErrorBackoff,
    /// Rollouts a canary Deployment's new revision woke (see [`super::watch`]): their next
    /// reconcile ticks at once.
    pub wakes: super::watch::Wakes,
    /// Where `spec.alerts` go: AlertProviders and their Secrets read through the client
    /// (cached while unchanged), the retry policy and time bounds. Each tick gives it a sink
    /// that counts outcomes and raises `AlertFailed` on its rollout.
    pub alerting: crate::alerts::Alerting,
}

/// The cluster's [`crate::alerts::Alerting`]: providers read with `client`.
pub fn cluster_alerting(client: &Client) -> crate::alerts::Alerting {
    let objects = crate::alerts::resolve::KubeObjects {
        client: client.clone(),
    };
    crate::alerts::Alerting::new(
        Arc::new(crate::alerts::Resolver::new(objects)),
        Arc::new(crate::alerts::dispatch::Discard),
    )
}

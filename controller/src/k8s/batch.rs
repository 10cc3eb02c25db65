//! Shares one batched Prometheus query per metric per interval among all rollouts.
//!
//! Reconciles run per CanaryRollout, but Prometheus is asked once per (address, window):
//! the first reconcile of an interval fetches the batch, the others read their rollout out
//! of it. The per-key lock makes the fetch single-flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::http::source::{SourceOutbound, SourceValues};
use crate::http::ClientConfig;
use crate::observation::MetricsObservation;
use crate::prometheus::{Batch, MetricsSource, PrometheusSource, RolloutSeries};

/// A batch is shared per source, range (seconds) and kind of batch.
type BatchKey = (String, u64, BatchKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum BatchKind {
    /// The four queries of an analysis window.
    Window,
    /// Stable's shard series over the hour before a run (one query).
    BeforeRun,
}

/// A Prometheus as one rollout reaches it: the address and the client options (with the
/// values its Secrets hold). Rollouts share a client and batches only when both match.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub address: String,
    pub config: ClientConfig,
}

impl Endpoint {
    /// The address, and a fingerprint of the options (never shown: it covers the token).
    fn key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let config = &self.config;
        (
            config.timeout,
            config.connect_timeout,
            config.max_response_bytes,
        )
            .hash(&mut hasher);
        (&config.extra_ca_pem, config.insecure_skip_verify).hash(&mut hasher);
        config.default_headers.hash(&mut hasher);
        format!("{}#{:016x}", self.address, hasher.finish())
    }
}

struct Slot {
    fetched: Option<(Instant, Result<Arc<Batch>, String>)>,
}

/// The controller's shared Prometheus access.
pub struct MetricsBatcher {
    timeout: Duration,
    query_counter: prometheus_client::metrics::counter::Counter,
    sources: std::sync::Mutex<HashMap<String, PrometheusSource>>,
    slots: std::sync::Mutex<HashMap<BatchKey, Arc<Mutex<Slot>>>>,
    /// The cAdvisor batches of `analysis.resources`.
    resources: super::resource_batch::ResourceBatcher,
}

impl MetricsBatcher {
    pub fn new(
        timeout: Duration,
        query_counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        MetricsBatcher {
            timeout,
            query_counter,
            sources: std::sync::Mutex::new(HashMap::new()),
            slots: std::sync::Mutex::new(HashMap::new()),
            resources: Default::default(),
        }
    }

    /// `address` with `outbound`'s options and the values its references point at; the
    /// query timeout is the controller's (`--prometheus-timeout-seconds`) unless the source
    /// sets its own.
    pub fn endpoint(
        &self,
        address: &str,
        outbound: &SourceOutbound,
        values: SourceValues,
    ) -> Endpoint {
        let mut config = outbound.client_config(values);
        if outbound.timeout.is_none() {
            config.timeout = self.timeout;
        }
        Endpoint {
            address: address.to_string(),
            config,
        }
    }

    /// `address` with no other options (the host's CAs, the controller's timeout).
    pub fn plain(&self, address: &str) -> Endpoint {
        self.endpoint(address, &SourceOutbound::default(), SourceValues::default())
    }

    /// The source for `endpoint` (one HTTP client per Prometheus and options).
    pub fn source(&self, endpoint: &Endpoint) -> Result<PrometheusSource, String> {
        let key = endpoint.key();
        let mut sources = self
            .sources
            .lock()
            .map_err(|_| "source table poisoned".to_string())?;
        if let Some(s) = sources.get(&key) {
            return Ok(s.clone());
        }
        if endpoint.config.insecure_skip_verify {
            tracing::warn!(
                prometheus = %crate::redact::redacted(&endpoint.address),
                "spec.prometheus.insecureSkipVerify: Prometheus's TLS certificate is not verified (test clusters only)"
            );
        }
        let source = PrometheusSource::with_config(&endpoint.address, &endpoint.config)
            .map_err(|e| e.to_string())?
            .with_query_counter(self.query_counter.clone())
            .with_cache_key(key.clone());
        sources.insert(key, source.clone());
        Ok(source)
    }

    fn slot(&self, key: BatchKey) -> Option<Arc<Mutex<Slot>>> {
        let mut slots = self.slots.lock().ok()?;
        Some(
            slots
                .entry(key)
                .or_insert_with(|| Arc::new(Mutex::new(Slot { fetched: None })))
                .clone(),
        )
    }

    /// `series`' window, from a batch no older than `max_age`.
    pub async fn observation(
        &self,
        endpoint: &Endpoint,
        window: Duration,
        series: &RolloutSeries,
        max_age: Duration,
    ) -> MetricsObservation {
        let batch = self
            .batch(
                endpoint,
                window,
                BatchKind::Window,
                max_age,
                |source| async move { source.fetch_batch(window).await },
            )
            .await;
        match batch {
            Ok(batch) => batch.observation(series),
            Err(reason) => MetricsObservation::Unavailable { reason },
        }
    }

    /// `series`' stable shard counts over `lookback`, from a batch no older than `max_age`
    /// (one query for every rollout starting a run in the same interval); `None` when the
    /// query failed.
    pub async fn stable_before_run(
        &self,
        endpoint: &Endpoint,
        lookback: Duration,
        series: &RolloutSeries,
        max_age: Duration,
    ) -> Option<Vec<crate::observation::ShardCounts>> {
        let batch = self
            .batch(
                endpoint,
                lookback,
                BatchKind::BeforeRun,
                max_age,
                |source| async move { source.fetch_shards(lookback).await },
            )
            .await;
        batch.ok().map(|batch| batch.stable_shards(series))
    }

    /// The shared batch of this kind for `endpoint` and `range`, fetched (single-flight)
    /// when the last one is older than `max_age`.
    async fn batch<F, Fut>(
        &self,
        endpoint: &Endpoint,
        range: Duration,
        kind: BatchKind,
        max_age: Duration,
        fetch: F,
    ) -> Result<Arc<Batch>, String>
    where
        F: FnOnce(PrometheusSource) -> Fut,
        Fut: std::future::Future<Output = Result<Batch, String>>,
    {
        let source = self.source(endpoint)?;
        let slot = self
            .slot((source.cache_key().to_string(), range.as_secs(), kind))
            .ok_or_else(|| "batch table poisoned".to_string())?;
        let mut slot = slot.lock().await;
        let fresh = slot
            .fetched
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < max_age);
        if !fresh {
            let result = fetch(source).await.map(Arc::new);
            slot.fetched = Some((Instant::now(), result));
        }
        match &slot.fetched {
            Some((_, result)) => result.clone(),
            None => Err("no batch".to_string()),
        }
    }

    /// `selectors`' resource figures, from a shared batch no older than `max_age`.
    pub async fn resources(
        &self,
        endpoint: &Endpoint,
        window: Duration,
        selectors: &crate::resources::ResourceSelectors,
        max_age: Duration,
    ) -> crate::resources::ResourceObservation {
        match self.source(endpoint) {
            Ok(source) => {
                self.resources
                    .observation(&source, window, selectors, max_age)
                    .await
            }
            Err(reason) => crate::resources::ResourceObservation::Unavailable { reason },
        }
    }

    /// A custom check's value (per rollout, not batched).
    pub async fn scalar(&self, endpoint: &Endpoint, promql: &str) -> Result<Option<f64>, String> {
        self.source(endpoint)?.scalar(promql).await
    }
}

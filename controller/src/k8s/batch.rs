//! Shares one batched Prometheus query per metric per interval among all rollouts.
//!
//! Reconciles run per CanaryRollout, but Prometheus is asked once per (address, window):
//! the first reconcile of an interval fetches the batch, the others read their rollout out
//! of it. The per-key lock makes the fetch single-flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::observation::MetricsObservation;
use crate::prometheus::{Batch, MetricsSource, PrometheusSource, RolloutSeries};

type BatchKey = (String, u64);

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

    /// The source for `address` (one HTTP client per Prometheus).
    pub fn source(&self, address: &str) -> Result<PrometheusSource, String> {
        let mut sources = self
            .sources
            .lock()
            .map_err(|_| "source table poisoned".to_string())?;
        if let Some(s) = sources.get(address) {
            return Ok(s.clone());
        }
        let source = PrometheusSource::new(address, self.timeout)
            .map_err(|e| e.to_string())?
            .with_query_counter(self.query_counter.clone());
        sources.insert(address.to_string(), source.clone());
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
        address: &str,
        window: Duration,
        series: &RolloutSeries,
        max_age: Duration,
    ) -> MetricsObservation {
        let source = match self.source(address) {
            Ok(s) => s,
            Err(reason) => return MetricsObservation::Unavailable { reason },
        };
        let Some(slot) = self.slot((address.to_string(), window.as_secs())) else {
            return MetricsObservation::Unavailable {
                reason: "batch table poisoned".to_string(),
            };
        };
        let mut slot = slot.lock().await;
        let fresh = slot
            .fetched
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < max_age);
        if !fresh {
            let result = source.fetch_batch(window).await.map(Arc::new);
            slot.fetched = Some((Instant::now(), result));
        }
        match &slot.fetched {
            Some((_, Ok(batch))) => batch.observation(series),
            Some((_, Err(reason))) => MetricsObservation::Unavailable {
                reason: reason.clone(),
            },
            None => MetricsObservation::Unavailable {
                reason: "no batch".to_string(),
            },
        }
    }

    /// `selectors`' resource figures, from a shared batch no older than `max_age`.
    pub async fn resources(
        &self,
        address: &str,
        window: Duration,
        selectors: &crate::resources::ResourceSelectors,
        max_age: Duration,
    ) -> crate::resources::ResourceObservation {
        match self.source(address) {
            Ok(source) => {
                self.resources
                    .observation(&source, window, selectors, max_age)
                    .await
            }
            Err(reason) => crate::resources::ResourceObservation::Unavailable { reason },
        }
    }

    /// A custom check's value (per rollout, not batched).
    pub async fn scalar(&self, address: &str, promql: &str) -> Result<Option<f64>, String> {
        self.source(address)?.scalar(promql).await
    }
}

//! Shares one resource batch (four cAdvisor queries) per interval among all rollouts that
//! use the same Prometheus and window, like `batch::MetricsBatcher` does for traffic.
//!
//! Unlike the traffic series, cAdvisor's carry no rollout label, so the batch must name the
//! pods it wants. Each rollout registers its selectors when it asks; a fetch covers every
//! selector registered for that (address, window), so the first rollout of an interval
//! fetches for all of them and the rest read from its result. A rollout whose selectors the
//! current batch does not cover (it is new) triggers a fetch that covers everyone. Selectors
//! not asked for during [`FORGET_AFTER`] (a deleted or finished rollout) are dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::prometheus::PrometheusSource;
use crate::resources::query::ResourceBatch;
use crate::resources::{PodSelector, ResourceObservation, ResourceSelectors};

/// How long a selector stays in the batch after its rollout last asked.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

type BatchKey = (String, u64);

#[derive(Default)]
struct Slot {
    /// Every selector asked for, with when it was last asked.
    wanted: HashMap<PodSelector, Instant>,
    /// The last fetch: when, which selectors it covered, and its result.
    fetched: Option<Fetched>,
}

struct Fetched {
    at: Instant,
    covered: BTreeSet<PodSelector>,
    result: Result<Arc<ResourceBatch>, String>,
}

/// The controller's shared access to resource batches.
#[derive(Default)]
pub struct ResourceBatcher {
    slots: std::sync::Mutex<HashMap<BatchKey, Arc<Mutex<Slot>>>>,
}

impl ResourceBatcher {
    fn slot(&self, key: BatchKey) -> Option<Arc<Mutex<Slot>>> {
        let mut slots = self.slots.lock().ok()?;
        Some(slots.entry(key).or_default().clone())
    }

    /// `selectors`' figures over `window`, from a batch no older than `max_age` that covers
    /// them (fetching one with `source` otherwise).
    pub async fn observation(
        &self,
        source: &PrometheusSource,
        window: Duration,
        selectors: &ResourceSelectors,
        max_age: Duration,
    ) -> ResourceObservation {
        let Some(slot) = self.slot((source.cache_key().to_string(), window.as_secs())) else {
            return ResourceObservation::Unavailable {
                reason: "resource batch table poisoned".to_string(),
            };
        };
        let mut slot = slot.lock().await;
        let now = Instant::now();
        for selector in selectors.all() {
            slot.wanted.insert(selector.clone(), now);
        }
        slot.wanted
            .retain(|_, asked| now.duration_since(*asked) < FORGET_AFTER);
        let usable = slot.fetched.as_ref().is_some_and(|fetched| {
            fetched.at.elapsed() < max_age
                && selectors
                    .all()
                    .all(|selector| fetched.covered.contains(selector))
        });
        if !usable {
            let covered: BTreeSet<PodSelector> = slot.wanted.keys().cloned().collect();
            let result = source.fetch_resources(&covered, window).await.map(Arc::new);
            slot.fetched = Some(Fetched {
                at: Instant::now(),
                covered,
                result,
            });
        }
        match slot.fetched.as_ref().map(|fetched| &fetched.result) {
            Some(Ok(batch)) => batch.observation(selectors),
            Some(Err(reason)) => ResourceObservation::Unavailable {
                reason: reason.clone(),
            },
            None => ResourceObservation::Unavailable {
                reason: "no resource batch".to_string(),
            },
        }
    }
}

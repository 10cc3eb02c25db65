//! Fetches one batch of cAdvisor resource series (see `crate::resources::query`) for every
//! rollout that shares a Prometheus and a window: four queries, whatever the number of
//! rollouts. A child of `prometheus` so it sends its queries the same way (counted, with
//! the same error lines) as the traffic batch.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus_http_query::response::InstantVector;

use super::batch::{finite, label};
use super::client::PrometheusSource;
use crate::resources::query::{queries, PerPod, PodSelector, ResourceBatch};

fn per_pod(samples: &[InstantVector]) -> PerPod {
    samples
        .iter()
        .filter_map(|sample| {
            let namespace = label(sample, "namespace")?;
            let pod = label(sample, "pod")?;
            let value = finite(sample.sample().value())?;
            Some(((namespace.to_string(), pod.to_string()), value))
        })
        .collect()
}

impl PrometheusSource {
    /// The resource batch for `selectors` over the last `window`. The first failing query
    /// stops the batch, as for the traffic batch: a half batch would mix windows. An empty
    /// result is not an error: it is no data.
    pub async fn fetch_resources(
        &self,
        selectors: &BTreeSet<PodSelector>,
        window: Duration,
    ) -> Result<ResourceBatch, String> {
        let unavailable = |e: String| format!("prometheus {}: {e}", self.url());
        let promql = queries(selectors, window);
        let mut batch = ResourceBatch::default();
        for (query, into) in [
            (&promql.cpu, &mut batch.cpu),
            (&promql.memory, &mut batch.memory),
            (&promql.throttled_periods, &mut batch.throttled_periods),
            (&promql.periods, &mut batch.periods),
        ] {
            *into = per_pod(&self.vector(query).await.map_err(unavailable)?);
        }
        Ok(batch)
    }
}

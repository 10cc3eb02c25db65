//! [`MetricsSource`] over the Prometheus HTTP API: instant queries with a timeout, errors as
//! one line without the URL (which repeats the whole query) or its credentials.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_http_query::response::{Data, InstantVector};
use prometheus_http_query::Client;

use super::batch::{finite, unavailable_for_all, Batch};
use super::queries::{buckets_query, p99_query, requests_query, shards_query};
use super::source::{MetricsSource, RolloutSeries};
use crate::observation::MetricsObservation;
use crate::redact::redacted;

/// [`MetricsSource`] over the Prometheus HTTP API.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    url: String,
    queries: Arc<AtomicU64>,
    on_query: Option<prometheus_client::metrics::counter::Counter>,
}

/// The source could not be built (bad URL).
#[derive(Debug, thiserror::Error)]
#[error("prometheus address {url:?}: {reason}")]
pub struct SourceError {
    pub url: String,
    pub reason: String,
}

impl PrometheusSource {
    /// A source for `url` (for example `http://127.0.0.1:9090`) whose queries time out after
    /// `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let err = |reason: String| SourceError {
            url: redacted(url),
            reason,
        };
        // Proxies from the environment must not redirect loopback Prometheus traffic.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let client = Client::from(http, url).map_err(|e| err(e.to_string()))?;
        Ok(PrometheusSource {
            client,
            url: redacted(url),
            queries: Arc::new(AtomicU64::new(0)),
            on_query: None,
        })
    }

    /// Also count every query on `counter` (the controller's `/metrics`).
    pub fn with_query_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.on_query = Some(counter);
        self
    }

    /// The address this source queries, without credentials (see [`redacted`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn instant(&self, promql: &str) -> Result<Data, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = &self.on_query {
            counter.inc();
        }
        match self.client.query(promql).get().await {
            Ok(result) => Ok(result.into_inner().0),
            Err(e) => Err(error_chain(&e)),
        }
    }

    /// The four batched queries for every rollout at once; the first failure stops the
    /// batch (a half batch would mix windows).
    pub async fn fetch_batch(&self, window: Duration) -> Result<Batch, String> {
        let unavailable = |e: String| format!("prometheus {}: {e}", self.url);
        let requests = self
            .vector(&requests_query(window))
            .await
            .map_err(unavailable)?;
        let p99 = self.vector(&p99_query(window)).await.map_err(unavailable)?;
        let buckets = self
            .vector(&buckets_query(window))
            .await
            .map_err(unavailable)?;
        let shards = self
            .vector(&shards_query(window))
            .await
            .map_err(unavailable)?;
        let mut batch = Batch::from_results(&requests, &p99, &buckets);
        batch.add_shards(&shards);
        Ok(batch)
    }

    pub(super) async fn vector(&self, promql: &str) -> Result<Vec<InstantVector>, String> {
        match self.instant(promql).await? {
            Data::Vector(v) => Ok(v),
            _ => Err(format!("expected an instant vector from {promql}")),
        }
    }
}

/// `e` and its sources on one line: the top-level message of the HTTP client alone
/// ("failed to send request") does not say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        source = inner.source();
    }
    without_url(&line)
}

/// Drops the HTTP client's ` for url (...)` parts: the URL repeats the whole PromQL query
/// and buries the reason (connection refused, timeout) in a very long line.
fn without_url(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(" for url (") {
        out.push_str(&rest[..start]);
        let after = &rest[start + " for url (".len()..];
        let mut depth = 1usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end.min(after.len())..];
    }
    out.push_str(rest);
    out
}

impl MetricsSource for PrometheusSource {
    async fn windows(
        &self,
        rollouts: &[RolloutSeries],
        window: Duration,
    ) -> HashMap<String, MetricsObservation> {
        if rollouts.is_empty() {
            return HashMap::new();
        }
        match self.fetch_batch(window).await {
            Ok(batch) => rollouts
                .iter()
                .map(|r| (r.rollout.clone(), batch.observation(r)))
                .collect(),
            Err(reason) => unavailable_for_all(rollouts, &reason),
        }
    }

    async fn scalar(&self, promql: &str) -> Result<Option<f64>, String> {
        match self.instant(promql).await? {
            Data::Scalar(sample) => Ok(finite(sample.value())),
            Data::Vector(samples) => match samples.as_slice() {
                [] => Ok(None),
                [one] => Ok(finite(one.sample().value())),
                many => Err(format!(
                    "query returned {} series; a check needs exactly one (aggregate it, e.g. with sum())",
                    many.len()
                )),
            },
            Data::Matrix(_) => Err("query returned a range vector; a check needs an instant value".to_string()),
        }
    }

    fn queries_issued(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_keep_the_reason_and_drop_the_url() {
        let line = "failed to send request: error sending request for url (http://h/api?q=sum(x)): connection refused";
        assert_eq!(
            without_url(line),
            "failed to send request: error sending request: connection refused"
        );
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_is_unavailable_for_every_rollout() {
        // Port 9 on loopback: nothing listens there, so the connection is refused at once.
        let source = PrometheusSource::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
        let rollouts = vec![
            RolloutSeries::with_default_versions("a"),
            RolloutSeries::with_default_versions("b"),
        ];
        let result = source.windows(&rollouts, Duration::from_secs(30)).await;
        assert_eq!(result.len(), 2);
        for obs in result.values() {
            assert!(
                matches!(obs, MetricsObservation::Unavailable { .. }),
                "{obs:?}"
            );
        }
        assert_eq!(
            source.queries_issued(),
            1,
            "gave up after the first failed query"
        );
        assert!(source.scalar("up").await.is_err());
    }
}

//! [`MetricsSource`] over the Prometheus HTTP API: instant queries through the one outbound
//! client ([`crate::http`]: https, extra CA, bearer token, timeouts), errors as one line
//! without the URL (which repeats the whole query) or its credentials.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_http_query::response::{Data, InstantVector};

use super::batch::{finite, unavailable_for_all, Batch};
use super::queries::{buckets_query, p99_query, requests_query, shards_query};
use super::source::{MetricsSource, RolloutSeries};
use crate::http::promql::{instant_query, QueryError};
use crate::http::{Client, ClientConfig, Error as HttpError};
use crate::observation::{MetricsObservation, ShardCounts};
use crate::redact::redacted;

/// [`MetricsSource`] over the Prometheus HTTP API.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    /// The address as given (it may hold userinfo, sent as Basic auth): never shown.
    address: String,
    url: String,
    /// What batches from this source are shared under (the address and the client options'
    /// fingerprint in the controller, so rollouts with other credentials never share one).
    cache_key: String,
    queries: Arc<AtomicU64>,
    on_query: Option<prometheus_client::metrics::counter::Counter>,
}

/// The source could not be built (bad URL, unreadable CA bundle, bad header).
#[derive(Debug, thiserror::Error)]
#[error("prometheus address {url:?}: {reason}")]
pub struct SourceError {
    pub url: String,
    pub reason: String,
}

impl PrometheusSource {
    /// A source for `url` (for example `http://127.0.0.1:9090`) whose queries time out after
    /// `timeout`, trusting the host's CA certificates.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let config = ClientConfig {
            timeout,
            ..ClientConfig::default()
        };
        Self::with_config(url, &config)
    }

    /// A source for `url` with its own client options (CA bundle, `Authorization` and
    /// other headers, verification, timeout): see [`crate::http::source::SourceOutbound`].
    pub fn with_config(url: &str, config: &ClientConfig) -> Result<Self, SourceError> {
        let err = |reason: String| SourceError {
            url: redacted(url),
            reason,
        };
        check_address(url).map_err(err)?;
        let client = Client::new(config).map_err(|e| err(e.to_string()))?;
        Ok(PrometheusSource {
            client,
            address: url.to_string(),
            url: redacted(url),
            cache_key: url.to_string(),
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

    /// Shares batches under `key` instead of the address.
    pub fn with_cache_key(mut self, key: String) -> Self {
        self.cache_key = key;
        self
    }

    /// What batches from this source are shared under.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
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
        match instant_query(&self.client, &self.address, promql).await {
            Ok(result) => Ok(result.into_inner().0),
            Err(e) => Err(query_error_line(&e)),
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

    /// The per-shard query alone over `range` (stable's series before a run): a batch with
    /// only shard counts.
    pub async fn fetch_shards(&self, range: Duration) -> Result<Batch, String> {
        let shards = self
            .vector(&shards_query(range))
            .await
            .map_err(|e| format!("prometheus {}: {e}", self.url))?;
        let mut batch = Batch::default();
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

/// An absolute http or https URL with a host, checked when the source is built so a typo
/// is reported once, not at every query.
fn check_address(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL (it must be an absolute http or https URL)".to_string())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err("it must be an absolute http or https URL".to_string()),
    }
}

/// One line for a failed query. The client's errors never hold the URL or a header value;
/// a refused credential says which setting to look at.
fn query_error_line(error: &QueryError) -> String {
    match error {
        QueryError::Http(HttpError::Status(status @ (401 | 403))) => format!(
            "HTTP {status}: Prometheus refused the request's credentials (check bearerTokenSecretRef, basicAuth or the address's user and password)"
        ),
        other => other.to_string(),
    }
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

    async fn stable_before_run(
        &self,
        rollouts: &[RolloutSeries],
        lookback: Duration,
    ) -> HashMap<String, Vec<ShardCounts>> {
        if rollouts.is_empty() {
            return HashMap::new();
        }
        match self.fetch_shards(lookback).await {
            Ok(batch) => rollouts
                .iter()
                .map(|r| (r.rollout.clone(), batch.stable_shards(r)))
                .collect(),
            Err(reason) => {
                tracing::debug!(%reason, "stable's shard series before the run: not read");
                HashMap::new()
            }
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
    fn an_address_must_be_an_absolute_http_url() {
        assert!(check_address("http://127.0.0.1:9090").is_ok());
        assert!(check_address("https://user:pw@prom.example/ws-1/").is_ok());
        for bad in ["127.0.0.1:9090", "ftp://h", "not a url", "/api"] {
            let err = PrometheusSource::new(bad, Duration::from_secs(1)).err();
            assert!(err.is_some(), "{bad}");
        }
    }

    #[test]
    fn a_refused_credential_is_named_without_its_value() {
        let line = query_error_line(&QueryError::Http(HttpError::Status(401)));
        assert!(line.starts_with("HTTP 401: Prometheus refused"), "{line}");
        assert_eq!(
            query_error_line(&QueryError::Http(HttpError::Status(502))),
            "HTTP 502"
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

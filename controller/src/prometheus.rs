//! Reading contract 4's per-version series from Prometheus.
//!
//! One batched query per metric per interval serves every rollout that shares a Prometheus
//! and an analysis window: the results come back grouped by `rollout` and `version` (and, for
//! the per-user-shard counter, `shard` and `outcome`) and are split here. Only `source="hash"` traffic is analysed; testers' override traffic is not.
//!
//! Outcomes are kept apart the way the engine needs them: an empty result is *no data*
//! (a window with zero requests, so the engine calls it inconclusive), while a transport or
//! query error is [`MetricsObservation::Unavailable`]. Neither is a breach.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_http_query::response::{Data, InstantVector};
use prometheus_http_query::Client;

use crate::observation::{MetricsObservation, ShardCounts, VersionWindow};
use crate::redact::redacted;

pub mod resources;

/// What the source needs to know about one rollout to pick its series out of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RolloutSeries {
    /// The rollout key in the plugin config; the `rollout` label of the series.
    pub rollout: String,
    /// The `version` label value of stable traffic.
    pub stable_version: String,
    /// The `version` label value of canary traffic.
    pub canary_version: String,
}

impl RolloutSeries {
    /// A rollout using the filter's default version names.
    pub fn with_default_versions(rollout: &str) -> Self {
        RolloutSeries {
            rollout: rollout.to_string(),
            stable_version: "stable".to_string(),
            canary_version: "canary".to_string(),
        }
    }
}

/// Where per-version windows and custom check values come from.
pub trait MetricsSource: Send + Sync {
    /// Per-rollout windows over the last `window` for every rollout in `rollouts`, using one
    /// query per metric for the whole batch.
    fn windows(
        &self,
        rollouts: &[RolloutSeries],
        window: Duration,
    ) -> impl Future<Output = HashMap<String, MetricsObservation>> + Send;

    /// A custom PromQL check: `Ok(None)` is no data, `Err` is unavailable.
    fn scalar(&self, promql: &str) -> impl Future<Output = Result<Option<f64>, String>> + Send;

    /// How many queries this source has sent since it was created.
    fn queries_issued(&self) -> u64;
}

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

    async fn vector(&self, promql: &str) -> Result<Vec<InstantVector>, String> {
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

/// A PromQL range like `30s`. Prometheus needs at least 1s.
pub fn promql_range(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

/// Requests per `code_class` over the window, all rollouts at once.
pub fn requests_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, code_class) (increase(stickycanary_requests_total{{source=\"hash\"}}[{}]))",
        promql_range(window)
    )
}

/// p99 latency per rollout and version, all rollouts at once.
pub fn p99_query(window: Duration) -> String {
    format!(
        "histogram_quantile(0.99, sum by (rollout, version, le) (rate(stickycanary_request_duration_ms_bucket{{source=\"hash\"}}[{}])))",
        promql_range(window)
    )
}

/// Cumulative bucket counts over the window per rollout and version, all rollouts at once.
pub fn buckets_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, le) (increase(stickycanary_request_duration_ms_bucket{{source=\"hash\"}}[{}]))",
        promql_range(window)
    )
}

/// Per-user-shard outcomes (contract 4, `stickycanary_shard_requests_total`), all rollouts at
/// once. Only hash-routed traffic is counted by the filter, so no `source` selector.
pub fn shards_query(window: Duration) -> String {
    format!(
        "sum by (rollout, version, shard, outcome) (increase(stickycanary_shard_requests_total[{}]))",
        promql_range(window)
    )
}

/// Shard labels at or above this are ignored (the filter uses 16; a bound keeps a bad
/// label from allocating).
pub const MAX_SHARDS: usize = 64;

/// Per (rollout, version) accumulation of the batched results.
#[derive(Default, Debug)]
struct Accumulated {
    requests: f64,
    errors: f64,
    p99_ms: Option<f64>,
    buckets: BTreeMap<OrderedLe, f64>,
    shards: Vec<ShardCounts>,
}

/// `le` values sort numerically with `+Inf` last.
#[derive(Debug, Clone, Copy)]
struct OrderedLe(f64);
impl PartialEq for OrderedLe {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrderedLe {}
impl PartialOrd for OrderedLe {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedLe {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn label<'a>(sample: &'a InstantVector, name: &str) -> Option<&'a str> {
    sample.metric().get(name).map(String::as_str)
}

type Key = (String, String);

fn accumulate_requests(acc: &mut HashMap<Key, Accumulated>, samples: &[InstantVector]) {
    for s in samples {
        let (Some(rollout), Some(version)) = (label(s, "rollout"), label(s, "version")) else {
            continue;
        };
        let Some(value) = finite(s.sample().value()) else {
            continue;
        };
        let entry = acc
            .entry((rollout.to_string(), version.to_string()))
            .or_default();
        entry.requests += value;
        if label(s, "code_class") == Some("5xx") {
            entry.errors += value;
        }
    }
}

fn accumulate_p99(acc: &mut HashMap<Key, Accumulated>, samples: &[InstantVector]) {
    for s in samples {
        let (Some(rollout), Some(version)) = (label(s, "rollout"), label(s, "version")) else {
            continue;
        };
        // histogram_quantile gives NaN when the window saw no requests: that is no data.
        if let Some(value) = finite(s.sample().value()) {
            acc.entry((rollout.to_string(), version.to_string()))
                .or_default()
                .p99_ms = Some(value);
        }
    }
}

fn accumulate_buckets(acc: &mut HashMap<Key, Accumulated>, samples: &[InstantVector]) {
    for s in samples {
        let (Some(rollout), Some(version), Some(le)) =
            (label(s, "rollout"), label(s, "version"), label(s, "le"))
        else {
            continue;
        };
        let le = match le {
            "+Inf" => f64::INFINITY,
            other => match other.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        let Some(value) = finite(s.sample().value()) else {
            continue;
        };
        *acc.entry((rollout.to_string(), version.to_string()))
            .or_default()
            .buckets
            .entry(OrderedLe(le))
            .or_default() += value;
    }
}

fn accumulate_shards(acc: &mut HashMap<Key, Accumulated>, samples: &[InstantVector]) {
    for s in samples {
        let (Some(rollout), Some(version), Some(shard), Some(outcome)) = (
            label(s, "rollout"),
            label(s, "version"),
            label(s, "shard"),
            label(s, "outcome"),
        ) else {
            continue;
        };
        let Some(shard) = shard.parse::<usize>().ok().filter(|s| *s < MAX_SHARDS) else {
            continue;
        };
        let Some(value) = finite(s.sample().value()) else {
            continue;
        };
        let shards = &mut acc
            .entry((rollout.to_string(), version.to_string()))
            .or_default()
            .shards;
        if shards.len() <= shard {
            shards.resize(shard + 1, ShardCounts::default());
        }
        let counts = &mut shards[shard];
        counts.requests += value;
        match outcome {
            "error" => counts.errors += value,
            "slow" => counts.slow += value,
            _ => {}
        }
    }
}

fn version_window(acc: &HashMap<Key, Accumulated>, rollout: &str, version: &str) -> VersionWindow {
    match acc.get(&(rollout.to_string(), version.to_string())) {
        None => VersionWindow::default(),
        Some(a) => VersionWindow {
            requests: a.requests,
            errors: a.errors,
            p99_ms: a.p99_ms,
            latency_buckets: a.buckets.iter().map(|(le, count)| (le.0, *count)).collect(),
            shards: a.shards.clone(),
        },
    }
}

/// One interval's batched results, indexed by (rollout, version): many rollouts can read
/// their window out of it without another query.
#[derive(Debug, Default)]
pub struct Batch {
    acc: HashMap<Key, Accumulated>,
}

impl Batch {
    /// Indexes the three batched results.
    pub fn from_results(
        requests: &[InstantVector],
        p99: &[InstantVector],
        buckets: &[InstantVector],
    ) -> Self {
        let mut acc: HashMap<Key, Accumulated> = HashMap::new();
        accumulate_requests(&mut acc, requests);
        accumulate_p99(&mut acc, p99);
        accumulate_buckets(&mut acc, buckets);
        Batch { acc }
    }

    /// Adds the per-shard result (the fourth query). A rollout without shard series keeps
    /// empty `shards` (an older filter: request-level analysis), never an error.
    pub fn add_shards(&mut self, shards: &[InstantVector]) {
        accumulate_shards(&mut self.acc, shards);
    }

    /// The window of one rollout. Without series it is empty (no data), never an error.
    pub fn observation(&self, series: &RolloutSeries) -> MetricsObservation {
        MetricsObservation::Window {
            canary: version_window(&self.acc, &series.rollout, &series.canary_version),
            stable: version_window(&self.acc, &series.rollout, &series.stable_version),
        }
    }
}

/// Splits three batched results into one observation per rollout. Rollouts without series
/// get an empty window (no data), never an error.
pub fn split_batch(
    rollouts: &[RolloutSeries],
    requests: &[InstantVector],
    p99: &[InstantVector],
    buckets: &[InstantVector],
) -> HashMap<String, MetricsObservation> {
    let batch = Batch::from_results(requests, p99, buckets);
    rollouts
        .iter()
        .map(|r| (r.rollout.clone(), batch.observation(r)))
        .collect()
}

fn unavailable_for_all(
    rollouts: &[RolloutSeries],
    reason: &str,
) -> HashMap<String, MetricsObservation> {
    rollouts
        .iter()
        .map(|r| {
            (
                r.rollout.clone(),
                MetricsObservation::Unavailable {
                    reason: reason.to_string(),
                },
            )
        })
        .collect()
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

/// Custom checks may name their rollout with `$rollout` (or `{{rollout}}`) so one query
/// template serves many rollouts.
pub fn render_check_query(template: &str, rollout: &str) -> String {
    template
        .replace("{{rollout}}", rollout)
        .replace("{{ rollout }}", rollout)
        .replace("$rollout", rollout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> InstantVector {
        let metric: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metric": metric,
            "value": [1700000000.0, value.to_string()],
        }))
        .unwrap()
    }

    fn window_of(obs: &MetricsObservation) -> (&VersionWindow, &VersionWindow) {
        match obs {
            MetricsObservation::Window { canary, stable } => (canary, stable),
            other => panic!("expected a window, got {other:?}"),
        }
    }

    #[test]
    fn batched_results_are_split_per_rollout_and_version() {
        let rollouts = vec![
            RolloutSeries::with_default_versions("checkout"),
            RolloutSeries::with_default_versions("search"),
        ];
        let requests = vec![
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", "canary"),
                    ("code_class", "2xx"),
                ],
                80.0,
            ),
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", "canary"),
                    ("code_class", "5xx"),
                ],
                20.0,
            ),
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", "stable"),
                    ("code_class", "2xx"),
                ],
                900.0,
            ),
            sample(
                &[
                    ("rollout", "search"),
                    ("version", "stable"),
                    ("code_class", "4xx"),
                ],
                7.0,
            ),
        ];
        let p99 = vec![
            sample(&[("rollout", "checkout"), ("version", "canary")], 480.0),
            sample(&[("rollout", "checkout"), ("version", "stable")], f64::NAN),
        ];
        let buckets = vec![
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", "canary"),
                    ("le", "+Inf"),
                ],
                100.0,
            ),
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", "canary"),
                    ("le", "100"),
                ],
                40.0,
            ),
            sample(
                &[("rollout", "checkout"), ("version", "canary"), ("le", "5")],
                1.0,
            ),
        ];
        let split = split_batch(&rollouts, &requests, &p99, &buckets);
        let (canary, stable) = window_of(&split["checkout"]);
        assert_eq!(canary.requests, 100.0);
        assert_eq!(canary.errors, 20.0);
        assert_eq!(canary.p99_ms, Some(480.0));
        assert_eq!(
            canary.latency_buckets,
            vec![(5.0, 1.0), (100.0, 40.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(stable.requests, 900.0);
        assert_eq!(stable.errors, 0.0);
        assert_eq!(stable.p99_ms, None, "NaN quantile is no data");
        let (search_canary, search_stable) = window_of(&split["search"]);
        assert_eq!(search_canary.requests, 0.0);
        assert_eq!(search_stable.requests, 7.0);
        assert_eq!(search_stable.errors, 0.0, "4xx are not errors");
    }

    #[test]
    fn shard_outcomes_fill_per_shard_counts_and_bad_labels_are_skipped() {
        let rollouts = [RolloutSeries::with_default_versions("checkout")];
        let shard = |version: &str, shard: &str, outcome: &str, value: f64| {
            sample(
                &[
                    ("rollout", "checkout"),
                    ("version", version),
                    ("shard", shard),
                    ("outcome", outcome),
                ],
                value,
            )
        };
        let mut batch = Batch::from_results(&[], &[], &[]);
        batch.add_shards(&[
            shard("canary", "2", "ok", 10.0),
            shard("canary", "2", "error", 3.0),
            shard("canary", "2", "slow", 1.0),
            shard("canary", "15", "ok", 4.0),
            shard("canary", "x", "ok", 99.0),
            shard("canary", "64", "ok", 99.0),
            shard("stable", "0", "ok", f64::NAN),
        ]);
        let observation = batch.observation(&rollouts[0]);
        let (canary, stable) = window_of(&observation);
        assert_eq!(canary.shards.len(), 16);
        assert_eq!(
            canary.shards[2],
            ShardCounts {
                requests: 14.0,
                errors: 3.0,
                slow: 1.0
            }
        );
        assert_eq!(canary.shards[15].requests, 4.0);
        assert_eq!(canary.shards[0], ShardCounts::default());
        assert!(stable.shards.len() <= 1, "{:?}", stable.shards);
        assert_eq!(
            shards_query(Duration::from_secs(60)),
            "sum by (rollout, version, shard, outcome) (increase(stickycanary_shard_requests_total[60s]))"
        );
    }

    #[test]
    fn a_rollout_without_series_is_an_empty_window_not_unavailable() {
        let rollouts = vec![RolloutSeries::with_default_versions("quiet")];
        let split = split_batch(&rollouts, &[], &[], &[]);
        let (canary, stable) = window_of(&split["quiet"]);
        assert_eq!(canary.requests, 0.0);
        assert_eq!(stable.requests, 0.0);
        assert!(canary.latency_buckets.is_empty());
    }

    #[test]
    fn custom_version_names_pick_their_own_series() {
        let rollouts = vec![RolloutSeries {
            rollout: "pay".into(),
            stable_version: "v1".into(),
            canary_version: "v2".into(),
        }];
        let requests = vec![
            sample(
                &[("rollout", "pay"), ("version", "v2"), ("code_class", "2xx")],
                5.0,
            ),
            sample(
                &[
                    ("rollout", "pay"),
                    ("version", "canary"),
                    ("code_class", "2xx"),
                ],
                99.0,
            ),
        ];
        let split = split_batch(&rollouts, &requests, &[], &[]);
        let (canary, stable) = window_of(&split["pay"]);
        assert_eq!(canary.requests, 5.0);
        assert_eq!(stable.requests, 0.0);
    }

    #[test]
    fn queries_select_hash_traffic_only_and_group_by_rollout_and_version() {
        let w = Duration::from_secs(30);
        assert_eq!(
            requests_query(w),
            "sum by (rollout, version, code_class) (increase(stickycanary_requests_total{source=\"hash\"}[30s]))"
        );
        assert_eq!(
            p99_query(w),
            "histogram_quantile(0.99, sum by (rollout, version, le) (rate(stickycanary_request_duration_ms_bucket{source=\"hash\"}[30s])))"
        );
        assert!(buckets_query(w).contains("source=\"hash\""));
        assert_eq!(promql_range(Duration::from_millis(200)), "1s");
    }

    #[test]
    fn transport_errors_keep_the_reason_and_drop_the_url() {
        let line = "failed to send request: error sending request for url (http://h/api?q=sum(x)): connection refused";
        assert_eq!(
            without_url(line),
            "failed to send request: error sending request: connection refused"
        );
    }

    #[test]
    fn check_templates_name_their_rollout() {
        assert_eq!(
            render_check_query(
                "sum(rate(orders_total{rollout=\"$rollout\"}[1m]))",
                "checkout"
            ),
            "sum(rate(orders_total{rollout=\"checkout\"}[1m]))"
        );
        assert_eq!(
            render_check_query("x{r=\"{{rollout}}\"}", "a"),
            "x{r=\"a\"}"
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

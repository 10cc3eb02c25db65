//! One interval's batched results, split per rollout and version: many rollouts read their
//! window out of one batch without another query. A rollout without series gets an empty
//! window (no data), never an error.

use std::collections::{BTreeMap, HashMap};

use prometheus_http_query::response::InstantVector;

use super::source::RolloutSeries;
use crate::observation::{MetricsObservation, ShardCounts, VersionWindow};

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

pub(super) fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

pub(super) fn label<'a>(sample: &'a InstantVector, name: &str) -> Option<&'a str> {
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

    /// Stable's per-shard counts of one rollout (empty without shard series).
    pub fn stable_shards(&self, series: &RolloutSeries) -> Vec<ShardCounts> {
        version_window(&self.acc, &series.rollout, &series.stable_version).shards
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

pub(super) fn unavailable_for_all(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::prometheus::shards_query;

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
}

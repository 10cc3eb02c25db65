//! What a metrics source is asked ([`MetricsSource`]) and about which series
//! ([`RolloutSeries`]), whatever answers.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use crate::observation::{MetricsObservation, ShardCounts};

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

    /// Stable's per-shard counts over the last `lookback` for every rollout in `rollouts`,
    /// in one query (read once per run, before its evidence starts). A rollout is missing
    /// from the map when the query failed.
    fn stable_before_run(
        &self,
        rollouts: &[RolloutSeries],
        lookback: Duration,
    ) -> impl Future<Output = HashMap<String, Vec<ShardCounts>>> + Send;

    /// A custom PromQL check: `Ok(None)` is no data, `Err` is unavailable.
    fn scalar(&self, promql: &str) -> impl Future<Output = Result<Option<f64>, String>> + Send;

    /// How many queries this source has sent since it was created.
    fn queries_issued(&self) -> u64;
}

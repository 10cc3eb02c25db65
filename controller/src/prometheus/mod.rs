//! Reading contract 4's per-version series from Prometheus.
//!
//! One batched query per metric per interval serves every rollout that shares a Prometheus
//! and an analysis window: the results come back grouped by `rollout` and `version` (and, for
//! the per-user-shard counter, `shard` and `outcome`) and are split here. Only `source="hash"` traffic is analysed; testers' override traffic is not.
//!
//! Outcomes are kept apart the way the engine needs them: an empty result is *no data*
//! (a window with zero requests, so the engine calls it inconclusive), while a transport or
//! query error is [`MetricsObservation::Unavailable`]. Neither is a breach.
//!
//! - [`client`]: the HTTP client ([`PrometheusSource`]) and its error lines;
//! - [`queries`]: the PromQL text;
//! - [`batch`]: splitting the batched results per rollout and version;
//! - [`resources`]: the cAdvisor batch of the resource checks.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use crate::observation::MetricsObservation;

pub mod batch;
pub mod client;
pub mod queries;
pub mod resources;

pub use batch::{split_batch, Batch, MAX_SHARDS};
pub use client::{PrometheusSource, SourceError};
pub use queries::{
    buckets_query, p99_query, promql_range, render_check_query, requests_query, shards_query,
};

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

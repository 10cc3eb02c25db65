//! Reading contract 4's per-version series from Prometheus.
//!
//! One batched query per metric per interval serves every rollout that shares a Prometheus
//! and an analysis window: the results come back grouped by `rollout` and `version` (and, for
//! the per-user-shard counter, `shard` and `outcome`) and are split here. Only `source="hash"` traffic is analysed; testers' override traffic is not.
//!
//! Outcomes are kept apart the way the engine needs them: an empty result is *no data*
//! (a window with zero requests, so the engine calls it inconclusive), while a transport or
//! query error is [`MetricsObservation::Unavailable`](crate::observation::MetricsObservation::Unavailable). Neither is a breach.
//!
//! - [`client`]: the HTTP client ([`PrometheusSource`]) and its error lines;
//! - [`queries`]: the PromQL text;
//! - [`batch`]: splitting the batched results per rollout and version;
//! - [`resources`]: the cAdvisor batch of the resource checks.

pub mod batch;
pub mod client;
pub mod queries;
pub mod resources;
pub mod source;

pub use batch::{split_batch, Batch, MAX_SHARDS};
pub use client::{PrometheusSource, SourceError};
pub use queries::{
    buckets_query, p99_query, promql_range, render_check_query, requests_query, shards_query,
};
pub use source::{MetricsSource, RolloutSeries};

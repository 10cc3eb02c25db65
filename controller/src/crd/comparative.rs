//! The comparative check's types (contract 5): `spec.analysis.comparative` and the evidence
//! it keeps in `status.comparative`. The statistics that fill them live in
//! `crate::analysis`; these are plain data, at the bottom of the crate, so that the spec
//! types depend on nothing above them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// `spec.analysis.comparative`: the opt-in statistical comparison with stable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparativeCheck {
    /// Set false to keep the block but switch the check off.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Bound on the chance that a canary no worse than stable is ever failed by this check
    /// during the whole rollout, however often it runs. Split evenly between the error and
    /// the latency test.
    #[serde(default = "default_alpha")]
    #[schemars(range(min = 0.000001, max = 0.5))]
    pub alpha: f64,
    /// The smallest relative increase of canary's error (or slow-request) rate over
    /// stable's that the test is tuned to catch: 0.2 means 1.2× stable's rate. Larger
    /// increases are caught sooner; smaller ones later or not at all. (0.2 rather than 0.5
    /// since issue 22: a bug that breaks a few percent of the users can raise canary's rate
    /// by only 20–40% outside their shards.)
    #[serde(default = "default_minimum_detectable_increase")]
    #[schemars(range(min = 0.05, max = 10.0))]
    pub minimum_detectable_increase: f64,
    /// Requests slower than this count as slow (rounded up to a histogram bucket
    /// boundary). Default: stable's p99 bucket boundary, chosen once from the first window
    /// with enough stable traffic and kept for the whole rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub latency_threshold_ms: Option<f64>,
    /// Latency right after each weight change is not counted: canary pods scaled up for
    /// the new weight are slow while they warm up. (Errors always count.)
    #[serde(default = "default_warmup")]
    pub warmup: Duration,
}

fn default_enabled() -> bool {
    true
}

fn default_alpha() -> f64 {
    0.01
}

fn default_minimum_detectable_increase() -> f64 {
    0.2
}

fn default_warmup() -> Duration {
    Duration::from_secs(45)
}

impl Default for ComparativeCheck {
    fn default() -> Self {
        ComparativeCheck {
            enabled: true,
            alpha: default_alpha(),
            minimum_detectable_increase: default_minimum_detectable_increase(),
            latency_threshold_ms: None,
            warmup: default_warmup(),
        }
    }
}

impl ComparativeCheck {
    /// α of each of the two tests: half of `alpha` (Bonferroni), so the whole check's
    /// false-failure chance stays within `alpha`.
    pub fn alpha_per_test(&self) -> f64 {
        let alpha = if self.alpha.is_finite() && self.alpha > 0.0 {
            self.alpha.min(0.5)
        } else {
            default_alpha()
        };
        alpha / 2.0
    }

    /// The e-value at which a test fails: `1 / alpha_per_test`.
    pub fn rejection_threshold(&self) -> f64 {
        1.0 / self.alpha_per_test()
    }
}

/// `status.comparative`: the cumulative state of both tests, so that a restarted
/// controller carries on with the evidence gathered so far.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparativeState {
    /// The weight of the current segment; a different weight starts a new one.
    pub segment_weight: f64,
    /// The weight of the run's first segment: heavy users that stable never showed have
    /// been on canary since then (see `sharded::History`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_weight: Option<f64>,
    /// When the current segment began (the latency warm-up runs from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_started_at: Option<Time>,
    /// The histogram boundary (ms) above which a request is slow, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_threshold_ms: Option<f64>,
    /// The `slowThresholdMs` this run wrote into the filter's config: once it equals
    /// `latencyThresholdMs`, the shards' `slow` outcome counts exactly the latency test's
    /// events and the latency test judges shards as the error test does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_slow_threshold_ms: Option<f64>,
    /// What stable's shards showed over the hour before the run's first analysis, read once
    /// (`None` until then). Its outlying shards are added to the error test's
    /// `stableOutlyingShards`: users heavy on stable before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_before_run: Option<StableBeforeRun>,
    pub errors: SplitTest,
    pub slow_requests: SplitTest,
}

/// Stable's shard series over the lookback before a run (`status.comparative.stableBeforeRun`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StableBeforeRun {
    /// Stable's hash-routed requests in the lookback (0: no history, such as a first run).
    pub requests: f64,
    /// Of those, 5xx responses.
    pub errors: f64,
    /// The shards whose errors stood out (heavy, error-prone users), ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlying_error_shards: Vec<i32>,
}

/// One sequential test's evidence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitTest {
    /// Traffic up to here has been counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_until: Option<Time>,
    /// Counted requests and events since the rollout started: the sample sizes.
    pub total: SplitCounts,
    /// Counted since the weight last changed.
    pub segment: SplitCounts,
    /// Per alternative rate ratio, the log-likelihood ratio of the finished segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_log_lr: Vec<f64>,
    /// Natural log of the e-value (the mixture likelihood ratio) so far.
    pub log_e_value: f64,
    /// Set once the e-value reached the rejection threshold; never unset.
    #[serde(default)]
    pub rejected: bool,
    // --- Cluster-robust (per user shard) evidence, when the filter exports shard series. ---
    /// Per shard (index = shard), counted since the weight last changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_shards: Vec<SplitCounts>,
    /// Per alternative, the finished segments' log LR over all shards (not trimmed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_untrimmed_log_lr: Vec<f64>,
    /// Per alternative, the finished segments' log LR over the kept shards without each
    /// segment's top shard (a failure needs the evidence to survive losing one user's shard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_without_top_log_lr: Vec<f64>,
    /// Shards that stable showed as outlying (a heavy user on stable) in a finished segment
    /// of this run, or before it (`stableBeforeRun`, error test only): a canary outlier there
    /// later is a user seen to be heavy on stable too. Ascending, no repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stable_outlying_shards: Vec<i32>,
    /// Per shard (index = shard), counted since the rollout started. Stable's side shows
    /// users heavy on stable whose errors are too sparse to stand out in one segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_shards: Vec<SplitCounts>,
    /// The finished segments' lean sums (their kept shards): with the current segment's,
    /// how far canary leans above its share over the whole run (the promotion hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_lean: Option<LeanSums>,
    /// Set once the e-value over every shard (none left out) reached the rejection
    /// threshold; never unset. Canary was then worse with all its users counted: the
    /// promotion hold no longer expires while the kept shards lean worse.
    #[serde(default)]
    pub all_shards_rejected: bool,
    /// The latest tick's shard statistic (see `crate::analysis::sharded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardStatistic>,
}

impl SplitTest {
    /// [`Self::stable_outlying_shards`] as shard indices.
    pub fn stable_outlying(&self) -> Vec<usize> {
        self.stable_outlying_shards
            .iter()
            .filter_map(|index| usize::try_from(*index).ok())
            .collect()
    }

    /// Adds `shards` to [`Self::stable_outlying_shards`], keeping it ascending without
    /// repeats.
    pub fn add_stable_outlying(&mut self, shards: impl IntoIterator<Item = usize>) {
        for index in shards {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            if !self.stable_outlying_shards.contains(&index) {
                self.stable_outlying_shards.push(index);
            }
        }
        self.stable_outlying_shards.sort_unstable();
    }
}

/// The sums behind a lean (`crate::analysis::sequential::lean`): canary's events in excess
/// of its share of the requests, their variance under "no worse", and the events. Sums over
/// segments stay valid across weight changes: each segment is its own stratum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeanSums {
    pub excess: f64,
    pub variance: f64,
    pub events: f64,
}

impl LeanSums {
    pub fn plus(self, other: LeanSums) -> LeanSums {
        LeanSums {
            excess: self.excess + other.excess,
            variance: self.variance + other.variance,
            events: self.events + other.events,
        }
    }
}

/// `status.comparative.<test>.shards`: what the cluster-robust test read at the last tick.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatistic {
    /// Shards with traffic on both versions in the current segment (the sample size in
    /// independent units; at most 16).
    #[schemars(extend("format" = "int32", "minimum" = 0))]
    pub shards_with_traffic: u32,
    /// The shards set aside as outlying (a few heavy users), in the order they were found:
    /// left out (errors) or their excess taken out (latency). Empty when the excess is broad.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trimmed: Vec<i32>,
    /// Stable's dispersion `φ` across the shards (1 = no sign that events cluster by user).
    pub dispersion: f64,
    /// Natural log of the e-value over all shards (trimming none); when it would fail and
    /// the trimmed one does not, the evidence rests on one or two shards: Inconclusive.
    pub untrimmed_log_e_value: f64,
    /// Natural log of the e-value over the kept shards without each segment's top shard
    /// (the one most in excess on canary). A failure needs it at least 40% of the way to
    /// the threshold (log scale): evidence that one user's shard carries holds the rollout
    /// (Inconclusive) instead, and a guard-rail breach is held while it leans "no worse"
    /// (below 0).
    #[serde(default)]
    pub without_top_log_e_value: f64,
}

/// Requests and events per version over some span (fractional: Prometheus `increase()`
/// extrapolates, and overlapping windows are counted pro rata).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitCounts {
    pub canary_requests: f64,
    pub canary_events: f64,
    pub stable_requests: f64,
    pub stable_events: f64,
}

impl SplitCounts {
    /// `self + scale × other`, ignoring negative or non-finite inputs (counter resets).
    pub fn add_scaled(&mut self, other: &SplitCounts, scale: f64) {
        let clean = |value: f64| {
            if value.is_finite() && value > 0.0 {
                value * scale
            } else {
                0.0
            }
        };
        self.canary_requests += clean(other.canary_requests);
        self.canary_events += clean(other.canary_events);
        self.stable_requests += clean(other.stable_requests);
        self.stable_events += clean(other.stable_events);
    }

    /// Canary's share of the requests (`π`), when both versions saw traffic.
    pub fn canary_share(&self) -> Option<f64> {
        let total = self.canary_requests + self.stable_requests;
        (self.canary_requests > 0.0 && self.stable_requests > 0.0)
            .then(|| self.canary_requests / total)
    }

    pub fn canary_rate(&self) -> Option<f64> {
        (self.canary_requests > 0.0).then(|| self.canary_events / self.canary_requests)
    }

    pub fn stable_rate(&self) -> Option<f64> {
        (self.stable_requests > 0.0).then(|| self.stable_events / self.stable_requests)
    }
}

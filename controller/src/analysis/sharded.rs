//! The cluster-robust form of the split test: the unit of evidence is a user shard.
//!
//! Why. Under sticky assignment all of a user's requests, and so all of that user's
//! errors, land on one version. A bot retrying a bad request, or an account whose data
//! hits a bug both versions share, is one coin flip (canary or stable), not one flip per
//! error, so the request-level split test of [`super::sequential`] overstates its
//! evidence: with half the errors from a handful of users it failed 16-45% of healthy
//! canaries. The filter counts every hash-routed request in one of S = 16 shards (hash bits
//! independent of the version choice, so each shard is a random slice of users, on both
//! versions). A user's errors stay in one shard, which lets the test see and discount them.
//!
//! The rule, per segment (one weight), for each alternative rate ratio `θ`:
//!
//! 1. Per shard `s` with traffic on both versions: canary events `c_s`, stable events `t_s`,
//!    canary's share of the shard's requests `π_s`, and the *excess*
//!    `x_s = c_s − π_s (c_s + t_s)` (canary events beyond its share).
//! 2. **Trim**: the [`TRIMMED_SHARDS`] shards with the largest excess are set aside and
//!    count at most [`TOP_SHARD_CAP`] times the largest log-likelihood ratio among the
//!    kept shards (winsorised). One or two users, however heavy, sit in at most two shards,
//!    so they can only add to evidence the other shards already show, never make it.
//! 3. **Dispersion** `φ`: per version, Pearson's χ² of its events across shards against
//!    its own pooled rate, divided by the degrees of freedom, less
//!    [`DISPERSION_NOISE_ALLOWANCE`] standard errors (for Poisson counts each term has
//!    variance `2 + 1/μ`), at least 1. For independent errors it is about 1 whatever the
//!    rates are (a broad regression raises canary's rate in every shard alike); errors that
//!    cluster by user push it up by about the clusters' size. `φ` is the larger version's
//!    reading, over the kept shards or over all, whichever is larger.
//! 4. The segment's log-likelihood ratio is the stratified split test's (per shard `π_s`)
//!    over the kept shards plus the capped top shards, divided by `φ`: the
//!    quasi-likelihood for overdispersed counts, which turns "errors" into about
//!    "independent clusters of errors".
//!
//! The e-value mixes the alternatives and carries finished segments exactly as the
//! request-level test does, and the test fails when it reaches `1/α'`. With independent
//! errors (`φ = 1`) it is a stratified split test with the top two shards capped, so its
//! false-failure rate stays below α' however often it is read, as the request-level
//! test's does. Under clustering the `1/φ` scaling is a calibration, not a theorem: it is
//! checked by simulation (`tests/analysis.rs`, `tests/simulate.rs`, BENCHMARKS.md). The
//! same statistic over all shards, uncapped, is kept beside it: when that one would fail,
//! the capped one does not, and the capped one is at least half-way there (log scale),
//! the evidence rests on one or two shards and the verdict is Inconclusive, not Fail.

use super::sequential::{log_mean_exp, SplitCounts};

/// Shards dropped (the largest canary excess) before the test is judged.
pub const TRIMMED_SHARDS: usize = 2;
/// Each trimmed shard's log-likelihood ratio counts at most this multiple of the largest
/// kept shard's (winsorising rather than dropping keeps most of a broad regression's
/// evidence: dropping cost 5 points of detection within 2 minutes in the simulation).
pub const TOP_SHARD_CAP: f64 = 1.5;
/// Fewer shards with traffic on both versions than this, after trimming, give no verdict.
pub const MIN_KEPT_SHARDS: usize = 4;
/// χ² standard errors allowed before the spread between shards counts as clustering.
pub const DISPERSION_NOISE_ALLOWANCE: f64 = 2.0;

/// What one segment's shards say.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardEvidence {
    /// Per alternative: the trimmed, dispersion-scaled log-likelihood ratio.
    pub log_lr: Vec<f64>,
    /// Per alternative: the same over all shards (for the "rests on 1-2 shards" verdict).
    pub untrimmed_log_lr: Vec<f64>,
    /// Shards with traffic on both versions, before trimming.
    pub shards_with_traffic: usize,
    /// The trimmed shards' indices, largest excess first.
    pub trimmed: Vec<usize>,
    /// `φ` of the kept shards (1 = no sign of clustering).
    pub dispersion: f64,
    /// `φ` of all shards.
    pub untrimmed_dispersion: f64,
}

/// Evaluate one segment's per-shard counts (index = shard) for every alternative in `grid`.
pub fn evidence(shards: &[SplitCounts], grid: &[f64]) -> ShardEvidence {
    let mut usable: Vec<(usize, SplitCounts, f64)> = shards
        .iter()
        .enumerate()
        .filter_map(|(index, counts)| {
            let counts = cleaned(counts);
            let share = counts.canary_share()?;
            let excess =
                counts.canary_events - share * (counts.canary_events + counts.stable_events);
            Some((index, counts, excess))
        })
        .collect();
    let shards_with_traffic = usable.len();
    let untrimmed: Vec<SplitCounts> = usable.iter().map(|(_, counts, _)| *counts).collect();
    // Largest excess first; ties by index so the choice is deterministic.
    usable.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let trimmed: Vec<usize> = usable
        .iter()
        .take(TRIMMED_SHARDS)
        .map(|(index, _, _)| *index)
        .collect();
    let top: Vec<SplitCounts> = usable
        .iter()
        .take(TRIMMED_SHARDS)
        .map(|(_, counts, _)| *counts)
        .collect();
    let kept: Vec<SplitCounts> = usable
        .iter()
        .skip(TRIMMED_SHARDS)
        .map(|(_, counts, _)| *counts)
        .collect();
    let untrimmed_dispersion = dispersion(&untrimmed);
    // Clustering is a property of the users, not of the shards kept: the larger reading
    // counts (a broad regression leaves both near 1).
    let kept_dispersion = dispersion(&kept).max(untrimmed_dispersion);
    let enough = kept.len() >= MIN_KEPT_SHARDS;
    let log_lr = grid
        .iter()
        .map(|ratio| {
            if !enough {
                return 0.0;
            }
            // Winsorised: each top shard counts at most TOP_SHARD_CAP times the largest kept
            // one, so the top shards can only add to evidence the kept shards already show.
            let per_shard: Vec<f64> = kept
                .iter()
                .map(|counts| super::sequential::split_log_lr(counts, *ratio))
                .collect();
            let max_kept = per_shard.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let cap = if max_kept > 0.0 {
                max_kept * TOP_SHARD_CAP
            } else {
                max_kept
            };
            let capped: f64 = top
                .iter()
                .map(|counts| super::sequential::split_log_lr(counts, *ratio).min(cap))
                .sum();
            (per_shard.iter().sum::<f64>() + capped) / kept_dispersion
        })
        .collect();
    ShardEvidence {
        log_lr,
        untrimmed_log_lr: grid
            .iter()
            .map(|ratio| stratified_log_lr(&untrimmed, *ratio) / untrimmed_dispersion)
            .collect(),
        shards_with_traffic,
        trimmed,
        dispersion: kept_dispersion,
        untrimmed_dispersion,
    }
}

/// The larger of the two versions' χ²/df (each less the noise allowance), at least 1.
/// Under a healthy canary both versions' users cluster alike, and stable, with most of the
/// users, shows it most reliably even when canary's few users happen to hold no heavy one.
pub fn dispersion(shards: &[SplitCounts]) -> f64 {
    let canary: Vec<(f64, f64)> = shards
        .iter()
        .map(|s| (s.canary_requests, s.canary_events))
        .collect();
    let stable: Vec<(f64, f64)> = shards
        .iter()
        .map(|s| (s.stable_requests, s.stable_events))
        .collect();
    version_dispersion(&canary)
        .max(version_dispersion(&stable))
        .max(1.0)
}

/// Pearson's χ²/df of `(requests, events)` per shard against the pooled rate, less the
/// noise allowance; 1 when it cannot be told (fewer than two shards, no events).
fn version_dispersion(shards: &[(f64, f64)]) -> f64 {
    let with_requests: Vec<&(f64, f64)> = shards.iter().filter(|(n, _)| *n > 0.0).collect();
    let requests: f64 = with_requests.iter().map(|(n, _)| n).sum();
    let events: f64 = with_requests.iter().map(|(_, x)| x).sum();
    if with_requests.len() < 2 || events <= 0.0 || requests <= 0.0 {
        return 1.0;
    }
    let rate = events / requests;
    let chi_square: f64 = with_requests
        .iter()
        .map(|(n, x)| {
            let expected = n * rate;
            (x - expected).powi(2) / expected
        })
        .sum();
    let df = (with_requests.len() - 1) as f64;
    // For Poisson counts, (x − μ)²/μ has variance 2 + 1/μ: with small expected counts the
    // statistic is far noisier than the χ² approximation's 2 per shard.
    let variance: f64 = with_requests
        .iter()
        .map(|(n, _)| 2.0 + 1.0 / (n * rate))
        .sum();
    (chi_square / df - DISPERSION_NOISE_ALLOWANCE * variance.sqrt() / df).max(1.0)
}

/// The split test's log-likelihood ratio with canary's share taken per shard (stratified):
/// valid however the shards' shares differ.
pub fn stratified_log_lr(shards: &[SplitCounts], ratio: f64) -> f64 {
    shards
        .iter()
        .map(|counts| super::sequential::split_log_lr(counts, ratio))
        .sum()
}

/// `ln` of the mixture e-value for `carried` plus one segment's per-alternative log LR.
pub fn log_e_value(carried: &[f64], segment: &[f64]) -> f64 {
    let per_alternative: Vec<f64> = segment
        .iter()
        .enumerate()
        .map(|(index, value)| carried.get(index).copied().unwrap_or(0.0) + value)
        .collect();
    log_mean_exp(&per_alternative)
}

/// Negative or non-finite counts (counter resets, extrapolation) count as zero.
fn cleaned(counts: &SplitCounts) -> SplitCounts {
    let mut clean = SplitCounts::default();
    clean.add_scaled(counts, 1.0);
    clean
}

/// Canary's rate over all shards but the `TRIMMED_SHARDS` with the most events, and the
/// trimmed shards: the guard rails' "broad" reading. `None` when no requests remain.
pub fn trimmed_rate(shards: &[(f64, f64)]) -> Option<(f64, Vec<usize>)> {
    let mut order: Vec<(usize, f64, f64)> = shards
        .iter()
        .enumerate()
        .filter(|(_, (requests, _))| requests.is_finite() && *requests > 0.0)
        .map(|(index, (requests, events))| (index, *requests, events.max(0.0)))
        .collect();
    order.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let trimmed: Vec<usize> = order
        .iter()
        .take(TRIMMED_SHARDS)
        .map(|(index, _, _)| *index)
        .collect();
    let (requests, events) = order
        .iter()
        .skip(TRIMMED_SHARDS)
        .fold((0.0, 0.0), |(n, x), (_, requests, events)| {
            (n + requests, x + events)
        });
    (requests > 0.0).then(|| (events / requests, trimmed))
}

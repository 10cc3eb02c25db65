//! An always-valid sequential test of "canary's event rate is no higher than stable's".
//!
//! An *event* is a 5xx response (the error test) or a request slower than a latency
//! threshold (the latency test). The test looks only at how events split between the two
//! versions, which is what makes it robust to everything the versions share:
//!
//! - While the split of traffic is fixed (one stage), events arrive on each version as a
//!   Poisson process with rate `requests/s × event rate`. If canary's event rate is stable's
//!   times `ratio`, then *whatever the traffic level and whatever the common event rate is
//!   doing* (diurnal swings, an incident that hits both versions), each event is canary's
//!   with probability `q(ratio) = π·ratio / (π·ratio + 1 − π)`, where `π` is canary's share
//!   of the requests. Under the null (`ratio ≤ 1`) the events are coin flips with a coin no
//!   more canary-biased than `π`.
//! - The test statistic is the mixture likelihood ratio (an e-value)
//!   `E = (1/K) Σ_k Π_events [q(θ_k)/π]^canary [(1−q(θ_k))/(1−π)]^stable` over a fixed grid of
//!   alternatives `θ_1 < … < θ_K` (all above 1). Each term is a non-negative martingale under
//!   `ratio = 1` and a supermartingale under `ratio < 1`, so is the mixture, and Ville's
//!   inequality gives `P(sup_t E_t ≥ 1/α) ≤ α`: the chance of *ever* rejecting a canary that is
//!   no worse than stable is at most `α`, however often the test is looked at.
//! - Rule: Fail as soon as `E ≥ 1/α`. Stage changes (new `π`) multiply in a new factor per
//!   alternative, which keeps the martingale property across the whole rollout.

pub use crate::crd::comparative::{LeanSums, SplitCounts};

/// The largest rate ratio the grid reaches; beyond it the guard rails catch the regression
/// anyway, and more points would only dilute the mixture.
const LARGEST_ALTERNATIVE: f64 = 20.0;
/// Spacing of the grid: each alternative is this much above the previous one. Neighbouring
/// likelihood ratios overlap well at this spacing, so little power is lost between points.
const ALTERNATIVE_STEP: f64 = 1.6;

/// The rate ratios (canary / stable) the mixture puts equal weight on: geometric from
/// `1 + minimum_detectable_increase` by a factor 1.6, up to 20. Always at least one point.
pub fn alternatives(minimum_detectable_increase: f64) -> Vec<f64> {
    let first = if minimum_detectable_increase.is_finite() && minimum_detectable_increase > 0.0 {
        1.0 + minimum_detectable_increase
    } else {
        1.5
    };
    let mut grid = vec![first];
    let mut next = first * ALTERNATIVE_STEP;
    while next <= LARGEST_ALTERNATIVE {
        grid.push(next);
        next *= ALTERNATIVE_STEP;
    }
    grid
}

/// Log-likelihood ratio of the observed split for canary/stable rate ratio `ratio` against
/// a ratio of 1, with canary holding share `π` of the requests. Zero when there is nothing
/// to learn (no events, or a version without traffic).
pub fn split_log_lr(counts: &SplitCounts, ratio: f64) -> f64 {
    let Some(share) = counts.canary_share() else {
        return 0.0;
    };
    let canary_events = counts.canary_events.max(0.0);
    let stable_events = counts.stable_events.max(0.0);
    if canary_events + stable_events <= 0.0 || ratio.is_nan() || ratio <= 0.0 {
        return 0.0;
    }
    let canary_odds = share * ratio;
    let q = canary_odds / (canary_odds + 1.0 - share);
    canary_events * (q / share).ln() + stable_events * ((1.0 - q) / (1.0 - share)).ln()
}

/// Fewer events than this (both versions together) give no lean ([`lean`]): a small lean is
/// then within what two or three users' errors make, and no hold could resolve it in time.
pub const MIN_LEAN_EVENTS: f64 = 200.0;

/// How far canary's events lean above their share of the requests, in standard errors: the
/// split's score statistic at a rate ratio of 1, stratified over `strata`
/// (`Σ (c_s − n_s π_s) / √Σ n_s π_s (1 − π_s)`, with `n_s` a stratum's events and `π_s`
/// canary's share of its requests). About standard normal when the versions are alike, and
/// growing with the square root of the events when canary is worse, however little. 0 with
/// fewer than [`MIN_LEAN_EVENTS`] events.
pub fn lean(strata: &[SplitCounts]) -> f64 {
    lean_of(&lean_sums(strata))
}

/// The lean of `sums` (several segments' strata together): 0 with fewer than
/// [`MIN_LEAN_EVENTS`] events.
pub fn lean_of(sums: &LeanSums) -> f64 {
    if sums.events < MIN_LEAN_EVENTS || sums.variance <= 0.0 {
        return 0.0;
    }
    sums.excess / sums.variance.sqrt()
}

/// [`lean`]'s sums over `strata`.
pub fn lean_sums(strata: &[SplitCounts]) -> LeanSums {
    let (mut excess, mut variance, mut events) = (0.0, 0.0, 0.0);
    for counts in strata {
        let Some(share) = counts.canary_share() else {
            continue;
        };
        let canary = counts.canary_events.max(0.0);
        let stratum = canary + counts.stable_events.max(0.0);
        excess += canary - stratum * share;
        variance += stratum * share * (1.0 - share);
        events += stratum;
    }
    LeanSums {
        excess,
        variance,
        events,
    }
}

/// `ln((1/K) Σ exp(x_k))`, computed without overflow.
pub fn log_mean_exp(log_values: &[f64]) -> f64 {
    let max = log_values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return if log_values.is_empty() { 0.0 } else { max };
    }
    let sum: f64 = log_values.iter().map(|value| (value - max).exp()).sum();
    max + (sum / log_values.len() as f64).ln()
}

/// The e-value's logarithm for `carried` (per alternative, from earlier segments) plus
/// the current segment's counts.
pub fn log_e_value(grid: &[f64], carried: &[f64], segment: &SplitCounts) -> f64 {
    let per_alternative: Vec<f64> = grid
        .iter()
        .enumerate()
        .map(|(index, ratio)| {
            carried.get(index).copied().unwrap_or(0.0) + split_log_lr(segment, *ratio)
        })
        .collect();
    log_mean_exp(&per_alternative)
}

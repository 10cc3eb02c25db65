//! Synthetic per-version traffic: Poisson arrivals per user shard (from the users' summed
//! rates, see [`super::users`]), log-normal latencies binned into the proxy's histogram
//! buckets and counted as the filter's `slow` outcome per shard, generated in short slices.

use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Poisson};

use super::users::{CellRates, SHARDS};
use crate::observation::{ShardCounts, VersionWindow};

/// The filter's default `slowThresholdMs` (the seed's p99 limit).
pub const SLOW_THRESHOLD_MS: f64 = 500.0;

/// The proxy's `stickycanary_request_duration_ms` buckets (ms), `+Inf` last.
pub const BUCKETS_MS: [f64; 16] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    200.0,
    250.0,
    300.0,
    400.0,
    500.0,
    750.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    f64::INFINITY,
];

/// Spread of the log-normal latency (σ of ln ms). With σ = 0.8 the p99 is 6.4× the median.
pub const LATENCY_SIGMA: f64 = 0.8;
/// z-score of the 99th percentile.
const Z99: f64 = 2.326_347_874;

/// Median latency (ms) that gives the wanted p99.
pub fn median_for_p99(p99_ms: f64) -> f64 {
    p99_ms / (LATENCY_SIGMA * Z99).exp()
}

/// One version's traffic in one slice: requests, 5xx, per-bucket (non-cumulative) counts
/// and per-shard outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slice {
    pub requests: f64,
    pub errors: f64,
    pub buckets: [f64; 16],
    pub shards: [ShardCounts; SHARDS],
}

/// What one version is like during one slice.
#[derive(Debug, Clone, Copy)]
pub struct VersionLoad<'a> {
    /// Per shard: the version's users' summed rates.
    pub cells: &'a [CellRates; SHARDS],
    /// Seconds of traffic at those rates (slice length × the diurnal swing).
    pub seconds: f64,
    /// Added to every request's 5xx probability (a burst both versions share).
    pub extra_error_rate: f64,
    /// Median latency in ms.
    pub median_ms: f64,
    /// The filter's `slowThresholdMs` in effect: the shards' `slow` outcome.
    pub slow_threshold_ms: f64,
}

/// Draw one slice: per shard, Poisson 5xx and non-5xx counts and Binomial slow requests
/// among the non-5xx; the version's histogram as a multinomial over all its requests (a
/// chain of conditional binomials), from the same latency distribution.
pub fn draw(load: &VersionLoad<'_>, rng: &mut StdRng) -> Slice {
    let mut slice = Slice::default();
    let slow_probability = 1.0 - lognormal_cdf(load.slow_threshold_ms, load.median_ms);
    let mut pinned_total = [0.0; 16];
    for (shard, cell) in slice.shards.iter_mut().zip(load.cells) {
        let error_rate = (cell.errors + load.extra_error_rate * cell.requests).min(cell.requests);
        let errors = poisson(error_rate * load.seconds, rng);
        let ok_rate = (cell.requests - error_rate).max(0.0);
        let pinned_ok_rate = if cell.requests > 0.0 {
            cell.pinned_requests * ok_rate / cell.requests
        } else {
            0.0
        };
        let ok = poisson((ok_rate - pinned_ok_rate).max(0.0) * load.seconds, rng);
        let pinned_ok = poisson(pinned_ok_rate * load.seconds, rng);
        let band = cell.pinned_latency_ms;
        shard.errors = errors as f64;
        shard.slow = (binomial(ok, slow_probability, rng)
            + binomial(pinned_ok, band_above(band, load.slow_threshold_ms), rng))
            as f64;
        shard.requests = (errors + ok + pinned_ok) as f64;
        slice.requests += shard.requests;
        slice.errors += shard.errors;
        if pinned_ok > 0 {
            for (sum, share) in pinned_total.iter_mut().zip(band_buckets(band)) {
                *sum += pinned_ok as f64 * share;
            }
        }
    }
    let pinned: f64 = pinned_total.iter().sum();
    let requests = (slice.requests - pinned).max(0.0) as u64;
    let probabilities = bucket_probabilities(load.median_ms);
    let mut remaining = requests;
    let mut mass_left = 1.0;
    for (index, probability) in probabilities.iter().enumerate() {
        if remaining == 0 {
            break;
        }
        let count = if index + 1 == probabilities.len() || mass_left <= 0.0 {
            remaining
        } else {
            binomial(remaining, (probability / mass_left).clamp(0.0, 1.0), rng)
        };
        slice.buckets[index] = count as f64;
        remaining -= count;
        mass_left -= probability;
    }
    for (bucket, count) in slice.buckets.iter_mut().zip(pinned_total) {
        *bucket += count;
    }
    slice
}

/// Share of a uniform latency band above `ms`.
fn band_above((low, high): (f64, f64), ms: f64) -> f64 {
    if high <= low {
        return if low > ms { 1.0 } else { 0.0 };
    }
    ((high - ms) / (high - low)).clamp(0.0, 1.0)
}

/// Share of a uniform latency band in each histogram bucket (not cumulative).
fn band_buckets(band: (f64, f64)) -> [f64; 16] {
    let mut shares = [0.0; 16];
    let mut below = 0.0;
    for (index, le) in BUCKETS_MS.iter().enumerate() {
        let at_or_below = 1.0 - band_above(band, *le);
        shares[index] = (at_or_below - below).max(0.0);
        below = at_or_below.max(below);
    }
    shares
}

fn lognormal_cdf(ms: f64, median_ms: f64) -> f64 {
    if median_ms <= 0.0 {
        return 1.0;
    }
    normal_cdf((ms / median_ms).ln() / LATENCY_SIGMA)
}

/// Sum of slices as the engine's window: cumulative buckets, the interpolated p99 and,
/// when `with_shards`, the per-shard outcomes (without them the engine runs as with a
/// filter that exports no shard series: request-level statistics).
pub fn window(slices: &[Slice], with_shards: bool) -> VersionWindow {
    let mut requests = 0.0;
    let mut errors = 0.0;
    let mut per_bucket = [0.0; 16];
    let mut shards = [ShardCounts::default(); SHARDS];
    for slice in slices {
        requests += slice.requests;
        errors += slice.errors;
        for (sum, count) in per_bucket.iter_mut().zip(slice.buckets) {
            *sum += count;
        }
        for (sum, shard) in shards.iter_mut().zip(&slice.shards) {
            sum.requests += shard.requests;
            sum.errors += shard.errors;
            sum.slow += shard.slow;
        }
    }
    let mut cumulative = 0.0;
    let latency_buckets: Vec<(f64, f64)> = BUCKETS_MS
        .iter()
        .zip(per_bucket)
        .map(|(le, count)| {
            cumulative += count;
            (*le, cumulative)
        })
        .collect();
    let p99_ms = if requests > 0.0 {
        crate::analysis::histogram::quantile(&latency_buckets, 0.99)
    } else {
        None
    };
    VersionWindow {
        requests,
        errors,
        p99_ms,
        latency_buckets,
        shards: if with_shards {
            shards.to_vec()
        } else {
            Vec::new()
        },
    }
}

/// Probability of each bucket (not cumulative) for a log-normal latency.
fn bucket_probabilities(median_ms: f64) -> [f64; 16] {
    let mut probabilities = [0.0; 16];
    let mut below = 0.0;
    for (index, le) in BUCKETS_MS.iter().enumerate() {
        let cdf = if le.is_finite() {
            normal_cdf((le / median_ms).ln() / LATENCY_SIGMA)
        } else {
            1.0
        };
        probabilities[index] = (cdf - below).max(0.0);
        below = cdf.max(below);
    }
    probabilities
}

/// Standard normal CDF via erfc (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

fn poisson(mean: f64, rng: &mut StdRng) -> u64 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    match Poisson::new(mean) {
        Ok(distribution) => {
            let draw: f64 = distribution.sample(rng);
            draw as u64
        }
        Err(_) => 0,
    }
}

fn binomial(trials: u64, probability: f64, rng: &mut StdRng) -> u64 {
    if trials == 0 || probability.is_nan() || probability <= 0.0 {
        return 0;
    }
    match Binomial::new(trials, probability.min(1.0)) {
        Ok(distribution) => distribution.sample(rng),
        Err(_) => 0,
    }
}

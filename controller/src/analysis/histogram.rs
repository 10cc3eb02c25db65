//! Reading per-version latency histograms (`(le ms, cumulative count)`, ascending, the
//! last bucket `+Inf`) for the latency comparison.

/// Share of stable's requests allowed above the automatically chosen threshold: the
/// threshold is stable's p99 bucket boundary.
pub const AUTO_THRESHOLD_TAIL: f64 = 0.01;

/// Requests slower than the bucket boundary `le` (total minus the cumulative count at
/// `le`). `None` when the histogram is empty or has no bucket at exactly `le`.
pub fn slower_than(buckets: &[(f64, f64)], le: f64) -> Option<f64> {
    let total = total(buckets)?;
    let at = buckets
        .iter()
        .find(|(bound, _)| *bound == le)
        .map(|(_, count)| *count)?;
    Some((total - at).max(0.0))
}

/// The total count: the `+Inf` bucket (or the largest cumulative count if `+Inf` is
/// missing).
pub fn total(buckets: &[(f64, f64)]) -> Option<f64> {
    buckets
        .last()
        .map(|(_, count)| *count)
        .filter(|count| count.is_finite())
}

/// The bucket boundary to use for a configured threshold: the smallest finite `le` at or
/// above it, else the largest finite one. `None` without finite buckets.
pub fn boundary_at_or_above(buckets: &[(f64, f64)], threshold_ms: f64) -> Option<f64> {
    let finite = || {
        buckets
            .iter()
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
    };
    finite()
        .find(|le| *le >= threshold_ms)
        .or_else(|| finite().next_back())
}

/// The smallest finite bucket boundary with at most `tail` of the requests above it
/// (stable's p99 boundary for `tail = 0.01`); the largest finite boundary when even that
/// has more above it. `None` without requests or finite buckets.
pub fn tail_boundary(buckets: &[(f64, f64)], tail: f64) -> Option<f64> {
    let total = total(buckets).filter(|total| *total > 0.0)?;
    let finite = || buckets.iter().filter(|(le, _)| le.is_finite());
    finite()
        .find(|(_, count)| (total - count) <= tail * total)
        .or_else(|| finite().next_back())
        .map(|(le, _)| *le)
}

/// Prometheus' `histogram_quantile` (linear interpolation inside the bucket; the lowest
/// bucket starts at 0; a quantile in `+Inf` reports the largest finite boundary).
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = total(buckets).filter(|total| *total > 0.0)?;
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (le, count) in buckets {
        if *count >= rank {
            if !le.is_finite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(*le);
            }
            return Some(lower_bound + (le - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = *le;
        lower_count = *count;
    }
    Some(lower_bound)
}

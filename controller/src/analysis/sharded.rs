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
//! The rule, per segment (one weight), for each alternative rate ratio `θ` (contract 5 has
//! it with a worked example):
//!
//! 1. Per shard `s` with traffic on both versions: canary events `c_s`, stable events `t_s`
//!    and canary's share of the shard's requests `π_s`.
//! 2. **Shards stable showed go first** (`peel`): every shard where stable has shown a heavy
//!    user (before the run, or in an earlier segment: `History::stable_outlying`) and where
//!    canary's rate is above the other remaining shards' is set aside, without a test: a few
//!    light error-prone users on canary hide each other from the test below, and stable has
//!    already shown who they are. Shards keep their users across runs (the shard hash has no
//!    salt), so stable's hour before the run counts (issue 22, round 11).
//! 3. **Set aside what stands out** (`peel`): one at a time, the shard whose canary events
//!    are most in excess of canary's rate in the other remaining shards, while that excess is
//!    improbable (exact Poisson tail below [`OUTLIER_FAMILY_ALPHA`] / shards, Bonferroni), up
//!    to [`MAX_OUTLYING_SHARDS`] and never below [`MIN_KEPT_SHARDS`] kept. A regression on
//!    canary's code path raises every shard alike, so its top shards stay; a heavy user lifts
//!    its one shard far above the rest.
//! 4. **Only as many as the run explains** (`peel_canary`): a shard stable showed as
//!    outlying in an earlier segment may be set aside (users move only stable → canary and
//!    keep their shard, so a user heavy whichever version serves it showed there first);
//!    others only up to a negative-binomial bound on how many heavy users the first stage
//!    could have put on canary, given how many stable showed (`unexplained_allowed`, at
//!    least [`ALWAYS_OUTLYING`]). A bug that breaks a few percent of the users makes canary
//!    outliers that stable never had: those stay in the test.
//! 5. **Dispersion** `φ` ([`segment_dispersion`]): stable's Pearson χ²/df across shards,
//!    less [`DISPERSION_NOISE_ALLOWANCE`] standard errors, at least 1; in the segment, or
//!    over the run so far scaled down to the segment's events, whichever is larger. Read
//!    from stable alone so that canary's own regression cannot discount itself.
//! 6. The segment's log-likelihood ratio is the stratified split test's (per shard `π_s`)
//!    over the kept shards, divided by `φ`: the quasi-likelihood for overdispersed counts,
//!    which turns "errors" into about "independent clusters of errors".
//!
//! The e-value mixes the alternatives and carries finished segments exactly as the
//! request-level test does, and the test fails when it reaches `1/α'` **and** the same
//! e-value without each segment's top kept shard (the one most in excess on canary) is at
//! least `(1/α')^0.4` (`comparative::WITHOUT_TOP_SHARE`): with few events a heavy user does
//! not stand out, and one user's shard must not carry a verdict alone. With independent
//! errors (`φ = 1`) it is at most the stratified split test, so its false-failure rate
//! stays below α' however often it is read (setting shards aside only lowers it): a
//! theorem. Under clustering the `1/φ` scaling, the outlier rule and the history are a
//! calibration, checked by simulation (`tests/analysis.rs`, `tests/simulate.rs`,
//! BENCHMARKS.md). The same statistic over all shards is kept beside it: when that one
//! would fail, the kept one does not, and the kept one is at least half-way there (log
//! scale), the evidence rests on a few shards and the verdict is Inconclusive, not Fail.
//!
//! **Latency**: once the filter counts its shards' `slow` outcome at the latency test's
//! threshold (the comparative check writes it as the run's `slowThresholdMs`), the latency
//! test is this same rule on `slow`. Before that, [`latency_evidence`] judges the
//! histograms' events with the outlying shards' excess taken out.

use super::sequential::{lean_sums, log_mean_exp, LeanSums, SplitCounts};

/// At most this many shards are set aside as outlying (a few heavy, slow or error-prone
/// users): the test then judges the rest. Six of sixteen: any five users, however heavy,
/// cannot carry a verdict, while a regression that reaches a share of the users still shows
/// in most shards.
pub const MAX_OUTLYING_SHARDS: usize = 6;
/// Family-wise level of the "does the top shard stand out" test, split over the shards with
/// traffic (Bonferroni): among the shards of a broad regression, a top shard is taken for
/// one user's by chance in at most about 5% of looks.
pub const OUTLIER_FAMILY_ALPHA: f64 = 0.01;
/// Fewer shards with traffic on both versions than this, after setting outliers aside, give
/// no verdict.
pub const MIN_KEPT_SHARDS: usize = 6;
/// χ² standard errors allowed before the spread between stable's shards counts as
/// clustering.
pub const DISPERSION_NOISE_ALLOWANCE: f64 = 1.0;

/// What one segment's shards say.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardEvidence {
    /// Per alternative: the log-likelihood ratio of the kept shards, divided by the
    /// dispersion.
    pub log_lr: Vec<f64>,
    /// Per alternative: the same over all shards (for the "rests on a few shards" verdict).
    pub untrimmed_log_lr: Vec<f64>,
    /// Per alternative: the kept shards' log LR without the one most in excess on canary
    /// (for the "rests on one shard" verdict: a failure needs the rest to lean the same way).
    pub without_top_log_lr: Vec<f64>,
    /// Shards with traffic on both versions, before setting any aside.
    pub shards_with_traffic: usize,
    /// The shards set aside as outlying, in the order they were found.
    pub trimmed: Vec<usize>,
    /// `φ` from stable's shards (1 = no sign of clustering).
    pub dispersion: f64,
    /// The sums of how far canary's events in the kept shards lean above their share, the
    /// variance widened by `φ` ([`super::sequential::lean_sums`]); zero with too few shards.
    /// A last stage does not promote while the run's lean is high (`analysis::comparative`).
    pub lean: LeanSums,
}

/// One segment's shards: all with traffic on both versions, the ones set aside as outlying
/// and the kept ones.
struct Peeled {
    all: Vec<SplitCounts>,
    outlying: Vec<(usize, SplitCounts)>,
    kept: Vec<SplitCounts>,
}

impl Peeled {
    fn enough(&self) -> bool {
        self.kept.len() >= MIN_KEPT_SHARDS
    }

    /// [`lean_sums`] of `counts` with the variance widened by `φ`, or zero when too few
    /// shards are kept to judge.
    fn lean(&self, counts: &[SplitCounts], dispersion: f64) -> LeanSums {
        if self.enough() {
            let sums = lean_sums(counts);
            LeanSums {
                variance: sums.variance * dispersion,
                ..sums
            }
        } else {
            LeanSums::default()
        }
    }

    fn trimmed(&self) -> Vec<usize> {
        self.outlying.iter().map(|(index, _)| *index).collect()
    }

    /// The kept shard whose canary events are most in excess of the other kept shards' rate.
    fn top_kept(&self) -> Option<SplitCounts> {
        let rows: Vec<(usize, SplitCounts)> = self.kept.iter().copied().enumerate().collect();
        most_in_excess(&rows, &[]).map(|position| self.kept[position])
    }

    /// The kept shards without [`Self::top_kept`].
    fn without_top(&self) -> Vec<SplitCounts> {
        let rows: Vec<(usize, SplitCounts)> = self.kept.iter().copied().enumerate().collect();
        match most_in_excess(&rows, &[]) {
            Some(top) => rows
                .into_iter()
                .filter(|(position, _)| *position != top)
                .map(|(_, counts)| counts)
                .collect(),
            None => self.kept.clone(),
        }
    }
}

/// Sets aside, one at a time, the shard whose canary events are most in excess of canary's
/// rate in the other remaining shards, while that excess is improbable ([`stands_out`]),
/// up to [`MAX_OUTLYING_SHARDS`] and never below [`MIN_KEPT_SHARDS`] kept. A shard that
/// stands out but is not `allowed` stays in (and the next one is looked at).
///
/// A regression on canary's code path raises canary's rate in every shard alike, so its
/// top shards are the upper tail of one rate and are kept; a few heavy users each lift one
/// shard far above the rest and are set aside, however many requests they send.
///
/// Before that, the shards in `seen` (where stable has shown a heavy user: before the run or
/// earlier in it) are set aside, most in excess first, while canary's rate there is above
/// its rate in the other remaining shards, without asking them to stand out: a few light
/// error-prone users on canary hide each other from [`stands_out`] (each shard is judged
/// against the others, which they lift), and stable has already shown who they are. A
/// bug's victims fail only on canary, so stable never showed their shards (issue 22, round
/// 11).
fn peel(shards: &[SplitCounts], seen: &[usize], allowed: &dyn Fn(usize, usize) -> bool) -> Peeled {
    let mut remaining: Vec<(usize, SplitCounts)> = shards
        .iter()
        .enumerate()
        .map(|(index, counts)| (index, cleaned(counts)))
        .filter(|(_, counts)| counts.canary_share().is_some())
        .collect();
    let all: Vec<SplitCounts> = remaining.iter().map(|(_, counts)| *counts).collect();
    let level = OUTLIER_FAMILY_ALPHA / remaining.len().max(1) as f64;
    let mut outlying = Vec::new();
    let room = |outlying: &Vec<(usize, SplitCounts)>, remaining: &Vec<(usize, SplitCounts)>| {
        outlying.len() < MAX_OUTLYING_SHARDS && remaining.len() > MIN_KEPT_SHARDS
    };
    while room(&outlying, &remaining) {
        let excesses = excesses(&remaining);
        let seen_top = (0..remaining.len())
            .filter(|position| seen.contains(&remaining[*position].0))
            .max_by(|a, b| by_excess(&remaining, &excesses, *a, *b))
            .filter(|position| excesses[*position] > 0.0);
        let Some(position) = seen_top else {
            break;
        };
        outlying.push(remaining.remove(position));
    }
    let mut refused: Vec<usize> = Vec::new();
    while room(&outlying, &remaining) {
        let Some(position) = most_in_excess(&remaining, &refused) else {
            break;
        };
        let (index, top) = remaining[position];
        let others: Vec<SplitCounts> = remaining
            .iter()
            .filter(|(other, _)| *other != index)
            .map(|(_, counts)| *counts)
            .collect();
        if !stands_out(&top, &others, level) {
            break;
        }
        if allowed(index, outlying.len()) {
            outlying.push(remaining.remove(position));
        } else {
            refused.push(index);
        }
    }
    Peeled {
        all,
        outlying,
        kept: remaining.into_iter().map(|(_, counts)| counts).collect(),
    }
}

/// Every outlier may be set aside.
fn any(_: usize, _: usize) -> bool {
    true
}

/// The position of the row whose canary events exceed most what canary's rate in the other
/// rows predicts (ties: the lower shard index), among the rows whose shard is not in `skip`.
fn most_in_excess(rows: &[(usize, SplitCounts)], skip: &[usize]) -> Option<usize> {
    let excesses = excesses(rows);
    (0..rows.len())
        .filter(|position| !skip.contains(&rows[*position].0))
        .max_by(|a, b| by_excess(rows, &excesses, *a, *b))
}

/// Orders two rows by their excess, the lower shard index first among equals.
fn by_excess(
    rows: &[(usize, SplitCounts)],
    excesses: &[f64],
    a: usize,
    b: usize,
) -> std::cmp::Ordering {
    excesses[a]
        .total_cmp(&excesses[b])
        .then(rows[b].0.cmp(&rows[a].0))
}

/// Per row, its canary events beyond what canary's rate in the other rows predicts.
fn excesses(rows: &[(usize, SplitCounts)]) -> Vec<f64> {
    let (requests, events) = rows.iter().fold((0.0, 0.0), |(n, x), (_, c)| {
        (n + c.canary_requests, x + c.canary_events)
    });
    rows.iter()
        .map(|(_, counts)| {
            let others_requests = requests - counts.canary_requests;
            let others_rate = if others_requests > 0.0 {
                (events - counts.canary_events) / others_requests
            } else {
                0.0
            };
            counts.canary_events - counts.canary_requests * others_rate
        })
        .collect()
}

/// Canary shards that one user unseen on stable may explain, whatever stable shows (a bot
/// that arrived with the rollout, or started failing during it, on canary).
pub const ALWAYS_OUTLYING: usize = 1;

/// Chance, per look, that more of the population's outlying users have been on canary since
/// the first stage than the bound of `unexplained_allowed` sets aside. At 0.001 a first
/// stage at 10% let two unexplained canary outliers be set aside, and a bug that breaks 3%
/// of the users (a few heavy ones on canary from the start) was promoted in 0.8% of runs;
/// at 0.01 it allows one, and none was promoted (BENCHMARKS.md, "Issue 22, round 3").
pub const OUTLIER_SPLIT_LEVEL: f64 = 0.01;

/// Canary's events beyond its share of the events, summed over the shards where stable
/// shows no outlying user (now, or earlier in the run: `known`) less the shards most in
/// excess, up to `top` of them while [`MIN_KEPT_SHARDS`] stay summed; the sum and how many
/// were left out. `None` with fewer than [`MIN_KEPT_SHARDS`] shards to sum.
///
/// At most 0 when canary's excess is which users a few shards hold: under sticky assignment
/// a canary that happens to hold more of the error-prone users than its share has them in a
/// few shards, the rest in proportion. A regression on canary's code path raises every shard
/// alike, so the rest keep their excess. Stable's outlying shards are left out because there
/// stable's own heavy users make canary's excess negative, which would hide a broad one.
pub fn excess_beyond_top(
    shards: &[SplitCounts],
    known: &[usize],
    top: usize,
) -> Option<(f64, usize)> {
    let stable_outlying = stable_outliers(shards);
    let mut excess: Vec<f64> = shards
        .iter()
        .enumerate()
        .filter(|(index, _)| !stable_outlying.contains(index) && !known.contains(index))
        .filter_map(|(_, counts)| {
            let counts = cleaned(counts);
            let share = counts.canary_share()?;
            Some(counts.canary_events - (counts.canary_events + counts.stable_events) * share)
        })
        .collect();
    if excess.len() < MIN_KEPT_SHARDS {
        return None;
    }
    let left_out = top.min(excess.len() - MIN_KEPT_SHARDS);
    excess.sort_by(|a, b| b.total_cmp(a));
    Some((excess.iter().skip(left_out).sum(), left_out))
}

/// Stable's outlying shards in one segment (heavy users on stable), for the run's history.
pub fn stable_outliers(shards: &[SplitCounts]) -> Vec<usize> {
    peel(&swapped(shards), &[], &any).trimmed()
}

fn swapped(shards: &[SplitCounts]) -> Vec<SplitCounts> {
    shards
        .iter()
        .map(|s| SplitCounts {
            canary_requests: s.stable_requests,
            canary_events: s.stable_events,
            stable_requests: s.canary_requests,
            stable_events: s.canary_events,
        })
        .collect()
}

/// How many canary shards that stable never showed as outlying may be set aside: as many as
/// the run's heavy users could have put on canary from its first stage by chance, and at
/// least [`ALWAYS_OUTLYING`].
///
/// Each outlying shard is about one heavy user. A heavy user that stable never showed in
/// this run has been on canary since the first stage (users only move from stable to
/// canary), and the hash put it there with probability `p = first_share` (the first stage's
/// share of the users), whatever the user does; the others were on stable then. With `r`
/// heavy users seen on stable (shards outlying on stable now or in an earlier segment), the
/// number `X` on canary since the first stage, given `r`, is negative binomial (flat prior
/// on the population: `P(X = x) = C(r + x, x) p^x (1 − p)^(r + 1)`), and the bound is its
/// `1 − OUTLIER_SPLIT_LEVEL` quantile. Canary's own outliers do not enter the estimate: a
/// bug's outliers would otherwise raise the allowance that sets them aside.
fn unexplained_allowed(shards: &[SplitCounts], known: &[usize], first_share: f64) -> usize {
    let mut seen_on_stable: Vec<usize> = known.to_vec();
    for shard in stable_outliers(shards) {
        if !seen_on_stable.contains(&shard) {
            seen_on_stable.push(shard);
        }
    }
    negative_binomial_quantile(seen_on_stable.len(), first_share, OUTLIER_SPLIT_LEVEL)
        .max(ALWAYS_OUTLYING)
}

/// What the run showed before this segment.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Shards that stable showed as outlying before the run or in an earlier segment.
    pub stable_outlying: &'a [usize],
    /// Canary's share of the users at the run's first stage (0 to 1).
    pub first_share: f64,
    /// Per shard, counted since the run started (this segment included): stable's side
    /// measures clustering with more events than one segment has ([`segment_dispersion`]).
    pub run: &'a [SplitCounts],
}

/// The canary shards that may be set aside in this segment: any that stable showed as
/// outlying in an earlier segment of the run (`known`), and up to [`unexplained_allowed`]
/// others.
///
/// Why the history: users only ever move from stable to canary during a run, and each keeps
/// its shard. A user that is heavy on canary at 50% was on stable at 10% and 25%: if it is
/// heavy whichever version serves it, stable's shard showed it then. A canary bug that breaks
/// a few percent of the users makes canary outliers where stable never had one: those stay
/// in the test (setting six aside regardless promoted 20% of the "3% of users broken"
/// rollouts in simulation).
fn peel_canary(shards: &[SplitCounts], history: &History<'_>) -> Peeled {
    let known = history.stable_outlying;
    let unexplained = unexplained_allowed(shards, known, history.first_share);
    let taken = std::cell::Cell::new(0);
    let allowed = |index: usize, _: usize| {
        if known.contains(&index) {
            return true;
        }
        if taken.get() < unexplained {
            taken.set(taken.get() + 1);
            return true;
        }
        false
    };
    peel(shards, known, &allowed)
}

/// The smallest `a` with `P(X > a) ≤ level` for `X ~ NegativeBinomial(seen + 1, p)` (the
/// number of successes before the `seen + 1`-th failure), at most [`MAX_OUTLYING_SHARDS`].
/// The comparison allows for rounding: with `seen = 0` the tail is exactly `p^(a + 1)`.
fn negative_binomial_quantile(seen: usize, p: f64, level: f64) -> usize {
    let p = p.clamp(0.0, 0.999);
    let failures = (seen + 1) as f64;
    // pmf(0) = (1 − p)^(seen + 1); pmf(a + 1) = pmf(a) (a + failures) / (a + 1) p.
    let mut pmf = (1.0 - p).powf(failures);
    let mut cumulative = 0.0;
    for a in 0..MAX_OUTLYING_SHARDS {
        cumulative += pmf;
        if 1.0 - cumulative <= level * (1.0 + 1e-9) {
            return a;
        }
        pmf *= (a as f64 + failures) / (a as f64 + 1.0) * p;
    }
    MAX_OUTLYING_SHARDS
}

/// Evaluate one segment's per-shard counts (index = shard) for every alternative in `grid`:
/// the split test stratified by shard over the kept shards, divided by stable's dispersion.
pub fn evidence(shards: &[SplitCounts], history: &History<'_>, grid: &[f64]) -> ShardEvidence {
    let peeled = peel_canary(shards, history);
    let dispersion = segment_dispersion(&peeled.all, history.run);
    let judged = |kept: &[SplitCounts]| -> Vec<f64> {
        grid.iter()
            .map(|ratio| {
                if peeled.enough() {
                    stratified_log_lr(kept, *ratio) / dispersion
                } else {
                    0.0
                }
            })
            .collect()
    };
    ShardEvidence {
        log_lr: judged(&peeled.kept),
        without_top_log_lr: judged(&peeled.without_top()),
        untrimmed_log_lr: grid
            .iter()
            .map(|ratio| stratified_log_lr(&peeled.all, *ratio) / dispersion)
            .collect(),
        shards_with_traffic: peeled.all.len(),
        trimmed: peeled.trimmed(),
        dispersion,
        lean: peeled.lean(&peeled.kept, dispersion),
    }
}

/// The latency test's evidence while the shards' `slow` outcome is not counted at the test's
/// threshold (before the filter has it, or with a filter that cannot take it): the
/// request-level split of `histogram` (requests slower than the test's threshold), with the
/// shards' slow counts (above the filter's `slowThresholdMs`) used only for what they can
/// show: the canary excess of the outlying shards is taken out of canary's slow count, and
/// stable's dispersion divides the log-likelihood ratio. A user slow between the two
/// thresholds is invisible to the shards here, which is why the comparative check writes
/// its threshold into the filter for each run (`analysis::comparative`).
pub fn latency_evidence(
    histogram: &SplitCounts,
    shards: &[SplitCounts],
    history: &History<'_>,
    grid: &[f64],
) -> ShardEvidence {
    let peeled = peel_canary(shards, history);
    let dispersion = segment_dispersion(&peeled.all, history.run);
    let histogram = cleaned(histogram);
    let others_ratio = common_ratio(&peeled.kept).unwrap_or(1.0);
    let removed: f64 = peeled
        .outlying
        .iter()
        .map(|(_, counts)| excess_over(counts, others_ratio))
        .sum();
    let top_excess = peeled
        .top_kept()
        .map(|counts| excess_over(&counts, others_ratio))
        .unwrap_or(0.0);
    let adjusted = |removed: f64| {
        let mut adjusted = histogram;
        adjusted.canary_events = (adjusted.canary_events - removed).max(0.0);
        adjusted
    };
    let judged = |removed: f64| -> Vec<f64> {
        let adjusted = adjusted(removed);
        grid.iter()
            .map(|ratio| {
                if peeled.enough() {
                    super::sequential::split_log_lr(&adjusted, *ratio) / dispersion
                } else {
                    0.0
                }
            })
            .collect()
    };
    ShardEvidence {
        log_lr: judged(removed),
        without_top_log_lr: judged(removed + top_excess),
        untrimmed_log_lr: grid
            .iter()
            .map(|ratio| super::sequential::split_log_lr(&histogram, *ratio) / dispersion)
            .collect(),
        shards_with_traffic: peeled.all.len(),
        trimmed: peeled.trimmed(),
        dispersion,
        lean: peeled.lean(&[adjusted(removed)], dispersion),
    }
}

/// Canary events in `counts` beyond what stable's events there predict at the rate ratio
/// `ratio` (`c − t π ratio / (1 − π)`, at least 0). Predicted from stable's count, not from
/// the shard's total: an outlier's own events must not raise what is expected of it.
fn excess_over(counts: &SplitCounts, ratio: f64) -> f64 {
    let Some(share) = counts.canary_share() else {
        return 0.0;
    };
    let expected = counts.stable_events * share * ratio / (1.0 - share);
    (counts.canary_events - expected).max(0.0)
}

/// The common canary/stable rate ratio of `shards` (Mantel-Haenszel for rates:
/// `Σ c_s (1 − π_s) / Σ t_s π_s`). `None` without stable events.
pub fn common_ratio(shards: &[SplitCounts]) -> Option<f64> {
    let (numerator, denominator) =
        shards.iter().fold((0.0, 0.0), |(num, den), counts| {
            match counts.canary_share() {
                Some(share) => (
                    num + counts.canary_events * (1.0 - share),
                    den + counts.stable_events * share,
                ),
                None => (num, den),
            }
        });
    (denominator > 0.0).then(|| numerator / denominator)
}

/// Whether a top shard's canary events are more than canary's rate in the other shards
/// explains: `P(X ≥ c_s)` for `X ~ Poisson(canary requests in s × canary's event rate in the
/// others)` is below `level`. A broad regression raises canary's rate in every shard alike,
/// so its top shards are the upper tail of one rate; one heavy user's shard is far above it.
///
/// Canary's own rate, not the split against stable: a bot that is most of its shard's
/// canary traffic also makes most of that shard's canary share `π_s`, so its errors look
/// "in proportion" to the split, and with few events a split test cannot tell (at 5 req/s
/// with a bot, judging the split let 2.25% of healthy canaries be rolled back).
fn stands_out(counts: &SplitCounts, others: &[SplitCounts], level: f64) -> bool {
    let (requests, events) = others.iter().fold((0.0, 0.0), |(n, x), other| {
        (n + other.canary_requests, x + other.canary_events)
    });
    if requests <= 0.0 || counts.canary_requests <= 0.0 {
        return false;
    }
    let expected = counts.canary_requests * events / requests;
    poisson_upper_tail(expected, counts.canary_events.round()) < level
}

/// `P(X ≥ k)` for `X ~ Poisson(mean)`, `k` a whole number: exact (summed in log space).
pub fn poisson_upper_tail(mean: f64, k: f64) -> f64 {
    if k <= 0.0 || mean.is_nan() {
        return 1.0;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    let ln_pmf = |j: f64, ln_factorial: f64| j * mean.ln() - mean - ln_factorial;
    let ln_factorial_of = |j: f64| (1..=j as u64).map(|i| (i as f64).ln()).sum::<f64>();
    if k <= mean {
        // The lower part has at most `mean` terms and the tail is large: 1 − P(X < k).
        let mut lower = 0.0;
        let mut ln_factorial = 0.0;
        let mut j = 0.0;
        while j < k {
            lower += ln_pmf(j, ln_factorial).exp();
            j += 1.0;
            ln_factorial += j.ln();
        }
        return (1.0 - lower).clamp(0.0, 1.0);
    }
    // Above the mean the terms shrink: sum from k until they no longer matter.
    let mut ln_factorial = ln_factorial_of(k);
    let mut total = 0.0;
    let mut j = k;
    loop {
        let term = ln_pmf(j, ln_factorial).exp();
        total += term;
        if term <= total * 1e-15 || term == 0.0 {
            break;
        }
        j += 1.0;
        ln_factorial += j.ln();
    }
    total.min(1.0)
}

/// Stable's χ²/df across the shards (less the noise allowance), at least 1: how much the
/// events cluster by user, read where the canary's own regression cannot be.
///
/// Why stable alone: a canary regression that reaches a share of users (a bug for 3% of
/// accounts) makes canary's shards disagree as fast as its evidence grows, so a dispersion
/// that took canary's reading discounted the very regression it measured (issue 22: 31% of
/// such rollouts promoted). Clustering is a property of the users, and both versions draw
/// theirs from one population by a hash that ignores behaviour, so stable (which holds most
/// of them until the last stage) shows it for both. One or two heavy users that happen to be
/// on canary are not in stable's reading: those the outlier rule takes out.
pub fn dispersion(shards: &[SplitCounts]) -> f64 {
    let stable: Vec<(f64, f64)> = shards
        .iter()
        .map(|s| (s.stable_requests, s.stable_events))
        .collect();
    version_dispersion(&stable).max(1.0)
}

/// The dispersion that divides one segment's evidence: stable's, read in the segment
/// ([`dispersion`]) or over the run so far, scaled to the segment, whichever is larger.
///
/// Why the run: a few error-prone users that send little (five users at 0.02 req/s with half
/// their requests failing, at 5 req/s in all) lift stable's shards by a few events per
/// segment, which the noise allowance hides, so the segment read `φ = 1` and two or three
/// of them on canary failed 1.2% of healthy canaries (issue 22, round 4). Over the run stable
/// has three to four times the events and the clustering shows.
///
/// Why scaled: for counts that cluster by user the excess of the variance over the mean
/// grows with the mean (negative binomial: `φ = 1 + μ/k`), so the run's larger counts
/// overstate a segment's `φ − 1` by the ratio of their stable events. Both readings are
/// stable's, so a canary regression still cannot discount itself.
pub fn segment_dispersion(segment: &[SplitCounts], run: &[SplitCounts]) -> f64 {
    let own = dispersion(segment);
    let stable_events =
        |shards: &[SplitCounts]| -> f64 { shards.iter().map(|s| s.stable_events.max(0.0)).sum() };
    let (in_segment, in_run) = (stable_events(segment), stable_events(run));
    if in_run <= 0.0 {
        return own;
    }
    let scaled = 1.0 + (dispersion(run) - 1.0) * (in_segment / in_run).min(1.0);
    own.max(scaled)
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

/// One version's rate over its shards with the outlying ones set aside: the guard rails'
/// "broad" reading, and the shards set aside. `None` without requests.
///
/// The same peeling as the comparative test's ([`MAX_OUTLYING_SHARDS`], `stands_out`) on
/// the version's own counts. A broad breach raises every shard alike, so its top shards
/// rarely stand out and its rate is read almost unbiased (dropping the top two shards
/// always, as before, read a canary at 5% as well under 5%: issue 22 point 4); a few heavy
/// users lift their shards far above the rest and are set aside.
pub fn broad_rate(shards: &[(f64, f64)]) -> Option<(f64, Vec<usize>)> {
    let peeled = peel(&one_version(shards), &[], &any);
    let (requests, events) = peeled.kept.iter().fold((0.0, 0.0), |(n, x), c| {
        (n + c.canary_requests, x + c.canary_events)
    });
    (requests > 0.0).then(|| (events / requests, peeled.trimmed()))
}

/// The shards where one version's `(requests, events)` show heavy users: the same peeling,
/// every outlier allowed. The comparative check reads stable's before the run this way.
pub fn outlying_shards(shards: &[(f64, f64)]) -> Vec<usize> {
    peel(&one_version(shards), &[], &any).trimmed()
}

/// One version's counts, held as canary's, against a stand-in stable side (peeling only
/// needs shards with traffic and canary's own rates).
fn one_version(shards: &[(f64, f64)]) -> Vec<SplitCounts> {
    shards
        .iter()
        .map(|(requests, events)| SplitCounts {
            canary_requests: *requests,
            canary_events: *events,
            stable_requests: 1.0,
            stable_events: 0.0,
        })
        .collect()
}

//! The comparative check: canary against stable on the same traffic, with the sequential
//! test of [`super::sequential`] applied to two kinds of event: 5xx responses, and requests
//! slower than a latency threshold taken from the per-version histograms. With the filter's
//! user-shard series the error test judges shards ([`super::sharded::evidence`]) and the
//! latency test keeps the histograms' events, the shards saying only whether the excess is
//! broad ([`super::sharded::latency_evidence`]).
//!
//! Windowing. The engine sees a sliding window (`analysis.window`, 1m by default) every
//! `analysis.interval` (30s), so consecutive windows overlap. An always-valid test needs
//! the counts since the test began, not per window, so the state in
//! `status.comparative` keeps cumulative sums: each tick adds the window's counts scaled by
//! the share of the window not counted before, `min(1, (now − countedUntil) / window)`.
//! With regular ticks every second of traffic is then counted exactly once (a 1m window
//! every 30s adds half of each window). Irregular ticks make it approximate, never
//! double-counting more than one window. Counting restarts neither on a controller restart
//! (the sums live in the status) nor on a stage change: a new weight only starts a new
//! segment of the same test (see `sequential`). The latency test skips the first `warmup`
//! of each segment, so that freshly scaled canary pods are not judged while they warm up;
//! the error test counts from the start (a canary that fails requests is bad even when
//! cold, and catching it early is the point).
//!
//! The first window after a weight change still holds some traffic at the previous
//! weight. That does not bias the test: within one window requests and events mix the two
//! weights in the same proportion when the versions are equally good.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::histogram;
use super::sequential::{self, SplitCounts};
use super::sharded;
pub use crate::crd::comparative::{
    ComparativeCheck, ComparativeState, ShardStatistic, SplitTest, StableBeforeRun,
};
use crate::crd::Outcome;
use crate::duration::Duration;
use crate::observation::{ShardCounts, VersionWindow};

/// Check names, as they appear in `status.lastAnalysis.checks` and as rollback reasons.
pub const ERRORS_CHECK: &str = "comparative-errors";
pub const LATENCY_CHECK: &str = "comparative-latency";

/// Stable requests a window needs before its histogram may choose the latency threshold.
pub const MIN_STABLE_REQUESTS_FOR_THRESHOLD: f64 = 100.0;
/// A stable window at more than this multiple of stable's own rate so far is an incident
/// shared by both versions: the check holds (Inconclusive) rather than pass.
pub const SHARED_INCIDENT_FACTOR: f64 = 2.0;
/// ... and only when it has at least this many stable events (not a blip).
pub const SHARED_INCIDENT_MIN_EVENTS: f64 = 10.0;
/// A pass that would give canary all the traffic waits while canary's events lean this many
/// standard errors above their share ([`sequential::lean`], kept shards, widened by `√φ`), in
/// the stage or over the run (each finished stage its own stratum, `carriedLean`).
/// The e-value only fails a ratio near the grid's alternatives; a bug that breaks a few
/// percent of the users can leave canary 1.2–1.4× stable on the kept shards, too little for
/// it in the 45 minutes of the default stages but plain in the lean. Waiting lets the test
/// decide (BENCHMARKS.md, "Issue 22, round 6"). The wait lasts one more stage duration at
/// most ([`Handover::extendable`]), unless the test over every shard has failed
/// (`allShardsRejected`): then canary has been shown worse with all its users counted, the
/// only reading left in its favour is "a few users", and that needs the rest not to lean
/// (BENCHMARKS.md, "Issue 22, round 8").
pub const PROMOTION_LEAN: f64 = 2.0;
/// A failure needs the e-value without each segment's top kept shard at `(1/α')` to this
/// power or more (0.4: 200^0.4 ≈ 8.3 at the default α): one user's shard cannot carry a
/// verdict, while a regression on a tenth of the users, whose top shard holds much of the
/// first minutes' evidence, is not held for long. At 0.5, 10% of users at 40% errors was
/// caught within 5 minutes in 79.7% of 2000 rollouts; at 0.4 in 82.0%, with every healthy
/// scenario still at or below 0.95% (BENCHMARKS.md, "Issue 22, round 6").
pub const WITHOUT_TOP_SHARE: f64 = 0.4;

/// One test's verdict with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestReport {
    /// [`ERRORS_CHECK`] or [`LATENCY_CHECK`].
    pub check: &'static str,
    /// Pass: no evidence that canary is worse (the stage durations fix the sample size).
    /// Fail: the e-value reached `1/α`. Inconclusive: nothing counted yet, warming up, no
    /// histogram, evidence resting on a few shards, or an incident shared by both versions.
    /// (A test never reports Unavailable: the engine does, when the metrics are.)
    pub decision: Outcome,
    /// The e-value (capped at 1e12 so it stays printable).
    pub e_value: f64,
    pub threshold: f64,
    /// Counted since the rollout started.
    pub counts: SplitCounts,
    pub message: String,
}

/// One tick's input.
#[derive(Debug, Clone, Copy)]
pub struct WindowInput<'a> {
    pub canary: &'a VersionWindow,
    pub stable: &'a VersionWindow,
    /// The weight the window's traffic was split at (`status.weight`).
    pub weight: f64,
    /// When the current stage started (`status.stageStartedAt`).
    pub stage_started_at: Option<&'a Time>,
    /// The span the window covers (`analysis.effectiveWindow()`).
    pub window: Duration,
    /// `Some` when a pass now would give canary all the traffic: the tests then hold while
    /// canary leans worse by [`PROMOTION_LEAN`].
    pub handover: Option<Handover>,
    /// Stable's per-shard counts over [`STABLE_LOOKBACK`] up to now, when they were read for
    /// this tick (`engine::reads_stable_before_run`); recorded once per run.
    pub stable_before_run: Option<&'a [ShardCounts]>,
    pub now: Timestamp,
}

/// How far back stable's shard series are read at a run's first analysis. An hour gives a
/// user who sends one request a minute and fails half of them about 30 errors in its shard,
/// where a shard's other users make about 10 (BENCHMARKS.md, "Issue 22, round 10").
pub const STABLE_LOOKBACK: Duration = Duration::from_secs(3600);

/// Records what stable showed before the run, once, and adds its outlying shards to the
/// error test's `stableOutlyingShards`. The shard of a user does not depend on the run's
/// salt (contract 4, `shard`), so these are the run's shards. Only the error test: the filter
/// counted `slow` before the run at whatever threshold the last run wrote.
fn record_stable_before_run(state: &mut ComparativeState, shards: &[ShardCounts]) {
    if state.stable_before_run.is_some() {
        return;
    }
    let counts: Vec<(f64, f64)> = shards
        .iter()
        .map(|shard| (shard.requests.max(0.0), shard.errors.max(0.0)))
        .collect();
    let outlying = sharded::outlying_shards(&counts);
    state.errors.add_stable_outlying(outlying.iter().copied());
    let mut outlying_error_shards: Vec<i32> = outlying
        .into_iter()
        .filter_map(|index| i32::try_from(index).ok())
        .collect();
    outlying_error_shards.sort_unstable();
    state.stable_before_run = Some(StableBeforeRun {
        requests: counts.iter().map(|(requests, _)| requests).sum(),
        errors: counts.iter().map(|(_, errors)| errors).sum(),
        outlying_error_shards,
    });
}

/// The stage a pass would end hands canary all the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The stage has run less than twice its duration. After that a lean holds the pass only
    /// in a test whose e-value over every shard has failed, so that a healthy canary that
    /// leans by chance waits one stage duration at most.
    pub extendable: bool,
}

/// Fold one window into the state and judge both tests.
pub fn step(
    spec: &ComparativeCheck,
    previous: Option<&ComparativeState>,
    input: &WindowInput<'_>,
) -> (ComparativeState, [TestReport; 2]) {
    let now = Time(input.now);
    let mut state = previous.cloned().unwrap_or_else(|| ComparativeState {
        segment_weight: input.weight,
        first_weight: Some(input.weight),
        segment_started_at: Some(
            input
                .stage_started_at
                .cloned()
                .unwrap_or_else(|| now.clone()),
        ),
        ..ComparativeState::default()
    });
    if let Some(shards) = input.stable_before_run {
        record_stable_before_run(&mut state, shards);
    }
    let grid = sequential::alternatives(spec.minimum_detectable_increase);
    let first_weight = *state.first_weight.get_or_insert(state.segment_weight);
    if state.segment_weight != input.weight {
        close_segment(&mut state.errors, &grid, Evidence::Split, first_weight);
        let kind = state.latency_evidence();
        close_segment(&mut state.slow_requests, &grid, kind, first_weight);
        state.segment_weight = input.weight;
        state.segment_started_at = Some(
            input
                .stage_started_at
                .cloned()
                .unwrap_or_else(|| now.clone()),
        );
    }
    for test in [&mut state.errors, &mut state.slow_requests] {
        if test.carried_log_lr.len() != grid.len() {
            // The grid changed (spec edit): evidence per old alternative cannot be mapped.
            // Starting the carried part at zero keeps the test valid, only less powerful.
            test.carried_log_lr = vec![0.0; grid.len()];
        }
        if test.carried_untrimmed_log_lr.len() != grid.len() {
            test.carried_untrimmed_log_lr = test.carried_log_lr.clone();
        }
        if test.carried_without_top_log_lr.len() != grid.len() {
            test.carried_without_top_log_lr = test.carried_log_lr.clone();
        }
    }
    if state.latency_threshold_ms.is_none() {
        state.latency_threshold_ms = choose_latency_threshold(spec, input);
    }

    let segment_started_at = state.segment_started_at.clone();
    let error_fraction = take_uncounted(
        &mut state.errors,
        segment_started_at.as_ref(),
        Duration::ZERO,
        input,
    );
    let latency_fraction = take_uncounted(
        &mut state.slow_requests,
        segment_started_at.as_ref(),
        spec.warmup,
        input,
    );
    let error_window = SplitCounts {
        canary_requests: input.canary.requests,
        canary_events: input.canary.errors,
        stable_requests: input.stable.requests,
        stable_events: input.stable.errors,
    };
    let threshold = spec.rejection_threshold();
    let error_shards = shard_counts(input, |shard| shard.errors);
    let slow_shards = shard_counts(input, |shard| shard.slow);
    // Slow means above the chosen histogram boundary (stable's p99 bucket by default). Once
    // the filter counts its shards' `slow` outcome at that boundary, the shards are the
    // evidence, as for errors. Until then (or without shard series) the events are the
    // histograms', and the shards, slow above another threshold, only say whether the
    // excess is broad (see `sharded::latency_evidence`).
    let latency_kind = state.latency_evidence();
    let slow_window = match (latency_kind, slow_shards.as_deref()) {
        (Evidence::Split, Some(shards)) => Some(summed(shards)),
        _ => state
            .latency_threshold_ms
            .and_then(|le| slow_counts(input, le)),
    };
    let slow_label = match state.latency_threshold_ms {
        Some(le) => format!("slower than {le}ms"),
        None => "slow".to_string(),
    };

    let error_report = judge(
        ERRORS_CHECK,
        &mut state.errors,
        Window {
            total: Some(&error_window),
            shards: error_shards.as_deref(),
            kind: Evidence::Split,
            first_weight,
            handover: input.handover,
        },
        error_fraction,
        &grid,
        threshold,
        "5xx",
    );
    let latency_report = judge(
        LATENCY_CHECK,
        &mut state.slow_requests,
        Window {
            total: slow_window.as_ref(),
            shards: slow_shards.as_deref(),
            kind: latency_kind,
            first_weight,
            handover: input.handover,
        },
        latency_fraction,
        &grid,
        threshold,
        &slow_label,
    );
    (state, [error_report, latency_report])
}

impl ComparativeState {
    /// How the latency test reads its shards: as its events once the filter counts them at
    /// the test's threshold.
    fn latency_evidence(&self) -> Evidence {
        match (self.latency_threshold_ms, self.shard_slow_threshold_ms) {
            (Some(test), Some(filter)) if test == filter => Evidence::Split,
            _ => Evidence::HistogramWithShards,
        }
    }

    /// The `slowThresholdMs` the filter should count its shards' `slow` outcome at for this
    /// run, when it does not yet: the latency test's threshold, once chosen.
    pub fn filter_threshold_to_write(&self) -> Option<f64> {
        self.latency_threshold_ms
            .filter(|ms| self.shard_slow_threshold_ms != Some(*ms))
    }

    /// Record that the filter now counts `slow` at `ms` (the write is carried out before
    /// this status is saved). The latency evidence so far, read the old way, is carried as
    /// a finished segment, and counting starts again from `now`: earlier windows hold
    /// `slow` counts at the old threshold.
    pub fn filter_threshold_written(&mut self, spec: &ComparativeCheck, ms: f64, now: Timestamp) {
        let grid = sequential::alternatives(spec.minimum_detectable_increase);
        let kind = self.latency_evidence();
        let first_weight = self.first_weight.unwrap_or(self.segment_weight);
        close_segment(&mut self.slow_requests, &grid, kind, first_weight);
        self.shard_slow_threshold_ms = Some(ms);
        self.slow_requests.run_shards.clear();
        self.slow_requests.counted_until = Some(Time(now));
    }
}

/// The version totals of per-shard counts.
fn summed(shards: &[SplitCounts]) -> SplitCounts {
    let mut total = SplitCounts::default();
    for shard in shards {
        total.add_scaled(shard, 1.0);
    }
    total
}

/// One tick's window for one test: the version totals, and per shard when the filter
/// exports shard series.
#[derive(Clone, Copy)]
struct Window<'a> {
    total: Option<&'a SplitCounts>,
    shards: Option<&'a [SplitCounts]>,
    kind: Evidence,
    /// The run's first weight (see `sharded::History`).
    first_weight: f64,
    /// See [`WindowInput::handover`].
    handover: Option<Handover>,
}

/// Per shard split counts with `events` of each shard, when both versions have shard
/// series (index = shard; a shard missing on one version counts as no traffic there).
fn shard_counts(
    input: &WindowInput<'_>,
    events: fn(&ShardCounts) -> f64,
) -> Option<Vec<SplitCounts>> {
    let canary = &input.canary.shards;
    let stable = &input.stable.shards;
    if canary.is_empty() || stable.is_empty() {
        return None;
    }
    let shard = |side: &[ShardCounts], index: usize| side.get(index).copied().unwrap_or_default();
    Some(
        (0..canary.len().max(stable.len()))
            .map(|index| {
                let (c, s) = (shard(canary, index), shard(stable, index));
                SplitCounts {
                    canary_requests: c.requests,
                    canary_events: events(&c),
                    stable_requests: s.requests,
                    stable_events: events(&s),
                }
            })
            .collect(),
    )
}

/// How a test reads its shards, when the filter exports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evidence {
    /// The events are counted per shard (5xx): the split test by shard,
    /// [`sharded::evidence`].
    Split,
    /// The events come from the histograms, the shards only say whether the excess is
    /// broad: [`sharded::latency_evidence`].
    HistogramWithShards,
}

impl Evidence {
    fn of(self, test: &SplitTest, first_weight: f64, grid: &[f64]) -> sharded::ShardEvidence {
        let known = test.stable_outlying();
        let history = sharded::History {
            stable_outlying: &known,
            first_share: (first_weight / 100.0).clamp(0.0, 1.0),
            run: &test.run_shards,
        };
        match self {
            Evidence::Split => sharded::evidence(&test.segment_shards, &history, grid),
            Evidence::HistogramWithShards => {
                sharded::latency_evidence(&test.segment, &test.segment_shards, &history, grid)
            }
        }
    }
}

/// Fold the segment's evidence into the per-alternative carried sums and start afresh.
fn close_segment(test: &mut SplitTest, grid: &[f64], kind: Evidence, first_weight: f64) {
    test.carried_log_lr.resize(grid.len(), 0.0);
    test.carried_untrimmed_log_lr.resize(grid.len(), 0.0);
    test.carried_without_top_log_lr.resize(grid.len(), 0.0);
    let (trimmed, untrimmed, without_top, lean) = if test.segment_shards.is_empty() {
        let request_level: Vec<f64> = grid
            .iter()
            .map(|ratio| sequential::split_log_lr(&test.segment, *ratio))
            .collect();
        let lean = sequential::lean_sums(&[test.segment]);
        (
            request_level.clone(),
            request_level.clone(),
            request_level,
            lean,
        )
    } else {
        let evidence = kind.of(test, first_weight, grid);
        (
            evidence.log_lr,
            evidence.untrimmed_log_lr,
            evidence.without_top_log_lr,
            evidence.lean,
        )
    };
    test.carried_lean = Some(test.carried_lean.unwrap_or_default().plus(lean));
    for (carried, value) in test.carried_without_top_log_lr.iter_mut().zip(without_top) {
        *carried += value;
    }
    for (carried, value) in test.carried_log_lr.iter_mut().zip(trimmed) {
        *carried += value;
    }
    for (carried, value) in test.carried_untrimmed_log_lr.iter_mut().zip(untrimmed) {
        *carried += value;
    }
    test.add_stable_outlying(sharded::stable_outliers(&test.segment_shards));
    test.segment = SplitCounts::default();
    test.segment_shards.clear();
}

/// Share of this window the test has not counted yet, after the warm-up (0 to 1); marks
/// it counted.
fn take_uncounted(
    test: &mut SplitTest,
    segment_started_at: Option<&Time>,
    warmup: Duration,
    input: &WindowInput<'_>,
) -> f64 {
    let fraction = uncounted_fraction(test, segment_started_at, warmup, input);
    if fraction > 0.0 {
        test.counted_until = Some(Time(input.now));
    }
    fraction
}

fn uncounted_fraction(
    test: &SplitTest,
    segment_started_at: Option<&Time>,
    warmup: Duration,
    input: &WindowInput<'_>,
) -> f64 {
    let warm_from =
        segment_started_at.and_then(|start| start.0.checked_add(warmup.to_signed()).ok());
    let counted = test.counted_until.as_ref().map(|time| time.0);
    let from = match (warm_from, counted) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let window_ms = input.window.as_millis() as f64;
    let Some(from) = from else {
        return 1.0;
    };
    if window_ms <= 0.0 || from >= input.now {
        return 0.0;
    }
    let new_ms = input.now.duration_since(from).as_millis() as f64;
    (new_ms / window_ms).clamp(0.0, 1.0)
}

fn choose_latency_threshold(spec: &ComparativeCheck, input: &WindowInput<'_>) -> Option<f64> {
    let stable = &input.stable.latency_buckets;
    match spec.latency_threshold_ms {
        Some(configured) => histogram::boundary_at_or_above(stable, configured)
            .or_else(|| histogram::boundary_at_or_above(&input.canary.latency_buckets, configured)),
        None => histogram::total(stable)
            .filter(|total| *total >= MIN_STABLE_REQUESTS_FOR_THRESHOLD)
            .and_then(|_| histogram::tail_boundary(stable, histogram::AUTO_THRESHOLD_TAIL)),
    }
}

/// Requests and slow requests per version from the histograms, when both have `le`.
fn slow_counts(input: &WindowInput<'_>, le: f64) -> Option<SplitCounts> {
    let canary = &input.canary.latency_buckets;
    let stable = &input.stable.latency_buckets;
    Some(SplitCounts {
        canary_requests: histogram::total(canary)?,
        canary_events: histogram::slower_than(canary, le)?,
        stable_requests: histogram::total(stable)?,
        stable_events: histogram::slower_than(stable, le)?,
    })
}

fn judge(
    check: &'static str,
    test: &mut SplitTest,
    window: Window<'_>,
    fraction: f64,
    grid: &[f64],
    threshold: f64,
    event: &str,
) -> TestReport {
    let kind = window.kind;
    let baseline = test.total.stable_rate();
    if let Some(total) = window.total.filter(|_| fraction > 0.0) {
        test.segment.add_scaled(total, fraction);
        test.total.add_scaled(total, fraction);
    }
    // Shards are counted over the same spans as the totals (a latency window without a
    // histogram counts neither).
    if let Some(shards) = window
        .shards
        .filter(|_| fraction > 0.0 && window.total.is_some())
    {
        if test.segment_shards.len() < shards.len() {
            test.segment_shards
                .resize(shards.len(), SplitCounts::default());
        }
        for (sum, shard) in test.segment_shards.iter_mut().zip(shards) {
            sum.add_scaled(shard, fraction);
        }
        if test.run_shards.len() < shards.len() {
            test.run_shards.resize(shards.len(), SplitCounts::default());
        }
        for (sum, shard) in test.run_shards.iter_mut().zip(shards) {
            sum.add_scaled(shard, fraction);
        }
    }
    let mut narrow = None;
    let mut one_shard = None;
    let mut segment_lean = sequential::lean_sums(&[test.segment]);
    if window.shards.is_some() && !test.segment_shards.is_empty() {
        let evidence = kind.of(test, window.first_weight, grid);
        segment_lean = evidence.lean;
        test.log_e_value = sharded::log_e_value(&test.carried_log_lr, &evidence.log_lr);
        let untrimmed =
            sharded::log_e_value(&test.carried_untrimmed_log_lr, &evidence.untrimmed_log_lr);
        if untrimmed >= threshold.ln() {
            test.all_shards_rejected = true;
        }
        // Inconclusive only while the other shards lean the same way (half-way to the
        // threshold on the log scale). When they do not, one or two users explain the
        // excess on their own: that is no evidence against canary's code path, and holding
        // for it would hold the rollout for as long as those users stay.
        if untrimmed >= threshold.ln()
            && test.log_e_value < threshold.ln()
            && test.log_e_value >= 0.5 * threshold.ln()
        {
            narrow = Some(evidence.trimmed.clone());
        }
        // A failure must survive losing the kept shard most in excess (any one user's):
        // with few events clustering cannot be measured, and one user's errors would
        // otherwise carry the verdict (issue 22: a heavy user at 5 req/s).
        let without_top = sharded::log_e_value(
            &test.carried_without_top_log_lr,
            &evidence.without_top_log_lr,
        );
        if test.log_e_value >= threshold.ln() && without_top < WITHOUT_TOP_SHARE * threshold.ln() {
            one_shard = Some(without_top);
        }
        test.shards = Some(ShardStatistic {
            shards_with_traffic: evidence.shards_with_traffic as u32,
            trimmed: evidence
                .trimmed
                .iter()
                .map(|index| i32::try_from(*index).unwrap_or(i32::MAX))
                .collect(),
            dispersion: round2(evidence.dispersion),
            untrimmed_log_e_value: round2(untrimmed),
            without_top_log_e_value: round2(without_top),
        });
    } else {
        test.log_e_value = sequential::log_e_value(grid, &test.carried_log_lr, &test.segment);
        test.shards = None;
    }
    if test.log_e_value >= threshold.ln() && one_shard.is_none() {
        test.rejected = true;
    }
    // The stage's lean, or the run's (each finished segment its own stratum), whichever is
    // larger: a bug that hits the users who moved at this stage shows in the stage, one that
    // has hit canary since the first stage shows over the run.
    let run_lean = test.carried_lean.unwrap_or_default().plus(segment_lean);
    let lean = sequential::lean_of(&segment_lean).max(sequential::lean_of(&run_lean));
    let e_value = test.log_e_value.min(12.0 * std::f64::consts::LN_10).exp();
    let counts = test.total;
    let mut tally = format!(
        "canary {} of {} requests {event}, stable {} of {}",
        round1(counts.canary_events),
        round1(counts.canary_requests),
        round1(counts.stable_events),
        round1(counts.stable_requests)
    );
    if let Some(shards) = &test.shards {
        tally.push_str(&format!(
            "; {} shards with traffic, dispersion {}, shards {:?} left out",
            shards.shards_with_traffic, shards.dispersion, shards.trimmed
        ));
    }
    let evidence = format!(
        "e-value {} (fails at {})",
        significant(e_value),
        significant(threshold)
    );
    let kept_too_few = test
        .shards
        .as_ref()
        .is_some_and(|shards| (shards.shards_with_traffic as usize) < sharded::MIN_KEPT_SHARDS);
    let (decision, message) = if test.rejected {
        (
            Outcome::Fail,
            format!("canary's rate is higher than stable's: {evidence}; {tally}"),
        )
    } else if window.total.is_none() {
        (
            Outcome::Inconclusive,
            format!("no latency histogram to compare; {evidence}"),
        )
    } else if counts.canary_requests <= 0.0 || counts.stable_requests <= 0.0 {
        (
            Outcome::Inconclusive,
            format!("nothing counted yet (warm-up or no traffic); {evidence}"),
        )
    } else if let Some(without_top) = one_shard {
        (
            Outcome::Inconclusive,
            format!(
                "canary's excess rests on one shard (one user, not the canary's code path): without it the e-value is {}: holding; {evidence}; {tally}",
                significant(without_top.exp())
            ),
        )
    } else if let Some(shards) = narrow {
        (
            Outcome::Inconclusive,
            format!(
                "canary's excess rests on shards {shards:?} (one or two users, not the canary's code path): holding; {evidence}; {tally}"
            ),
        )
    } else if kept_too_few {
        (
            Outcome::Inconclusive,
            format!(
                "too few shards with traffic on both versions to judge (need {}); {evidence}; {tally}",
                sharded::MIN_KEPT_SHARDS
            ),
        )
    } else if let Some(incident) = window
        .total
        .and_then(|window| shared_incident(window, baseline))
    {
        (
            Outcome::Inconclusive,
            format!("{incident}: holding; {evidence}; {tally}"),
        )
    } else if let Some(handover) = window.handover.filter(|handover| {
        lean >= PROMOTION_LEAN && (handover.extendable || test.all_shards_rejected)
    }) {
        let until = if handover.extendable {
            "holding for the test to decide"
        } else {
            "the test over every shard has failed, so holding until canary leans less or the test decides"
        };
        (
            Outcome::Inconclusive,
            format!(
                "canary's rate leans above stable's in this stage or over the rollout ({} standard errors, at most {PROMOTION_LEAN} to give it all the traffic): {until}; {evidence}; {tally}",
                round2(lean)
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!("no evidence canary is worse: {evidence}; {tally}"),
        )
    };
    TestReport {
        check,
        decision,
        e_value,
        threshold,
        counts,
        message,
    }
}

/// Stable itself far above its own rate so far: both versions are in an incident, and a
/// pass now would mean little. (The split test stays valid through it; only Pass is held.)
fn shared_incident(window: &SplitCounts, baseline: Option<f64>) -> Option<String> {
    let baseline = baseline?;
    let rate = window.stable_rate()?;
    (window.stable_events >= SHARED_INCIDENT_MIN_EVENTS && rate > SHARED_INCIDENT_FACTOR * baseline).then(|| {
        format!(
            "stable's rate in this window ({}%) is over {SHARED_INCIDENT_FACTOR}x its rollout rate ({}%)",
            round1(rate * 100.0),
            round1(baseline * 100.0)
        )
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Three significant digits, for messages.
fn significant(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.2e}")
    } else {
        format!("{}", (value * 100.0).round() / 100.0)
    }
}

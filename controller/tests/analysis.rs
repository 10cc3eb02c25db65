//! The comparative check's statistics, as specifications.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution};
use stickycanary::analysis::comparative::{
    self, ComparativeCheck, ComparativeState, Handover, WindowInput,
};
use stickycanary::analysis::histogram;
use stickycanary::analysis::sequential::{self, SplitCounts};
use stickycanary::analysis::sharded;
use stickycanary::crd::Outcome;
use stickycanary::duration::Duration;
use stickycanary::observation::{ShardCounts, VersionWindow};

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

/// A window with `requests`, `errors`, and a histogram putting `slow` requests above
/// 250ms (in the 500ms bucket) and the rest at or below 100ms.
fn version(requests: f64, errors: f64, slow: f64) -> VersionWindow {
    let fast = requests - slow;
    VersionWindow {
        requests,
        errors,
        p99_ms: None,
        latency_buckets: vec![
            (50.0, fast * 0.5),
            (100.0, fast),
            (250.0, fast),
            (500.0, requests),
            (1000.0, requests),
            (f64::INFINITY, requests),
        ],
        shards: Vec::new(),
    }
}

struct Ticker {
    spec: ComparativeCheck,
    state: Option<ComparativeState>,
    stage_started: Time,
    weight: f64,
    /// A pass would give canary all the traffic (`WindowInput::handover`).
    handover: Option<Handover>,
}

impl Ticker {
    fn new(spec: ComparativeCheck) -> Self {
        Ticker {
            spec,
            state: None,
            stage_started: Time(t0()),
            weight: 10.0,
            handover: None,
        }
    }

    fn tick(
        &mut self,
        second: i64,
        canary: &VersionWindow,
        stable: &VersionWindow,
    ) -> [comparative::TestReport; 2] {
        let input = WindowInput {
            canary,
            stable,
            weight: self.weight,
            stage_started_at: Some(&self.stage_started),
            window: Duration::from_secs(60),
            handover: self.handover,
            stable_before_run: None,
            now: at(second),
        };
        let (state, reports) = comparative::step(&self.spec, self.state.as_ref(), &input);
        self.state = Some(state);
        reports
    }

    /// Ticks every 30 seconds through `looks` (look `n` at `n × 30` s); the last reports.
    fn ticks(
        &mut self,
        looks: std::ops::RangeInclusive<i64>,
        canary: &VersionWindow,
        stable: &VersionWindow,
    ) -> [comparative::TestReport; 2] {
        looks
            .map(|look| self.tick(look * 30, canary, stable))
            .last()
            .expect("at least one look")
    }
}

fn no_warmup() -> ComparativeCheck {
    ComparativeCheck {
        warmup: Duration::ZERO,
        ..ComparativeCheck::default()
    }
}

#[test]
fn no_events_means_no_evidence() {
    let counts = SplitCounts {
        canary_requests: 500.0,
        stable_requests: 4500.0,
        ..SplitCounts::default()
    };
    for ratio in sequential::alternatives(0.5) {
        assert_eq!(sequential::split_log_lr(&counts, ratio), 0.0);
    }
}

#[test]
fn a_split_exactly_in_proportion_to_traffic_is_evidence_for_the_null() {
    let counts = SplitCounts {
        canary_requests: 1000.0,
        canary_events: 10.0,
        stable_requests: 9000.0,
        stable_events: 90.0,
    };
    let grid = sequential::alternatives(0.5);
    let log_e = sequential::log_e_value(&grid, &vec![0.0; grid.len()], &counts);
    assert!(log_e < 0.0, "e-value {} should be below 1", log_e.exp());
}

#[test]
fn the_alternatives_grid_starts_at_the_minimum_detectable_increase_and_is_bounded() {
    let grid = sequential::alternatives(ComparativeCheck::default().minimum_detectable_increase);
    assert_eq!(grid[0], 1.2, "+20% by default");
    let grid = sequential::alternatives(0.5);
    assert_eq!(grid[0], 1.5);
    assert!(grid.windows(2).all(|pair| pair[1] > pair[0]));
    assert!(*grid.last().unwrap() <= 20.0);
    assert_eq!(
        sequential::alternatives(f64::NAN)[0],
        1.5,
        "a bad value falls back to +50%"
    );
}

#[test]
fn the_error_test_never_rejects_more_often_than_alpha_under_the_null_however_often_it_looks() {
    // 2000 healthy streams, 300 looks each (a 10% canary with a 1% error rate on both
    // versions, varying traffic), α per test = 0.005. Ville's bound says ≤ 0.5% reject.
    let spec = ComparativeCheck::default();
    let threshold = spec.rejection_threshold().ln();
    let grid = sequential::alternatives(spec.minimum_detectable_increase);
    let mut rng = StdRng::seed_from_u64(7);
    let mut rejected = 0;
    let streams = 2000;
    for _ in 0..streams {
        let mut counts = SplitCounts::default();
        for _ in 0..300 {
            let requests = 100 + (rng.random::<f64>() * 400.0) as u64;
            let canary = Binomial::new(requests, 0.1).unwrap().sample(&mut rng);
            let stable = requests - canary;
            let rate = 0.005 + rng.random::<f64>() * 0.03;
            counts.canary_requests += canary as f64;
            counts.stable_requests += stable as f64;
            counts.canary_events += Binomial::new(canary, rate).unwrap().sample(&mut rng) as f64;
            counts.stable_events += Binomial::new(stable, rate).unwrap().sample(&mut rng) as f64;
            if sequential::log_e_value(&grid, &vec![0.0; grid.len()], &counts) >= threshold {
                rejected += 1;
                break;
            }
        }
    }
    let rate = rejected as f64 / streams as f64;
    assert!(
        rate <= spec.alpha_per_test(),
        "false rejection rate {rate} above α {}",
        spec.alpha_per_test()
    );
}

#[test]
fn a_canary_with_five_times_the_errors_fails_within_two_minutes_of_traffic() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    let canary = version(300.0, 15.0, 3.0);
    let mut failed_at = None;
    for tick in 1..=4 {
        let [errors, latency] = ticker.tick(tick * 30, &canary, &stable);
        assert_eq!(
            latency.decision,
            Outcome::Pass,
            "latency is the same on both"
        );
        if errors.decision == Outcome::Fail {
            failed_at = Some(tick * 30);
            assert!(errors.e_value >= errors.threshold);
            assert!(
                errors.message.contains("higher than stable"),
                "{}",
                errors.message
            );
            break;
        }
        assert_eq!(errors.decision, Outcome::Pass);
    }
    assert!(
        failed_at.is_some_and(|second| second <= 120),
        "failed at {failed_at:?}"
    );
}

#[test]
fn a_healthy_canary_passes_and_reports_its_sample_sizes() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    let canary = version(300.0, 3.0, 3.0);
    let mut last = None;
    for tick in 1..=20 {
        let reports = ticker.tick(tick * 30, &canary, &stable);
        assert!(
            reports
                .iter()
                .all(|report| report.decision == Outcome::Pass),
            "{reports:?}"
        );
        last = Some(reports);
    }
    let [errors, _] = last.unwrap();
    // 60s windows every 30s: each tick counts half a window, so 20 ticks count 10 windows.
    assert_eq!(errors.counts.canary_requests, 3000.0);
    assert_eq!(errors.counts.stable_events, 270.0);
    assert!(errors.e_value < 1.0);
}

#[test]
fn the_same_error_burst_on_both_versions_is_inconclusive_not_a_failure() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    let canary = version(300.0, 3.0, 3.0);
    for tick in 1..=10 {
        ticker.tick(tick * 30, &canary, &stable);
    }
    // Both versions at 20% errors for three windows.
    let stable_burst = version(2700.0, 540.0, 27.0);
    let canary_burst = version(300.0, 60.0, 3.0);
    for tick in 11..=13 {
        let [errors, latency] = ticker.tick(tick * 30, &canary_burst, &stable_burst);
        assert_eq!(errors.decision, Outcome::Inconclusive, "{}", errors.message);
        assert!(
            errors.message.contains("stable's rate in this window"),
            "{}",
            errors.message
        );
        assert!(errors.e_value < errors.threshold);
        assert_eq!(latency.decision, Outcome::Pass);
    }
    let [errors, _] = ticker.tick(14 * 30, &canary, &stable);
    assert_eq!(
        errors.decision,
        Outcome::Pass,
        "back to normal: {}",
        errors.message
    );
}

#[test]
fn a_burst_on_canary_alone_still_fails() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    for tick in 1..=10 {
        ticker.tick(tick * 30, &version(300.0, 3.0, 3.0), &stable);
    }
    let [errors, _] = ticker.tick(11 * 30, &version(300.0, 60.0, 3.0), &stable);
    assert_eq!(errors.decision, Outcome::Fail, "{}", errors.message);
}

#[test]
fn latency_waits_out_the_warm_up_after_a_weight_change_but_errors_count_at_once() {
    let mut ticker = Ticker::new(ComparativeCheck {
        warmup: stickycanary::duration::Duration::from_mins(1),
        ..ComparativeCheck::default()
    });
    let stable = version(2700.0, 27.0, 27.0);
    let slow_canary = version(300.0, 3.0, 300.0);
    let [errors, latency] = ticker.tick(30, &slow_canary, &stable);
    assert_eq!(
        latency.decision,
        Outcome::Inconclusive,
        "{}",
        latency.message
    );
    assert_eq!(latency.counts.canary_requests, 0.0);
    assert_eq!(errors.decision, Outcome::Pass);
    assert_eq!(
        errors.counts.canary_requests, 150.0,
        "errors count from the stage start"
    );
    let [_, latency] = ticker.tick(60, &slow_canary, &stable);
    assert_eq!(latency.counts.canary_requests, 0.0, "still warming up");
    // After the warm-up, the next window counts for the 30s since it ended.
    let [_, latency] = ticker.tick(90, &version(300.0, 3.0, 3.0), &stable);
    assert_eq!(latency.counts.canary_requests, 150.0);
    assert_eq!(latency.decision, Outcome::Pass);
    // A stage change (new weight) starts a new warm-up.
    ticker.weight = 25.0;
    ticker.stage_started = Time(at(90));
    let [_, latency] = ticker.tick(120, &slow_canary, &stable);
    assert_eq!(
        latency.counts.canary_requests, 150.0,
        "nothing new counted in the new warm-up"
    );
    assert_eq!(latency.decision, Outcome::Pass);
}

#[test]
fn evidence_carries_over_stage_changes() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    let canary = version(300.0, 6.0, 3.0); // twice stable's error rate
    let mut previous = 0.0;
    for tick in 1..=6 {
        let [errors, _] = ticker.tick(tick * 30, &canary, &stable);
        previous = errors.e_value;
    }
    ticker.weight = 25.0;
    ticker.stage_started = Time(at(180));
    let [errors, _] = ticker.tick(
        210,
        &version(900.0, 18.0, 9.0),
        &version(2100.0, 21.0, 21.0),
    );
    assert!(
        errors.e_value > previous,
        "{} after {previous}",
        errors.e_value
    );
    let state = ticker.state.as_ref().unwrap();
    assert_eq!(state.segment_weight, 25.0);
    assert!(state.errors.carried_log_lr.iter().any(|value| *value > 0.0));
}

#[test]
fn the_latency_test_uses_stables_p99_bucket_and_keeps_it() {
    let mut ticker = Ticker::new(no_warmup());
    // Stable: 2% above 250ms, 0.5% above 500ms → p99 boundary is 500ms.
    let stable = VersionWindow {
        requests: 2000.0,
        errors: 0.0,
        p99_ms: None,
        latency_buckets: vec![
            (50.0, 1000.0),
            (100.0, 1900.0),
            (250.0, 1960.0),
            (500.0, 1990.0),
            (1000.0, 2000.0),
            (f64::INFINITY, 2000.0),
        ],
        shards: Vec::new(),
    };
    let [_, latency] = ticker.tick(30, &version(200.0, 0.0, 0.0), &stable);
    assert_eq!(
        ticker.state.as_ref().unwrap().latency_threshold_ms,
        Some(500.0)
    );
    assert!(
        latency.message.contains("slower than 500ms"),
        "{}",
        latency.message
    );
    // A faster stable later does not move the threshold.
    ticker.tick(60, &version(200.0, 0.0, 0.0), &version(2000.0, 0.0, 0.0));
    assert_eq!(
        ticker.state.as_ref().unwrap().latency_threshold_ms,
        Some(500.0)
    );
}

#[test]
fn a_canary_slower_in_the_tail_fails_the_latency_test_not_the_error_test() {
    let mut ticker = Ticker::new(no_warmup());
    let stable = version(2700.0, 27.0, 27.0);
    let canary = version(300.0, 3.0, 15.0);
    let mut failed = false;
    for tick in 1..=6 {
        let [errors, latency] = ticker.tick(tick * 30, &canary, &stable);
        assert_ne!(errors.decision, Outcome::Fail);
        failed |= latency.decision == Outcome::Fail;
    }
    assert!(failed);
}

#[test]
fn a_configured_latency_threshold_rounds_up_to_a_bucket_boundary() {
    assert_eq!(
        histogram::boundary_at_or_above(&version(10.0, 0.0, 0.0).latency_buckets, 300.0),
        Some(500.0)
    );
    assert_eq!(
        histogram::boundary_at_or_above(&version(10.0, 0.0, 0.0).latency_buckets, 5000.0),
        Some(1000.0)
    );
    let spec = ComparativeCheck {
        latency_threshold_ms: Some(200.0),
        ..no_warmup()
    };
    let mut ticker = Ticker::new(spec);
    ticker.tick(30, &version(300.0, 3.0, 3.0), &version(50.0, 0.0, 0.0));
    assert_eq!(
        ticker.state.as_ref().unwrap().latency_threshold_ms,
        Some(250.0)
    );
}

#[test]
fn without_histograms_the_latency_test_is_inconclusive() {
    let mut ticker = Ticker::new(no_warmup());
    let bare = |requests: f64, errors: f64| VersionWindow {
        requests,
        errors,
        p99_ms: None,
        latency_buckets: Vec::new(),
        shards: Vec::new(),
    };
    let [errors, latency] = ticker.tick(30, &bare(300.0, 3.0), &bare(2700.0, 27.0));
    assert_eq!(errors.decision, Outcome::Pass);
    assert_eq!(latency.decision, Outcome::Inconclusive);
}

#[test]
fn histogram_quantile_interpolates_like_prometheus() {
    let buckets = [
        (100.0, 50.0),
        (200.0, 90.0),
        (500.0, 100.0),
        (f64::INFINITY, 100.0),
    ];
    assert_eq!(histogram::quantile(&buckets, 0.5), Some(100.0));
    assert_eq!(histogram::quantile(&buckets, 0.7), Some(150.0));
    assert_eq!(histogram::quantile(&buckets, 0.99), Some(470.0));
    assert_eq!(
        histogram::quantile(&[(100.0, 0.0), (f64::INFINITY, 0.0)], 0.99),
        None
    );
    assert_eq!(
        histogram::quantile(&[(100.0, 0.0), (f64::INFINITY, 10.0)], 0.99),
        Some(100.0)
    );
    assert_eq!(histogram::tail_boundary(&buckets, 0.01), Some(500.0));
    assert_eq!(histogram::tail_boundary(&buckets, 0.1), Some(200.0));
}

#[test]
fn the_state_survives_a_round_trip_through_the_status_json() {
    let mut ticker = Ticker::new(no_warmup());
    for tick in 1..=3 {
        ticker.tick(
            tick * 30,
            &version(300.0, 6.0, 3.0),
            &version(2700.0, 27.0, 27.0),
        );
    }
    let state = ticker.state.clone().unwrap();
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.contains("\"logEValue\""), "{json}");
    let back: ComparativeState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
}

#[test]
fn an_empty_comparative_block_means_enabled_with_the_defaults() {
    let spec: ComparativeCheck = serde_json::from_str("{}").unwrap();
    assert_eq!(spec, ComparativeCheck::default());
    assert!(spec.enabled);
    assert_eq!(spec.alpha, 0.01);
    assert_eq!(spec.rejection_threshold(), 200.0);
}

// ---------------------------------------------------------------------------------------
// The cluster-robust (per user shard) form of the test.
// ---------------------------------------------------------------------------------------

/// A version's window from per-shard `(requests, errors)`; no slow requests.
fn sharded_version(shards: &[(f64, f64)]) -> VersionWindow {
    let shards: Vec<ShardCounts> = shards
        .iter()
        .map(|(requests, errors)| ShardCounts {
            requests: *requests,
            errors: *errors,
            slow: 0.0,
        })
        .collect();
    let requests = shards.iter().map(|shard| shard.requests).sum();
    let errors = shards.iter().map(|shard| shard.errors).sum();
    VersionWindow {
        requests,
        errors,
        latency_buckets: vec![(500.0, requests), (f64::INFINITY, requests)],
        shards,
        ..VersionWindow::default()
    }
}

/// 16 shards, canary with 10% of each shard's requests, both at 1% errors; `canary_extra`
/// adds errors to canary's shard `index`.
fn even_shards(canary_extra: &[(usize, f64)]) -> (VersionWindow, VersionWindow) {
    let canary: Vec<(f64, f64)> = (0..16)
        .map(|shard| {
            let extra: f64 = canary_extra
                .iter()
                .filter(|(index, _)| *index == shard)
                .map(|(_, errors)| errors)
                .sum();
            (300.0, 3.0 + extra)
        })
        .collect();
    let stable: Vec<(f64, f64)> = (0..16).map(|_| (2700.0, 27.0)).collect();
    (sharded_version(&canary), sharded_version(&stable))
}

#[test]
fn one_heavy_user_on_canary_fails_the_request_level_test_but_never_the_shard_test() {
    // One user in shard 5 adds 30 errors a window to canary: 8x canary's own rate.
    let (canary, stable) = even_shards(&[(5, 30.0)]);
    let mut sharded = Ticker::new(no_warmup());
    let mut request_level = Ticker::new(no_warmup());
    let bare = |window: &VersionWindow| VersionWindow {
        shards: Vec::new(),
        ..window.clone()
    };
    let mut request_level_failed = false;
    for tick in 1..=90 {
        let [errors, _] = sharded.tick(tick * 30, &canary, &stable);
        assert_ne!(
            errors.decision,
            Outcome::Fail,
            "tick {tick}: {}",
            errors.message
        );
        let [plain, _] = request_level.tick(tick * 30, &bare(&canary), &bare(&stable));
        request_level_failed |= plain.decision == Outcome::Fail;
    }
    assert!(request_level_failed, "the request-level test is fooled");
    let state = sharded.state.as_ref().unwrap();
    let shards = state.errors.shards.as_ref().unwrap();
    assert_eq!(shards.shards_with_traffic, 16);
    assert_eq!(shards.trimmed.first(), Some(&5), "{shards:?}");
}

#[test]
fn evidence_resting_on_two_shards_is_inconclusive_not_a_failure() {
    // Two error-prone users (shards 2 and 9, far above canary's rate in the other shards)
    // and, elsewhere, canary half again above stable: all shards together would fail;
    // without the two, the rest lean the same way (half-way to failing) but have not made
    // the case.
    let canary: Vec<(f64, f64)> = (0..16)
        .map(|shard| match shard {
            2 | 9 => (300.0, 12.0),
            _ => (300.0, 3.9),
        })
        .collect();
    let stable: Vec<(f64, f64)> = (0..16).map(|_| (2700.0, 27.0)).collect();
    let mut ticker = Ticker::new(no_warmup());
    let first_verdict = (1..=120).find_map(|tick| {
        let [errors, _] = ticker.tick(
            tick * 30,
            &sharded_version(&canary),
            &sharded_version(&stable),
        );
        (errors.decision != Outcome::Pass).then_some(errors)
    });
    let errors = first_verdict.expect("some verdict other than Pass");
    assert_eq!(errors.decision, Outcome::Inconclusive, "{}", errors.message);
    // Neither shard was seen on stable and the first stage is 10%: one may be set aside
    // (a heavy user on canary from the start), the other stays in the test.
    assert!(
        errors.message.contains("rests on shards [2]"),
        "{}",
        errors.message
    );
}

#[test]
fn canary_excess_held_in_a_few_shards_is_which_users_canary_holds_and_a_broad_one_is_not() {
    // A 10% canary, 600 requests a shard against stable's 5400, both at 1%: 6 and 54 events.
    let split = |canary_events: f64, stable_events: f64| SplitCounts {
        canary_requests: 600.0,
        canary_events,
        stable_requests: 5400.0,
        stable_events,
    };
    // Error-prone users on canary in five shards (30 events there instead of 6), the rest in
    // proportion: canary's rate is 2.2%, but outside the six shards most in excess its
    // events are their share, so the excess is which users canary holds.
    let held: Vec<SplitCounts> = (0..16)
        .map(|shard| split(if shard < 5 { 30.0 } else { 6.0 }, 54.0))
        .collect();
    let (excess, left_out) = sharded::excess_beyond_top(&held, &[], 6).unwrap();
    assert_eq!(left_out, 6);
    assert!(excess.abs() < 1e-9, "{excess}");
    // A regression on canary's code path (3% in every shard) keeps its excess in the ten
    // shards left: 12 events each beyond canary's 10% share of 72.
    let broad: Vec<SplitCounts> = (0..16).map(|_| split(18.0, 54.0)).collect();
    let (excess, _) = sharded::excess_beyond_top(&broad, &[], 6).unwrap();
    assert!((excess - 10.0 * (18.0 - 7.2)).abs() < 1e-9, "{excess}");
    // Stable's own heavy users (shards 12-15, 300 events on stable) make canary's excess
    // negative there; those shards are left out, so they cannot hide a broad excess.
    let heavy_on_stable: Vec<SplitCounts> = (0..16)
        .map(|shard| split(18.0, if shard >= 12 { 300.0 } else { 54.0 }))
        .collect();
    let (excess, left_out) = sharded::excess_beyond_top(&heavy_on_stable, &[], 6).unwrap();
    assert_eq!(left_out, 6, "12 shards summed, six of them left out");
    assert!((excess - 6.0 * (18.0 - 7.2)).abs() < 1e-9, "{excess}");
    // Shards stable showed as outlying earlier in the run are left out too, and fewer than
    // six shards to sum give no reading.
    let (_, left_out) = sharded::excess_beyond_top(&broad, &[0, 1, 2, 3, 4, 5], 6).unwrap();
    assert_eq!(left_out, 4, "ten shards summed: four left out, six kept");
    assert_eq!(
        sharded::excess_beyond_top(&broad[..5], &[], 6),
        None,
        "five shards"
    );
}

#[test]
fn a_second_canary_outlier_that_stable_never_showed_stays_in_the_test() {
    // Two heavy error-prone users on canary, in shards 2 and 9. Without history a first
    // stage at 10% explains one of them (99% quantile of the negative binomial with no heavy
    // user seen on stable); with one heavy user seen on stable (shard 12), two.
    let shards: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: 600.0,
            canary_events: if shard == 2 || shard == 9 { 60.0 } else { 6.0 },
            stable_requests: 5400.0,
            stable_events: 54.0,
        })
        .collect();
    let grid = [1.5, 2.4];
    let none = sharded::History {
        stable_outlying: &[],
        first_share: 0.1,
        run: &[],
    };
    assert_eq!(sharded::evidence(&shards, &none, &grid).trimmed, vec![2]);
    let one_seen = sharded::History {
        stable_outlying: &[12],
        first_share: 0.1,
        run: &[],
    };
    assert_eq!(
        sharded::evidence(&shards, &one_seen, &grid).trimmed,
        vec![2, 9]
    );
}

#[test]
fn light_users_stable_showed_are_set_aside_without_standing_out_and_unseen_ones_stay() {
    // Three light error-prone users on canary, in shards 2, 13 and 15: 4 errors each where
    // the other shards have 1. None is improbable on its own (each lifts the others' rate),
    // so without history all three stay in the test. Stable showed them before the run:
    // then they are set aside, most in excess first, while canary's rate there is above the
    // other shards'. Shard 5, also seen but no worse on canary, stays.
    let shards: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: 100.0,
            canary_events: if [2, 13, 15].contains(&shard) {
                4.0
            } else {
                1.0
            },
            stable_requests: 900.0,
            stable_events: 9.0,
        })
        .collect();
    let grid = [1.5, 2.4];
    let unseen = sharded::History {
        stable_outlying: &[],
        first_share: 0.1,
        run: &[],
    };
    assert!(sharded::evidence(&shards, &unseen, &grid)
        .trimmed
        .is_empty());
    let seen = sharded::History {
        stable_outlying: &[2, 5, 13, 15],
        first_share: 0.1,
        run: &[],
    };
    let evidence = sharded::evidence(&shards, &seen, &grid);
    assert_eq!(evidence.trimmed, vec![2, 13, 15]);
    assert!(evidence.log_lr[0] < sharded::evidence(&shards, &unseen, &grid).log_lr[0]);
    // A broad regression keeps its evidence: canary at 3x stable everywhere, four shards
    // seen; at most the seen ones above the rest go, the other twelve still fail it.
    let broad: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: 100.0,
            canary_events: if shard % 2 == 0 { 4.0 } else { 2.0 },
            stable_requests: 900.0,
            stable_events: 9.0,
        })
        .collect();
    let evidence = sharded::evidence(&broad, &seen, &grid);
    assert_eq!(evidence.trimmed, vec![2]);
    assert!(evidence.log_lr[1] > 10.0, "{evidence:?}");
}

#[test]
fn stable_outliers_before_the_run_are_read_from_one_versions_shards() {
    let hour: Vec<(f64, f64)> = (0..16)
        .map(|shard| (3600.0, if shard == 9 { 40.0 } else { 10.0 }))
        .collect();
    assert_eq!(sharded::outlying_shards(&hour), vec![9]);
    let even: Vec<(f64, f64)> = (0..16).map(|_| (3600.0, 10.0)).collect();
    assert!(sharded::outlying_shards(&even).is_empty());
    assert!(sharded::outlying_shards(&[]).is_empty());
}

#[test]
fn the_evidence_without_the_top_shard_leaves_out_the_one_user_that_carries_it() {
    // One user in canary shard 5 sends a tenth of canary's traffic at 3% errors; the other
    // canary shards are at 1.5%, stable at 1%. The user's shard is not improbable enough to
    // be set aside, so it counts, and it carries most of the evidence: without it the rest
    // say much less. A failure needs that rest 40% of the way to the threshold, log scale
    // (`comparative::WITHOUT_TOP_SHARE`), so this one user's shard cannot fail the canary alone.
    let shards: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: if shard == 5 { 800.0 } else { 80.0 },
            canary_events: if shard == 5 { 24.0 } else { 1.2 },
            stable_requests: 720.0,
            stable_events: 7.2,
        })
        .collect();
    let history = sharded::History {
        stable_outlying: &[],
        first_share: 0.1,
        run: &[],
    };
    let evidence = sharded::evidence(&shards, &history, &[2.0]);
    assert!(evidence.trimmed.is_empty(), "{evidence:?}");
    let (all, rest) = (evidence.log_lr[0], evidence.without_top_log_lr[0]);
    assert!(all > 3.0, "{evidence:?}");
    assert!(rest < 0.5 * all, "{evidence:?}");
    let others: Vec<SplitCounts> = shards
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 5)
        .map(|(_, counts)| *counts)
        .collect();
    let expected = sharded::stratified_log_lr(&others, 2.0) / evidence.dispersion;
    assert!((rest - expected).abs() < 1e-9, "{rest} vs {expected}");
}

#[test]
fn a_broad_regression_fails_the_shard_test_within_two_minutes_of_traffic() {
    // Canary at 5% in every shard, stable at 1%.
    let canary: Vec<(f64, f64)> = (0..16).map(|_| (19.0, 0.95)).collect();
    let stable: Vec<(f64, f64)> = (0..16).map(|_| (169.0, 1.69)).collect();
    let mut ticker = Ticker::new(ComparativeCheck::default());
    let failed_at = (1..=8).find(|tick| {
        let [errors, _] = ticker.tick(
            tick * 30,
            &sharded_version(&canary),
            &sharded_version(&stable),
        );
        errors.decision == Outcome::Fail
    });
    assert!(
        failed_at.is_some_and(|tick| tick <= 4),
        "failed at tick {failed_at:?}"
    );
    let shards = ticker
        .state
        .as_ref()
        .unwrap()
        .errors
        .shards
        .clone()
        .unwrap();
    assert_eq!(shards.dispersion, 1.0, "even shards show no clustering");
}

/// The stage hands canary all the traffic and may still be extended.
const EXTENDABLE: Option<Handover> = Some(Handover { extendable: true });

#[test]
fn a_pass_that_would_give_canary_all_the_traffic_waits_while_canary_leans_worse() {
    // At 50%, canary at 1.3% in every shard against stable's 1%: a broad regression too
    // small for the e-value in four looks (about 50 against 200), but 3.5 standard errors of
    // lean.
    let canary: Vec<(f64, f64)> = (0..16).map(|_| (1000.0, 13.0)).collect();
    let stable: Vec<(f64, f64)> = (0..16).map(|_| (1000.0, 10.0)).collect();
    let (canary, stable) = (sharded_version(&canary), sharded_version(&stable));
    let ticker = |handover| Ticker {
        weight: 50.0,
        handover,
        ..Ticker::new(no_warmup())
    };
    let (mut last_stage, mut earlier_stage) = (ticker(EXTENDABLE), ticker(None));
    for tick in 1..=3 {
        last_stage.tick(tick * 30, &canary, &stable);
        earlier_stage.tick(tick * 30, &canary, &stable);
    }
    let [held, _] = last_stage.tick(4 * 30, &canary, &stable);
    let [passed, _] = earlier_stage.tick(4 * 30, &canary, &stable);
    assert_eq!(passed.decision, Outcome::Pass, "{}", passed.message);
    assert!(passed.e_value < passed.threshold);
    assert_eq!(held.decision, Outcome::Inconclusive, "{}", held.message);
    assert!(
        held.message.contains("leans above stable's")
            && held
                .message
                .contains("at most 2 to give it all the traffic"),
        "{}",
        held.message
    );
    // Holding lets the test decide.
    let failed_at = (5..=12).find(|tick| {
        let [errors, _] = last_stage.tick(tick * 30, &canary, &stable);
        errors.decision == Outcome::Fail
    });
    assert!(failed_at.is_some(), "the held canary is never failed");

    // Alike versions do not lean: the same last stage passes.
    let mut healthy = ticker(EXTENDABLE);
    let [errors, _] = healthy.ticks(1..=4, &stable, &stable);
    assert_eq!(errors.decision, Outcome::Pass, "{}", errors.message);
}

#[test]
fn the_promotion_hold_reads_the_lean_over_the_whole_rollout_each_stage_its_own_stratum() {
    // At 25%, canary at 1.3% in every shard against stable's 1% for three looks: 3.1
    // standard errors of lean, too little for the e-value. At 50% (the last stage) the
    // versions are alike: that stage alone leans 0, but the rollout still leans 2.7
    // standard errors, so the pass that would give canary all the traffic waits.
    let leaning: Vec<(f64, f64)> = (0..16).map(|_| (1000.0, 13.0)).collect();
    let alike: Vec<(f64, f64)> = (0..16).map(|_| (1000.0, 10.0)).collect();
    let (leaning, alike) = (sharded_version(&leaning), sharded_version(&alike));
    let mut ticker = Ticker {
        weight: 25.0,
        ..Ticker::new(no_warmup())
    };
    for tick in 1..=3 {
        let [errors, _] = ticker.tick(tick * 30, &leaning, &alike);
        assert_eq!(errors.decision, Outcome::Pass, "{}", errors.message);
    }
    ticker.weight = 50.0;
    ticker.stage_started = Time(at(4 * 30));
    ticker.handover = EXTENDABLE;
    let [errors, _] = ticker.ticks(4..=5, &alike, &alike);
    assert_eq!(errors.decision, Outcome::Inconclusive, "{}", errors.message);
    assert!(
        errors
            .message
            .contains("leans above stable's in this stage or over the rollout"),
        "{}",
        errors.message
    );
    let state = ticker.state.as_ref().unwrap();
    let carried = state
        .errors
        .carried_lean
        .expect("the 25% stage's lean is carried");
    assert!(
        (sequential::lean_of(&carried) - 36.0 / 138f64.sqrt()).abs() < 1e-9,
        "a window and a half at 25%: 312 of 552 events on canary where half expects 276: {carried:?}"
    );
    // Had the rollout not leaned before, the same last stage passes.
    let mut fresh = Ticker {
        weight: 50.0,
        handover: EXTENDABLE,
        ..Ticker::new(no_warmup())
    };
    let [errors, _] = fresh.ticks(1..=2, &alike, &alike);
    assert_eq!(errors.decision, Outcome::Pass, "{}", errors.message);
}

#[test]
fn once_every_shard_shows_canary_worse_the_promotion_hold_does_not_expire_while_it_leans() {
    // The last stage has run out its extension. Canary at 1.2% against stable's 1% in 15
    // shards (2.3 standard errors of lean after four looks, an e-value far from 200), and in
    // shard 0 a heavy user canary holds: 30% errors. Over every shard the test fails, so the
    // lean still holds the pass; without that user, the same lean no longer does.
    let mut leaning: Vec<(f64, f64)> = (0..16).map(|_| (1000.0, 12.0)).collect();
    let stable = sharded_version(&(0..16).map(|_| (1000.0, 10.0)).collect::<Vec<_>>());
    let broad = sharded_version(&leaning);
    leaning[0].1 = 300.0;
    let with_heavy_user = sharded_version(&leaning);
    let last_look = |canary: &VersionWindow, extendable: bool| {
        let mut ticker = Ticker {
            weight: 50.0,
            handover: Some(Handover { extendable }),
            ..Ticker::new(no_warmup())
        };
        let [errors, _] = ticker.ticks(1..=4, canary, &stable);
        (errors, ticker.state.unwrap().errors.all_shards_rejected)
    };
    let (held, rejected) = last_look(&with_heavy_user, false);
    assert!(rejected, "{}", held.message);
    assert_eq!(held.decision, Outcome::Inconclusive, "{}", held.message);
    assert!(
        held.message
            .contains("the test over every shard has failed, so holding until canary leans less"),
        "{}",
        held.message
    );
    let (passed, rejected) = last_look(&broad, false);
    assert!(!rejected);
    assert_eq!(passed.decision, Outcome::Pass, "{}", passed.message);
    // The same lean holds the pass while the stage may still be extended.
    let (waiting, _) = last_look(&broad, true);
    assert_eq!(
        waiting.decision,
        Outcome::Inconclusive,
        "{}",
        waiting.message
    );
    assert!(
        waiting.message.contains("holding for the test to decide"),
        "{}",
        waiting.message
    );
}

#[test]
fn the_lean_is_the_splits_score_in_standard_errors_read_only_with_enough_events() {
    let split = |canary_events: f64, stable_events: f64| SplitCounts {
        canary_requests: 1000.0,
        canary_events,
        stable_requests: 9000.0,
        stable_events,
    };
    // 300 events, 90 on canary where its 10% share expects 30: (90 − 30) / √(300 · 0.1 · 0.9).
    let lean = sequential::lean(&[split(90.0, 210.0)]);
    assert!((lean - 60.0 / 27f64.sqrt()).abs() < 1e-9, "{lean}");
    assert!(
        sequential::lean(&[split(30.0, 270.0)]).abs() < 1e-9,
        "in proportion"
    );
    assert!(
        sequential::lean(&[split(20.0, 280.0)]) < 0.0,
        "canary better"
    );
    // The same skew on 100 events reads nothing: below `MIN_LEAN_EVENTS`.
    assert_eq!(sequential::lean(&[split(30.0, 70.0)]), 0.0);
    // Strata add up: two halves of the 300 events read as the whole.
    let half = sequential::lean(&[split(45.0, 105.0), split(45.0, 105.0)]);
    assert!((half - lean).abs() < 1e-9, "{half} vs {lean}");
}

#[test]
fn too_few_shards_with_traffic_give_no_verdict() {
    let canary: Vec<(f64, f64)> = (0..16)
        .map(|shard| if shard < 5 { (300.0, 3.0) } else { (0.0, 0.0) })
        .collect();
    let stable: Vec<(f64, f64)> = (0..16).map(|_| (2700.0, 27.0)).collect();
    let mut ticker = Ticker::new(no_warmup());
    let [errors, _] = ticker.tick(30, &sharded_version(&canary), &sharded_version(&stable));
    assert_eq!(errors.decision, Outcome::Inconclusive, "{}", errors.message);
    assert!(
        errors.message.contains("too few shards"),
        "{}",
        errors.message
    );
}

#[test]
fn errors_clustered_on_stable_raise_the_dispersion_and_canarys_own_do_not() {
    let even: Vec<SplitCounts> = (0..14)
        .map(|_| SplitCounts {
            canary_requests: 300.0,
            canary_events: 3.0,
            stable_requests: 2700.0,
            stable_events: 27.0,
        })
        .collect();
    assert_eq!(sharded::dispersion(&even), 1.0);
    // Clustering is read from stable: canary's own excess (possibly its regression) is not
    // taken for clustering.
    let mut on_canary = even.clone();
    on_canary[3].canary_events = 33.0;
    on_canary[7].canary_events = 23.0;
    assert_eq!(sharded::dispersion(&on_canary), 1.0);
    let mut on_stable = even.clone();
    on_stable[3].stable_events = 297.0;
    on_stable[7].stable_events = 207.0;
    assert!(sharded::dispersion(&on_stable) > 5.0);
}

#[test]
fn clustering_too_sparse_for_one_segment_is_read_over_the_run_and_scaled_to_the_segment() {
    // Two error-prone users on stable (shards 3 and 7) add six events each per segment: too
    // few to tell from noise in one segment, plain over a run four segments long.
    let segment: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: 100.0,
            canary_events: 1.0,
            stable_requests: 300.0,
            stable_events: if shard == 3 || shard == 7 { 9.0 } else { 3.0 },
        })
        .collect();
    let times = |shards: &[SplitCounts], factor: f64| -> Vec<SplitCounts> {
        shards
            .iter()
            .map(|s| {
                let mut scaled = SplitCounts::default();
                scaled.add_scaled(s, factor);
                scaled
            })
            .collect()
    };
    let run = times(&segment, 4.0);
    assert_eq!(sharded::dispersion(&segment), 1.0);
    let over_run = sharded::dispersion(&run);
    assert!(over_run > 3.5, "{over_run}");
    // The run's excess φ − 1, scaled by the segment's share of stable's events (a quarter).
    let used = sharded::segment_dispersion(&segment, &run);
    let expected = 1.0 + (over_run - 1.0) / 4.0;
    assert!((used - expected).abs() < 1e-9, "{used} {expected}");
    assert!(used > 1.5, "{used}");
    // Without a run, or with clustering on canary only, the segment's own reading stands.
    assert_eq!(sharded::segment_dispersion(&segment, &[]), 1.0);
    let mut canary_only = times(&segment, 4.0);
    for shard in &mut canary_only {
        shard.stable_events = 12.5;
    }
    canary_only[3].canary_events = 40.0;
    assert_eq!(sharded::segment_dispersion(&segment, &canary_only), 1.0);
}

#[test]
fn the_runs_shard_counts_live_in_the_status_and_set_the_next_segments_dispersion() {
    // Stable's shards 3 and 7 run at twice the others' error rate all along (two error-prone
    // users). Ten minutes at 10% show it plainly; the first half-minute at 25% does not.
    let window = |stable_errors: f64| {
        let canary: Vec<(f64, f64)> = (0..16).map(|_| (300.0, 3.0)).collect();
        let stable: Vec<(f64, f64)> = (0..16)
            .map(|shard| {
                let errors = if shard == 3 || shard == 7 { 2.0 } else { 1.0 };
                (2700.0, stable_errors * errors)
            })
            .collect();
        (sharded_version(&canary), sharded_version(&stable))
    };
    let (canary, stable) = window(27.0);
    let mut ticker = Ticker::new(no_warmup());
    for tick in 1..=20 {
        ticker.tick(tick * 30, &canary, &stable);
    }
    ticker.weight = 25.0;
    ticker.stage_started = Time(at(600));
    let [errors, _] = ticker.tick(630, &canary, &stable);
    let state = ticker.state.clone().unwrap();
    let segment_alone = sharded::dispersion(&state.errors.segment_shards);
    let used = state.errors.shards.as_ref().unwrap().dispersion;
    assert!(segment_alone < 1.1, "{segment_alone}");
    assert!(used > 2.0, "{used}: {}", errors.message);
    // Everything counted so far, stable's side included, is in the status: a restarted
    // controller reads the same dispersion.
    let counted: f64 = state
        .errors
        .run_shards
        .iter()
        .map(|s| s.stable_events)
        .sum();
    assert!(
        (counted - state.errors.total.stable_events).abs() < 1e-6,
        "{counted}"
    );
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.contains("\"runShards\""), "{json}");
    let back: ComparativeState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
}

#[test]
fn the_shard_test_rejects_independent_errors_no_more_often_than_alpha_however_often_it_looks() {
    // 400 null streams, 90 looks each (a 45-minute rollout at 30s), Poisson errors per shard
    // with varying rates and traffic.
    let spec = ComparativeCheck::default();
    let alpha_per_test = spec.alpha_per_test();
    let mut rng = StdRng::seed_from_u64(17);
    let streams = 400;
    let mut rejected = 0;
    for _ in 0..streams {
        let rate = 0.002 + rng.random::<f64>() * 0.03;
        let per_shard_requests = 50.0 + rng.random::<f64>() * 300.0;
        let mut ticker = Ticker::new(no_warmup());
        for tick in 1..=90 {
            let draw = |rng: &mut StdRng, requests: f64| -> (f64, f64) {
                let requests = requests.round();
                let errors = Binomial::new(requests as u64, rate).unwrap().sample(rng) as f64;
                (requests, errors)
            };
            let canary: Vec<(f64, f64)> = (0..16)
                .map(|_| draw(&mut rng, per_shard_requests * 0.1))
                .collect();
            let stable: Vec<(f64, f64)> = (0..16)
                .map(|_| draw(&mut rng, per_shard_requests * 0.9))
                .collect();
            let [errors, _] = ticker.tick(
                tick * 30,
                &sharded_version(&canary),
                &sharded_version(&stable),
            );
            if errors.decision == Outcome::Fail {
                rejected += 1;
                break;
            }
        }
    }
    let rate = rejected as f64 / streams as f64;
    assert!(
        rate <= alpha_per_test,
        "{rejected} of {streams} null streams rejected ({rate}), alpha' {alpha_per_test}"
    );
}

// ---------------------------------------------------------------------------------------
// Latency by shard: the histogram's evidence, the shards' breadth (issue 17, second pass).
// ---------------------------------------------------------------------------------------

/// A version's window with 16 even shards of `requests / 16` requests, `slow_p99` requests
/// above 300ms in the histogram and, per shard, the filter's `slow` outcome (above its
/// 500ms slowThresholdMs) from `slow_per_shard`.
fn latency_version(requests: f64, slow_p99: f64, slow_per_shard: &[f64; 16]) -> VersionWindow {
    let slow_filter: f64 = slow_per_shard.iter().sum();
    let shards: Vec<ShardCounts> = slow_per_shard
        .iter()
        .map(|slow| ShardCounts {
            requests: requests / 16.0,
            errors: 0.0,
            slow: *slow,
        })
        .collect();
    VersionWindow {
        requests,
        errors: 0.0,
        p99_ms: None,
        latency_buckets: vec![
            (100.0, requests - 5.0 * slow_p99),
            (300.0, requests - slow_p99),
            (500.0, requests - slow_filter),
            (1000.0, requests),
            (f64::INFINITY, requests),
        ],
        shards,
    }
}

/// Stable: 2700 requests a window, 1% above 300ms (its p99 boundary), 0.15% above 500ms.
fn latency_stable() -> VersionWindow {
    latency_version(2700.0, 27.0, &[0.25; 16])
}

#[test]
fn by_shard_the_latency_test_reads_stables_p99_bucket_not_the_filters_slow_threshold() {
    // A broad slow-down: canary 5x stable's share above 300ms, but no more often above the
    // filter's 500ms slowThresholdMs. The shards' `slow` outcome cannot see it; the
    // histograms can, and the shards do not stand in the way of a broad excess.
    let canary = latency_version(300.0, 15.0, &[0.03; 16]);
    let stable = latency_stable();
    let mut ticker = Ticker::new(no_warmup());
    let failed_at = (1..=8).find(|tick| {
        let [_, latency] = ticker.tick(tick * 30, &canary, &stable);
        latency.decision == Outcome::Fail
    });
    assert!(
        failed_at.is_some_and(|tick| tick <= 6),
        "failed at tick {failed_at:?}"
    );
    let state = ticker.state.as_ref().unwrap();
    assert_eq!(state.latency_threshold_ms, Some(300.0));
    let shards = state.slow_requests.shards.as_ref().unwrap();
    assert_eq!(shards.shards_with_traffic, 16);
    assert!(shards.trimmed.is_empty(), "{shards:?}");
}

#[test]
fn a_heavy_user_slower_than_the_filters_threshold_cannot_fail_the_latency_test_by_shard() {
    // One user in canary's shard 5 sends 20 requests a window, all slower than 500ms (so
    // slower than 300ms too); everyone else is as fast as on stable.
    let mut slow = [0.03; 16];
    slow[5] += 20.0;
    let canary = latency_version(300.0, 3.0 + 20.0, &slow);
    let stable = latency_stable();
    let bare = |window: &VersionWindow| VersionWindow {
        shards: Vec::new(),
        ..window.clone()
    };
    let mut by_shard = Ticker::new(no_warmup());
    let mut request_level = Ticker::new(no_warmup());
    let mut request_level_failed = false;
    for tick in 1..=90 {
        let [_, latency] = by_shard.tick(tick * 30, &canary, &stable);
        assert_ne!(
            latency.decision,
            Outcome::Fail,
            "tick {tick}: {}",
            latency.message
        );
        let [_, plain] = request_level.tick(tick * 30, &bare(&canary), &bare(&stable));
        request_level_failed |= plain.decision == Outcome::Fail;
    }
    assert!(request_level_failed, "the request-level test is fooled");
    let state = by_shard.state.as_ref().unwrap();
    let shards = state.slow_requests.shards.as_ref().unwrap();
    assert_eq!(shards.trimmed, vec![5], "{shards:?}");
}

#[test]
fn top_shards_in_line_with_the_others_count_in_full() {
    // A broad regression (canary 5x in every shard) with the top shards only a little
    // above the rest: nothing stands out, so nothing is capped.
    let shards: Vec<SplitCounts> = (0..16)
        .map(|shard| SplitCounts {
            canary_requests: 300.0,
            canary_events: if shard < 2 { 20.0 } else { 15.0 },
            stable_requests: 2700.0,
            stable_events: 27.0,
        })
        .collect();
    let grid = sequential::alternatives(0.5);
    let none = sharded::History {
        stable_outlying: &[],
        first_share: 0.1,
        run: &[],
    };
    let evidence = sharded::evidence(&shards, &none, &grid);
    assert!(evidence.trimmed.is_empty(), "{evidence:?}");
    for (capped, full) in evidence.log_lr.iter().zip(&evidence.untrimmed_log_lr) {
        assert!((capped - full).abs() < 1e-9, "{evidence:?}");
    }
    // One shard far above the rest stands out and is set aside.
    let mut one_user = shards.clone();
    one_user[7].canary_events = 120.0;
    let evidence = sharded::evidence(&one_user, &none, &grid);
    assert_eq!(evidence.trimmed, vec![7], "{evidence:?}");
    assert!(evidence.log_lr[0] < evidence.untrimmed_log_lr[0]);
}

#[test]
fn the_poisson_tail_is_exact() {
    // P(X >= 1) = 1 - e^-2; P(X >= 3) for mean 0.5 = 1 - e^-0.5 (1 + 0.5 + 0.125).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.max(1e-300);
    assert!(close(
        sharded::poisson_upper_tail(2.0, 1.0),
        1.0 - (-2.0f64).exp()
    ));
    assert!(close(
        sharded::poisson_upper_tail(0.5, 3.0),
        1.0 - (-0.5f64).exp() * 1.625
    ));
    // Far in the tail: P(X >= 20) for mean 1 is about e^-1 / 20! (1 + 1/21 + ...).
    let tail = sharded::poisson_upper_tail(1.0, 20.0);
    assert!(tail > 1.5e-19 && tail < 1.6e-19, "{tail}");
    assert_eq!(sharded::poisson_upper_tail(3.0, 0.0), 1.0);
    assert_eq!(sharded::poisson_upper_tail(0.0, 1.0), 0.0);
}

//! The simulation's key figures, on reduced runs with fixed seeds (deterministic).
//! The full figures are in BENCHMARKS.md (`stickycanary simulate`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stickycanary::simulate::report::{simulate, FAST_DETECTION_S};
use stickycanary::simulate::scenario::{catalog, Scenario};
use stickycanary::simulate::{Options, ScenarioResult, Variant};

fn options(runs: usize) -> Options {
    Options {
        healthy_runs: runs,
        regression_runs: runs,
        seed: 42,
        threads: 2,
        ..Options::full()
    }
}

fn scenario(name_starts: &str) -> (usize, Scenario) {
    catalog()
        .into_iter()
        .enumerate()
        .find(|(_, scenario)| scenario.name.starts_with(name_starts))
        .unwrap()
}

fn run(name_starts: &str, variant: Variant, runs: usize) -> ScenarioResult {
    let (index, scenario) = scenario(name_starts);
    simulate(index, &scenario, variant, &options(runs))
}

#[test]
fn healthy_canaries_with_a_shared_error_burst_are_promoted_not_rolled_back() {
    let result = run("healthy, 50 req/s, shared", Variant::Comparative, 40);
    assert!(result.rollback_rate() <= 0.05, "{result:?}");
    assert_eq!(
        result.rollback_reasons.get("comparative-errors"),
        None,
        "{result:?}"
    );
    assert!(result.promoted >= 38, "{result:?}");
    // The seed's SLO: promotion success above 95%, reported next to the false positives.
    assert!(result.promotion_rate() > 0.95, "{result:?}");
    let table = stickycanary::simulate::report::render_markdown(
        std::slice::from_ref(&result),
        &options(40),
    );
    let expected = format!(
        "| {:.1}% ({}) |",
        result.promotion_rate() * 100.0,
        result.promoted
    );
    assert!(
        table.contains("promotion success (SLO > 95%)") && table.contains(&expected),
        "{expected} in {table}"
    );
    let promotion = result.median_promotion_s().unwrap();
    assert!(
        (45.0 * 60.0..=50.0 * 60.0).contains(&promotion),
        "median promotion {promotion}s"
    );
}

#[test]
fn at_low_traffic_a_shared_burst_trips_the_plain_guard_rail_but_not_the_comparative_variant() {
    // 0.5 canary requests/s: a burst that hits both versions pushes canary's 1-minute window
    // over the seed's 5%. The plain rules roll back for it; with the comparative check on, a
    // guard-rail breach that stable shows too holds the rollout instead.
    let burst = "healthy, 5 req/s (minRequests 20), shared burst";
    let plain = run(burst, Variant::Thresholds, 300);
    let plain_error_rate = plain.rollback_reasons.get("error-rate").copied();
    assert!(plain_error_rate.unwrap_or(0) >= 3, "{plain:?}");
    let comparative = run(burst, Variant::Comparative, 300);
    let guard_rail = comparative.rollback_reasons.get("error-rate").copied();
    assert!(guard_rail.unwrap_or(0) <= 1, "{comparative:?}");
    assert!(comparative.rollback_rate() <= 0.01, "{comparative:?}");
}

#[test]
fn a_five_fold_error_rate_is_caught_within_two_minutes_by_the_comparative_check_only() {
    let comparative = run("errors 1% -> 5%", Variant::Comparative, 30);
    assert!(
        comparative.rollback_within_rate(FAST_DETECTION_S) >= 0.9,
        "{comparative:?}"
    );
    let thresholds = run("errors 1% -> 5%", Variant::Thresholds, 30);
    assert!(
        thresholds.rollback_within_rate(FAST_DETECTION_S)
            < comparative.rollback_within_rate(FAST_DETECTION_S),
        "{thresholds:?}"
    );
}

#[test]
fn a_doubled_error_rate_is_caught_within_the_rollout_by_the_comparative_check_only() {
    let comparative = run("errors 1% -> 2%", Variant::Comparative, 20);
    assert!(comparative.rollback_rate() >= 0.85, "{comparative:?}");
    assert!(comparative
        .rollback_reasons
        .contains_key("comparative-errors"));
    let thresholds = run("errors 1% -> 2%", Variant::Thresholds, 20);
    assert_eq!(
        thresholds.rolled_back(),
        0,
        "a 2% error rate is within the 5% threshold"
    );
}

#[test]
fn a_doubled_p99_is_caught_by_the_latency_comparison() {
    let comparative = run("p99 +100%", Variant::Comparative, 20);
    assert!(
        comparative.rollback_within_rate(FAST_DETECTION_S * 2.0) >= 0.9,
        "{comparative:?}"
    );
    assert!(
        comparative
            .rollback_reasons
            .contains_key("comparative-latency"),
        "{comparative:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_figures_whatever_the_thread_count() {
    let (index, scenario) = scenario("errors 1% -> 5%");
    let one = simulate(
        index,
        &scenario,
        Variant::Comparative,
        &Options {
            threads: 1,
            ..options(8)
        },
    );
    let three = simulate(
        index,
        &scenario,
        Variant::Comparative,
        &Options {
            threads: 3,
            ..options(8)
        },
    );
    assert_eq!(one, three);
    let other_seed = simulate(
        index,
        &scenario,
        Variant::Comparative,
        &Options {
            seed: 43,
            ..options(8)
        },
    );
    assert_ne!(
        one.rollback_times_s, other_seed.rollback_times_s,
        "the seed matters"
    );
}

// ---------------------------------------------------------------------------------------
// Users whose errors cluster: the request-level test against the per-shard one (issue 17).
// ---------------------------------------------------------------------------------------

#[test]
fn with_half_the_errors_from_five_users_only_the_shard_test_keeps_healthy_canaries() {
    let name = "healthy, 50 req/s, half the errors from 5 users";
    let request_level = run(name, Variant::Comparative, 30);
    assert!(
        request_level.rollback_rate() >= 0.15,
        "the request-level test should be fooled: {request_level:?}"
    );
    let by_shard = run(name, Variant::ClusterRobust, 30);
    assert!(by_shard.rolled_back() <= 1, "{by_shard:?}");
    assert!(by_shard.promoted >= 28, "{by_shard:?}");
}

#[test]
fn one_bot_at_five_req_s_trips_the_plain_guard_rail_but_not_the_broad_one() {
    let name = "healthy, 5 req/s (minRequests 20), one bot";
    let plain = run(name, Variant::Thresholds, 60);
    assert!(
        plain
            .rollback_reasons
            .get("error-rate")
            .copied()
            .unwrap_or(0)
            >= 10,
        "{plain:?}"
    );
    let by_shard = run(name, Variant::ClusterRobust, 60);
    assert_eq!(by_shard.rolled_back(), 0, "{by_shard:?}");
    assert_eq!(by_shard.promoted, 60, "{by_shard:?}");
}

#[test]
fn with_shards_independent_errors_still_give_no_false_rollbacks() {
    let by_shard = run("healthy, 50 req/s", Variant::ClusterRobust, 30);
    assert_eq!(by_shard.rolled_back(), 0, "{by_shard:?}");
}

#[test]
fn with_shards_a_five_fold_error_rate_is_still_caught_within_two_minutes() {
    // The goal (>= 95%) on 1000 runs of BENCHMARKS.md's seed (a few seconds in a debug
    // build): with 60 runs, capping the top shards whether or not they stood out passed
    // as well, at 94.1% over 2000 runs.
    let (index, scenario) = scenario("errors 1% -> 5%");
    let by_shard = simulate(
        index,
        &scenario,
        Variant::ClusterRobust,
        &Options {
            seed: 20261126,
            ..options(1000)
        },
    );
    assert!(
        by_shard.rollback_within_rate(FAST_DETECTION_S) >= 0.95,
        "{by_shard:?}"
    );
    assert!(by_shard.rollback_reasons.contains_key("comparative-errors"));
}

#[test]
fn with_shards_a_doubled_error_rate_is_still_caught_within_the_rollout() {
    let by_shard = run("errors 1% -> 2%", Variant::ClusterRobust, 20);
    assert!(by_shard.rollback_rate() >= 0.9, "{by_shard:?}");
}

#[test]
fn with_shards_a_doubled_p99_is_caught_within_two_minutes_as_often_as_request_level() {
    // The shard test reads stable's p99 bucket from the histograms, as the request-level
    // test does; the filter's fixed 500ms `slow` outcome alone caught only half of these
    // within two minutes.
    let by_shard = run("p99 +100%", Variant::ClusterRobust, 40);
    let request_level = run("p99 +100%", Variant::Comparative, 40);
    assert!(
        by_shard.rollback_within_rate(FAST_DETECTION_S) >= 0.9,
        "{by_shard:?}"
    );
    assert!(
        by_shard.rollback_within_rate(FAST_DETECTION_S)
            >= request_level.rollback_within_rate(FAST_DETECTION_S) - 0.05,
        "by shard {by_shard:?}, request level {request_level:?}"
    );
    assert!(by_shard
        .rollback_reasons
        .contains_key("comparative-latency"));
}

#[test]
fn one_slow_healthy_user_on_canary_does_not_roll_it_back() {
    // Issue 22: a client whose every request takes 410-490 ms on both versions (stable's p99
    // is 300 ms, the filter's default slow threshold 500 ms) sat on canary and rolled back
    // every such canary: its requests counted as independent slow events. Now the filter
    // counts `slow` at the test's own threshold and the user's one shard is set aside.
    let by_shard = run(
        "healthy, one slow user (450ms, 1 req/s) on canary",
        Variant::ClusterRobust,
        60,
    );
    assert!(by_shard.rolled_back() <= 1, "{by_shard:?}");
}

#[test]
fn a_bug_that_breaks_three_percent_of_users_is_never_promoted() {
    // Issue 22: 3% of the users (chosen by something the hash does not see) get only 5xx on
    // canary. The old dispersion, read from canary's own shards, discounted the regression
    // as fast as it grew: 31% of such rollouts were promoted.
    let by_shard = run("3% of users broken", Variant::ClusterRobust, 60);
    assert_eq!(by_shard.promoted, 0, "{by_shard:?}");
    assert!(by_shard.rollback_rate() >= 0.95, "{by_shard:?}");
}

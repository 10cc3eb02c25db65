//! Issue 22 through the real stack: Envoy running the built filter, Prometheus scraping it, the
//! `sc-backend` upstreams and `stickycanary local` driving a rollout compressed to seconds,
//! with the recommended comparative check on. Under sticky assignment every request of a user
//! lands on one version, so one user is one piece of evidence, however many requests it sends:
//!
//! - one slow but healthy user (about 450 ms on both versions, far above stable's p99 and below
//!   the filter's default 500 ms slow threshold) sits on canary from the first stage: the
//!   rollout is promoted;
//! - a code path that fails on canary only, used by about 5% of the users (spread over every
//!   user shard, since the path has nothing to do with the hash), two of them heavy API
//!   clients in the first cohort: the rollout is rolled back;
//! - three clients that fail on both versions, on canary from the first stage, seen on stable
//!   before the run: the controller reads stable's shards from before the run once, sets
//!   their shards aside, and the rollout is promoted.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use stickycanary_e2e::load::{self, LoadHandle, LoadOptions};
use stickycanary_e2e::stack::{phase_of, RolloutPlan, Stack, StackOptions, ROLLOUT};
use stickycanary_filter::assign;

const USERS: u64 = 20_000;

/// The recommended checks, with the latency warm-up shortened to the compressed stages (the
/// default minute would skip the whole stage).
const COMPARATIVE: &str = "    comparative: {warmup: 1s}\n";

fn options() -> StackOptions {
    StackOptions {
        plan: RolloutPlan {
            extra_spec: COMPARATIVE.to_string(),
            ..RolloutPlan::default()
        },
        ..StackOptions::default()
    }
}

/// Ordinary users at a steady 300 req/s: about 30 req/s on canary at the first stage.
fn background(stack: &Stack) -> LoadHandle {
    stack.steady_users(USERS, 300.0, 150)
}

/// The status's last analysis, one line per check, for failure messages.
fn checks(status: &Value) -> String {
    status["lastAnalysis"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|check| format!("{}: {}", check["name"], check["message"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `users` ids from `first` on calling `path`, `rate` req/s in all over `connections`
/// connections, for 150 s (longer than any rollout here).
fn users_calling(
    stack: &Stack,
    users: u64,
    first: u64,
    connections: usize,
    rate: f64,
    path: &str,
) -> LoadHandle {
    let mut opts: LoadOptions = stack.load_options();
    opts.users = users;
    opts.first_user = first;
    opts.connections = connections;
    opts.rate = Some(rate);
    opts.path = path.to_string();
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(150));
    load::start(opts)
}

/// The rollout ended in `phase`; otherwise the status, its checks and the controller's log.
fn assert_phase(stack: &Stack, status: &Value, phase: &str) {
    assert_eq!(
        phase_of(status),
        phase,
        "status: {status}\nchecks:\n{}\ncontroller log:\n{}",
        checks(status),
        stack.controller_log()
    );
}

#[test]
fn a_healthy_canary_with_one_slow_user_on_it_is_promoted() {
    let mut stack = Stack::start(&options()).expect("stack");
    let ordinary = background(&stack);
    // The slow user: the first id on canary from the first stage, 4 req/s, each answered after
    // 450 ms by whichever version serves it. It is about an eighth of canary's traffic.
    let slow_user = (0..USERS)
        .find(|i| assign::is_canary(assign::bucket(ROLLOUT, &format!("u{i}")), 10.0))
        .expect("some user on canary at 10%");
    let slow = users_calling(&stack, 1, slow_user, 3, 4.0, "/__sleep/450");
    stack.start_controller().expect("controller");
    let status = stack
        .wait_final(Duration::from_secs(120))
        .expect("final phase");
    let slow_summary = slow.stop();
    ordinary.stop();

    assert_phase(&stack, &status, "Promoted");
    // The user really was slow on canary: its requests were served by canary and took
    // at least the 450 ms the backend waits.
    let on_canary = slow_summary.by_version.get("canary").copied().unwrap_or(0);
    assert!(
        on_canary >= 40,
        "the slow user should be on canary: {slow_summary:?}"
    );
    assert!(
        slow_summary.latency_ms_p50 >= 440.0,
        "the slow user's requests should take about 450 ms: {slow_summary:?}"
    );
    // The latency test judged shards counted at its own threshold (the controller wrote it
    // into the filter's config for this run), below the user's 450 ms.
    let threshold = status["comparative"]["shardSlowThresholdMs"]
        .as_f64()
        .expect("shardSlowThresholdMs in the status");
    assert!(threshold < 450.0, "threshold {threshold}: {status}");
}

#[test]
fn a_canary_path_failing_for_five_percent_of_users_is_rolled_back() {
    let mut stack = Stack::start(&options()).expect("stack");
    let ordinary = background(&stack);
    // Both versions fail about 1% of all requests (a path that fails whoever serves it), so
    // the comparison has a stable rate to beat.
    let shared = users_calling(&stack, USERS, 0, 1, 3.0, "/__fail");
    // 1,000 further users (5% of all) call a path that only canary breaks. Their ids are not
    // related to the hash, so they land in every shard. As real traffic is, their use of it
    // is heavy-tailed: 998 call it now and then (4.5 req/s between them) and two API
    // clients call it 10 times a second each. The two clients are in the first cohort (the
    // hash puts them on canary at 10%), so from the first stage most of canary's errors are
    // theirs: canary fails about 40% of its requests, but only about 2.5% outside their two
    // shards, under the seed's 5% guard rail. The analysis before issue 22 promoted this
    // release (checked with the controller built at 50bb599^: 10 → 25 → 50 → 100): by its
    // rules, the two clients' errors raised canary's dispersion, which discounted the rest.
    let light = users_calling(&stack, 998, USERS, 1, 4.5, "/__fails-on/canary");
    let clients: Vec<u64> = first_cohort_in_distinct_shards(USERS + 20_000, 2);
    let heavy: Vec<LoadHandle> = clients
        .iter()
        .map(|id| users_calling(&stack, 1, *id, 2, 10.0, "/__fails-on/canary"))
        .collect();
    stack.start_controller().expect("controller");
    let status = stack
        .wait_final(Duration::from_secs(120))
        .expect("final phase");
    let mut affected_summary = light.stop();
    for client in heavy {
        for (version, count) in client.stop().non_2xx_by_version {
            *affected_summary
                .non_2xx_by_version
                .entry(version)
                .or_default() += count;
        }
    }
    shared.stop();
    ordinary.stop();

    assert_phase(&stack, &status, "RolledBack");
    // Caught by the comparison with stable (or by the seed's 5% guard rail, should the rate
    // outside the clients' shards cross it): not by anything else.
    let reason = status["rollbackReason"].as_str().unwrap_or("");
    assert!(
        matches!(reason, "comparative-errors" | "error-rate"),
        "status: {status}"
    );
    // The failures were canary's alone: stable served the same path without an error.
    let stable_errors = affected_summary
        .non_2xx_by_version
        .get("stable")
        .copied()
        .unwrap_or(0);
    let canary_errors = affected_summary
        .non_2xx_by_version
        .get("canary")
        .copied()
        .unwrap_or(0);
    assert_eq!(stable_errors, 0, "{affected_summary:?}");
    assert!(canary_errors > 0, "{affected_summary:?}");
}

#[test]
fn error_prone_users_stable_showed_before_the_run_do_not_roll_a_healthy_canary_back() {
    let mut stack = Stack::start(&options()).expect("stack");
    let ordinary = background(&stack);
    // Three clients whose every request fails on whichever version serves it (`/__fail`),
    // 2 req/s each, all three on canary from the first stage, each in its own shard. They run
    // on stable for a few seconds before the controller starts: stable's shard series show
    // them, and a user keeps its shard across runs (the shard hash has no salt).
    //
    // Without that reading the run's own history explains one canary outlier that stable
    // never showed; the other two stay in the test and fail it (checked by disabling the
    // reading: `comparative-errors` rolled this canary back).
    let clients = first_cohort_in_distinct_shards(USERS + 40_000, 3);
    let failing: Vec<LoadHandle> = clients
        .iter()
        .map(|id| users_calling(&stack, 1, *id, 1, 2.0, "/__fail"))
        .collect();
    std::thread::sleep(Duration::from_secs(8));
    stack.start_controller().expect("controller");
    let status = stack
        .wait_final(Duration::from_secs(120))
        .expect("final phase");
    let mut failed_on = std::collections::BTreeMap::new();
    for client in failing {
        for (version, count) in client.stop().non_2xx_by_version {
            *failed_on.entry(version).or_insert(0) += count;
        }
    }
    ordinary.stop();

    assert_phase(&stack, &status, "Promoted");
    // They failed on both versions: on stable before the run, on canary during it.
    assert!(
        failed_on.get("stable").copied().unwrap_or(0) > 0,
        "{failed_on:?}"
    );
    assert!(
        failed_on.get("canary").copied().unwrap_or(0) > 0,
        "{failed_on:?}"
    );
    // The controller read stable's hour before once and found the three clients' shards.
    let before = &status["comparative"]["stableBeforeRun"];
    let outlying: Vec<u64> = before["outlyingErrorShards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    for id in &clients {
        let shard = u64::from(assign::shard(format!("u{id}").as_bytes()));
        assert!(
            outlying.contains(&shard),
            "shard {shard} of u{id}: {before}"
        );
    }
    assert!(before["requests"].as_f64().unwrap_or(0.0) > 0.0, "{before}");
}

/// `count` user ids from `first` on that the hash puts on canary at 10%, each in its own
/// user shard.
fn first_cohort_in_distinct_shards(first: u64, count: usize) -> Vec<u64> {
    let mut picked: Vec<(u64, u8)> = Vec::new();
    for id in first.. {
        let placement = assign::placement(ROLLOUT, format!("u{id}").as_bytes());
        let shard_taken = picked.iter().any(|(_, shard)| *shard == placement.shard);
        if assign::is_canary(placement.bucket, 10.0) && !shard_taken {
            picked.push((id, placement.shard));
            if picked.len() == count {
                break;
            }
        }
    }
    picked.into_iter().map(|(id, _)| id).collect()
}

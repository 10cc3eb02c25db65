//! Issue 17 through the real stack: Envoy running the built filter (which counts every
//! hash-routed request per user shard), Prometheus scraping it, the `sc-backend` upstreams and
//! `stickycanary local` driving a rollout compressed to seconds. One heavy user whose requests
//! fail on whichever version serves them sits on canary from the first stage: canary's error
//! rate is far above the seed's 5%, but only in that user's shard, so the rollout is promoted.
//! A broad canary regression with the same user is still rolled back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use serde_json::Value;
use stickycanary_e2e::backend_server::Behaviour;
use stickycanary_e2e::load::{self, LoadHandle, LoadOptions};
use stickycanary_e2e::stack::{phase_of, Stack, StackOptions, ROLLOUT};
use stickycanary_filter::assign;

const USERS: u64 = 20_000;

/// Ordinary users at a steady 300 req/s: about 30 req/s on canary at the first stage.
fn background(stack: &Stack) -> LoadHandle {
    stack.steady_users(USERS, 300.0, 120)
}

/// The first ordinary user id that is on canary from the first stage (10%) on.
fn heavy_user_index() -> u64 {
    (0..USERS)
        .find(|i| assign::is_canary(assign::bucket(ROLLOUT, &format!("u{i}")), 10.0))
        .expect("some user on canary at 10%")
}

/// The heavy user: 20 req/s, every one a 503 (`/__fail`) whichever version serves it.
fn heavy_user(stack: &Stack) -> LoadHandle {
    let mut opts: LoadOptions = stack.load_options();
    opts.users = 1;
    opts.first_user = heavy_user_index();
    opts.connections = 1;
    opts.rate = Some(20.0);
    opts.path = "/__fail".to_string();
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(120));
    load::start(opts)
}

/// Every error-rate message recorded in the status history and the last analysis.
fn error_rate_messages(status: &Value) -> String {
    status["lastAnalysis"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|check| check["name"] == "error-rate")
        .map(|check| check["message"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn one_heavy_error_prone_user_on_canary_does_not_roll_it_back() {
    let mut stack = Stack::start(&StackOptions::default()).expect("stack");
    let ordinary = background(&stack);
    let heavy = heavy_user(&stack);
    stack.start_controller().expect("controller");
    let status = stack
        .wait_final(Duration::from_secs(90))
        .expect("final phase");
    let upstreams = stack.upstreams_report();
    let heavy_summary = heavy.stop();
    let ordinary_summary = ordinary.stop();

    // On a failure, say where canary's errors came from: the canary backend (`canary` in
    // non_2xx_by_version) or Envoy's own replies when it could not reach it (`none`).
    assert_eq!(
        phase_of(&status),
        "Promoted",
        "status: {status}\nupstreams:\n{upstreams}\nordinary users: non-2xx by version {:?}, \
         by version {:?}\nheavy user: non-2xx by version {:?}\ncontroller log:\n{}",
        ordinary_summary.non_2xx_by_version,
        ordinary_summary.by_version,
        heavy_summary.non_2xx_by_version,
        stack.controller_log()
    );
    // The heavy user really was on canary and really failed: canary's error rate over all
    // its traffic was far above the seed's 5% while it was at 10-50%.
    let canary_errors = heavy_summary
        .non_2xx_by_version
        .get("canary")
        .copied()
        .unwrap_or(0);
    assert!(
        canary_errors >= 200,
        "the heavy user's 503s should come from canary: {heavy_summary:?}"
    );
}

#[test]
fn a_broad_canary_regression_is_still_rolled_back_with_the_heavy_user_there() {
    let opts = StackOptions {
        canary: Behaviour {
            error_ratio: 0.2,
            error_status: 503,
            delay_ms: 0,
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let ordinary = background(&stack);
    let heavy = heavy_user(&stack);
    stack.start_controller().expect("controller");
    let status = stack
        .wait_final(Duration::from_secs(90))
        .expect("final phase");
    let upstreams = stack.upstreams_report();
    heavy.stop();
    ordinary.stop();

    assert_eq!(
        phase_of(&status),
        "RolledBack",
        "status: {status}\nupstreams:\n{upstreams}"
    );
    assert_eq!(status["rollbackReason"], "error-rate", "status: {status}");
    let messages = error_rate_messages(&status);
    assert!(
        messages.contains("without outlying shards"),
        "the breach was judged by shard: {messages}"
    );
}

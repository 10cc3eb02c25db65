//! The release lifecycle end to end in local mode (issue 12): real Envoy with the built filter,
//! real Prometheus, `sc-backend` upstreams that answer with the version they serve, and
//! `stickycanary local` with the `--on-*` hooks acting on those backends. Releases follow each
//! other by editing `spec.canary.revision`; every claim is checked from responses.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use stickycanary_e2e::backend_server::{BehaviourPatch, ReleasePatch};
use stickycanary_e2e::load::{self, LoadHandle};
use stickycanary_e2e::stack::{RolloutPlan, Stack, StackOptions};
use stickycanary_filter::assign;

/// Users probed one by one through Envoy.
const PROBED: usize = 300;

fn plan(revision: &str) -> RolloutPlan {
    RolloutPlan {
        stages: vec![(10.0, Some("6s")), (50.0, Some("3s")), (100.0, None)],
        revision: Some(revision.to_string()),
        scale_down_delay: "2s",
        ..RolloutPlan::default()
    }
}

fn users() -> Vec<String> {
    (0..PROBED).map(|i| format!("probe-{i}")).collect()
}

/// `(status, x-served-by, x-version)` of one request as `user`.
fn probe(stack: &Stack, user: &str) -> (u16, String, String) {
    stack.probe(user).expect("request through Envoy")
}

/// The probed users that get `version`, with every response checked to be a 200 from a
/// known backend.
fn users_getting(stack: &Stack, version: &str) -> BTreeSet<String> {
    users()
        .into_iter()
        .filter(|user| {
            let (status, _, got) = probe(stack, user);
            assert_eq!(status, 200, "user {user} got {status} ({got})");
            got == version
        })
        .collect()
}

/// The users the filter puts on canary with `salt` at `weight`.
fn cohort(salt: &str, weight: f64) -> BTreeSet<String> {
    users()
        .into_iter()
        .filter(|user| assign::is_canary(assign::bucket(salt, user), weight))
        .collect()
}

fn field<'a>(status: &'a Value, name: &str) -> &'a str {
    status.get(name).and_then(Value::as_str).unwrap_or("")
}

fn wait(stack: &mut Stack, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    stack
        .wait_status(Duration::from_secs(60), done)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Envoy runs the ECDS file the controller wrote last; returns its weight.
fn envoy_took_the_file(stack: &Stack) -> f64 {
    stack
        .wait_envoy_took_ecds_file(Duration::from_secs(10))
        .expect("Envoy takes the controller's ECDS file")
}

/// How long Envoy's workers get to take up a configuration its main thread accepted.
const SETTLE: Duration = Duration::from_secs(5);

/// `user`'s answer once Envoy's workers run the file's weight ([`Stack::settled_probe`]).
fn settled_probe(
    stack: &Stack,
    user: &str,
    previous: (&str, &str),
    until: Instant,
) -> (u16, String, String) {
    stack
        .settled_probe(user, previous, until)
        .expect("request through Envoy")
}

/// Waits for the first stage of `revision`'s run and returns the users on the canary then:
/// the same set in two rounds of probes, with Envoy running the weight the file held all along.
fn first_stage_cohort(stack: &mut Stack, revision: &str) -> (f64, BTreeSet<String>) {
    wait(stack, &format!("{revision} at its first stage"), |s| {
        field(s, "phase") == "Progressing" && field(s, "canaryRevision") == revision
    });
    for _ in 0..5 {
        let before = envoy_took_the_file(stack);
        let first = users_getting(stack, revision);
        let second = users_getting(stack, revision);
        if first == second && stack.ecds_weight().unwrap() == before {
            return (before, first);
        }
    }
    panic!("the weight kept moving while probing {revision}'s cohort");
}

fn steady_load(stack: &Stack) -> LoadHandle {
    let mut opts = stack.load_options();
    opts.users = 5_000;
    opts.connections = 4;
    opts.rate = Some(300.0);
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(150));
    load::start(opts)
}

#[test]
fn two_releases_back_to_back_promote_one_and_roll_back_the_next_with_a_mid_run_revision_change() {
    let started = Instant::now();
    let mut stack = Stack::start(&StackOptions {
        plan: plan("v2"),
        ..StackOptions::default()
    })
    .expect("stack");
    // Before any release: stable serves v1, the canary is not running.
    stack
        .stable
        .release(&ReleasePatch {
            version: Some("v1".into()),
            stopped: Some(false),
        })
        .unwrap();
    stack
        .canary
        .release(&ReleasePatch {
            version: Some("none".into()),
            stopped: Some(true),
        })
        .unwrap();
    assert!(users_getting(&stack, "v1").len() == PROBED);
    let gate = stack.dir().join("v4-go");
    let holding = stack.dir().join("v4-scaling");
    // The scale-up hook of v4 holds until the test lets it go, so the test can look at the
    // traffic between "weight 0" and "the new cohort starts".
    let prefix = format!(
        "if [ \"$STICKYCANARY_REVISION\" = v4 ]; then touch {}; i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi; ",
        holding.display(),
        gate.display()
    );
    let hooks = stack.release_hooks(&prefix);
    let load = steady_load(&stack);
    stack.start_controller_with(&hooks).expect("controller");

    // Release v2: scaled up, walked through the stages with its own cohort, promoted.
    let (weight, v2_users) = first_stage_cohort(&mut stack, "v2");
    assert_eq!(weight, 10.0);
    assert_eq!(
        v2_users,
        cohort("checkout-v2", weight),
        "v2's cohort is salt checkout-v2"
    );
    assert!(!v2_users.is_empty());
    let status = wait(&mut stack, "v2 to succeed", |s| {
        field(s, "phase") == "Succeeded"
    });
    assert_eq!(field(&status, "stableRevision"), "v2");
    assert_eq!(field(&status, "lastPromotedRevision"), "v2");
    assert_eq!(envoy_took_the_file(&stack), 0.0, "users are back on stable");
    let until = Instant::now() + SETTLE;
    for user in users() {
        // The canary still serves v2 until the scale-down delay is over.
        let (status, served_by, version) = settled_probe(&stack, &user, ("canary", "v2"), until);
        assert_eq!(
            (status, served_by.as_str(), version.as_str()),
            (200, "stable", "v2"),
            "after v2 every user gets v2 from stable ({user})"
        );
    }
    let log = stack.controller_log();
    assert!(log.contains("hook --on-promote (revision v2): ok"), "{log}");
    assert!(
        log.contains("hook --on-scale-down (revision v2): ok"),
        "{log}"
    );

    // Release v3 starts; mid-run, v4 replaces it.
    stack.write_plan(&plan("v3")).unwrap();
    let (_, v3_users) = first_stage_cohort(&mut stack, "v3");
    assert!(!v3_users.is_empty());
    stack.write_plan(&plan("v4")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holding.exists() {
        assert!(Instant::now() < deadline, "v4's scale-up hook never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The weight went to 0 before the scale-up: v3's users are on stable (v2) again.
    assert_eq!(stack.ecds_weight().unwrap(), 0.0);
    assert_eq!(envoy_took_the_file(&stack), 0.0);
    let until = Instant::now() + SETTLE;
    for user in &v3_users {
        let (status, served_by, version) = settled_probe(&stack, user, ("canary", "v3"), until);
        assert_eq!(
            (status, served_by.as_str(), version.as_str()),
            (200, "stable", "v2"),
            "v3's user {user} is back on stable before v4's cohort starts"
        );
    }
    std::fs::write(&gate, b"go").unwrap();
    let (weight, v4_users) = first_stage_cohort(&mut stack, "v4");
    assert_eq!(
        v4_users,
        cohort("checkout-v4", weight),
        "v4 has its own salt"
    );
    assert_ne!(v4_users, v2_users, "a new release draws a new cohort");
    let shared = v4_users.intersection(&v2_users).count();
    assert!(
        shared * 2 < v4_users.len(),
        "v4's cohort is mostly different users: {shared} of {} shared with v2",
        v4_users.len()
    );

    // v4 starts failing and is rolled back; its canary is stopped after the drain delay.
    stack
        .canary
        .control(&BehaviourPatch {
            error_ratio: Some(0.5),
            error_status: Some(503),
            delay_ms: None,
        })
        .unwrap();
    let status = wait(&mut stack, "v4 to roll back", |s| {
        field(s, "phase") == "RolledBack" && s.get("scaleDownAt").is_none()
    });
    assert_eq!(field(&status, "rollbackReason"), "error-rate");
    assert_eq!(field(&status, "failedRevision"), "v4");
    assert_eq!(field(&status, "stableRevision"), "v2");
    assert_eq!(envoy_took_the_file(&stack), 0.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stack
        .controller_log()
        .contains("hook --on-scale-down (revision v4): ok")
    {
        assert!(Instant::now() < deadline, "v4's canary was never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    for user in users() {
        let (status, served_by, version) = probe(&stack, &user);
        assert_eq!(
            (status, served_by.as_str(), version.as_str()),
            (200, "stable", "v2"),
            "after v4's rollback no user gets v3 or v4 ({user})"
        );
    }
    let summary = load.stop();
    assert_eq!(summary.transport_errors, 0, "{:?}", summary.error_samples);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

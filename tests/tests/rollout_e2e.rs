//! The product's main job end to end (issue 4): real Envoy running the built filter, real
//! Prometheus scraping it every second, the `sc-backend` upstreams and `stickycanary local`
//! driving a rollout whose stages are compressed to seconds. Each test owns its whole stack on
//! free loopback ports; the stack is torn down when the test ends, also on failure.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::Value;
use stickycanary_e2e::backend_server::Behaviour;
use stickycanary_e2e::load::{self, LoadHandle, LoadOptions, LoadSummary};
use stickycanary_e2e::stack::{RolloutPlan, ShareMeter, Stack, StackOptions};
use stickycanary_filter::assign;

const USERS: u64 = 20_000;

fn steady_load(stack: &Stack, rate: Option<f64>) -> LoadHandle {
    let mut opts: LoadOptions = stack.load_options();
    opts.users = USERS;
    opts.connections = 4;
    opts.rate = rate;
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(240));
    load::start(opts)
}

fn phase_of(status: &Value) -> &str {
    status.get("phase").and_then(Value::as_str).unwrap_or("")
}

fn is_final(status: &Value) -> bool {
    matches!(phase_of(status), "Promoted" | "RolledBack" | "InvalidSpec")
}

/// Sample the load and the ECDS weight until the rollout reaches a final phase.
fn run_to_final(stack: &mut Stack, load: &LoadHandle, timeout: Duration) -> (Value, ShareMeter) {
    let mut meter = ShareMeter::default();
    let deadline = Instant::now() + timeout;
    loop {
        meter.sample(&load.snapshot(), stack.ecds_weight().expect("ECDS weight"));
        if let Some(status) = stack.status().expect("status file") {
            if is_final(&status) {
                meter.sample(&load.snapshot(), stack.ecds_weight().expect("ECDS weight"));
                return (status, meter);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no final phase within {timeout:?}; status {:?}\ncontroller log:\n{}",
            stack.status(),
            stack.controller_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn assert_weights_never_go_down(weights: &[f64], allow_final_zero: bool) {
    let upto = if allow_final_zero && weights.last() == Some(&0.0) {
        weights.len() - 1
    } else {
        weights.len()
    };
    for pair in weights[..upto].windows(2) {
        assert!(pair[1] >= pair[0], "weight went backwards: {weights:?}");
    }
}

/// The only non-2xx responses are the ones the canary backend was told to return, and no
/// request failed at the transport level (weight changes must not drop requests).
fn assert_no_failures_but_injected(summary: &LoadSummary, injected_status: Option<u16>) {
    assert_eq!(
        summary.transport_errors, 0,
        "transport errors: {:?}",
        summary.error_samples
    );
    for (version, count) in &summary.non_2xx_by_version {
        assert!(
            version == "canary" && injected_status.is_some(),
            "{count} non-2xx responses from {version}: {:?}",
            summary.statuses
        );
    }
    for status in summary.statuses.keys() {
        assert!(
            (200..300).contains(status) || Some(*status) == injected_status,
            "unexpected status {status}: {:?}",
            summary.statuses
        );
    }
}

/// Users (from the load's id space) that the filter puts on canary at `weight`.
fn users_on_canary_at(weight: f64, count: usize) -> Vec<String> {
    (0..USERS)
        .map(|i| format!("u{i}"))
        .filter(|u| assign::is_canary(assign::bucket(stickycanary_e2e::stack::ROLLOUT, u), weight))
        .take(count)
        .collect()
}

fn served_by(stack: &Stack, user: &str) -> String {
    let resp = stack
        .envoy
        .get(stickycanary_e2e::stack::HOST, "/", &[("x-user-id", user)])
        .expect("request through Envoy");
    resp.header("x-served-by").unwrap_or("none").to_string()
}

#[test]
fn healthy_canary_is_promoted_and_every_stage_weight_is_seen_in_traffic() {
    let mut stack = Stack::start(&StackOptions::default()).expect("stack");
    let load = steady_load(&stack, None);
    stack.start_controller().expect("controller");
    let (status, meter) = run_to_final(&mut stack, &load, Duration::from_secs(150));
    let summary = load.stop();

    assert_eq!(phase_of(&status), "Promoted", "status: {status}");
    assert_eq!(stack.ecds_weight().unwrap(), 100.0);
    assert_weights_never_go_down(&meter.weights_seen, false);
    let shares = meter.shares();
    for stage_weight in [10.0, 25.0, 50.0] {
        let (_, measured, responses) = shares
            .iter()
            .copied()
            .find(|(w, _, _)| *w == stage_weight)
            .unwrap_or_else(|| panic!("no traffic measured at {stage_weight}%: {shares:?}"));
        assert!(
            responses >= 2_000,
            "too little traffic at {stage_weight}% to judge ({responses} responses): {shares:?}"
        );
        assert!(
            (measured - stage_weight).abs() <= 2.0,
            "at weight {stage_weight}% the canary got {measured:.2}% of {responses} responses"
        );
    }
    assert_no_failures_but_injected(&summary, None);
}

#[test]
fn error_canary_rolls_back_for_error_rate_and_nobody_reaches_canary_afterwards() {
    let opts = StackOptions {
        canary: Behaviour {
            error_ratio: 0.2,
            error_status: 503,
            delay_ms: 0,
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    // Users who will be on canary during the first stage, to check they come back to stable.
    let early_canary_users = users_on_canary_at(10.0, 50);
    let load = steady_load(&stack, None);
    stack.start_controller().expect("controller");
    let (status, meter) = run_to_final(&mut stack, &load, Duration::from_secs(120));
    let summary = load.stop();

    assert_eq!(phase_of(&status), "RolledBack", "status: {status}");
    assert_eq!(status["rollbackReason"], "error-rate", "status: {status}");
    assert_eq!(stack.ecds_weight().unwrap(), 0.0);
    assert_weights_never_go_down(&meter.weights_seen, true);
    assert!(
        meter.weights_seen.contains(&10.0),
        "the canary never got traffic: {:?}",
        meter.weights_seen
    );
    assert_no_failures_but_injected(&summary, Some(503));
    assert!(
        summary
            .non_2xx_by_version
            .get("canary")
            .copied()
            .unwrap_or(0)
            > 0
    );

    // After the rollback (Envoy applies the file within moments): 0% canary, for everyone.
    std::thread::sleep(Duration::from_secs(1));
    for user in &early_canary_users {
        assert_eq!(
            served_by(&stack, user),
            "stable",
            "user {user} after rollback"
        );
    }
    let after = load::run(LoadOptions {
        users: 5_000,
        requests: Some(5_000),
        track_users: false,
        ..stack.load_options()
    });
    assert_eq!(after.requests, 5_000);
    assert_eq!(
        after.by_version.get("canary"),
        None,
        "{:?}",
        after.by_version
    );
}

#[test]
fn slow_canary_rolls_back_for_latency() {
    let opts = StackOptions {
        canary: Behaviour {
            error_ratio: 0.0,
            error_status: 503,
            delay_ms: 800,
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let load = steady_load(&stack, None);
    stack.start_controller().expect("controller");
    let (status, _) = run_to_final(&mut stack, &load, Duration::from_secs(120));
    let summary = load.stop();

    assert_eq!(phase_of(&status), "RolledBack", "status: {status}");
    assert_eq!(status["rollbackReason"], "latency", "status: {status}");
    assert_eq!(stack.ecds_weight().unwrap(), 0.0);
    assert_no_failures_but_injected(&summary, None);
}

#[test]
fn thin_traffic_is_inconclusive_and_never_promotes() {
    let opts = StackOptions {
        plan: RolloutPlan {
            stages: vec![(10.0, Some("3s")), (100.0, None)],
            min_requests: 1_000,
            ..RolloutPlan::default()
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let load = steady_load(&stack, Some(20.0));
    stack.start_controller().expect("controller");
    let status = stack
        .wait_status(Duration::from_secs(60), |s| {
            s.get("inconclusiveSince").is_some()
        })
        .expect("an inconclusive window");
    // Five times the stage's duration later it still holds the first stage.
    std::thread::sleep(Duration::from_secs(15));
    let later = stack.status().unwrap().expect("status");
    let summary = load.stop();

    assert_eq!(phase_of(&status), "Progressing", "status: {status}");
    assert_eq!(phase_of(&later), "Progressing", "status: {later}");
    assert_eq!(later["stageIndex"], 0, "status: {later}");
    assert_eq!(stack.ecds_weight().unwrap(), 10.0);
    assert!(later.get("inconclusiveSince").is_some(), "status: {later}");
    let log = stack.controller_log();
    assert!(log.contains("Inconclusive"), "controller log:\n{log}");
    assert!(summary.requests > 100, "the thin load sent nothing");
}

#[test]
fn controller_killed_mid_stage_resumes_the_same_stage_without_resetting_its_timer() {
    let opts = StackOptions {
        plan: RolloutPlan {
            stages: vec![(10.0, Some("4s")), (25.0, Some("20s")), (100.0, None)],
            ..RolloutPlan::default()
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let load = steady_load(&stack, None);
    stack.start_controller().expect("controller");
    let before = stack
        .wait_status(Duration::from_secs(60), |s| s["stageIndex"] == 1)
        .expect("second stage");
    std::thread::sleep(Duration::from_secs(3));
    stack.kill_controller();
    let at_kill = stack.status().unwrap().expect("status");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        stack.ecds_weight().unwrap(),
        25.0,
        "the weight stays while no controller runs"
    );
    stack.start_controller().expect("controller restart");
    // Give the new process a few intervals, then compare.
    std::thread::sleep(Duration::from_secs(3));
    let resumed = stack.status().unwrap().expect("status");
    assert_eq!(resumed["stageIndex"], 1, "status after restart: {resumed}");
    assert_eq!(
        resumed["stageStartedAt"], before["stageStartedAt"],
        "the stage timer was reset by the restart"
    );
    assert_eq!(at_kill["stageStartedAt"], before["stageStartedAt"]);
    let (status, meter) = run_to_final(&mut stack, &load, Duration::from_secs(90));
    let summary = load.stop();
    assert_eq!(phase_of(&status), "Promoted", "status: {status}");
    assert_weights_never_go_down(&meter.weights_seen, false);
    assert_no_failures_but_injected(&summary, None);
}

#[test]
fn prometheus_outage_holds_the_rollout_and_it_continues_after_prometheus_returns() {
    let opts = StackOptions {
        plan: RolloutPlan {
            stages: vec![(10.0, Some("4s")), (25.0, Some("4s")), (100.0, None)],
            ..RolloutPlan::default()
        },
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let load = steady_load(&stack, None);
    stack.start_controller().expect("controller");
    stack
        .wait_status(Duration::from_secs(60), |s| {
            s["stageIndex"] == 0 && s["weight"] == 10.0
        })
        .expect("first stage");
    stack.prometheus.stop();
    let held = stack
        .wait_status(Duration::from_secs(30), |s| {
            s.get("prometheusUnavailableSince").is_some()
        })
        .expect("the outage is recorded");
    // Longer than the stage's duration: without metrics the stage must not advance.
    std::thread::sleep(Duration::from_secs(8));
    let still = stack.status().unwrap().expect("status");
    assert_eq!(phase_of(&still), "Progressing", "status: {still}");
    assert_eq!(
        still["stageIndex"], held["stageIndex"],
        "advanced blind: {still}"
    );
    assert_eq!(stack.ecds_weight().unwrap(), 10.0);

    stack.prometheus.restart().expect("restart Prometheus");
    let (status, meter) = run_to_final(&mut stack, &load, Duration::from_secs(90));
    let summary = load.stop();
    assert_eq!(phase_of(&status), "Promoted", "status: {status}");
    assert_weights_never_go_down(&meter.weights_seen, false);
    assert_no_failures_but_injected(&summary, None);
}

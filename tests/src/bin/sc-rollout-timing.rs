//! `make bench` (rollout timing): how fast the real stack rolls back and how much time the
//! controller adds to a promotion.
//!
//! - Rollback time: interval 1s, scrape 1s, `for: 0s`. A probe user who is on canary sends
//!   requests back to back; the time is from fault injection (the canary starts answering
//!   503) to the first response that no longer comes from canary. Median of N runs.
//! - Promotion overhead: a healthy rollout's wall time minus the sum of its stage durations,
//!   per stage, against the one-interval budget.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use stickycanary_e2e::backend_server::BehaviourPatch;
use stickycanary_e2e::cli;
use stickycanary_e2e::load;
use stickycanary_e2e::paths;
use stickycanary_e2e::stack::{RolloutPlan, Stack, StackOptions, HOST, ROLLOUT};
use stickycanary_filter::assign;

/// Median rollback time and promotion overhead on the local stack (part of `make bench`).
#[derive(Parser, Debug)]
#[command(name = "sc-rollout-timing")]
struct Args {
    /// Rollbacks timed; the median is reported
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = cli::at_least_one)]
    runs: usize,
}

fn main() -> ExitCode {
    let args = match cli::parse::<Args>("sc-rollout-timing") {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(args.runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sc-rollout-timing: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(runs: usize) -> Result<(), String> {
    let scratch = paths::scratch_dir()
        .map_err(|e| e.to_string())?
        .join("timing");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    std::env::set_var("TMPDIR", &scratch);

    let mut rollbacks = Vec::new();
    for run in 1..=runs {
        let seconds = rollback_once()?;
        println!(
            "rollback run {run}/{runs}: {seconds:.2}s from fault to the first non-canary response"
        );
        rollbacks.push(seconds);
    }
    rollbacks.sort_by(f64::total_cmp);
    let median = rollbacks[rollbacks.len() / 2];

    let (wall, configured, stages) = promotion_once()?;
    let overhead_per_stage = (wall - configured) / stages as f64;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| rollback time, median of {runs} (interval 1s, scrape 1s, for 0s) | {median:.2} s (runs: {}) |",
        rollbacks.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "| promotion wall time vs stage durations | {wall:.1} s vs {configured:.0} s: {overhead_per_stage:.2} s per stage (budget: 1 interval = 1 s) |"
    );
    Ok(())
}

fn rollback_once() -> Result<f64, String> {
    let plan = RolloutPlan {
        stages: vec![(50.0, Some("600s")), (100.0, None)],
        error_for: "0s",
        ..RolloutPlan::default()
    };
    let mut stack = Stack::start(&StackOptions {
        plan,
        ..StackOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let mut opts = stack.load_options();
    opts.users = 5_000;
    opts.rate = Some(300.0);
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(120));
    let background = load::start(opts);
    stack.start_controller().map_err(|e| e.to_string())?;
    stack
        .wait_status(Duration::from_secs(60), |s| s["weight"] == 50.0)
        .map_err(|e| e.to_string())?;
    // Let a few clean windows pass so the fault is the only thing that changes.
    std::thread::sleep(Duration::from_secs(3));

    let probe_user = (0..)
        .map(|i| format!("probe{i}"))
        .find(|u| assign::is_canary(assign::bucket(ROLLOUT, u), 50.0))
        .unwrap_or_default();
    let mut client = stack.envoy.client();
    let patch = BehaviourPatch {
        error_ratio: Some(1.0),
        error_status: Some(503),
        delay_ms: None,
    };
    stack.canary.control(&patch).map_err(|e| e.to_string())?;
    let fault_at = Instant::now();
    let deadline = fault_at + Duration::from_secs(60);
    let seconds = loop {
        let resp = client
            .send(
                "GET",
                "/",
                &[("host", HOST), ("x-user-id", &probe_user)],
                b"",
            )
            .map_err(|e| e.to_string())?;
        if resp.header("x-served-by") != Some("canary") {
            break fault_at.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            return Err("no rollback within 60s".into());
        }
    };
    background.stop();
    Ok(seconds)
}

fn promotion_once() -> Result<(f64, f64, usize), String> {
    let plan = RolloutPlan::default();
    let configured: f64 = plan
        .stages
        .iter()
        .filter_map(|(_, d)| d.and_then(|d| d.trim_end_matches('s').parse::<f64>().ok()))
        .sum();
    let timed_stages = plan.stages.iter().filter(|(_, d)| d.is_some()).count();
    let mut stack = Stack::start(&StackOptions {
        plan,
        ..StackOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let mut opts = stack.load_options();
    opts.users = 5_000;
    opts.rate = Some(300.0);
    opts.track_users = false;
    opts.duration = Some(Duration::from_secs(120));
    let background = load::start(opts);
    let started = Instant::now();
    stack.start_controller().map_err(|e| e.to_string())?;
    stack
        .wait_status(Duration::from_secs(120), |s| s["phase"] == "Promoted")
        .map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    background.stop();
    Ok((wall, configured, timed_stages))
}

//! `make demo`: the product's main job on one machine. Two scenarios on a real stack (Envoy
//! running the built filter, Prometheus, two backends, `stickycanary local`, steady load from
//! thousands of users):
//!
//! 1. a healthy canary is promoted through every stage to 100%;
//! 2. a canary that starts failing part-way is rolled back to 0%.
//!
//! Exits 0 only when both ended as they should. Everything listens on 127.0.0.1, every file
//! lives under `.scratch/`, and every process is stopped on exit, also on Ctrl-C.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use stickycanary_e2e::backend_server::BehaviourPatch;
use stickycanary_e2e::load::{self, LoadHandle, LoadSummary};
use stickycanary_e2e::paths;
use stickycanary_e2e::stack::{RolloutPlan, Stack, StackOptions};

const USERS: u64 = 5_000;
const RATE: f64 = 400.0;
/// The fault starts this long into the second stage of scenario 2.
const FAULT_AFTER: Duration = Duration::from_secs(3);
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "sc-demo: run stickycanary's two demo scenarios on a local stack (used by `make demo`)\n\n\
             Usage: sc-demo\n\n\
             Needs target/stickycanary.wasm (make filter), the stickycanary and sc-backend binaries\n\
             (cargo build --bins), envoy and prometheus (make deps). Files go to .scratch/demo."
        );
        return ExitCode::SUCCESS;
    }
    // SAFETY: installing a handler that only stores to an atomic is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, String> {
    // Every temp dir (Envoy's, Prometheus', the stack's) goes under the project's scratch folder.
    let scratch = paths::scratch_dir()
        .map_err(|e| e.to_string())?
        .join("demo");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    std::env::set_var("TMPDIR", &scratch);

    let plan = RolloutPlan::default();
    println!(
        "stickycanary demo: stages {}, analysis every {}, error rate > 5% for {} or p99 > 500ms for {} rolls back",
        plan.stages
            .iter()
            .map(|(w, d)| format!("{w}%{}", d.map(|d| format!("/{d}")).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" → "),
        plan.interval,
        plan.error_for,
        plan.latency_for,
    );
    println!("{USERS} users, {RATE} req/s, Envoy + filter, Prometheus scraping every 1s, all on 127.0.0.1\n");

    let healthy = healthy_scenario()?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err("interrupted; every process was stopped".into());
    }
    let faulty = faulty_scenario()?;

    println!("\n=== summary ===");
    println!("{}", healthy.line());
    println!("{}", faulty.line());
    let ok = healthy.ok && faulty.ok;
    println!(
        "{}",
        if ok {
            "demo: both scenarios ended as they should"
        } else {
            "demo: FAILED: a scenario did not end as it should"
        }
    );
    Ok(ok)
}

struct Outcome {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "[{}] {}: {}",
            if self.ok { " ok " } else { "FAIL" },
            self.name,
            self.detail
        )
    }
}

fn start(name: &str) -> Result<(Stack, LoadHandle), String> {
    println!("=== {name} ===");
    let mut stack = Stack::start(&StackOptions::default()).map_err(|e| e.to_string())?;
    let mut opts = stack.load_options();
    opts.users = USERS;
    opts.connections = 4;
    opts.rate = Some(RATE);
    opts.duration = Some(SCENARIO_TIMEOUT);
    let load = load::start(opts);
    stack.start_controller().map_err(|e| e.to_string())?;
    Ok((stack, load))
}

/// Print what the controller printed since the last call.
fn relay_controller(stack: &Stack, printed: &mut usize, prefix: &str) {
    let log = stack.controller_log();
    if log.len() > *printed {
        for line in log[*printed..].lines() {
            println!("{prefix} {line}");
        }
        *printed = log.len();
    }
}

fn phase(status: &Option<Value>) -> String {
    status
        .as_ref()
        .and_then(|s| s.get("phase").and_then(Value::as_str))
        .unwrap_or("")
        .to_string()
}

/// Wait until the rollout reaches a final phase, relaying the controller's live view.
/// `on_tick` runs every poll with the current status.
fn follow(
    stack: &mut Stack,
    prefix: &str,
    mut on_tick: impl FnMut(&Stack, &Option<Value>),
) -> Result<Value, String> {
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let mut printed = 0;
    loop {
        relay_controller(stack, &mut printed, prefix);
        let status = stack.status().map_err(|e| e.to_string())?;
        on_tick(stack, &status);
        if matches!(
            phase(&status).as_str(),
            "Promoted" | "RolledBack" | "Failed"
        ) {
            std::thread::sleep(Duration::from_millis(300));
            relay_controller(stack, &mut printed, prefix);
            return status.ok_or_else(|| "no status".to_string());
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted; every process was stopped".into());
        }
        if Instant::now() > deadline {
            return Err(format!("no final phase within {SCENARIO_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn users_who_saw_canary(summary: &LoadSummary) -> usize {
    summary
        .users
        .values()
        .filter(|u| u.first == "canary" || u.last == "canary" || u.switches > 0)
        .count()
}

fn healthy_scenario() -> Result<Outcome, String> {
    let (mut stack, load) = start("scenario 1: a healthy canary")?;
    let started = Instant::now();
    let status = follow(&mut stack, "  healthy |", |_, _| {})?;
    let promotion = started.elapsed();
    let summary = load.stop();
    let configured: u64 = RolloutPlan::default()
        .stages
        .iter()
        .filter_map(|(_, d)| d.and_then(|d| d.trim_end_matches('s').parse::<u64>().ok()))
        .sum();
    let ok = phase(&Some(status.clone())) == "Promoted";
    Ok(Outcome {
        name: "healthy canary",
        ok,
        detail: format!(
            "{} in {:.1}s (stages add up to {configured}s); {} of {} users saw the canary; {} requests, {} failed",
            phase(&Some(status)),
            promotion.as_secs_f64(),
            users_who_saw_canary(&summary),
            summary.distinct_users,
            summary.requests,
            summary.failures(),
        ),
    })
}

fn faulty_scenario() -> Result<Outcome, String> {
    let (mut stack, load) = start("scenario 2: a canary that starts failing at 25%")?;
    let mut second_stage_at: Option<Instant> = None;
    let mut fault_at: Option<Instant> = None;
    let mut weight_zero_at: Option<Instant> = None;
    let status = follow(&mut stack, "  faulty  |", |stack, status| {
        let stage = status
            .as_ref()
            .and_then(|s| s.get("stageIndex").and_then(Value::as_u64))
            .unwrap_or(0);
        if stage >= 1 && second_stage_at.is_none() {
            second_stage_at = Some(Instant::now());
        }
        if let (Some(at), None) = (second_stage_at, fault_at) {
            if at.elapsed() >= FAULT_AFTER {
                let patch = BehaviourPatch {
                    error_ratio: Some(0.3),
                    error_status: Some(503),
                    delay_ms: None,
                };
                match stack.canary.control(&patch) {
                    Ok(_) => {
                        println!("  faulty  | >>> fault injected: the canary now answers 30% of requests with 503");
                        fault_at = Some(Instant::now());
                    }
                    Err(e) => println!("  faulty  | could not inject the fault: {e}"),
                }
            }
        }
        if fault_at.is_some() && weight_zero_at.is_none() && stack.ecds_weight().ok() == Some(0.0) {
            weight_zero_at = Some(Instant::now());
        }
    })?;
    if weight_zero_at.is_none() && stack.ecds_weight().ok() == Some(0.0) {
        weight_zero_at = Some(Instant::now());
    }
    let summary = load.stop();
    let reason = status
        .get("rollbackReason")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let rollback = match (fault_at, weight_zero_at) {
        (Some(f), Some(z)) => format!("{:.1}s", z.duration_since(f).as_secs_f64()),
        _ => "-".into(),
    };
    let ok = phase(&Some(status.clone())) == "RolledBack"
        && reason == "error-rate"
        && fault_at.is_some();
    Ok(Outcome {
        name: "failing canary",
        ok,
        detail: format!(
            "{} (reason {reason}); rollback took {rollback} from the fault to weight 0; {} of {} users saw the canary; 503s from canary: {}",
            phase(&Some(status)),
            users_who_saw_canary(&summary),
            summary.distinct_users,
            summary.non_2xx_by_version.get("canary").copied().unwrap_or(0),
        ),
    })
}

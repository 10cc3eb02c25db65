//! `make demo`: the product's main job on one machine, as two releases in a row on a real
//! stack (Envoy running the built filter, Prometheus, two backends that answer with the version
//! they serve, `stickycanary local` with its release hooks, steady load from thousands of users):
//!
//! 1. release **v2** is healthy: scaled up, walked through every stage with its own cohort,
//!    promoted; stable is restarted on v2, the weight goes back to 0, the canary is stopped;
//! 2. release **v3** arrives by editing `spec.canary.revision`: a new cohort, it starts failing
//!    part-way and is rolled back; the canary is stopped and stable still serves v2.
//!
//! Every claim in the summary is checked from responses through Envoy, not from the
//! controller's word. Exits 0 only when all hold. Everything listens on 127.0.0.1, every file
//! lives under `.scratch/`, and every process is stopped on exit, also on Ctrl-C.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;
use stickycanary_e2e::backend_server::{BehaviourPatch, ReleasePatch};
use stickycanary_e2e::cli;
use stickycanary_e2e::interrupt;
use stickycanary_e2e::load::{self, LoadHandle};
use stickycanary_e2e::paths;
use stickycanary_e2e::stack::{RolloutPlan, Stack, StackOptions};
use stickycanary_filter::assign;

const USERS: u64 = 5_000;
const RATE: f64 = 400.0;
/// Users probed one by one through Envoy to check each claim.
const PROBED: usize = 400;
/// The fault starts this long into v3's second stage.
const FAULT_AFTER: Duration = Duration::from_secs(3);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Run stickycanary's release demo (v2 promoted, then v3 rolled back) on a local stack (used by
/// `make demo`). It takes no options.
#[derive(clap::Parser, Debug)]
#[command(
    name = "sc-demo",
    after_help = "Needs target/stickycanary.wasm (make filter), the stickycanary and sc-backend binaries\n\
                  (cargo build --bins), envoy and prometheus (make deps), and curl (the release hooks).\n\
                  Files go to .scratch/demo."
)]
struct Args {}

fn main() -> ExitCode {
    if let Err(code) = cli::parse::<Args>("sc-demo") {
        return code;
    }
    interrupt::catch_interrupts();
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn plan(revision: &str) -> RolloutPlan {
    RolloutPlan {
        revision: Some(revision.to_string()),
        scale_down_delay: "3s",
        ..RolloutPlan::default()
    }
}

fn run() -> Result<bool, String> {
    // Every temp dir (Envoy's, Prometheus', the stack's) goes under the project's scratch folder.
    let scratch = paths::scratch_dir()
        .map_err(|e| e.to_string())?
        .join("demo");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    std::env::set_var("TMPDIR", &scratch);
    let started = Instant::now();

    let plan = plan("v2");
    println!(
        "stickycanary demo: two releases. Stages {}, analysis every {}, error rate > 5% for {} or p99 > 500ms for {} rolls back",
        plan.stages
            .iter()
            .map(|(w, d)| format!("{w}%{}", d.map(|d| format!("/{d}")).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" → "),
        plan.interval,
        plan.error_for,
        plan.latency_for,
    );
    println!("{USERS} users, {RATE} req/s, Envoy + filter, Prometheus scraping every 1s, all on 127.0.0.1");
    println!("release hooks: --on-scale-up / --on-promote / --on-scale-down tell the backends which version to serve\n");

    let mut stack = Stack::start(&StackOptions {
        plan,
        ..StackOptions::default()
    })
    .map_err(|e| e.to_string())?;
    release(&stack.stable, "v1", false)?;
    release(&stack.canary, "none", true)?;
    let load = start_load(&stack);
    let hooks = stack.release_hooks("");
    stack
        .start_controller_with(&hooks)
        .map_err(|e| e.to_string())?;
    let mut printed = 0;
    let mut outcomes = Vec::new();

    println!("=== release v2: a healthy canary (stable serves v1) ===");
    let v2_started = Instant::now();
    let v2_users = first_stage_cohort(&mut stack, &mut printed, "v2")?;
    let status = follow(&mut stack, &mut printed, |s, _| {
        phase(s) == "Succeeded" || phase(s) == "RolledBack" || phase(s) == "PromotionFailed"
    })?;
    let v2_time = v2_started.elapsed();
    outcomes.push(Outcome {
        name: "v2 promoted",
        ok: phase(&status) == "Succeeded" && field(&status, "stableRevision") == "v2",
        detail: format!(
            "{} in {:.1}s; stableRevision {}; weight back to {}%",
            phase(&status),
            v2_time.as_secs_f64(),
            field(&status, "stableRevision"),
            stack.ecds_weight().map_err(|e| e.to_string())?,
        ),
    });
    // The canary serves v2 too until its scale-down delay is over.
    let on_v2 = users_on(&stack, ("stable", "v2"), Some(("canary", "v2")))?;
    outcomes.push(Outcome {
        name: "after v2, every user gets v2 from stable",
        ok: on_v2 == PROBED,
        detail: format!("{on_v2} of {PROBED} probed users got x-version v2 from stable"),
    });

    if interrupt::interrupted() {
        return Err("interrupted; every process was stopped".into());
    }
    println!("\n=== release v3: edit spec.canary.revision, now behind a manual confirm-rollout gate; the canary starts failing at 25% ===");
    stack
        .write_plan(&plan_for("v3"))
        .map_err(|e| e.to_string())?;
    outcomes.push(wait_at_gate_then_approve(&mut stack, &mut printed)?);
    let v3_users = first_stage_cohort(&mut stack, &mut printed, "v3")?;
    let shared = v3_users.intersection(&v2_users).count();
    outcomes.push(Outcome {
        name: "v3 draws a new cohort",
        ok: !v3_users.is_empty() && v3_users != v2_users && shared * 2 < v3_users.len(),
        detail: format!(
            "v2's first stage put {} of {PROBED} probed users on canary, v3's put {}; {shared} in both",
            v2_users.len(),
            v3_users.len()
        ),
    });
    let mut second_stage_at: Option<Instant> = None;
    let mut fault_at: Option<Instant> = None;
    let mut weight_zero_at: Option<Instant> = None;
    let status = follow(&mut stack, &mut printed, |s, stack| {
        if field(s, "canaryRevision") == "v3" && stage(s) >= 1 && second_stage_at.is_none() {
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
                        println!(
                            "  demo | >>> fault injected: v3 now answers 30% of requests with 503"
                        );
                        fault_at = Some(Instant::now());
                    }
                    Err(e) => println!("  demo | could not inject the fault: {e}"),
                }
            }
        }
        if fault_at.is_some() && weight_zero_at.is_none() && stack.ecds_weight().ok() == Some(0.0) {
            weight_zero_at = Some(Instant::now());
        }
        phase(s) == "RolledBack" && s.get("scaleDownAt").is_none()
            || phase(s) == "Succeeded" && field(s, "canaryRevision") == "v3"
    })?;
    // The scale-down hook runs in the tick that cleared scaleDownAt; give its output a moment.
    std::thread::sleep(Duration::from_millis(500));
    relay_controller(&stack, &mut printed);
    let rollback = match (fault_at, weight_zero_at) {
        (Some(f), Some(z)) => format!("{:.1}s", z.duration_since(f).as_secs_f64()),
        _ => "-".into(),
    };
    outcomes.push(Outcome {
        name: "v3 rolled back",
        ok: phase(&status) == "RolledBack"
            && field(&status, "rollbackReason") == "error-rate"
            && field(&status, "failedRevision") == "v3",
        detail: format!(
            "{} (reason {}); {rollback} from the fault to weight 0; canary stopped: {}",
            phase(&status),
            field(&status, "rollbackReason"),
            stack
                .controller_log()
                .contains("hook --on-scale-down (revision v3): ok"),
        ),
    });
    let on_v2 = users_on(&stack, ("stable", "v2"), Some(("canary", "v3")))?;
    outcomes.push(Outcome {
        name: "after v3's rollback, no user gets v3",
        ok: on_v2 == PROBED,
        detail: format!("{on_v2} of {PROBED} probed users got x-version v2 from stable"),
    });
    let summary = load.stop();

    println!("\n=== summary ===");
    for outcome in &outcomes {
        println!("{}", outcome.line());
    }
    println!(
        "load: {} requests from {} users, {} transport errors, 503s from the failing v3: {}; demo took {:.0}s",
        summary.requests,
        summary.distinct_users,
        summary.transport_errors,
        summary.non_2xx_by_version.get("canary").copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    let ok = outcomes.iter().all(|o| o.ok) && summary.transport_errors == 0;
    println!(
        "{}",
        if ok {
            "demo: every claim held"
        } else {
            "demo: FAILED: a claim did not hold"
        }
    );
    Ok(ok)
}

/// v2 goes straight on; v3 waits at a manual `confirm-rollout` gate (gates, contract 5).
fn plan_for(revision: &str) -> RolloutPlan {
    let mut plan = plan(revision);
    if revision == "v3" {
        plan.extra_spec =
            "  webhooks:\n    - {name: release-manager, type: confirm-rollout, approval: manual}\n"
                .to_string();
    }
    plan
}

/// How long the demo lets v3 sit at its gate before approving it.
const GATE_WAIT: Duration = Duration::from_secs(4);

/// v3 waits at its manual gate (weight 0, canary not started, no user on v3) until the
/// demo approves it with `stickycanary approve`, as a release manager would.
fn wait_at_gate_then_approve(stack: &mut Stack, printed: &mut usize) -> Result<Outcome, String> {
    let waiting = |s: &Value| {
        field(s, "canaryRevision") == "v3"
            && s.pointer("/gate/gate").and_then(Value::as_str) == Some("confirm-rollout")
    };
    follow(stack, printed, |s, _| waiting(s))?;
    let since = Instant::now();
    let mut held = true;
    follow(stack, printed, |s, stack| {
        held &= waiting(s) && stack.ecds_weight().ok() == Some(0.0);
        since.elapsed() >= GATE_WAIT
    })?;
    let on_v3 = users_on(stack, ("canary", "v3"), None)?;
    let scaled_up = stack
        .controller_log()
        .contains("hook --on-scale-up (revision v3)");
    let status_file = stack.status_file().display().to_string();
    let bin = paths::cargo_bin("stickycanary").map_err(|e| e.to_string())?;
    let args = [
        "approve",
        stickycanary_e2e::stack::ROLLOUT,
        "--gate",
        "confirm-rollout",
        "--status-file",
        status_file.as_str(),
    ];
    println!("  demo | >>> $ stickycanary {}", args.join(" "));
    let output = std::process::Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("stickycanary approve: {e}"))?;
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    println!(
        "  demo | >>> {said}{}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let approved = follow(stack, printed, |s, _| !waiting(s))?;
    Ok(Outcome {
        name: "v3 waited at its confirm-rollout gate until approved",
        ok: held && on_v3 == 0 && !scaled_up && output.status.success()
            && approved.pointer("/approvals/confirmRollout/revision").and_then(Value::as_str) == Some("v3"),
        detail: format!(
            "held {:.0}s at weight 0 (canary not started: {}, {on_v3} of {PROBED} probed users on v3); `stickycanary approve` opened it for revision {}",
            GATE_WAIT.as_secs_f64(),
            !scaled_up,
            approved.pointer("/approvals/confirmRollout/revision").and_then(Value::as_str).unwrap_or("-"),
        ),
    })
}

fn release(
    backend: &stickycanary_e2e::backend::Backend,
    version: &str,
    stopped: bool,
) -> Result<(), String> {
    backend
        .release(&ReleasePatch {
            version: Some(version.to_string()),
            stopped: Some(stopped),
        })
        .map_err(|e| e.to_string())
}

fn start_load(stack: &Stack) -> LoadHandle {
    let mut opts = stack.load_options();
    opts.users = USERS;
    opts.connections = 4;
    opts.rate = Some(RATE);
    opts.duration = Some(RELEASE_TIMEOUT * 2);
    load::start(opts)
}

fn probe_users() -> Vec<String> {
    (0..PROBED).map(|i| format!("probe-{i}")).collect()
}

/// `(status, x-served-by, x-version)` of one request as `user`.
fn probe(stack: &Stack, user: &str) -> Result<(u16, String, String), String> {
    stack.probe(user).map_err(|e| e.to_string())
}

/// The weight of the ECDS file, once Envoy runs it (the controller only writes the file).
fn envoy_weight(stack: &Stack) -> Result<f64, String> {
    stack
        .wait_envoy_took_ecds_file(Duration::from_secs(10))
        .map_err(|e| e.to_string())
}

/// How many probed users get a 200 with `version` from `backend`, once Envoy runs the
/// controller's last weight; `previous` (backend, version) is the answer from before it, when
/// the weight just changed.
fn users_on(
    stack: &Stack,
    (backend, version): (&str, &str),
    previous: Option<(&str, &str)>,
) -> Result<usize, String> {
    envoy_weight(stack)?;
    // Envoy's workers take up what its main thread accepted a moment later.
    let until = Instant::now() + Duration::from_secs(5);
    let mut count = 0;
    for user in probe_users() {
        let (status, served_by, got) = match previous {
            Some(previous) => stack.settled_probe(&user, previous, until),
            None => stack.probe(&user),
        }
        .map_err(|e| e.to_string())?;
        if status == 200 && served_by == backend && got == version {
            count += 1;
        }
    }
    Ok(count)
}

/// Waits for `revision`'s first stage, then probes which users are on its canary (and
/// checks they are exactly the ones its salt selects).
fn first_stage_cohort(
    stack: &mut Stack,
    printed: &mut usize,
    revision: &str,
) -> Result<BTreeSet<String>, String> {
    follow(stack, printed, |s, _| {
        phase(s) == "Progressing" && field(s, "canaryRevision") == revision
    })?;
    let on = |stack: &Stack| -> Result<BTreeSet<String>, String> {
        let mut on_canary = BTreeSet::new();
        for user in probe_users() {
            if probe(stack, &user)?.2 == revision {
                on_canary.insert(user);
            }
        }
        Ok(on_canary)
    };
    for _ in 0..5 {
        // Two rounds that agree, with Envoy running the weight the file held all along.
        let weight = envoy_weight(stack)?;
        let on_canary = on(stack)?;
        if on(stack)? != on_canary || stack.ecds_weight().map_err(|e| e.to_string())? != weight {
            continue;
        }
        let salt = format!("{}-{revision}", stickycanary_e2e::stack::ROLLOUT);
        let expected: BTreeSet<String> = probe_users()
            .into_iter()
            .filter(|u| assign::is_canary(assign::bucket(&salt, u), weight))
            .collect();
        println!(
            "  demo | {revision} at {weight}%: {} of {PROBED} probed users get {revision} (salt {salt} selects {}{})",
            on_canary.len(),
            expected.len(),
            if expected == on_canary { ", the same users" } else { ", NOT the same users" }
        );
        if expected != on_canary {
            return Err(format!(
                "{revision}'s cohort is not the one salt {salt} selects"
            ));
        }
        return Ok(on_canary);
    }
    Err(format!(
        "the weight kept moving while probing {revision}'s cohort"
    ))
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

/// Print what the controller printed since the last call.
fn relay_controller(stack: &Stack, printed: &mut usize) {
    let log = stack.controller_log();
    if log.len() > *printed {
        for line in log[*printed..].lines() {
            println!("  controller | {line}");
        }
        *printed = log.len();
    }
}

fn phase(status: &Value) -> &str {
    field(status, "phase")
}

fn field<'a>(status: &'a Value, name: &str) -> &'a str {
    status.get(name).and_then(Value::as_str).unwrap_or("")
}

fn stage(status: &Value) -> u64 {
    status
        .get("stageIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Polls the status until `done` says so, relaying the controller's live view.
fn follow(
    stack: &mut Stack,
    printed: &mut usize,
    mut done: impl FnMut(&Value, &Stack) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        relay_controller(stack, printed);
        if let Some(status) = stack.status().map_err(|e| e.to_string())? {
            if done(&status, stack) {
                return Ok(status);
            }
        }
        if interrupt::interrupted() {
            return Err("interrupted; every process was stopped".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no progress within {RELEASE_TIMEOUT:?}; status {:?}",
                stack.status()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

//! `make bench`: stickycanary's data plane against what a user would run instead, side by
//! side in one run (issue 6). Every process it starts listens on 127.0.0.1 and is killed when
//! its guard drops, also on error.
//!
//! Modules, one job each: [`options`] (flags), [`peers`] (the cases and their bootstraps),
//! [`envoy_peer`] (start one Envoy per case), [`wrk`] (one load run), [`sanity`] (each case
//! does its job before it is timed), [`reload`] (config reload latency), [`procfs`] (RSS, CPU
//! time, pinning), [`machine`] (what it ran on), [`report`] (medians, goals, tables).

mod envoy_peer;
mod error;
mod machine;
mod options;
mod peers;
mod procfs;
mod reload;
mod report;
mod sanity;
mod wrk;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use stickycanary_e2e::backend::Backend;
use stickycanary_e2e::backend_server::Behaviour;
use stickycanary_e2e::host;
use stickycanary_e2e::paths;

use crate::envoy_peer::PeerEnvoy;
use crate::error::{failed, Result};
use crate::options::Options;
use crate::peers::Case;
use crate::report::{
    CasePair, CaseResult, PairedSample, Results, RssPoint, Sample, Settings, PEER1,
};
use crate::wrk::Wrk;

/// CPUs when pinning: Envoy alone on one, load generator and backends on the other.
const ENVOY_CPU: usize = 0;
const LOAD_CPU: usize = 1;

fn main() -> ExitCode {
    let cli = match stickycanary_e2e::cli::parse::<options::Cli>("bench") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let opts = cli.options(paths::workspace_root().join("target").join("bench"));
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A case with its running Envoy and what has been recorded so far.
struct Running {
    case: Case,
    envoy: PeerEnvoy,
    result: CaseResult,
}

impl Running {
    fn rss_point(&mut self, when: &str) -> Result<()> {
        let kib = procfs::rss_kib(self.envoy.pid())?;
        self.result.rss.push(RssPoint {
            when: when.to_string(),
            after_requests: self.result.total_requests,
            rss_mib: kib as f64 / 1024.0,
        });
        Ok(())
    }

    /// One wrk run against this case, with Envoy's CPU time around it.
    fn load(
        &mut self,
        wrk: &Wrk,
        tag: &str,
        duration: Duration,
    ) -> Result<(wrk::LoadRun, f64, f64)> {
        self.envoy.check_alive()?;
        let pid = self.envoy.pid();
        let cpu_before = procfs::cpu_seconds(pid)?;
        let wall = Instant::now();
        let run = wrk.run(
            &format!("{}-{tag}", self.case.id),
            self.envoy.listener,
            &self.case.host,
            self.case.anonymous,
            duration,
        )?;
        let wall_secs = wall.elapsed().as_secs_f64();
        let cpu_secs = procfs::cpu_seconds(pid)? - cpu_before;
        self.envoy.check_alive()?;
        self.result.total_requests += run.requests;
        let cpu_us_per_request = cpu_secs * 1e6 / run.requests as f64;
        Ok((run, cpu_us_per_request, cpu_secs / wall_secs))
    }
}

/// Every case at the same time as peer 1, one pair after another: two wrk runs started
/// together, each against its own Envoy, both Envoys on the same CPU.
fn paired_round(
    running: &mut [Running],
    wrk: &Wrk,
    round: usize,
    duration: Duration,
) -> Result<()> {
    let Some((peer1, others)) = running.split_first_mut() else {
        return Ok(());
    };
    debug_assert_eq!(peer1.case.id, PEER1);
    for other in others {
        let tag = format!("p{round}-{}", other.case.id);
        let (ours, theirs) = std::thread::scope(|scope| {
            let peer1_run = scope.spawn(|| peer1.load(wrk, &tag, duration));
            let ours = other.load(wrk, &tag, duration);
            let theirs = peer1_run
                .join()
                .unwrap_or_else(|_| Err(failed("the peer 1 load thread panicked")));
            (ours, theirs)
        });
        let (_, cpu_us, _) = ours?;
        let (_, peer1_cpu_us, _) = theirs?;
        let sample = PairedSample {
            round,
            cpu_us_per_request: cpu_us,
            peer1_cpu_us_per_request: peer1_cpu_us,
        };
        eprintln!(
            "bench: round {round} paired {:<10} envoy {cpu_us:.1} us/req vs peer 1 {peer1_cpu_us:.1} → {:.3} of peer 1",
            other.case.id,
            sample.of_peer1()
        );
        other.result.paired.push(sample);
    }
    Ok(())
}

/// `--pair A/B`: both loaded at the same time, both Envoys on the same CPU. Returns B's CPU
/// time per request over A's.
fn case_pair_round(
    running: &mut [Running],
    wrk: &Wrk,
    round: usize,
    duration: Duration,
    (a, b): (usize, usize),
) -> Result<f64> {
    let (low, high) = (a.min(b), a.max(b));
    let (head, tail) = running.split_at_mut(high);
    let (first, second) = (&mut head[low], &mut tail[0]);
    let (a_case, b_case) = if a < b {
        (first, second)
    } else {
        (second, first)
    };
    let tag = format!("q{round}-{}", b_case.case.id);
    // Which of the two starts on the spawned thread alternates by round, so a bias of
    // either position cancels out over the rounds.
    let (ours, theirs) = std::thread::scope(|scope| {
        let joined = |run: std::thread::ScopedJoinHandle<'_, Result<_>>| {
            run.join()
                .unwrap_or_else(|_| Err(failed("the pair load thread panicked")))
        };
        if round.is_multiple_of(2) {
            let a_run = scope.spawn(|| a_case.load(wrk, &tag, duration));
            let theirs = b_case.load(wrk, &tag, duration);
            (joined(a_run), theirs)
        } else {
            let b_run = scope.spawn(|| b_case.load(wrk, &tag, duration));
            let ours = a_case.load(wrk, &tag, duration);
            (ours, joined(b_run))
        }
    });
    let (_, a_cpu_us, _) = ours?;
    let (_, b_cpu_us, _) = theirs?;
    let ratio = b_cpu_us / a_cpu_us;
    eprintln!(
        "bench: round {round} pair {} {a_cpu_us:.2} us/req vs {} {b_cpu_us:.2} us/req → {ratio:.3}",
        a_case.case.id, b_case.case.id
    );
    Ok(ratio)
}

fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let load_before = host::load_average();
    if opts.high_priority {
        procfs::set_own_nice(-20)?;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = opts.pin && cpus >= 2;
    let envoy_cpu = pin.then_some(ENVOY_CPU);
    let load_cpu = pin.then_some(LOAD_CPU);

    let filter_wasm = paths::wasm_path()?;
    let noop_wasm = paths::workspace_root()
        .join("target")
        .join("stickycanary-noop.wasm");
    if !noop_wasm.is_file() {
        return Err(failed(format!(
            "{} not found: build it with scripts/bench-build-noop.sh",
            noop_wasm.display()
        )));
    }
    let machine = machine::Testbed::describe(&paths::envoy_bin()?);
    eprintln!(
        "bench: {} × {}, load average {:.2} {:.2} {:.2}{}",
        machine.machine.cpus,
        machine.machine.cpu_model,
        load_before[0],
        load_before[1],
        load_before[2],
        if load_before[0] >= 1.0 {
            " (busy machine: numbers will be noisy)"
        } else {
            ""
        }
    );

    let work = tempfile::Builder::new()
        .prefix("sc-bench-")
        .tempdir()
        .map_err(|e| failed(format!("create temp dir: {e}")))?;
    let backend_bin = paths::cargo_bin("sc-backend")?;
    let stable =
        Backend::start_with_bin(&backend_bin, "stable", Behaviour::default(), work.path())?;
    let canary =
        Backend::start_with_bin(&backend_bin, "canary", Behaviour::default(), work.path())?;
    let mut backends = vec![stable, canary];
    if let Some(cpu) = load_cpu {
        for backend in &mut backends {
            procfs::pin(backend.child_mut().pid(), cpu)?;
        }
    }
    let wrk = Wrk::new(work.path(), opts.connections, opts.users, load_cpu)?;

    let mut cases: Vec<Case> = peers::all_cases(&filter_wasm, &noop_wasm)
        .into_iter()
        .filter(|case| {
            case.id == PEER1 || opts.cases.as_ref().is_none_or(|ids| ids.contains(&case.id))
        })
        .collect();
    for (name, wasm) in &opts.variants {
        if !wasm.is_file() {
            return Err(failed(format!(
                "--variant {name}: {} not found",
                wasm.display()
            )));
        }
        cases.push(peers::variant_case(name, wasm));
    }
    if !opts.probes.is_empty() {
        let probe_wasm = paths::workspace_root()
            .join("target")
            .join("stickycanary-probe.wasm");
        if !probe_wasm.is_file() {
            return Err(failed(format!(
                "{} not found: build it with scripts/bench-build-noop.sh probe",
                probe_wasm.display()
            )));
        }
        for (name, ops) in &opts.probes {
            cases.push(peers::probe_case(name, &probe_wasm, ops));
        }
    }

    // Each pair by the positions of its two cases, checked before any Envoy starts.
    let mut pairs = Vec::new();
    for (a, b) in &opts.pairs {
        let find = |id: &str| {
            cases
                .iter()
                .position(|case| case.id == id)
                .ok_or_else(|| failed(format!("--pair: no case {id:?} in this run")))
        };
        pairs.push((
            (find(a)?, find(b)?),
            CasePair {
                a: a.clone(),
                b: b.clone(),
                runs: Vec::new(),
            },
        ));
    }
    let mut measured: Vec<(Case, CaseResult)> = cases
        .into_iter()
        .map(|case| {
            let result = CaseResult {
                id: case.id.clone(),
                label: case.label.clone(),
                sanity: String::new(),
                samples: Vec::new(),
                paired: Vec::new(),
                rss: Vec::new(),
                total_requests: 0,
            };
            (case, result)
        })
        .collect();
    let mut reload_ms = Vec::new();
    for run in 1..=opts.runs {
        if opts.runs > 1 {
            eprintln!("bench: run {run} of {}, with fresh Envoys", opts.runs);
        }
        let mut running = start_envoys(measured, &backends, envoy_cpu)?;
        for (_, pair) in &mut pairs {
            pair.runs.push(Vec::new());
        }
        let first_round = (run - 1) * opts.rounds + 1;
        measure(&mut running, &mut pairs, &wrk, opts, first_round)?;
        if run == opts.runs {
            soak_and_last_rss(&mut running, &wrk, opts)?;
            if let Some(r) = running.iter().find(|r| r.case.id == "sc-1") {
                reload_ms = reload::measure(&r.envoy, &filter_wasm, opts.reloads)?;
            }
        }
        // Dropping each Envoy stops it: the next run starts its own.
        measured = running.into_iter().map(|r| (r.case, r.result)).collect();
    }

    let results = Results {
        machine,
        settings: Settings {
            rounds: opts.rounds,
            runs: opts.runs,
            duration_secs: opts.duration_secs,
            warmup_secs: opts.warmup_secs,
            connections: opts.connections,
            users: opts.users,
            pinned: pin,
            high_priority: opts.high_priority,
        },
        load_average_before: load_before,
        load_average_after: host::load_average(),
        wall_seconds: started.elapsed().as_secs_f64(),
        filter_wasm_bytes: file_size(&filter_wasm),
        noop_wasm_bytes: file_size(&noop_wasm),
        reload_ms,
        cases: measured.into_iter().map(|(_, result)| result).collect(),
        pairs: pairs.into_iter().map(|(_, pair)| pair).collect(),
    };
    // Stop every backend before writing files: nothing outlives the measurement.
    drop(backends);

    print!("{}", report::terminal_table(&results));
    print!("{}", report::pair_lines(&results.pairs));
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for goal in report::goals(&results) {
        println!(
            "goal {:<6} (by cpu: {}, paired: {}): {} — {}; cpu {}; paired {}",
            verdict(goal.met),
            verdict(goal.met_by_cpu),
            verdict(goal.met_by_paired),
            goal.goal,
            goal.by_throughput,
            goal.by_cpu,
            goal.by_paired
        );
    }
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| failed(format!("create {}: {e}", opts.out_dir.display())))?;
    let md_path = opts.out_dir.join("benchmarks-data-plane.md");
    let json_path = opts.out_dir.join("results.json");
    std::fs::write(&md_path, report::markdown(&results))
        .map_err(|e| failed(format!("write {}: {e}", md_path.display())))?;
    let json = serde_json::to_string_pretty(&results).map_err(|e| failed(e.to_string()))?;
    std::fs::write(&json_path, json)
        .map_err(|e| failed(format!("write {}: {e}", json_path.display())))?;
    println!(
        "bench: wrote {} and {} (load average now {:.2})",
        md_path.display(),
        json_path.display(),
        results.load_average_after[0]
    );
    Ok(())
}

/// Starts one Envoy per case (a fresh process each `--runs` run), checks that each does its
/// job, and records its idle RSS. The RSS and request count start over with the process.
fn start_envoys(
    measured: Vec<(Case, CaseResult)>,
    backends: &[Backend],
    envoy_cpu: Option<usize>,
) -> Result<Vec<Running>> {
    let [stable, canary] = backends else {
        return Err(failed("expected two backends: stable and canary"));
    };
    let mut running = Vec::new();
    for (case, mut result) in measured {
        let envoy = PeerEnvoy::start(&case, stable.addr, canary.addr, envoy_cpu)?;
        eprintln!(
            "bench: started {} (pid {}, {})",
            case.id,
            envoy.pid(),
            envoy.listener
        );
        result.rss.clear();
        result.total_requests = 0;
        running.push(Running {
            case,
            envoy,
            result,
        });
    }
    let rejected: Vec<String> = running
        .iter()
        .flat_map(|r| r.envoy.log_lines_with("rejected config"))
        .collect();
    if !rejected.is_empty() {
        return Err(failed(format!(
            "a filter rejected its config: {}",
            rejected.join(" | ")
        )));
    }
    for r in &mut running {
        r.rss_point("idle")?;
        r.result.sanity = sanity::check(&r.case, r.envoy.listener)?;
        r.result.total_requests += 2000;
        eprintln!("bench: sanity {}: {}", r.case.id, r.result.sanity);
    }
    Ok(running)
}

/// One run's warm-up and rounds (numbered from `first_round` on): every case alone, every
/// case with peer 1, every `--pair`; the pairs' ratios go to their newest run.
fn measure(
    running: &mut [Running],
    pairs: &mut [((usize, usize), CasePair)],
    wrk: &Wrk,
    opts: &Options,
    first_round: usize,
) -> Result<()> {
    if opts.warmup_secs > 0 {
        for r in running.iter_mut() {
            r.load(wrk, "warmup", Duration::from_secs(opts.warmup_secs))?;
            r.rss_point("warm")?;
        }
    }
    let duration = Duration::from_secs(opts.duration_secs);
    for round in first_round..first_round + opts.rounds {
        for r in running.iter_mut() {
            let (run, cpu_us, cores) = r.load(wrk, &format!("r{round}"), duration)?;
            eprintln!(
                "bench: round {round} {:<10} {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  envoy {:.1} us/req ({:.2} cores){}",
                r.case.id,
                run.requests_per_second,
                run.p50_ms,
                run.p99_ms,
                cpu_us,
                cores,
                if run.errors > 0 { format!("  {} errors", run.errors) } else { String::new() }
            );
            r.result.samples.push(Sample {
                round,
                run,
                envoy_cpu_us_per_request: cpu_us,
                envoy_cores: cores,
            });
            r.rss_point(&format!("round {}", round + 1 - first_round))?;
        }
        if opts.paired {
            paired_round(running, wrk, round, duration)?;
        }
        for (indices, pair) in pairs.iter_mut() {
            let ratio = case_pair_round(running, wrk, round, duration, *indices)?;
            if let Some(rounds) = pair.runs.last_mut() {
                rounds.push(ratio);
            }
        }
    }
    Ok(())
}

/// Tops every Envoy up towards the soak target before the last RSS point, within a budget.
fn soak_and_last_rss(running: &mut [Running], wrk: &Wrk, opts: &Options) -> Result<()> {
    for r in running.iter_mut() {
        let missing = opts.soak_requests.saturating_sub(r.result.total_requests);
        let rps = report::summarize(&r.result).rps;
        if missing == 0 || opts.soak_max_secs == 0 || !rps.is_finite() || rps <= 0.0 {
            continue;
        }
        let secs = ((missing as f64 / rps).ceil() as u64).clamp(1, opts.soak_max_secs);
        r.load(wrk, "soak", Duration::from_secs(secs))?;
        eprintln!(
            "bench: soak {} to {} requests",
            r.case.id, r.result.total_requests
        );
    }
    for r in running.iter_mut() {
        r.rss_point("end")?;
    }
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

//! `controller-bench`: the controller's per-interval cost with 1, 100 and 1000 rollouts against
//! a real Prometheus (issue 3's benchmark). See BENCHMARKS.md, section Controller.
//!
//! Parent mode (default) starts, per rollout count, an exporter and a Prometheus, re-executes
//! itself with `--worker N` to measure, prints a table and optionally writes the markdown.

mod exporter;
mod probe;
mod report;
mod stack;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use stickycanary_e2e::{cli, host, interrupt};

/// The controller's per-interval cost (batched Prometheus fetch + engine) with 1, 100 and 1000
/// rollouts against a real Prometheus. See BENCHMARKS.md, section Controller.
#[derive(Parser, Debug)]
#[command(name = "controller-bench")]
struct Args {
    /// Rollout counts to measure, one after another
    #[arg(long, value_name = "N,N", value_delimiter = ',', default_value = "1,100,1000", value_parser = cli::at_least_one)]
    rollouts: Vec<usize>,
    /// Controller intervals measured per rollout count
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = cli::at_least_one)]
    intervals: usize,
    /// Interval length in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Also write the BENCHMARKS.md section to FILE
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Internal (the parent re-executes itself with it): measure N rollouts in this process
    #[arg(long, value_name = "N", value_parser = cli::at_least_one, requires_all = ["prometheus", "out"])]
    worker: Option<usize>,
    /// Internal, with --worker: the Prometheus base URL to query
    #[arg(long, value_name = "URL", requires = "worker")]
    prometheus: Option<String>,
    /// Internal, with --worker: where to write the result JSON
    #[arg(long, value_name = "FILE", requires = "worker")]
    out: Option<PathBuf>,
}

fn run_worker(args: &Args, rollouts: usize) -> Result<(), String> {
    let (Some(prometheus), Some(out)) = (&args.prometheus, &args.out) else {
        return Err("--worker needs --prometheus and --out".to_string());
    };
    let worker_args = worker::WorkerArgs {
        rollouts,
        prometheus: prometheus.clone(),
        intervals: args.intervals,
        interval: Duration::from_millis(args.interval_ms),
    };
    // The controller's runtime: multi-threaded tokio with the default worker count.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = runtime.block_on(worker::run(&worker_args))?;
    let json = serde_json::to_string(&result).map_err(|e| format!("result JSON: {e}"))?;
    std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))
}

fn run_parent(args: &Args) -> Result<(), String> {
    interrupt::catch_interrupts();
    let machine = host::Machine::read();
    let load_1min = || format!("{:.2}", host::load_average()[0]);
    let load_before = load_1min();
    let prometheus_version =
        host::first_line(std::process::Command::new("prometheus").arg("--version"));
    let scratch = tempfile::Builder::new()
        .prefix("sc-controller-bench-")
        .tempdir()
        .map_err(|e| format!("scratch dir: {e}"))?;
    let stack_args = stack::StackArgs {
        intervals: args.intervals,
        interval: Duration::from_millis(args.interval_ms),
        worker_timeout: Duration::from_millis(args.interval_ms) * args.intervals as u32
            + Duration::from_secs(120),
    };
    let mut rows = Vec::new();
    for &n in &args.rollouts {
        stack::interrupted()?;
        eprintln!("measuring {n} rollouts ...");
        let result = stack::measure(n, &stack_args, scratch.path())?;
        rows.push(report::Row::from_result(&result));
    }
    let load_after = load_1min();
    println!("{}", report::table(&rows));
    for line in report::goals(&rows) {
        println!("{line}");
    }
    println!("load average (1 min): {load_before} before, {load_after} after");
    if let Some(path) = &args.markdown {
        let ctx = report::RunContext {
            date: machine.date_utc.clone(),
            machine: format!(
                "{} cores ({}), {:.0} GiB RAM",
                machine.cpus, machine.cpu_model, machine.ram_gib
            ),
            prometheus: prometheus_version,
            load_before,
            load_after,
            cores: machine.cpus,
            intervals: args.intervals,
            interval_ms: u128::from(args.interval_ms),
            command: "cargo run --release -p stickycanary-controller-bench -- --markdown target/bench-controller.md"
                .to_string(),
        };
        std::fs::write(path, report::markdown(&rows, &ctx))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("markdown written to {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match cli::parse::<Args>("controller-bench") {
        Ok(args) => args,
        Err(code) => return code,
    };
    let outcome = match args.worker {
        Some(n) => run_worker(&args, n),
        None => run_parent(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

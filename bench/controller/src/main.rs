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

const USAGE: &str = "usage: controller-bench [--rollouts 1,100,1000] [--intervals 10] [--interval-ms 1000] [--markdown FILE]";

struct Args {
    rollouts: Vec<usize>,
    intervals: usize,
    interval_ms: u64,
    markdown: Option<PathBuf>,
    // Worker mode only.
    worker: Option<usize>,
    prometheus: Option<String>,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rollouts: vec![1, 100, 1000],
        intervals: 10,
        interval_ms: 1000,
        markdown: None,
        worker: None,
        prometheus: None,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag}: missing value; {USAGE}"))
        };
        let number = |v: String, what: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{what}: expected a whole number (got {v:?})"))
        };
        match flag.as_str() {
            "--rollouts" => {
                args.rollouts = value()?
                    .split(',')
                    .map(|n| number(n.trim().to_string(), "--rollouts"))
                    .collect::<Result<_, _>>()?;
            }
            "--intervals" => args.intervals = number(value()?, "--intervals")?,
            "--interval-ms" => args.interval_ms = number(value()?, "--interval-ms")? as u64,
            "--markdown" => args.markdown = Some(PathBuf::from(value()?)),
            "--worker" => args.worker = Some(number(value()?, "--worker")?),
            "--prometheus" => args.prometheus = Some(value()?),
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    if args.intervals == 0 || args.interval_ms == 0 || args.rollouts.contains(&0) {
        return Err("--intervals, --interval-ms and --rollouts must be above 0".to_string());
    }
    Ok(args)
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
    stack::catch_interrupts();
    let machine = probe::Machine::read();
    let load_before = probe::load_average();
    let date = probe::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let prometheus_version = probe::command_line("prometheus", &["--version"]);
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
    let load_after = probe::load_average();
    println!("{}", report::table(&rows));
    for line in report::goals(&rows) {
        println!("{line}");
    }
    println!("load average (1 min): {load_before} before, {load_after} after");
    if let Some(path) = &args.markdown {
        let ctx = report::RunContext {
            date,
            machine: format!(
                "{} cores ({}), {:.0} GiB RAM",
                machine.cores, machine.cpu, machine.ram_gib
            ),
            prometheus: prometheus_version,
            load_before,
            load_after,
            cores: machine.cores,
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
    let outcome = parse_args().and_then(|args| match args.worker {
        Some(n) => run_worker(&args, n),
        None => run_parent(&args),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

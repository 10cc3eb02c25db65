//! `stickycanary-simulate`: run the analysis simulation and print the Markdown tables
//! recorded in BENCHMARKS.md (`## Analysis`).

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use stickycanary::simulate::{render_markdown, simulate_all, Options};

/// Simulate many rollouts through the real decision engine and report false-positive
/// rollbacks, detection rates and times, for the seed's thresholds with and without the
/// comparative check.
#[derive(Debug, Parser)]
#[command(name = "stickycanary-simulate", version)]
struct Args {
    /// A small run (200 healthy / 60 regressed rollouts per scenario) instead of the full one.
    #[arg(long)]
    quick: bool,
    /// Base seed; the same seed gives the same figures.
    #[arg(long)]
    seed: Option<u64>,
    /// Rollouts per healthy scenario (overrides --quick's and the default count).
    #[arg(long)]
    healthy_runs: Option<usize>,
    /// Rollouts per regression scenario.
    #[arg(long)]
    regression_runs: Option<usize>,
    /// Worker threads (default: all cores; the figures do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut options = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(seed) = args.seed {
        options.seed = seed;
    }
    if let Some(runs) = args.healthy_runs {
        options.healthy_runs = runs;
    }
    if let Some(runs) = args.regression_runs {
        options.regression_runs = runs;
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    let started = Instant::now();
    let results = simulate_all(&options);
    print!("{}", render_markdown(&results, &options));
    eprintln!(
        "simulated {} rollouts in {:.1}s",
        results.iter().map(|result| result.runs).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

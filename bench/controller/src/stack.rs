//! The parent's side of one rollout count: an exporter with N rollouts' series, a fresh
//! Prometheus (temp TSDB, 1s scrapes) scraping it, and the measured worker as a child process,
//! so the worker's RSS holds only the controller's work for that N.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stickycanary_e2e::interrupt;
use stickycanary_e2e::proc::ChildGuard;
use stickycanary_e2e::prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};

use crate::exporter::Exporter;
use crate::worker::WorkerResult;

/// Ctrl-C and SIGTERM are caught (see [`stickycanary_e2e::interrupt`]): the parent's wait loops
/// then return this error, so the worker, Prometheus and their temp directories are cleaned up
/// by their guards.
pub fn interrupted() -> Result<(), String> {
    if interrupt::interrupted() {
        Err("interrupted; stopped the worker and Prometheus".to_string())
    } else {
        Ok(())
    }
}

/// How the parent runs each rollout count.
pub struct StackArgs {
    pub intervals: usize,
    pub interval: Duration,
    pub worker_timeout: Duration,
}

/// Exporter + Prometheus for `rollouts`, then the worker; everything is stopped on return.
pub fn measure(rollouts: usize, args: &StackArgs, scratch: &Path) -> Result<WorkerResult, String> {
    let exporter = Exporter::start(rollouts).map_err(|e| format!("exporter: {e}"))?;
    let mut opts = PrometheusOptions::new(vec![ScrapeTarget {
        job: "stickycanary".into(),
        addr: exporter.addr,
        metrics_path: "/metrics".into(),
    }]);
    opts.scrape_interval = Duration::from_secs(1);
    let prometheus = Prometheus::start(&opts).map_err(|e| format!("prometheus: {e}"))?;
    wait_for_windows(&prometheus, rollouts, Duration::from_secs(90))?;

    let out = scratch.join(format!("worker-{rollouts}.json"));
    let exe = std::env::current_exe().map_err(|e| format!("own executable path: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--worker")
        .arg(rollouts.to_string())
        .arg("--prometheus")
        .arg(prometheus.url())
        .arg("--intervals")
        .arg(args.intervals.to_string())
        .arg("--interval-ms")
        .arg(args.interval.as_millis().to_string())
        .arg("--out")
        .arg(&out);
    let log = scratch.join(format!("worker-{rollouts}.log"));
    let mut worker = ChildGuard::spawn(&format!("worker {rollouts}"), cmd, &log)
        .map_err(|e| format!("worker {rollouts}: {e}"))?;
    let deadline = Instant::now() + args.worker_timeout;
    let status = loop {
        if let Some(status) = worker.exit_status() {
            break status;
        }
        interrupted()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "worker {rollouts} still running after {:?}; log tail:\n{}",
                args.worker_timeout,
                worker.log_tail(20)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        return Err(format!(
            "worker {rollouts} failed ({status}); log tail:\n{}",
            worker.log_tail(20)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let result: WorkerResult =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))?;
    let scrapes = exporter.scrapes.load(Ordering::Relaxed);
    let per_interval: Vec<String> = result
        .intervals
        .iter()
        .map(|s| format!("{}q/{:.0}ms(fetch {:.0})", s.queries, s.wall_ms, s.fetch_ms))
        .collect();
    eprintln!(
        "  {rollouts} rollouts: exporter served {scrapes} scrapes; intervals: {}",
        per_interval.join(" ")
    );
    Ok(result)
}

/// Polls until every rollout has canary traffic in a 10s window, so the first measured
/// interval already sees full data for all N rollouts.
fn wait_for_windows(
    prometheus: &Prometheus,
    rollouts: usize,
    timeout: Duration,
) -> Result<(), String> {
    let query = "count(sum by (rollout) (increase(stickycanary_requests_total{source=\"hash\",version=\"canary\"}[10s])) > 0)";
    let deadline = Instant::now() + timeout;
    loop {
        let seen = prometheus.query_value(query).ok().flatten().unwrap_or(0.0);
        if seen >= rollouts as f64 {
            return Ok(());
        }
        interrupted()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "after {timeout:?} Prometheus had canary windows for {seen} of {rollouts} rollouts; log tail:\n{}",
                prometheus.log_text().lines().rev().take(10).collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

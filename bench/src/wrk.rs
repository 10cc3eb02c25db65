//! One saturating load run with `wrk` (fixed connections, fixed duration, one thread) and its
//! result, parsed from the JSON line our wrk script prints in `done()`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stickycanary_e2e::proc::ChildGuard;

use crate::error::{failed, Result};

pub const WRK_SCRIPT: &str = include_str!("../lua/wrk-users.lua");

/// What the script's `done()` prints (times in µs, as wrk keeps them).
#[derive(Debug, Clone, Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    status_errors: u64,
    timeouts: u64,
    p50_us: u64,
    p99_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors and timeouts.
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Wrk {
    pub script: PathBuf,
    pub connections: usize,
    pub users: u64,
    /// CPU to pin wrk to.
    pub cpu: Option<usize>,
    pub log_dir: PathBuf,
}

impl Wrk {
    /// Write the wrk script into `dir`.
    pub fn new(dir: &Path, connections: usize, users: u64, cpu: Option<usize>) -> Result<Self> {
        let script = dir.join("wrk-users.lua");
        std::fs::write(&script, WRK_SCRIPT)
            .map_err(|e| failed(format!("write {}: {e}", script.display())))?;
        Ok(Self {
            script,
            connections,
            users,
            cpu,
            log_dir: dir.to_path_buf(),
        })
    }

    /// Run for `duration` against `target` with `Host: host`; `anonymous` drops `x-user-id`.
    pub fn run(
        &self,
        label: &str,
        target: SocketAddr,
        host: &str,
        anonymous: bool,
        duration: Duration,
    ) -> Result<LoadRun> {
        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(cpu.to_string()).arg("wrk");
                cmd
            }
            None => Command::new("wrk"),
        };
        cmd.arg("-t1")
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&self.script)
            .arg(format!("http://{target}/"))
            .arg("--")
            .arg(host)
            .arg(self.users.to_string())
            .arg(if anonymous { "anonymous" } else { "user" });
        let log = self.log_dir.join(format!("wrk-{label}.log"));
        // A fresh log per run: the guard appends.
        let _ = std::fs::remove_file(&log);
        let mut child = ChildGuard::spawn(&format!("wrk {label}"), cmd, &log)?;
        let deadline = Instant::now() + duration + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.exit_status() {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill();
                return Err(failed(format!("wrk {label} did not finish in time")));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = child.log_text();
        if !status.success() {
            return Err(failed(format!(
                "wrk {label} failed ({status}): {}",
                text.trim()
            )));
        }
        let json = text
            .lines()
            .find_map(|l| l.strip_prefix("BENCH_JSON "))
            .ok_or_else(|| failed(format!("wrk {label}: no result line in: {}", text.trim())))?;
        let summary: WrkSummary = serde_json::from_str(json)
            .map_err(|e| failed(format!("wrk {label}: bad result line {json:?}: {e}")))?;
        let seconds = summary.duration_us as f64 / 1e6;
        if summary.requests == 0 || seconds <= 0.0 {
            return Err(failed(format!("wrk {label}: no requests completed")));
        }
        Ok(LoadRun {
            requests: summary.requests,
            seconds,
            requests_per_second: summary.requests as f64 / seconds,
            p50_ms: summary.p50_us as f64 / 1000.0,
            p99_ms: summary.p99_us as f64 / 1000.0,
            errors: summary.connect_errors
                + summary.read_errors
                + summary.write_errors
                + summary.status_errors
                + summary.timeouts,
        })
    }
}

//! The machine and tool versions a result was measured on, for BENCHMARKS.md.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub ram_gib: f64,
    pub kernel: String,
    pub envoy_version: String,
    pub wrk_version: String,
}

impl Machine {
    pub fn describe(envoy_bin: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0.0);
        // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL": keep the release number.
        let version_line = first_line(Command::new(envoy_bin).arg("--version"));
        let envoy_version = version_line
            .rsplit("version:")
            .next()
            .unwrap_or_default()
            .split('/')
            .find(|part| {
                part.split('.').count() == 3 && part.split('.').all(|n| n.parse::<u32>().is_ok())
            })
            .unwrap_or("unknown")
            .to_string();
        Self {
            date_utc: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: first_line(Command::new("uname").arg("-r")),
            envoy_version,
            wrk_version: first_line(Command::new("wrk").arg("-v"))
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// First non-empty line of a command's stdout+stderr ("unknown" if it cannot run).
fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|out| {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

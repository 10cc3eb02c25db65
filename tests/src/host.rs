//! The machine a measurement ran on and how busy it was: shared by `bench` and
//! `controller-bench` so both reports describe the host the same way.

use std::process::Command;

use serde::Serialize;

/// CPU, cores, RAM, kernel and the time of the run, for a report's header.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub ram_gib: f64,
    pub kernel: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo`, `/proc/meminfo`, `uname -r` and `date -u`; anything unreadable
    /// shows as "unknown" (or 0 GiB) rather than failing a benchmark that already ran.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib = meminfo_total_kib(&meminfo).unwrap_or(0.0);
        Self {
            date_utc: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            // Never 0: reports divide by it.
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: first_line(Command::new("uname").arg("-r")),
        }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn meminfo_total_kib(meminfo: &str) -> Option<f64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load averages (NaN where unreadable).
pub fn load_average() -> [f64; 3] {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default())
}

fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| parts.next().unwrap_or(f64::NAN))
}

/// First non-empty line of a command's stdout, else of its stderr ("unknown" if it cannot
/// run): `prometheus --version` and `wrk -v` print their version on stderr.
pub fn first_line(cmd: &mut Command) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_and_ram_come_from_their_proc_lines() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(
            meminfo_total_kib("MemTotal:       16384000 kB\nMemFree: 1 kB\n"),
            Some(16_384_000.0)
        );
        assert_eq!(cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn loadavg_gives_three_numbers_and_nan_for_what_is_missing() {
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 1/234 5678")[..],
            [0.5, 1.25, 2.0]
        );
        assert!(parse_loadavg("").iter().all(|v| v.is_nan()));
    }
}

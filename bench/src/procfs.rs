//! What the kernel knows about a running process (RSS, CPU time) and CPU pinning.

use std::process::Command;

use crate::error::{failed, Result};

/// Resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| failed(format!("read {path}: {e}")))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| failed(format!("{path}: no VmRSS line")))
}

/// User + system CPU seconds used so far by all threads of `pid`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| failed(format!("read {path}: {e}")))?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are plain.
    // After ')': state is index 0, so utime (field 14) is index 11 and stime (15) index 12.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| failed(format!("{path}: malformed")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| failed(format!("{path}: no field {}", index + 3)))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Pin every thread of `pid` to `cpu`; threads it starts later inherit the mask.
pub fn pin(pid: u32, cpu: usize) -> Result<()> {
    // `taskset -a` walks the process's threads; one that exits meanwhile (a runtime's idle
    // worker) fails the whole call with "No such process", so try a few times.
    let mut last = None;
    for _ in 0..5 {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| failed(format!("run taskset: {e}")))?;
        if status.success() {
            return Ok(());
        }
        last = Some(status);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(failed(format!(
        "taskset -p -c {cpu} {pid} failed ({})",
        last.map_or_else(|| "not run".to_string(), |s| s.to_string())
    )))
}

/// Set this process's nice value; children started afterwards inherit it.
pub fn set_own_nice(nice: i32) -> Result<()> {
    // SAFETY: plain syscall on our own process.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(failed(format!(
            "--high-priority: setpriority({nice}) failed: {}",
            std::io::Error::last_os_error()
        )))
    }
}

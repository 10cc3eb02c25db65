//! [`ChildGuard`]: a child process owned by a test. Its stdout and stderr go to a log file, it can
//! be waited on until ready (failing fast if it dies), and it is killed and reaped on drop, so a
//! panicking test never leaves Envoy or a backend running.
//!
//! Children are also spawned with `PR_SET_PDEATHSIG = SIGKILL`: if the thread that spawned them
//! dies without running destructors (the test binary is SIGKILLed), the kernel kills them too.
//! Note that this fires when the *spawning thread* exits, so spawn from the thread that owns the
//! guard (as tests do), or call [`ChildGuard::spawn_detached_from_thread`].

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

pub struct ChildGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
    reaped: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawn `cmd`, appending its stdout and stderr to `log_path`.
    pub fn spawn(name: &str, cmd: Command, log_path: &Path) -> Result<Self> {
        Self::spawn_inner(name, cmd, log_path, true)
    }

    /// Like [`ChildGuard::spawn`] but without the parent-death signal, for callers that spawn
    /// from short-lived worker threads (the guard's drop still kills the child).
    pub fn spawn_detached_from_thread(name: &str, cmd: Command, log_path: &Path) -> Result<Self> {
        Self::spawn_inner(name, cmd, log_path, false)
    }

    fn spawn_inner(name: &str, mut cmd: Command, log_path: &Path, pdeathsig: bool) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .ctx(|| format!("open log file {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .ctx(|| format!("clone log file {}", log_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if pdeathsig {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn().ctx(|| format!("spawn {name} ({program})"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            reaped: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8; empty if unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Some(status) once the child has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = Some(status);
            }
        }
        self.reaped
    }

    /// Poll `ready` every 50 ms until it returns true. Fails as soon as the child exits, or when
    /// `timeout` passes, with the log tail in the error.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(Error::Exited {
                    what: self.name.clone(),
                    status: status.to_string(),
                    log_tail: self.log_tail(30),
                });
            }
            if ready() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(Error::NotReady {
                    what: self.name.clone(),
                    seconds: timeout.as_secs_f64(),
                    log_tail: self.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&mut self, signal: i32) {
        if self.exit_status().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: plain syscall on our own child's pid, which is not reaped yet.
                unsafe {
                    libc::kill(pid, signal);
                }
            }
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.reaped = Some(status);
            }
        }
        self.reaped
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

//! Local mode's release actions: commands the *user* passes as flags (`--on-scale-up`,
//! `--on-promote`, `--on-scale-down`), never commands from the rollout file, so a rollout
//! file cannot run code.
//!
//! Each command runs through `sh -c` with `STICKYCANARY_ROLLOUT`, `STICKYCANARY_REVISION` and
//! `STICKYCANARY_ACTION` in its environment, under a timeout, and its output is kept for the
//! log. It succeeds when it exits 0 within the timeout. A command that starts a long-running
//! process must redirect that process's output: the hook is done when its output closes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The three hooks and their timeout.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    pub on_scale_up: Option<String>,
    pub on_promote: Option<String>,
    pub on_scale_down: Option<String>,
    pub timeout: Duration,
}

/// Which hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    ScaleUp,
    Promote,
    ScaleDown,
}

impl HookKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            HookKind::ScaleUp => "scale-up",
            HookKind::Promote => "promote",
            HookKind::ScaleDown => "scale-down",
        }
    }
}

impl Hooks {
    pub fn command(&self, kind: HookKind) -> Option<&str> {
        match kind {
            HookKind::ScaleUp => self.on_scale_up.as_deref(),
            HookKind::Promote => self.on_promote.as_deref(),
            HookKind::ScaleDown => self.on_scale_down.as_deref(),
        }
    }
}

/// What a hook did: `Ok` with its output, or `Err` with why it failed (and its output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRun {
    pub kind: HookKind,
    pub revision: String,
    pub output: String,
    pub result: Result<(), String>,
}

/// Output kept per hook run (the tail, so a chatty command cannot fill memory).
const OUTPUT_LIMIT: usize = 8 * 1024;

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_LIMIT);
    String::from_utf8_lossy(&bytes[start..])
        .trim_end()
        .to_string()
}

/// Runs `command` for `revision` of `rollout`.
pub async fn run(
    command: &str,
    kind: HookKind,
    rollout: &str,
    revision: &str,
    timeout: Duration,
) -> HookRun {
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("STICKYCANARY_ROLLOUT", rollout)
        .env("STICKYCANARY_REVISION", revision)
        .env("STICKYCANARY_ACTION", kind.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return HookRun {
                kind,
                revision: revision.to_string(),
                output: String::new(),
                result: Err(format!("cannot start `sh -c`: {e}")),
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok((Ok(status), output)) => HookRun {
            kind,
            revision: revision.to_string(),
            output: tail(&output),
            result: if status.success() {
                Ok(())
            } else {
                Err(format!("--on-{} exited with {status}", kind.as_str()))
            },
        },
        Ok((Err(e), output)) => HookRun {
            kind,
            revision: revision.to_string(),
            output: tail(&output),
            result: Err(format!("--on-{}: {e}", kind.as_str())),
        },
        // The child is killed when dropped (kill_on_drop).
        Err(_) => HookRun {
            kind,
            revision: revision.to_string(),
            output: String::new(),
            result: Err(format!(
                "--on-{} timed out after {}s",
                kind.as_str(),
                timeout.as_secs_f64()
            )),
        },
    }
}

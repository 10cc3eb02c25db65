//! Start an `sc-backend` process (see [`crate::backend_server`]) and steer it at runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::backend_server::{Behaviour, BehaviourPatch};
use crate::error::{Error, Result};
use crate::proc::ChildGuard;
use crate::{http1, paths, ports};

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    child: ChildGuard,
}

impl Backend {
    /// Start `sc-backend --name <name>` on a free port, logging to `<log_dir>/backend-<name>.log`.
    /// The binary is found with [`paths::cargo_bin`]; use [`Backend::start_with_bin`] to pass
    /// `env!("CARGO_BIN_EXE_sc-backend")` explicitly.
    pub fn start(name: &str, behaviour: Behaviour, log_dir: &Path) -> Result<Self> {
        Self::start_with_bin(&paths::cargo_bin("sc-backend")?, name, behaviour, log_dir)
    }

    pub fn start_with_bin(
        bin: &Path,
        name: &str,
        behaviour: Behaviour,
        log_dir: &Path,
    ) -> Result<Self> {
        // A port taken between the probe and the bind: try again on a fresh one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(bin, name, behaviour, log_dir) {
                Err(e) if attempt < 3 && crate::envoy::is_bind_failure(&e) => continue,
                other => return other,
            }
        }
    }

    fn start_once(bin: &Path, name: &str, behaviour: Behaviour, log_dir: &Path) -> Result<Self> {
        Self::start_at(bin, name, behaviour, log_dir, ports::free_addr()?)
    }

    /// Start `bin` on `addr` and wait until it answers there; an error (not a backend that
    /// is not there) when another process holds the port.
    pub fn start_at(
        bin: &Path,
        name: &str,
        behaviour: Behaviour,
        log_dir: &Path,
        addr: SocketAddr,
    ) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--name")
            .arg(name)
            .arg("--error-ratio")
            .arg(behaviour.error_ratio.to_string())
            .arg("--error-status")
            .arg(behaviour.error_status.to_string())
            .arg("--delay-ms")
            .arg(behaviour.delay_ms.to_string());
        let log: PathBuf = log_dir.join(format!("backend-{name}.log"));
        let mut child = ChildGuard::spawn(&format!("sc-backend {name}"), cmd, &log)?;
        // Ready means *this* child answers on the port, not just that something accepts TCP
        // there: a socket another process bound between our port probe and the child's bind
        // would pass a connect check while the child exits with "address in use", and Envoy
        // would then send the canary's traffic to whatever holds the port, or to nothing once
        // it is gone (every canary request a local 503; issue 22). Checking the pid makes that
        // an exit with a bind failure, which `start_with_bin` retries on a fresh port.
        let pid = child.pid();
        child.wait_ready(Duration::from_secs(15), || serving_pid(addr) == Some(pid))?;
        Ok(Self {
            name: name.to_string(),
            addr,
            child,
        })
    }

    /// Fails unless this backend's process is still running and is the one answering on its
    /// port. [`crate::stack::Stack::start`] calls it right before handing out a stack, so no
    /// test sends traffic to an upstream that is not there.
    pub fn check_serving(&mut self) -> Result<()> {
        if let Some(status) = self.child.exit_status() {
            return Err(Error::Exited {
                what: format!("sc-backend {}", self.name),
                status: status.to_string(),
                log_tail: self.child.log_tail(30),
            });
        }
        match serving_pid(self.addr) {
            Some(pid) if pid == self.child.pid() => Ok(()),
            other => Err(Error::Other(format!(
                "sc-backend {} (pid {}) is running but {} answers /__stats on {} as pid {other:?}; log tail:\n{}",
                self.name,
                self.child.pid(),
                if other.is_some() { "another process" } else { "nothing" },
                self.addr,
                self.child.log_tail(30)
            ))),
        }
    }

    /// One line for a failure message: serving, or why not (exit status, who holds the port).
    pub fn health(&mut self) -> String {
        match self.check_serving() {
            Ok(()) => format!("sc-backend {} on {}: serving", self.name, self.addr),
            Err(e) => format!(
                "sc-backend {} on {}: NOT serving: {e}",
                self.name, self.addr
            ),
        }
    }

    /// Change behaviour (and reset its request counter).
    /// Changes the release this backend serves (`POST /__release`), as a deployment would.
    pub fn release(&self, patch: &crate::backend_server::ReleasePatch) -> Result<()> {
        let body = serde_json::to_vec(patch).map_err(|e| Error::Other(e.to_string()))?;
        let resp = http1::request(
            self.addr,
            "POST",
            "/__release",
            &[("content-type", "application/json")],
            &body,
            Duration::from_secs(5),
        )?;
        if resp.status != 200 {
            return Err(Error::Http(format!("/__release answered {}", resp.status)));
        }
        Ok(())
    }

    pub fn control(&self, patch: &BehaviourPatch) -> Result<Behaviour> {
        let body = serde_json::to_vec(patch).map_err(|e| Error::Other(e.to_string()))?;
        let resp = http1::request(
            self.addr,
            "POST",
            "/__control",
            &[("content-type", "application/json")],
            &body,
            Duration::from_secs(5),
        )?;
        if resp.status != 200 {
            return Err(Error::Http(format!(
                "/__control answered {}: {}",
                resp.status,
                resp.body_text().trim()
            )));
        }
        serde_json::from_slice(&resp.body).map_err(|e| Error::Http(format!("/__control body: {e}")))
    }

    /// `(requests, errors)` served since start or the last control change.
    pub fn counts(&self) -> Result<(u64, u64)> {
        let resp = http1::get(self.addr, "/__stats", &[])?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| Error::Http(format!("/__stats body: {e}")))?;
        Ok((
            v["requests"].as_u64().unwrap_or(0),
            v["errors"].as_u64().unwrap_or(0),
        ))
    }

    pub fn log_text(&self) -> String {
        self.child.log_text()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn child_mut(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

/// The `pid` that whatever answers `GET /__stats` on `addr` reports, if it answers like an
/// `sc-backend` at all.
fn serving_pid(addr: SocketAddr) -> Option<u32> {
    let resp = http1::request(addr, "GET", "/__stats", &[], &[], Duration::from_secs(2)).ok()?;
    if resp.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    v["pid"].as_u64().and_then(|pid| u32::try_from(pid).ok())
}

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
        let addr = ports::free_addr()?;
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
        child.wait_ready(Duration::from_secs(15), || ports::is_listening(addr))?;
        Ok(Self {
            name: name.to_string(),
            addr,
            child,
        })
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

    pub fn child_mut(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

//! One Envoy per case, started from the case's bootstrap and optionally pinned to a CPU.
//!
//! The harness's `envoy::Envoy` only knows the stickycanary and router-only chains, so the
//! peers are started here with the harness's pieces (`bootstrap`, ECDS file writer,
//! `ChildGuard`, ports) plus `taskset`; the process is killed on drop like every harness child.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stickycanary_e2e::envoy::{self, EnvoyOptions};
use stickycanary_e2e::proc::ChildGuard;
use stickycanary_e2e::{http1, paths, ports};

use crate::error::{failed, Result};
use crate::peers::{self, Case, Kind};

pub struct PeerEnvoy {
    child: ChildGuard,
    pub listener: SocketAddr,
    ecds_dir: PathBuf,
    // Last, so the process dies before its directory goes.
    _dir: tempfile::TempDir,
}

impl PeerEnvoy {
    /// Start the Envoy of `case` with one worker, routing to `stable`/`canary`.
    pub fn start(
        case: &Case,
        stable: SocketAddr,
        canary: SocketAddr,
        cpu: Option<usize>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sc-bench-{}-", case.id))
            .tempdir()
            .map_err(|e| failed(format!("create temp dir: {e}")))?;
        let ecds_dir = dir.path().join("ecds");
        std::fs::create_dir(&ecds_dir).map_err(|e| failed(format!("create ecds dir: {e}")))?;
        if let Kind::Wasm {
            wasm,
            plugin_config,
        } = &case.kind
        {
            envoy::write_ecds_file(&ecds_dir, &envoy::ecds_document(wasm, plugin_config))?;
        }
        let mut opts = EnvoyOptions::new(stable, canary);
        opts.concurrency = 1;
        opts.log_level = "warn".into();
        let listener_port = ports::free_port()?;
        let admin_port = ports::free_port()?;
        let doc = peers::bootstrap(case, &opts, listener_port, admin_port, &ecds_dir)?;
        let bootstrap_path = dir.path().join("bootstrap.json");
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| failed(e.to_string()))?;
        std::fs::write(&bootstrap_path, text)
            .map_err(|e| failed(format!("write {}: {e}", bootstrap_path.display())))?;

        let envoy_bin = paths::envoy_bin()?;
        // taskset execs Envoy in place, so the guard's pid is Envoy's.
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(cpu.to_string()).arg(&envoy_bin);
                cmd
            }
            None => Command::new(&envoy_bin),
        };
        cmd.arg("-c")
            .arg(&bootstrap_path)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--log-level")
            .arg(&opts.log_level)
            // Six Envoys run side by side: no shared-memory hot restart.
            .arg("--disable-hot-restart");
        let log = dir.path().join("envoy.log");
        let mut child = ChildGuard::spawn(&format!("envoy {}", case.id), cmd, &log)?;
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let listener = SocketAddr::from(([127, 0, 0, 1], listener_port));
        child.wait_ready(opts.ready_timeout, || {
            http1::request(admin, "GET", "/ready", &[], &[], Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
                && ports::is_listening(listener)
        })?;
        Ok(Self {
            child,
            listener,
            ecds_dir,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Swap the filter config the way `stickycanary local` does (temp file + rename).
    pub fn set_plugin_config(&self, wasm: &Path, plugin_config: &str) -> Result<()> {
        envoy::write_ecds_file(&self.ecds_dir, &envoy::ecds_document(wasm, plugin_config))?;
        Ok(())
    }

    /// Envoy's own log lines containing `needle` (e.g. the filter's "rejected config").
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.child
            .log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Still running? (A crash mid-run must fail the benchmark, not skew it.)
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.exit_status() {
            None => Ok(()),
            Some(status) => Err(failed(format!(
                "{} exited ({status}); log tail:\n{}",
                self.child.name(),
                self.child.log_tail(20)
            ))),
        }
    }
}

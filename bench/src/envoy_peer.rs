//! One Envoy per case, started from the case's bootstrap and optionally pinned to a CPU.
//!
//! The harness's `envoy::Envoy` only knows the stickycanary and router-only chains, so each
//! peer writes its own bootstrap here and hands it to the harness's `envoy::launch` (which
//! pins with `taskset` when asked); the process is killed on drop like every harness child.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use stickycanary_e2e::envoy::{self, EnvoyOptions};
use stickycanary_e2e::proc::ChildGuard;
use stickycanary_e2e::{paths, ports};

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

        let launched = envoy::launch(
            &envoy::Launch {
                name: &format!("envoy {}", case.id),
                bootstrap: &bootstrap_path,
                listener_port,
                admin_port,
                cpu,
            },
            &opts,
            paths::envoy_bin()?,
        )?;
        let (child, listener) = (launched.child, launched.listener);
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

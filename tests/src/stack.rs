//! The whole local stack of `make demo` and the rollout end-to-end tests: two backends, Envoy
//! running the filter through ECDS, Prometheus scraping Envoy every second, and
//! `stickycanary local` driving the rollout. Everything listens on 127.0.0.1 and dies with the
//! [`Stack`] value (each part is a guard).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backend::Backend;
use crate::backend_server::Behaviour;
use crate::envoy::{Envoy, EnvoyOptions};
use crate::error::{Error, IoContext, Result};
use crate::load::LoadOptions;
use crate::proc::ChildGuard;
use crate::prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};
use crate::{paths, ports};

/// The rollout every stack runs: its key, its host, and the stage plan.
pub const ROLLOUT: &str = "checkout";
pub const HOST: &str = "checkout";

/// The analysis knobs of the compressed rollout (seconds instead of minutes).
#[derive(Debug, Clone)]
pub struct RolloutPlan {
    /// `(weight, duration)`; the last stage has no duration.
    pub stages: Vec<(f64, Option<&'static str>)>,
    pub interval: &'static str,
    pub window: &'static str,
    pub min_requests: u64,
    pub error_for: &'static str,
    pub latency_for: &'static str,
    pub unavailable_grace: &'static str,
    /// Release lifecycle: `spec.canary.revision` (none: a single run, as before).
    pub revision: Option<String>,
    /// Release lifecycle: `spec.scaleDownDelay`.
    pub scale_down_delay: &'static str,
    /// Gates: extra spec fields, appended as they are (e.g. `  webhooks:\n    - ...\n`).
    pub extra_spec: String,
}

impl Default for RolloutPlan {
    /// The seed's stages and thresholds with minutes turned into seconds.
    fn default() -> Self {
        Self {
            stages: vec![
                (10.0, Some("8s")),
                (25.0, Some("8s")),
                (50.0, Some("8s")),
                (100.0, None),
            ],
            interval: "1s",
            window: "4s",
            min_requests: 20,
            error_for: "2s",
            latency_for: "3s",
            unavailable_grace: "120s",
            revision: None,
            scale_down_delay: "2s",
            extra_spec: String::new(),
        }
    }
}

impl RolloutPlan {
    /// The CanaryRollout YAML `stickycanary local` reads (same shape as the cluster resource).
    pub fn rollout_yaml(&self, prometheus_url: &str) -> String {
        let stages: String = self
            .stages
            .iter()
            .map(|(weight, duration)| match duration {
                Some(d) => format!("    - {{weight: {weight}, duration: {d}}}\n"),
                None => format!("    - {{weight: {weight}}}\n"),
            })
            .collect();
        let canary = match &self.revision {
            Some(revision) => format!(
                "{{deployment: {ROLLOUT}-canary, revision: \"{revision}\"}}\n  \
                 scaleDownDelay: {}\n  progressDeadline: 60s",
                self.scale_down_delay
            ),
            None => format!("{{deployment: {ROLLOUT}-canary}}"),
        };
        format!(
            "apiVersion: stickycanary.dev/v1alpha1\n\
             kind: CanaryRollout\n\
             metadata:\n  name: {ROLLOUT}\n  namespace: demo\n\
             spec:\n  \
               wasmPlugin: {{name: stickycanary}}\n  \
               canary: {canary}\n  \
               prometheus: {{address: \"{prometheus_url}\"}}\n  \
               stages:\n{stages}  \
               analysis:\n    \
                 interval: {}\n    window: {}\n    minRequests: {}\n    \
                 errorRate: {{maxPercent: 5, for: {}}}\n    \
                 latencyP99: {{maxMs: 500, for: {}}}\n    \
                 unavailableGrace: {}\n{}",
            self.interval,
            self.window,
            self.min_requests,
            self.error_for,
            self.latency_for,
            self.unavailable_grace,
            self.extra_spec,
        )
    }
}

/// The phase a rollout status holds (empty when it has none).
pub fn phase_of(status: &Value) -> &str {
    status.get("phase").and_then(Value::as_str).unwrap_or("")
}

/// The filter config the stack starts with: one rollout at weight 0.
pub fn initial_plugin_config() -> String {
    serde_json::json!({
        "rollouts": {
            ROLLOUT: { "hosts": [HOST], "weight": 0 }
        }
    })
    .to_string()
}

pub struct StackOptions {
    pub plan: RolloutPlan,
    /// How the canary backend behaves from the start.
    pub canary: Behaviour,
    /// Envoy worker threads.
    pub envoy_concurrency: u32,
    /// Serve the controller's `/metrics` (`local --metrics-addr`) and have Prometheus scrape it.
    pub controller_metrics: bool,
    /// Prometheus rule files to load (e.g. `manifests/prometheus/rules.yaml`).
    pub rule_files: Vec<PathBuf>,
    /// More targets for Prometheus to scrape (e.g. a cAdvisor-shaped exporter).
    pub extra_targets: Vec<ScrapeTarget>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            plan: RolloutPlan::default(),
            canary: Behaviour::default(),
            envoy_concurrency: 1,
            controller_metrics: false,
            rule_files: Vec::new(),
            extra_targets: Vec::new(),
        }
    }
}

/// The running stack. Fields drop in declaration order: the controller first, the
/// directory last.
pub struct Stack {
    controller: Option<ChildGuard>,
    pub prometheus: Prometheus,
    pub envoy: Envoy,
    pub stable: Backend,
    pub canary: Backend,
    rollout_file: PathBuf,
    status_file: PathBuf,
    /// Where the controller serves `/metrics`, when asked to.
    pub controller_metrics: Option<SocketAddr>,
    controller_starts: u32,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Start backends, Envoy and Prometheus, and wait until Prometheus scrapes Envoy.
    /// The controller is started separately ([`Stack::start_controller`]).
    pub fn start(opts: &StackOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sc-stack-")
            .tempdir()
            .ctx(|| "create stack temp dir".into())?;
        let stable = Backend::start("stable", Behaviour::default(), dir.path())?;
        let canary = Backend::start("canary", opts.canary, dir.path())?;
        let mut envoy_opts = EnvoyOptions::new(stable.addr, canary.addr);
        envoy_opts.concurrency = opts.envoy_concurrency;
        let envoy = Envoy::start(&envoy_opts, &initial_plugin_config())?;
        let mut targets = vec![ScrapeTarget::envoy(envoy.admin)];
        let controller_metrics = if opts.controller_metrics {
            let addr = ports::free_addr()?;
            targets.push(ScrapeTarget {
                job: "stickycanary".into(),
                addr,
                metrics_path: "/metrics".into(),
            });
            Some(addr)
        } else {
            None
        };
        targets.extend(opts.extra_targets.iter().cloned());
        let mut prometheus_opts = PrometheusOptions::new(targets);
        prometheus_opts.rule_files = opts.rule_files.clone();
        let prometheus = Prometheus::start(&prometheus_opts)?;
        if controller_metrics.is_none() {
            prometheus.wait_targets_up(Duration::from_secs(60))?;
        }
        // Last, right before the caller sends traffic: both upstreams Envoy routes to are
        // still our running backends (issue 22: a canary upstream that is not there turns every
        // canary request into an Envoy 503, which reads as a 100% canary error rate).
        let (mut stable, mut canary) = (stable, canary);
        stable.check_serving()?;
        canary.check_serving()?;
        let rollout_file = dir.path().join("rollout.yaml");
        std::fs::write(&rollout_file, opts.plan.rollout_yaml(&prometheus.url()))
            .ctx(|| format!("write {}", rollout_file.display()))?;
        let status_file = dir.path().join("status.json");
        Ok(Self {
            controller: None,
            prometheus,
            envoy,
            stable,
            canary,
            rollout_file,
            status_file,
            controller_metrics,
            controller_starts: 0,
            dir,
        })
    }

    /// `users` ordinary users (ids `u0`…) on `/` at a steady `rate` req/s over 4 connections
    /// for `seconds`, without per-user tracking: the background of the clustered-traffic tests.
    pub fn steady_users(&self, users: u64, rate: f64, seconds: u64) -> crate::load::LoadHandle {
        let mut opts = self.load_options();
        opts.users = users;
        opts.connections = 4;
        opts.rate = Some(rate);
        opts.track_users = false;
        opts.duration = Some(Duration::from_secs(seconds));
        crate::load::start(opts)
    }

    /// Polls the status file until the rollout reaches a final phase (`Promoted`,
    /// `RolledBack`, `InvalidSpec`) and returns that status; after `timeout`, an error with the
    /// last status and the controller's log.
    pub fn wait_final(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status()? {
                if matches!(phase_of(&status), "Promoted" | "RolledBack" | "InvalidSpec") {
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Other(format!(
                    "no final phase within {timeout:?}; status {:?}\ncontroller log:\n{}",
                    self.status(),
                    self.controller_log()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn status_file(&self) -> &Path {
        &self.status_file
    }

    /// Rewrites the rollout file `stickycanary local` reads (it re-reads it every interval).
    pub fn write_plan(&self, plan: &RolloutPlan) -> Result<()> {
        std::fs::write(
            &self.rollout_file,
            plan.rollout_yaml(&self.prometheus.url()),
        )
        .ctx(|| format!("write {}", self.rollout_file.display()))
    }

    /// The release hooks for `stickycanary local`, acting on this stack's backends as a
    /// deployment tool would: scale-up makes the canary serve the revision, promote makes
    /// stable serve it, scale-down stops the canary. `scale_up_prefix` runs first in the
    /// scale-up hook (a test can hold the hook there).
    pub fn release_hooks(&self, scale_up_prefix: &str) -> Vec<String> {
        let post = |addr: SocketAddr, body: &str| {
            format!(
                "curl -sS -f -m 5 -o /dev/null -X POST -H 'content-type: application/json' -d {body} http://{addr}/__release"
            )
        };
        let serve_revision =
            "\"{\\\"version\\\":\\\"$STICKYCANARY_REVISION\\\",\\\"stopped\\\":false}\"";
        vec![
            "--on-scale-up".into(),
            format!(
                "{scale_up_prefix}{} && echo \"canary serves $STICKYCANARY_REVISION\"",
                post(self.canary.addr, serve_revision)
            ),
            "--on-promote".into(),
            format!(
                "{} && echo \"stable serves $STICKYCANARY_REVISION\"",
                post(self.stable.addr, serve_revision)
            ),
            "--on-scale-down".into(),
            format!(
                "{} && echo \"canary stopped\"",
                post(self.canary.addr, "'{\"stopped\":true}'")
            ),
        ]
    }

    /// Start `stickycanary local` on this stack (again, after [`Stack::kill_controller`]).
    pub fn start_controller(&mut self) -> Result<()> {
        self.start_controller_with(&[])
    }

    /// [`Stack::start_controller`] with extra arguments (e.g. [`Stack::release_hooks`]).
    pub fn start_controller_with(&mut self, extra: &[String]) -> Result<()> {
        let bin = paths::cargo_bin("stickycanary")?;
        let mut cmd = Command::new(bin);
        cmd.arg("local")
            .arg("--rollout")
            .arg(&self.rollout_file)
            .arg("--envoy-ecds")
            .arg(self.envoy.ecds_file())
            .arg("--prometheus")
            .arg(self.prometheus.url())
            .arg("--status-file")
            .arg(&self.status_file);
        if let Some(addr) = self.controller_metrics {
            cmd.arg("--metrics-addr").arg(addr.to_string());
        }
        cmd.args(extra);
        self.controller_starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.controller_starts));
        self.controller = Some(ChildGuard::spawn("stickycanary local", cmd, &log)?);
        Ok(())
    }

    /// SIGKILL the controller: no chance to save anything on the way out.
    pub fn kill_controller(&mut self) {
        if let Some(mut child) = self.controller.take() {
            child.kill();
        }
    }

    /// The controller's exit status, if it has exited (local mode exits on a final phase).
    pub fn controller_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.controller.as_mut().and_then(|c| c.exit_status())
    }

    /// Everything every controller run printed, in order.
    pub fn controller_log(&self) -> String {
        (1..=self.controller_starts)
            .map(|n| {
                let path = self.dir.path().join(format!("controller-{n}.log"));
                std::fs::read_to_string(path).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    /// The rollout's status from the status file (`None` before the first write).
    pub fn status(&self) -> Result<Option<Value>> {
        match std::fs::read(&self.status_file) {
            Ok(bytes) => {
                let state: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Other(format!("status file: {e}")))?;
                Ok(state.get("status").cloned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Other(format!("status file: {e}"))),
        }
    }

    /// The rollout's phase (`""` before the first status write).
    pub fn phase(&self) -> String {
        self.status()
            .ok()
            .flatten()
            .and_then(|s| s.get("phase").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    }

    /// The weight in the ECDS file Envoy is reading now.
    pub fn ecds_weight(&self) -> Result<f64> {
        let text =
            std::fs::read_to_string(self.envoy.ecds_file()).ctx(|| "read the ECDS file".into())?;
        ecds_weight_of(&text, ROLLOUT)
    }

    /// Wait until Envoy has accepted the plugin configuration the ECDS file holds now, and
    /// return the weight it carries. The controller only writes the file: Envoy picks it up
    /// through a file watch, a moment later and later still on a busy machine, so a response
    /// probed right after a write may still come from the previous configuration.
    pub fn wait_envoy_took_ecds_file(&self, timeout: Duration) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(self.envoy.ecds_file())
                .ctx(|| "read the ECDS file".into())?;
            let written = ecds_plugin_config(&text)?;
            let accepted = self.envoy.accepted_plugin_config()?;
            if accepted.as_deref() == Some(written.as_str()) {
                return ecds_weight_of(&text, ROLLOUT);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "Envoy did not take the ECDS file within {timeout:?}: it holds {written}, Envoy runs {accepted:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(status, x-served-by, x-version)` of one request through Envoy as `user`.
    pub fn probe(&self, user: &str) -> Result<(u16, String, String)> {
        let resp = self.envoy.get(HOST, "/", &[("x-user-id", user)])?;
        Ok((
            resp.status,
            resp.header("x-served-by").unwrap_or("none").to_string(),
            resp.header("x-version").unwrap_or("none").to_string(),
        ))
    }

    /// [`Stack::probe`] once the answer is no longer `previous` (`x-served-by`, `x-version`),
    /// for use after [`Stack::wait_envoy_took_ecds_file`]: Envoy hands a configuration it
    /// accepted to each worker thread a moment later, so until `until` the answer from before
    /// the change is not yet a fault. Any other answer is returned at once. One `until` for a
    /// whole sweep of users bounds the sweep's waiting.
    pub fn settled_probe(
        &self,
        user: &str,
        previous: (&str, &str),
        until: Instant,
    ) -> Result<(u16, String, String)> {
        loop {
            let got = self.probe(user)?;
            if (got.0, got.1.as_str(), got.2.as_str()) != (200, previous.0, previous.1)
                || Instant::now() > until
            {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll the status until `done` holds, or fail after `timeout` with the controller's log tail.
    pub fn wait_status(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status()? {
                if done(&status) {
                    return Ok(status);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Other(format!(
                    "timed out after {timeout:?}; status: {}; controller log tail:\n{}",
                    self.status()?.map(|s| s.to_string()).unwrap_or_default(),
                    tail(&self.controller_log(), 15)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether each backend is still running and answering on its port, one line each, plus
    /// Envoy's canary-cluster connection counters: for failure messages, so a canary error
    /// rate says whether the canary backend answered or Envoy could not reach it.
    pub fn upstreams_report(&mut self) -> String {
        let counters = self
            .envoy
            .stats()
            .map(|stats| {
                stats
                    .into_iter()
                    .filter(|(name, _)| {
                        name.starts_with("cluster.canary.")
                            && (name.ends_with(".upstream_cx_connect_fail")
                                || name.ends_with(".upstream_cx_total")
                                || name.ends_with(".upstream_rq_503")
                                || name.ends_with(".upstream_rq_completed"))
                            && !name.contains(".external.")
                    })
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|e| format!("envoy stats unavailable: {e}"));
        format!(
            "{}\n{}\nenvoy: {counters}",
            self.stable.health(),
            self.canary.health()
        )
    }

    /// Load options aimed at this stack's Envoy and rollout host.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions::new(self.envoy.listener, HOST)
    }

    pub fn listener(&self) -> SocketAddr {
        self.envoy.listener
    }
}

/// `rollouts.<rollout>.weight` inside an ECDS document's pluginConfig string.
pub fn ecds_weight_of(ecds_text: &str, rollout: &str) -> Result<f64> {
    let config: Value = serde_json::from_str(&ecds_plugin_config(ecds_text)?)
        .map_err(|e| Error::Other(format!("ECDS pluginConfig: {e}")))?;
    config
        .pointer(&format!("/rollouts/{rollout}/weight"))
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::Other(format!("ECDS pluginConfig: no rollouts.{rollout}.weight")))
}

/// The plugin configuration (a JSON string) an ECDS file carries.
fn ecds_plugin_config(ecds_text: &str) -> Result<String> {
    let doc: Value =
        serde_json::from_str(ecds_text).map_err(|e| Error::Other(format!("ECDS file: {e}")))?;
    doc.pointer("/resources/0/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Other("ECDS file: no configuration value".into()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Canary share of the traffic per weight, from load snapshots taken while the weight in the
/// ECDS file was the same at both ends of the interval (intervals that span a weight change
/// are left out, so each figure is traffic served at one known weight).
#[derive(Debug, Default)]
pub struct ShareMeter {
    last_canary: u64,
    last_total: u64,
    last_weight: Option<f64>,
    /// weight × 100 → (canary responses, all responses).
    pub per_weight: std::collections::BTreeMap<u32, (u64, u64)>,
    /// Every weight seen, in order, without repeats.
    pub weights_seen: Vec<f64>,
}

impl ShareMeter {
    pub fn sample(&mut self, snapshot: &crate::load::LoadSummary, weight: f64) {
        let canary = snapshot.by_version.get("canary").copied().unwrap_or(0);
        let total: u64 = snapshot.by_version.values().sum();
        if self.last_weight == Some(weight) {
            let entry = self
                .per_weight
                .entry((weight * 100.0).round() as u32)
                .or_default();
            entry.0 += canary - self.last_canary;
            entry.1 += total - self.last_total;
        }
        if self.weights_seen.last() != Some(&weight) {
            self.weights_seen.push(weight);
        }
        self.last_canary = canary;
        self.last_total = total;
        self.last_weight = Some(weight);
    }

    /// `(weight, measured canary percent, responses)` per weight seen.
    pub fn shares(&self) -> Vec<(f64, f64, u64)> {
        self.per_weight
            .iter()
            .filter(|(_, (_, total))| *total > 0)
            .map(|(w, (canary, total))| {
                (
                    *w as f64 / 100.0,
                    *canary as f64 * 100.0 / *total as f64,
                    *total,
                )
            })
            .collect()
    }
}

//! `stickycanary local`: the same decision engine as the controller, driving a standalone
//! Envoy through its ECDS file, with the rollout spec read from a CanaryRollout YAML file and
//! the status kept in a JSON file (so a restart resumes where it stopped).
//!
//! Each interval: take a queued manual action, query Prometheus (one batched query per
//! metric), run `engine::decide`, apply its weight to the ECDS file, save the status, print
//! one progress line. It stops when the rollout is Promoted or RolledBack, or on Ctrl-C.
//! With `--metrics-addr` it also serves the controller's `/metrics` (see [`serve`]).

pub mod direct;
pub mod progress;
pub mod serve;
pub mod state;

pub use direct::apply_directly;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use crate::engine::{self, Action};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observation::{
    CanaryHealth, CustomObservation, ManualAction, MetricsObservation, Observations,
};
use crate::prometheus::{render_check_query, MetricsSource, PrometheusSource, RolloutSeries};
use crate::target::ecds::EcdsFileTarget;
use crate::target::wasmplugin::PatchOutcomes;
use crate::target::{TargetError, WeightTarget};
use serve::{MetricsServer, RolloutLabel};
use state::LocalState;

/// What `stickycanary local` was asked to do.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub rollout_file: PathBuf,
    pub envoy_ecds: PathBuf,
    /// Overrides `spec.prometheus.address`.
    pub prometheus: Option<String>,
    pub status_file: PathBuf,
    /// Run one interval and exit.
    pub once: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` here, as `controller` mode does.
    pub metrics_addr: Option<SocketAddr>,
    /// With `metrics_addr`: how long to keep serving after the loop ends on its own, so
    /// Prometheus scrapes the final phase and the rollback count.
    pub metrics_linger: Duration,
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The status file used when `--status-file` is not given: `<name>.status.json` next to
/// the rollout file. Never next to the ECDS file: Envoy watches that directory, and the
/// status file's `.lock`, `.request` and temporary files would be noise for its watcher,
/// so a rollout file kept in that directory needs an explicit `--status-file`.
pub fn default_status_file(
    rollout_name: &str,
    rollout_file: &Path,
    envoy_ecds: &Path,
) -> Result<PathBuf, Error> {
    let dir = parent_dir(rollout_file);
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(dir, parent_dir(envoy_ecds)) {
        return Err(Error::Invalid(format!(
            "--status-file: required when the rollout file is in the ECDS file's directory {} (Envoy watches it; keep the status elsewhere)",
            dir.display()
        )));
    }
    Ok(dir.join(format!("{rollout_name}.status.json")))
}

/// Reads and checks a CanaryRollout YAML file.
pub fn load_rollout(path: &Path) -> Result<CanaryRollout, Error> {
    let err = |reason: String| Error::RolloutFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let rollout: CanaryRollout =
        serde_yaml::from_str(&text).map_err(|e| err(e.to_string().replace('\n', " ")))?;
    if rollout
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(err("metadata.name: required".to_string()));
    }
    // A typo such as `errorRates:` would otherwise leave the default check in force.
    let mut errors = crate::validate::unknown_fields::unknown_fields_in_yaml(&text);
    if let Err(invalid) = crate::validate::validate_rollout(&rollout) {
        errors.extend(invalid);
    }
    errors.extend(crate::resources::local_mode_refusal(&rollout.spec));
    if !errors.is_empty() {
        return Err(err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")));
    }
    Ok(rollout)
}

/// One interval's outcome, for the progress line and the exit status.
pub struct TickReport {
    pub status: CanaryRolloutStatus,
    pub metrics: MetricsObservation,
    pub events: Vec<(String, String)>,
    pub weight_error: Option<String>,
}

/// The loop's fixed parts.
pub struct LocalRunner<S: MetricsSource, T: WeightTarget> {
    pub rollout: CanaryRollout,
    pub key: String,
    pub series: RolloutSeries,
    pub source: S,
    pub target: T,
    pub webhook: Option<reqwest::Client>,
    /// Weight writes are counted here (`stickycanary_weight_patch_total{outcome}`).
    pub metrics: Option<Metrics>,
}

impl<S: MetricsSource, T: WeightTarget> LocalRunner<S, T> {
    /// Writes the weight and counts the outcome as the controller does.
    async fn set_weight(&self, weight: f64) -> Result<(), TargetError> {
        let result = self.target.set_weight(&self.key, weight).await;
        if let Some(metrics) = &self.metrics {
            metrics.record(match &result {
                Ok(()) => "success",
                Err(e) => e.metric_label(),
            });
        }
        result
    }

    async fn observe(&self, manual: Option<ManualAction>) -> Observations {
        let window = self.rollout.spec.analysis.effective_window().as_std();
        let metrics = self
            .source
            .windows(std::slice::from_ref(&self.series), window)
            .await
            .remove(&self.key)
            .unwrap_or(MetricsObservation::Unavailable {
                reason: "no result for this rollout".to_string(),
            });
        let mut custom = Vec::new();
        for check in &self.rollout.spec.analysis.custom {
            let query = render_check_query(&check.query, &self.key);
            custom.push(CustomObservation {
                name: check.name.clone(),
                value: self.source.scalar(&query).await,
            });
        }
        Observations {
            metrics,
            custom,
            resources: crate::resources::ResourceObservation::NotQueried,
            // No pods in local mode: the canary process is not watched.
            canary_health: CanaryHealth::Unknown,
            manual,
        }
    }

    /// One interval: observe, decide, apply the weight. The returned status is what to save;
    /// when the weight could not be applied it is the previous status, so the next interval
    /// decides again instead of recording a weight Envoy never got.
    pub async fn tick(
        &self,
        status: &CanaryRolloutStatus,
        manual: Option<ManualAction>,
        now: Timestamp,
    ) -> TickReport {
        let observations = self.observe(manual).await;
        let mut report = self.apply(status, observations, now).await;
        // Envoy may have been restarted from a fresh ECDS file: put our weight back.
        if report.weight_error.is_none() && report.status.phase != Phase::Pending {
            if let Ok(current) = self.target.current_weight(&self.key).await {
                if (current - report.status.weight).abs() > 0.001 {
                    if let Err(e) = self.set_weight(report.status.weight).await {
                        report.weight_error = Some(e.to_string());
                    } else {
                        report.events.push((
                            "WeightResynced".to_string(),
                            format!(
                                "the ECDS file had {current}%, set it back to {}%",
                                report.status.weight
                            ),
                        ));
                    }
                }
            }
        }
        report
    }

    /// Runs the engine on `observations` and applies its actions.
    pub async fn apply(
        &self,
        status: &CanaryRolloutStatus,
        observations: Observations,
        now: Timestamp,
    ) -> TickReport {
        let decision = engine::decide(&self.rollout.spec, status, now, &observations);
        self.carry_out(status, decision, observations.metrics).await
    }

    /// Applies a decision's actions; the returned status is the previous one when the
    /// weight could not be written.
    pub async fn carry_out(
        &self,
        status: &CanaryRolloutStatus,
        decision: engine::Decision,
        metrics: MetricsObservation,
    ) -> TickReport {
        let mut events = Vec::new();
        let mut weight_error = None;
        for action in &decision.actions {
            match action {
                Action::SetWeight(weight) => {
                    if let Err(e) = self.set_weight(*weight).await {
                        weight_error = Some(e.to_string());
                    }
                }
                Action::Event {
                    reason, message, ..
                } => events.push((reason.to_string(), message.clone())),
                Action::Notify(message) => self.notify(message).await,
            }
        }
        let status = if weight_error.is_some() {
            status.clone()
        } else {
            decision.status
        };
        TickReport {
            status,
            metrics,
            events,
            weight_error,
        }
    }

    async fn notify(&self, message: &str) {
        let (Some(client), Some(notification)) = (&self.webhook, &self.rollout.spec.notification)
        else {
            return;
        };
        let body = serde_json::json!({
            "rollout": self.rollout.metadata.name,
            "key": self.key,
            "text": message,
        });
        if let Err(e) = client.post(&notification.webhook).json(&body).send().await {
            tracing::warn!(error = %e.without_url(), "notification webhook failed");
        }
    }
}

fn build_runner(
    rollout: CanaryRollout,
    envoy_ecds: &Path,
    prometheus: &str,
    metrics: Option<&Metrics>,
) -> Result<LocalRunner<PrometheusSource, EcdsFileTarget>, Error> {
    let key = rollout.rollout_key();
    let target = EcdsFileTarget::new(envoy_ecds);
    let view = target.current_sync(&key)?;
    let timeout = rollout
        .spec
        .analysis
        .interval
        .as_std()
        .clamp(Duration::from_secs(2), Duration::from_secs(10));
    let mut source =
        PrometheusSource::new(prometheus, timeout).map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(metrics) = metrics {
        source = source.with_query_counter(metrics.prometheus_queries.clone());
    }
    let webhook = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok();
    Ok(LocalRunner {
        series: RolloutSeries {
            rollout: key.clone(),
            stable_version: view.stable_version,
            canary_version: view.canary_version,
        },
        key,
        rollout,
        source,
        target,
        webhook,
        metrics: metrics.cloned(),
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits until the next interval, a queued request, or a stop signal (returns true then).
async fn wait_for_next(deadline: Instant, request_file: &Path) -> bool {
    let stop = stop_signal();
    let poll = async {
        loop {
            if Instant::now() >= deadline || request_file.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = stop => true,
        _ = poll => false,
    }
}

fn progress_line(runner_rollout: &CanaryRollout, report: &TickReport, now: Timestamp) -> String {
    let window = runner_rollout.spec.analysis.effective_window().as_std();
    let clock = now.strftime("%H:%M:%S");
    let mut line = format!(
        "{clock} {} {} | {} | {}",
        runner_rollout.metadata.name.as_deref().unwrap_or_default(),
        progress::stage_part(&runner_rollout.spec, &report.status, now),
        progress::traffic_part(&report.metrics, window),
        progress::decision_part(&report.status, &report.events, now),
    );
    if let Some(e) = &report.weight_error {
        line.push_str(&format!(" | weight NOT applied: {e}"));
    }
    line
}

/// Runs the loop; returns the phase it ended in. With `metrics_addr`, the endpoints are
/// served for the whole run and, when the loop ends on its own, `metrics_linger` longer.
pub async fn run(options: &LocalOptions, out: &mut (dyn Write + Send)) -> Result<Phase, Error> {
    let rollout = load_rollout(&options.rollout_file)?;
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let prometheus = options
        .prometheus
        .clone()
        .unwrap_or_else(|| rollout.spec.prometheus.address.clone());
    let saved = state::load(&options.status_file)?;
    if let Some(saved) = &saved {
        if saved.rollout != name {
            return Err(Error::StatusFile {
                path: options.status_file.display().to_string(),
                reason: format!("holds rollout {:?}, not {name:?}", saved.rollout),
            });
        }
    }
    let _lock = state::LoopLock::acquire(&options.status_file)?;
    let server = match options.metrics_addr {
        Some(addr) => Some(MetricsServer::start(addr).await?),
        None => None,
    };
    let runner = build_runner(
        rollout,
        &options.envoy_ecds,
        &prometheus,
        server.as_ref().map(MetricsServer::metrics),
    );
    let runner = match runner {
        Ok(runner) => runner,
        Err(e) => {
            if let Some(server) = server {
                server.shutdown().await;
            }
            return Err(e);
        }
    };
    let outcome = drive(options, &runner, server.as_ref(), saved, &prometheus, out).await;
    if let Some(server) = server {
        if let Ok((_, false)) = &outcome {
            let linger = options.metrics_linger;
            if !linger.is_zero() {
                let _ = writeln!(
                    out,
                    "serving final metrics on http://{}/metrics for {}s (Ctrl-C to stop now)",
                    server.addr,
                    linger.as_secs_f64()
                );
                let _ = out.flush();
                tokio::select! {
                    _ = stop_signal() => {},
                    _ = tokio::time::sleep(linger) => {},
                }
            }
        }
        server.shutdown().await;
    }
    outcome.map(|(phase, _)| phase)
}

/// The loop itself; returns the final phase and whether a stop signal ended it.
async fn drive(
    options: &LocalOptions,
    runner: &LocalRunner<PrometheusSource, EcdsFileTarget>,
    server: Option<&MetricsServer>,
    saved: Option<LocalState>,
    prometheus: &str,
    out: &mut (dyn Write + Send),
) -> Result<(Phase, bool), Error> {
    let name = runner.rollout.metadata.name.clone().unwrap_or_default();
    let namespace = runner
        .rollout
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let label = RolloutLabel {
        namespace: &namespace,
        name: &name,
    };
    let mut local = saved.unwrap_or(LocalState {
        rollout: name.clone(),
        rollout_file: None,
        envoy_ecds: None,
        prometheus: None,
        status: CanaryRolloutStatus::default(),
    });
    local.rollout_file = std::fs::canonicalize(&options.rollout_file).ok();
    local.envoy_ecds = std::fs::canonicalize(&options.envoy_ecds).ok();
    let prometheus = crate::prometheus::redacted(prometheus);
    local.prometheus = Some(prometheus.clone());
    let _ = writeln!(
        out,
        "stickycanary local: rollout {name} (key {}) | ECDS {} | Prometheus {prometheus} | status {} | resuming from {} stage {}",
        runner.key,
        options.envoy_ecds.display(),
        options.status_file.display(),
        local.status.phase,
        local.status.stage_index + 1,
    );
    if let Some(server) = server {
        serve::record_start(
            server.metrics(),
            &label,
            &runner.rollout.spec,
            &local.status,
        );
        let _ = writeln!(
            out,
            "serving /metrics, /healthz, /readyz on http://{}",
            server.addr
        );
    }
    let interval = runner
        .rollout
        .spec
        .analysis
        .interval
        .as_std()
        .max(Duration::from_millis(100));
    let request_file = state::request_path(&options.status_file);
    loop {
        let started = Instant::now();
        let manual = match state::take_request(&options.status_file, &name) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(out, "warning: {e}");
                None
            }
        };
        let now = Timestamp::now();
        let report = runner.tick(&local.status, manual, now).await;
        if let Some(server) = server {
            serve::record_tick(server.metrics(), &label, &local.status, &report);
        }
        local.status = report.status.clone();
        state::save(&options.status_file, &local)?;
        if let Some(server) = server {
            server.set_ready();
        }
        let _ = writeln!(out, "{}", progress_line(&runner.rollout, &report, now));
        for (reason, message) in report.events.iter().skip(1) {
            let _ = writeln!(out, "    {reason}: {message}");
        }
        let _ = out.flush();
        let phase = local.status.phase;
        if phase.is_terminal() && report.weight_error.is_none() {
            let _ = writeln!(
                out,
                "rollout {name} finished: {phase} at weight {}%",
                local.status.weight
            );
            return Ok((phase, false));
        }
        if options.once {
            return Ok((phase, false));
        }
        if wait_for_next(started + interval, &request_file).await {
            let _ = writeln!(
                out,
                "stopped; status saved to {} (run the same command to resume)",
                options.status_file.display()
            );
            return Ok((phase, true));
        }
    }
}

//! `stickycanary local`: the same decision engine as the controller, driving a standalone
//! Envoy through its ECDS file, with the rollout spec read from a CanaryRollout YAML file and
//! the status kept in a JSON file (so a restart resumes where it stopped).
//!
//! Each interval: take a queued manual action, query Prometheus (one batched query per
//! metric), run `engine::decide`, apply its weight to the ECDS file, save the status, print
//! one progress line. It stops when the rollout is Promoted or RolledBack, or on Ctrl-C.
//! With `--metrics-addr` it also serves the controller's `/metrics` (see [`serve`]).

pub mod direct;
pub mod hooks;
pub mod progress;
pub mod serve;
pub mod state;

pub use direct::apply_directly;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::crd::{CanaryRollout, CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::driver::{self, Executor};
use crate::engine::{self, Action};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observation::{
    CanaryHealth, ManualAction, MetricsObservation, Observations, ReleaseObservation, WorkloadState,
};
use crate::prometheus::{MetricsSource, PrometheusSource, RolloutSeries};
use crate::target::ecds::EcdsFileTarget;
use crate::target::wasmplugin::PatchOutcomes;
use crate::target::{TargetError, WeightTarget};
use hooks::{HookKind, HookRun, Hooks};
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
    /// The release lifecycle's commands (`--on-scale-up`, `--on-promote`, `--on-scale-down`).
    pub hooks: Hooks,
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
    /// The release hooks that ran this interval.
    pub hooks: Vec<HookRun>,
}

/// What local mode's release actions did since the loop started (hooks are the only way to
/// know: there are no Deployments to read). A restarted loop starts empty, so a run caught
/// mid-way asks its hook again (hooks should be idempotent).
#[derive(Debug, Default, Clone)]
pub struct LocalWorkloads {
    /// The revision the canary was last brought up on by `--on-scale-up`.
    pub canary_up: Option<String>,
    pub canary_failed: Option<(String, String)>,
    /// The revision `--on-promote` last made stable serve.
    pub stable_on: Option<String>,
    pub stable_failed: Option<(String, String)>,
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
    pub hooks: Hooks,
    pub workloads: Mutex<LocalWorkloads>,
    /// Hook runs not yet reported.
    pub hook_runs: Mutex<Vec<HookRun>>,
    /// How `stickycanary approve` reaches this rollout (the loop's status file), for the
    /// command in a manual gate's Event.
    pub approve_target: Option<crate::gates::approve::ApproveTarget>,
}

impl<S: MetricsSource, T: WeightTarget> LocalRunner<S, T> {
    /// The release lifecycle's view, when the rollout file names a revision.
    pub fn release(&self, status: &CanaryRolloutStatus) -> Option<ReleaseObservation> {
        let revision = self.rollout.spec.canary.revision.clone()?;
        let run = status
            .canary_revision
            .clone()
            .unwrap_or_else(|| revision.clone());
        let memory = self.workloads.lock().map(|m| m.clone()).unwrap_or_default();
        let state = |hook: Option<&str>,
                     on: &Option<String>,
                     failed: &Option<(String, String)>,
                     wanted: &str| {
            match failed {
                Some((rev, why)) if rev == wanted => WorkloadState::Failed(why.clone()),
                _ if hook.is_none() || on.as_deref() == Some(wanted) => WorkloadState::Ready,
                _ => WorkloadState::Stopped,
            }
        };
        Some(ReleaseObservation {
            rollout_key: self.key.clone(),
            canary: state(
                self.hooks.command(HookKind::ScaleUp),
                &memory.canary_up,
                &memory.canary_failed,
                &revision,
            ),
            stable: state(
                self.hooks.command(HookKind::Promote),
                &memory.stable_on,
                &memory.stable_failed,
                &run,
            ),
            stable_revision: None,
            canary_revision: revision,
        })
    }

    /// Who the gate webhooks' payloads are about.
    fn subject(&self) -> crate::gates::webhook::Subject {
        crate::gates::webhook::Subject {
            name: self.rollout.metadata.name.clone().unwrap_or_default(),
            namespace: self
                .rollout
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            rollout_key: self.key.clone(),
        }
    }

    /// The spec the engine sees: without `--on-promote` nothing can make stable serve a
    /// revision, so a promotion stops at 100% (as `promotion.finalize: false`).
    fn engine_spec(&self) -> std::borrow::Cow<'_, CanaryRolloutSpec> {
        let spec = &self.rollout.spec;
        if spec.promotion.finalize && self.hooks.on_promote.is_none() {
            let mut spec = spec.clone();
            spec.promotion.finalize = false;
            std::borrow::Cow::Owned(spec)
        } else {
            std::borrow::Cow::Borrowed(spec)
        }
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
        let custom =
            driver::custom_observations(&self.rollout.spec, &self.key, |query| async move {
                self.source.scalar(&query).await
            })
            .await;
        Observations {
            metrics,
            custom,
            resources: crate::resources::ResourceObservation::NotQueried,
            // No pods in local mode: the canary process is not watched.
            canary_health: CanaryHealth::Unknown,
            manual,
        }
    }

    /// One interval: observe, decide, carry out. The returned status is what to save;
    /// when an action could not be carried out it is the previous status, so the next
    /// interval decides again instead of recording a weight Envoy never got.
    pub async fn tick(
        &self,
        status: &CanaryRolloutStatus,
        manual: Option<ManualAction>,
        now: Timestamp,
    ) -> TickReport {
        let observations = self.observe(manual).await;
        self.apply(status, observations, now).await
    }

    /// Runs the engine on `observations` and carries out its actions.
    pub async fn apply(
        &self,
        status: &CanaryRolloutStatus,
        observations: Observations,
        now: Timestamp,
    ) -> TickReport {
        let release = self.release(status);
        let spec = self.engine_spec();
        let mut gate_input = crate::gates::webhook::shared()
            .before_decision(&self.subject(), &spec, status, release.as_ref(), now)
            .await;
        gate_input.approve_target = self.approve_target.clone();
        let decision = engine::decide_gated(
            &spec,
            status,
            now,
            &observations,
            release.as_ref(),
            &gate_input,
        );
        self.carry_out(status, decision, observations.metrics).await
    }

    /// Carries out a decision through the shared driver; the returned status is the
    /// previous one when an action failed (and then nothing is announced).
    pub async fn carry_out(
        &self,
        status: &CanaryRolloutStatus,
        decision: engine::Decision,
        metrics: MetricsObservation,
    ) -> TickReport {
        let outcome = driver::carry_out(self, &decision).await;
        let hooks = self
            .hook_runs
            .lock()
            .map(|mut runs| std::mem::take(&mut *runs))
            .unwrap_or_default();
        match outcome {
            Ok(carried) => {
                let mut events: Vec<(String, String)> = decision
                    .actions
                    .iter()
                    .filter_map(|action| match action {
                        Action::Event {
                            reason, message, ..
                        } => Some((reason.to_string(), message.clone())),
                        _ => None,
                    })
                    .collect();
                if let Some((found, weight)) = carried.restored_drift {
                    events.push((
                        "WeightResynced".to_string(),
                        format!("the ECDS file had {found}%, set it back to {weight}%"),
                    ));
                }
                // The status is saved by the loop right after; notifications go out once,
                // for a decision that was carried out.
                driver::announce(self, &decision).await;
                crate::gates::webhook::shared()
                    .after_decision(&self.subject(), &self.rollout.spec, status, &decision)
                    .await;
                TickReport {
                    status: decision.status,
                    metrics,
                    events,
                    weight_error: None,
                    hooks,
                }
            }
            Err(failed) => TickReport {
                status: status.clone(),
                metrics,
                events: Vec::new(),
                weight_error: Some(failed.to_string()),
                hooks,
            },
        }
    }

    /// Runs a release hook (when one is set) and remembers its outcome.
    async fn run_hook(&self, kind: HookKind, revision: &str) {
        let Some(command) = self.hooks.command(kind) else {
            return;
        };
        let name = self.rollout.metadata.name.clone().unwrap_or_default();
        let run = hooks::run(command, kind, &name, revision, self.hooks.timeout).await;
        if let Ok(mut memory) = self.workloads.lock() {
            let outcome = run.result.clone();
            match (kind, outcome) {
                (HookKind::ScaleUp, Ok(())) => {
                    memory.canary_up = Some(revision.to_string());
                    memory.canary_failed = None;
                }
                (HookKind::ScaleUp, Err(why)) => {
                    memory.canary_failed = Some((revision.to_string(), why));
                }
                (HookKind::Promote, Ok(())) => {
                    memory.stable_on = Some(revision.to_string());
                    memory.stable_failed = None;
                }
                (HookKind::Promote, Err(why)) => {
                    memory.stable_failed = Some((revision.to_string(), why));
                }
                // A canary that may not have stopped still counts as down: the weight is 0.
                (HookKind::ScaleDown, _) => memory.canary_up = None,
            }
        }
        if let Ok(mut runs) = self.hook_runs.lock() {
            runs.push(run);
        }
    }
}

/// Local mode's side of the shared driver: the ECDS file, the hooks, the webhook. Hook
/// failures are not errors here: they are remembered and observed at the next interval
/// (a failed scale-up or promotion fails the run, as a failed Deployment rollout would).
impl<S: MetricsSource, T: WeightTarget> Executor for LocalRunner<S, T> {
    type Error = TargetError;

    async fn current_weight(&self) -> Result<f64, TargetError> {
        self.target.current_weight(&self.key).await
    }

    async fn set_weight(&self, weight: f64, salt: Option<&str>) -> Result<(), TargetError> {
        let result = self
            .target
            .set_weight_and_salt(&self.key, weight, salt)
            .await;
        if let Some(metrics) = &self.metrics {
            metrics.record(match &result {
                Ok(()) => "success",
                Err(e) => e.metric_label(),
            });
        }
        result
    }

    async fn set_slow_threshold(&self, ms: f64) -> Result<(), TargetError> {
        self.target.set_slow_threshold(&self.key, ms).await
    }

    async fn scale_canary_up(&self, revision: &str) -> Result<(), TargetError> {
        self.run_hook(HookKind::ScaleUp, revision).await;
        Ok(())
    }

    async fn scale_canary_down(&self, revision: &str) -> Result<(), TargetError> {
        self.run_hook(HookKind::ScaleDown, revision).await;
        Ok(())
    }

    async fn promote_stable(&self, revision: &str) -> Result<(), TargetError> {
        self.run_hook(HookKind::Promote, revision).await;
        Ok(())
    }

    async fn event(&self, _reason: &'static str, _message: &str, _warning: bool) {
        // Local mode prints Events on its progress line instead.
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
    hooks: Hooks,
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
        hooks,
        workloads: Mutex::new(LocalWorkloads::default()),
        hook_runs: Mutex::new(Vec::new()),
        approve_target: None,
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
async fn wait_for_next(deadline: Instant, request_file: &Path, approve_file: &Path) -> bool {
    let stop = stop_signal();
    let poll = async {
        loop {
            if Instant::now() >= deadline || request_file.exists() || approve_file.exists() {
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
        options.hooks.clone(),
    );
    let mut runner = match runner {
        Ok(runner) => runner,
        Err(e) => {
            if let Some(server) = server {
                server.shutdown().await;
            }
            return Err(e);
        }
    };
    runner.approve_target = Some(crate::gates::approve::ApproveTarget::local(
        runner.rollout.metadata.name.as_deref().unwrap_or_default(),
        &options.status_file,
    ));
    let outcome = drive(
        options,
        &mut runner,
        server.as_ref(),
        saved,
        &prometheus,
        out,
    )
    .await;
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

/// Reads the rollout file again, so an edited revision (or any spec change) is seen at the
/// next interval. A file that no longer loads is reported and the last good spec is kept.
fn reload_rollout(
    options: &LocalOptions,
    runner: &mut LocalRunner<PrometheusSource, EcdsFileTarget>,
    out: &mut (dyn Write + Send),
) {
    match load_rollout(&options.rollout_file) {
        Ok(rollout) if rollout.metadata.name == runner.rollout.metadata.name => {
            if rollout.spec != runner.rollout.spec {
                runner.rollout = rollout;
            }
        }
        Ok(rollout) => {
            let _ = writeln!(
                out,
                "warning: the rollout file now names {:?}; keeping {:?}",
                rollout.metadata.name.unwrap_or_default(),
                runner.rollout.metadata.name.clone().unwrap_or_default()
            );
        }
        Err(e) => {
            let _ = writeln!(out, "warning: keeping the last good spec: {e}");
        }
    }
}

/// The loop itself; returns the final phase and whether a stop signal ended it.
async fn drive(
    options: &LocalOptions,
    runner: &mut LocalRunner<PrometheusSource, EcdsFileTarget>,
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
        reload_rollout(options, runner, out);
        // An approval queued by `stickycanary approve` while this loop runs.
        match crate::gates::approve::take_local(&options.status_file, &name, &mut local.status) {
            Ok(Some((gate, revision))) => {
                let _ = writeln!(out, "    approved: {gate} for revision {revision}");
            }
            Ok(None) => {}
            Err(e) => {
                let _ = writeln!(out, "warning: {e}");
            }
        }
        let now = Timestamp::now();
        let report = runner.tick(&local.status, manual, now).await;
        let previous = std::mem::replace(&mut local.status, report.status.clone());
        state::save(&options.status_file, &local)?;
        // Ready first: a scraper that sees this interval's series also finds /readyz up.
        if let Some(server) = server {
            server.set_ready();
            serve::record_tick(server.metrics(), &label, &previous, &report);
        }
        let _ = writeln!(out, "{}", progress_line(&runner.rollout, &report, now));
        for (reason, message) in report.events.iter().skip(1) {
            let _ = writeln!(out, "    {reason}: {message}");
        }
        for run in &report.hooks {
            let outcome = match &run.result {
                Ok(()) => "ok".to_string(),
                Err(why) => format!("FAILED: {why}"),
            };
            let _ = writeln!(
                out,
                "    hook --on-{} (revision {}): {outcome}",
                run.kind.as_str(),
                run.revision
            );
            for line in run.output.lines() {
                let _ = writeln!(out, "      | {line}");
            }
        }
        let _ = out.flush();
        let phase = local.status.phase;
        // With a revision in the rollout file the loop waits for the next release instead.
        let lifecycle = runner.rollout.spec.canary.revision.is_some();
        if phase.is_terminal() && report.weight_error.is_none() && !lifecycle {
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
        let approve_file = crate::gates::approve::request_path(&options.status_file);
        if wait_for_next(started + interval, &request_file, &approve_file).await {
            let _ = writeln!(
                out,
                "stopped; status saved to {} (run the same command to resume)",
                options.status_file.display()
            );
            return Ok((phase, true));
        }
    }
}

//! `stickycanary local`: the same decision engine as the controller, driving a standalone
//! Envoy through its ECDS file, with the rollout spec read from a CanaryRollout YAML file and
//! the status kept in a JSON file (so a restart resumes where it stopped).
//!
//! Each interval: take a queued manual action or approval, run the shared tick
//! ([`driver::tick`] over [`LocalRunner`]: query Prometheus, decide, write the weight into
//! the ECDS file, save the status file, then announce), print one progress line. It stops
//! when the rollout is Promoted or RolledBack, or on Ctrl-C.
//! With `--metrics-addr` it also serves the controller's `/metrics` (see [`serve`]).

pub mod alerts;
pub mod approve;
pub mod direct;
pub mod front;
pub mod hooks;
pub mod progress;
pub mod prometheus;
pub mod serve;
pub mod state;

pub use direct::apply_directly;
pub use front::{LocalRunner, LocalWorkloads, TickReport};

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use crate::driver;
use crate::error::Error;
use crate::prometheus::PrometheusSource;
use crate::target::ecds::EcdsFileTarget;
use hooks::Hooks;
use serve::{MetricsServer, RolloutLabel};
use state::LocalState;

/// What `stickycanary local` was asked to do.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub rollout_file: PathBuf,
    pub envoy_ecds: PathBuf,
    /// Overrides `spec.prometheus.address`.
    pub prometheus: Option<String>,
    /// The `--prometheus-*` flags' client options (token and CA files, headers, no
    /// verification); their `address` is not used (`prometheus` or the spec's is).
    pub prometheus_access: prometheus::PrometheusAccess,
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
    /// `--alert-providers` and `--alert-secrets-dir`: where `spec.alerts` go.
    pub alert_providers: Option<alerts::FileObjects>,
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
    errors.extend(crate::validate::local_mode_refusal(&rollout.spec));
    if !errors.is_empty() {
        return Err(err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")));
    }
    Ok(rollout)
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
    for warning in options
        .prometheus_access
        .check(&rollout.spec.prometheus.outbound)?
    {
        tracing::warn!("{warning}");
    }
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
    let mut local = saved.unwrap_or(LocalState {
        rollout: name.clone(),
        rollout_file: None,
        envoy_ecds: None,
        prometheus: None,
        status: CanaryRolloutStatus::default(),
    });
    local.rollout_file = std::fs::canonicalize(&options.rollout_file).ok();
    local.envoy_ecds = std::fs::canonicalize(&options.envoy_ecds).ok();
    local.prometheus = Some(crate::redact::redacted(&prometheus));
    let access = prometheus::PrometheusAccess {
        address: prometheus.clone(),
        ..options.prometheus_access.clone()
    };
    let runner = LocalRunner::new(
        rollout,
        &options.envoy_ecds,
        &access,
        server.as_ref().map(MetricsServer::metrics),
        options.hooks.clone(),
        &options.status_file,
        local,
    );
    let runner = runner.map(|runner| match &options.alert_providers {
        Some(objects) => {
            let counter = server
                .as_ref()
                .map(|server| server.metrics().alerts.clone())
                .unwrap_or_default();
            runner.with_alerting(alerts::alerting(objects.clone(), counter))
        }
        None => {
            if !runner.rollout.spec.alerts.is_empty() {
                tracing::warn!(
                    "spec.alerts is set but --alert-providers is not: local mode sends no alerts"
                );
            }
            runner
        }
    });
    let mut runner = match runner {
        Ok(runner) => runner,
        Err(e) => {
            if let Some(server) = server {
                server.shutdown().await;
            }
            return Err(e);
        }
    };
    let outcome = drive(options, &mut runner, server.as_ref(), out).await;
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
    out: &mut (dyn Write + Send),
) -> Result<(Phase, bool), Error> {
    let subject = runner.subject.clone();
    let name = subject.name.as_str();
    let label = RolloutLabel {
        namespace: &subject.namespace,
        name,
    };
    let mut status = runner.status();
    let prometheus = runner
        .state
        .lock()
        .ok()
        .and_then(|state| state.prometheus.clone())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "stickycanary local: rollout {name} (key {}) | ECDS {} | Prometheus {prometheus} | status {} | resuming from {} stage {}",
        subject.rollout_key,
        options.envoy_ecds.display(),
        options.status_file.display(),
        status.phase,
        status.stage_index + 1,
    );
    if let Some(server) = server {
        serve::record_start(server.metrics(), &label, &runner.rollout.spec, &status);
        let _ = writeln!(
            out,
            "serving /metrics, /healthz, /readyz on http://{}",
            server.addr
        );
    }
    let request_file = state::request_path(&options.status_file);
    let approve_file = approve::request_path(&options.status_file);
    loop {
        let started = Instant::now();
        let manual = match state::take_request(&options.status_file, name) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(out, "warning: {e}");
                None
            }
        };
        reload_rollout(options, runner, out);
        // An approval queued by `stickycanary approve` while this loop runs.
        match approve::take_local(&options.status_file, name, &mut status) {
            Ok(Some((gate, revision))) => {
                let _ = writeln!(out, "    approved: {gate} for revision {revision}");
            }
            Ok(None) => {}
            Err(e) => {
                let _ = writeln!(out, "warning: {e}");
            }
        }
        let now = Timestamp::now();
        let report = runner.tick(&status, manual, now).await?;
        if report.weight_error.is_some() {
            // Nothing was decided; the file still gets this run's paths and approvals.
            runner.save(&status)?;
        }
        let previous = std::mem::replace(&mut status, report.status.clone());
        // Ready first: a scraper that sees this interval's series also finds /readyz up.
        if let Some(server) = server {
            server.set_ready();
            serve::record_tick(server.metrics(), &label, &previous, &report);
        }
        print_report(out, &runner.rollout, &report, now);
        let phase = status.phase;
        // With a revision in the rollout file the loop waits for the next release instead.
        let lifecycle = runner.rollout.spec.canary.revision.is_some();
        if phase.is_terminal() && report.weight_error.is_none() && !lifecycle {
            let _ = writeln!(
                out,
                "rollout {name} finished: {phase} at weight {}%",
                status.weight
            );
            return Ok((phase, false));
        }
        if options.once {
            return Ok((phase, false));
        }
        let next = started + driver::interval(&runner.rollout.spec);
        if wait_for_next(next, &request_file, &approve_file).await {
            let _ = writeln!(
                out,
                "stopped; status saved to {} (run the same command to resume)",
                options.status_file.display()
            );
            return Ok((phase, true));
        }
    }
}

/// The progress line, the Events after the first, and the hooks' outcomes and output.
fn print_report(
    out: &mut (dyn Write + Send),
    rollout: &CanaryRollout,
    report: &TickReport,
    now: Timestamp,
) {
    let _ = writeln!(out, "{}", progress_line(rollout, report, now));
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
}

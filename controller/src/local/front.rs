//! Local mode's side of a tick ([`FrontEnd`]): the ECDS file, the release hooks, the status
//! file, the notification webhook. Hook failures are not errors here: they are remembered
//! and observed at the next interval (a failed scale-up or promotion fails the run, as a
//! failed Deployment rollout would).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::hooks::{self, HookKind, HookRun, Hooks};
use super::state::{self, LocalState};
use crate::crd::{CanaryRollout, CanaryRolloutSpec, CanaryRolloutStatus};
use crate::driver::{self, Carried, Executor, FrontEnd, TickError};
use crate::engine::approve::ApproveTarget;
use crate::engine::{Action, Decision};
use crate::error::Error;
use crate::gates::webhook::Subject;
use crate::metrics::Metrics;
use crate::observation::{
    CanaryHealth, ManualAction, MetricsObservation, Observations, ReleaseObservation, WorkloadState,
};
use crate::prometheus::{MetricsSource, PrometheusSource, RolloutSeries};
use crate::target::ecds::EcdsFileTarget;
use crate::target::wasmplugin::PatchOutcomes;
use crate::target::WeightTarget;

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

/// One rollout driven from files: the loop's fixed parts and its status file.
pub struct LocalRunner<S: MetricsSource, T: WeightTarget> {
    pub rollout: CanaryRollout,
    pub subject: Subject,
    pub series: RolloutSeries,
    pub source: S,
    pub target: T,
    pub webhook: Option<crate::http::Client>,
    /// Weight writes are counted here (`stickycanary_weight_patch_total{outcome}`).
    pub metrics: Option<Metrics>,
    pub hooks: Hooks,
    pub workloads: Mutex<LocalWorkloads>,
    /// Hook runs not yet reported.
    pub hook_runs: Mutex<Vec<HookRun>>,
    /// Where the status lives, and the rest of the status file's content.
    pub status_file: PathBuf,
    pub state: Mutex<LocalState>,
    /// Where `spec.alerts` go (`--alert-providers`); `None`: no alerts are sent.
    pub alerting: Option<crate::alerts::Alerting>,
}

impl LocalRunner<PrometheusSource, EcdsFileTarget> {
    /// A runner over the ECDS file and Prometheus, saving into `status_file` (whose
    /// content so far is `state`).
    pub fn new(
        rollout: CanaryRollout,
        envoy_ecds: &Path,
        prometheus: &super::prometheus::PrometheusAccess,
        metrics: Option<&Metrics>,
        hooks: Hooks,
        status_file: &Path,
        state: LocalState,
    ) -> Result<Self, Error> {
        let key = rollout.rollout_key();
        let target = EcdsFileTarget::new(envoy_ecds);
        let view = target.current_sync(&key)?;
        let timeout = rollout
            .spec
            .analysis
            .interval
            .as_std()
            .clamp(Duration::from_secs(2), Duration::from_secs(10));
        let config = prometheus.client_config(&rollout.spec.prometheus.outbound, timeout)?;
        let mut source = PrometheusSource::with_config(&prometheus.address, &config)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(metrics) = metrics {
            source = source.with_query_counter(metrics.prometheus_queries.clone());
        }
        let webhook =
            Some(driver::notification_client().map_err(|e| Error::Invalid(e.to_string()))?);
        Ok(LocalRunner {
            subject: Subject {
                name: rollout.metadata.name.clone().unwrap_or_default(),
                namespace: rollout
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string()),
                rollout_key: key.clone(),
            },
            series: RolloutSeries {
                rollout: key,
                stable_version: view.stable_version,
                canary_version: view.canary_version,
            },
            rollout,
            source,
            target,
            webhook,
            metrics: metrics.cloned(),
            hooks,
            workloads: Mutex::new(LocalWorkloads::default()),
            hook_runs: Mutex::new(Vec::new()),
            status_file: status_file.to_path_buf(),
            state: Mutex::new(state),
            alerting: None,
        })
    }
}

impl<S: MetricsSource, T: WeightTarget> LocalRunner<S, T> {
    /// The runner, sending `spec.alerts` through `alerting` (see [`super::alerts`]).
    pub fn with_alerting(mut self, alerting: crate::alerts::Alerting) -> Self {
        self.alerting = Some(alerting);
        self
    }

    /// The status as last saved (or as the loop last left it).
    pub fn status(&self) -> CanaryRolloutStatus {
        self.state
            .lock()
            .map(|state| state.status.clone())
            .unwrap_or_default()
    }

    /// Writes the status file with `status`.
    pub fn save(&self, status: &CanaryRolloutStatus) -> Result<(), Error> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::Io("the status file's state is poisoned".to_string()))?;
        state.status = status.clone();
        state::save(&self.status_file, &state)
    }

    /// One interval through the shared tick. An action that could not be carried out
    /// leaves the previous status (nothing saved, nothing announced), reported as
    /// `weight_error`, so the next interval decides again; a status file that cannot be
    /// written is an error.
    pub async fn tick(
        &self,
        status: &CanaryRolloutStatus,
        manual: Option<ManualAction>,
        now: Timestamp,
    ) -> Result<TickReport, Error> {
        let ticked = driver::tick(self, status, manual, now).await;
        let carried = match ticked.outcome {
            Ok(carried) => Ok(carried),
            Err(TickError::Action(failed)) => Err(failed.to_string()),
            Err(TickError::Save(error)) => return Err(error),
        };
        Ok(self.report(
            status,
            ticked.decision,
            ticked.observations.metrics,
            carried,
        ))
    }

    /// The end of a tick for a decision made elsewhere (a direct manual action).
    pub async fn conclude(
        &self,
        status: &CanaryRolloutStatus,
        decision: Decision,
        metrics: MetricsObservation,
    ) -> Result<TickReport, Error> {
        match driver::conclude(self, status, &decision).await {
            Ok(carried) => Ok(self.report(status, decision, metrics, Ok(carried))),
            Err(TickError::Action(failed)) => Err(Error::Io(failed.to_string())),
            Err(TickError::Save(error)) => Err(error),
        }
    }

    fn report(
        &self,
        old: &CanaryRolloutStatus,
        decision: Decision,
        metrics: MetricsObservation,
        carried: Result<Carried, String>,
    ) -> TickReport {
        let hooks = self
            .hook_runs
            .lock()
            .map(|mut runs| std::mem::take(&mut *runs))
            .unwrap_or_default();
        let carried = match carried {
            Ok(carried) => carried,
            Err(weight_error) => {
                return TickReport {
                    status: old.clone(),
                    metrics,
                    events: Vec::new(),
                    weight_error: Some(weight_error),
                    hooks,
                }
            }
        };
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
        TickReport {
            status: decision.status,
            metrics,
            events,
            weight_error: None,
            hooks,
        }
    }

    /// Runs a release hook (when one is set) and remembers its outcome.
    async fn run_hook(&self, kind: HookKind, revision: &str) {
        let Some(command) = self.hooks.command(kind) else {
            return;
        };
        let run = hooks::run(
            command,
            kind,
            &self.subject.name,
            revision,
            self.hooks.timeout,
        )
        .await;
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

impl<S: MetricsSource, T: WeightTarget> Executor for LocalRunner<S, T> {
    type Error = Error;

    async fn current_weight(&self) -> Result<f64, Error> {
        Ok(self
            .target
            .current_weight(&self.subject.rollout_key)
            .await?)
    }

    async fn set_weight(&self, weight: f64, salt: Option<&str>) -> Result<(), Error> {
        let result = self
            .target
            .set_weight(&self.subject.rollout_key, weight, salt)
            .await;
        if let Some(metrics) = &self.metrics {
            metrics.record(match &result {
                Ok(()) => "success",
                Err(e) => e.metric_label(),
            });
        }
        Ok(result?)
    }

    async fn set_slow_threshold(&self, ms: f64) -> Result<(), Error> {
        Ok(self
            .target
            .set_slow_threshold(&self.subject.rollout_key, ms)
            .await?)
    }

    async fn scale_canary_up(&self, revision: &str) -> Result<(), Error> {
        self.run_hook(HookKind::ScaleUp, revision).await;
        Ok(())
    }

    async fn scale_canary_down(&self, revision: &str) -> Result<(), Error> {
        self.run_hook(HookKind::ScaleDown, revision).await;
        Ok(())
    }

    async fn promote_stable(&self, revision: &str) -> Result<(), Error> {
        self.run_hook(HookKind::Promote, revision).await;
        Ok(())
    }
}

impl<S: MetricsSource, T: WeightTarget> FrontEnd for LocalRunner<S, T> {
    /// Without `--on-promote` nothing can make stable serve a revision, so a promotion
    /// stops at 100% (as `promotion.finalize: false`).
    fn spec(&self) -> Cow<'_, CanaryRolloutSpec> {
        let spec = &self.rollout.spec;
        if spec.promotion.finalize && self.hooks.on_promote.is_none() {
            let mut spec = spec.clone();
            spec.promotion.finalize = false;
            Cow::Owned(spec)
        } else {
            Cow::Borrowed(spec)
        }
    }

    fn subject(&self) -> &Subject {
        &self.subject
    }

    fn approve_target(&self) -> ApproveTarget {
        ApproveTarget::local(&self.subject.name, &self.status_file)
    }

    async fn observe(&self, manual: Option<ManualAction>, before_run: bool) -> Observations {
        let key = &self.subject.rollout_key;
        let window = self.rollout.spec.analysis.effective_window().as_std();
        let metrics = self
            .source
            .windows(std::slice::from_ref(&self.series), window)
            .await
            .remove(key)
            .unwrap_or(MetricsObservation::Unavailable {
                reason: "no result for this rollout".to_string(),
            });
        let custom = driver::custom_observations(&self.rollout.spec, key, |query| async move {
            self.source.scalar(&query).await
        })
        .await;
        let stable_before_run = if before_run {
            let lookback = crate::analysis::comparative::STABLE_LOOKBACK.as_std();
            self.source
                .stable_before_run(std::slice::from_ref(&self.series), lookback)
                .await
                .remove(key)
        } else {
            None
        };
        Observations {
            metrics,
            custom,
            resources: crate::resources::ResourceObservation::NotQueried,
            // No pods in local mode: the canary process is not watched.
            canary_health: CanaryHealth::Unknown,
            manual,
            stable_before_run,
        }
    }

    /// The release lifecycle's view, when the rollout file names a revision.
    fn release(&self, status: &CanaryRolloutStatus) -> Option<ReleaseObservation> {
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
            rollout_key: self.subject.rollout_key.clone(),
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
            // What `--on-promote` last made stable serve (unknown after a restart).
            stable_revision: memory.stable_on.clone(),
            canary_revision: revision,
            recorded: crate::observation::RecordedRevisions::default(),
            problem: None,
        })
    }

    async fn save_status(&self, status: &CanaryRolloutStatus) -> Result<(), Error> {
        self.save(status)
    }

    async fn event(&self, _reason: &'static str, _message: &str, _warning: bool) {
        // Local mode prints Events on its progress line instead.
    }

    fn notification_client(&self) -> Option<&crate::http::Client> {
        self.webhook.as_ref()
    }

    fn alerting(&self) -> Option<crate::alerts::Alerting> {
        self.alerting.clone()
    }
}

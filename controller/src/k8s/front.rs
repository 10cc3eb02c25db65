//! The cluster's side of a tick ([`FrontEnd`]): the weight on the WasmPlugin, the canary's
//! scale, the generated stable Deployment (see [`super::primary`]), the status subresource (and the manual request marked
//! handled once the status says so), Events on the CanaryRollout.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::autoscalers::{self, Autoscalers};
use super::config_refs;
use super::context::Context;
use super::deployments::{
    revision_of, rollout_state, Deployments, WorkloadError, FAILED_REVISION_ANNOTATION,
};
use super::manual::{ManualInput, HANDLED_ANNOTATION};
use super::pods::canary_health;
use super::primary::{self, Primaries, Release};
use super::status;
use crate::crd::{CanaryRollout, CanaryRolloutSpec, CanaryRolloutStatus};
use crate::driver::{self, Executor, FrontEnd};
use crate::engine::approve::ApproveTarget;
use crate::error::Error;
use crate::field_managers;
use crate::gates::webhook::Subject;
use crate::metrics::Metrics;
use crate::observation::{
    ManualAction, MetricsObservation, Observations, RecordedRevisions, ReleaseObservation,
    WorkloadState,
};
use crate::prometheus::RolloutSeries;
use crate::target::wasmplugin::WasmPluginTarget;
use crate::target::{RolloutView, WeightTarget};

/// The workload and the generated stable as read (and, when needed, applied) this tick
/// (release lifecycle only).
pub struct Workloads {
    pub deployments: Deployments,
    pub primaries: Primaries,
    /// The workload Deployment (`spec.canary.deployment`), which Git owns.
    pub canary: Deployment,
    /// The ConfigMaps and Secrets its template references, as read this tick: part of its
    /// revision.
    pub data: config_refs::Data,
    /// The generated stable's name (`spec.stable.name`, default `<workload>-primary`).
    pub stable_name: String,
    /// The generated stable, as the API server stored it; `None` while it cannot be
    /// generated (see `problem`).
    pub stable: Option<Deployment>,
    /// Why the rollout cannot run its lifecycle on these objects, naming the field.
    pub problem: Option<String>,
}

impl Workloads {
    /// The workload's namespace, where the generated stable and its copies live too.
    fn namespace(&self) -> String {
        self.canary.namespace().unwrap_or_default()
    }
}

/// One rollout's tick in the cluster, over what the reconciler read before it.
pub struct KubeFront<'a> {
    pub ctx: &'a Context,
    pub rollout: &'a CanaryRollout,
    /// The object as last written (by the finalizer), for the status write.
    pub latest: &'a CanaryRollout,
    pub target: &'a WasmPluginTarget<Metrics>,
    pub subject: Subject,
    /// The plugin's view of the rollout, read at the start of this tick.
    pub view: RolloutView,
    pub workloads: Option<Workloads>,
    pub manual: ManualInput,
}

impl KubeFront<'_> {
    fn namespace(&self) -> &str {
        &self.subject.namespace
    }

    fn workloads(&self) -> Result<&Workloads, Error> {
        self.workloads
            .as_ref()
            .ok_or_else(|| Error::Invalid("spec.stable is not set: no Deployment to act on".into()))
    }

    async fn scale_canary(&self, up: bool) -> Result<(), Error> {
        let workloads = self.workloads()?;
        let canary = &self.rollout.spec.canary;
        let result = match &canary.scaled_object {
            Some(scaled_object) => {
                let paused = (!up).then_some(0);
                workloads
                    .deployments
                    .pause_scaled_object(scaled_object, paused)
                    .await
            }
            None => {
                let replicas = if up { canary.replicas.max(1) } else { 0 };
                workloads
                    .deployments
                    .scale(&canary.deployment, replicas)
                    .await
            }
        };
        result.map_err(|e| Error::Workload(Box::new(e)))
    }
}

impl Executor for KubeFront<'_> {
    type Error = Error;

    async fn current_weight(&self) -> Result<f64, Error> {
        Ok(self.view.weight)
    }

    async fn set_weight(&self, weight: f64, salt: Option<&str>) -> Result<(), Error> {
        self.target
            .set_weight(&self.subject.rollout_key, weight, salt)
            .await?;
        info!(weight, salt, "weight set");
        Ok(())
    }

    async fn set_slow_threshold(&self, ms: f64) -> Result<(), Error> {
        self.target
            .set_slow_threshold(&self.subject.rollout_key, ms)
            .await?;
        info!(ms, "slowThresholdMs set for the comparative latency test");
        Ok(())
    }

    async fn scale_canary_up(&self, revision: &str) -> Result<(), Error> {
        self.scale_canary(true).await?;
        info!(revision, "canary scaled up");
        Ok(())
    }

    async fn scale_canary_down(&self, revision: &str) -> Result<(), Error> {
        self.scale_canary(false).await?;
        info!(revision, "canary scaled down");
        Ok(())
    }

    async fn record_failed_revision(&self, revision: &str) {
        let Ok(workloads) = self.workloads() else {
            return;
        };
        // On the generated stable, which the controller owns: nothing is written to the
        // workload Git owns but its replicas.
        let stable = &workloads.stable_name;
        match workloads
            .deployments
            .record_failed_revision(stable, revision)
            .await
        {
            Ok(()) => info!(
                revision,
                stable, "failed revision recorded on the generated stable"
            ),
            Err(e) => warn!(revision, error = %e, "could not record the failed revision"),
        }
    }

    /// Applies the workload's template, which is `revision`, to the generated stable.
    async fn promote_stable(&self, revision: &str) -> Result<(), Error> {
        let workloads = self.workloads()?;
        let release = Release::of_workload(&workloads.canary, &workloads.data);
        if release.revision != revision {
            return Err(Error::Invalid(format!(
                "the workload moved on to revision {} before {revision} reached stable",
                release.revision
            )));
        }
        apply_stable(self.rollout, workloads, &release, true).await?;
        info!(revision, stable = %workloads.stable_name, "the workload's pod template applied to the generated stable");
        Ok(())
    }
}

/// Applies the generated stable for `release` (see [`primary::desired`]); with
/// `with_copies` (a release taken from the workload now) the stable's copies of the
/// workload's ConfigMaps and Secrets first.
async fn apply_stable(
    rollout: &CanaryRollout,
    workloads: &Workloads,
    release: &Release,
    with_copies: bool,
) -> Result<Deployment, Error> {
    let spec = &rollout.spec;
    let invalid = |reason: String| {
        Error::Workload(Box::new(WorkloadError::Invalid {
            namespace: workloads.namespace(),
            name: workloads.stable_name.clone(),
            reason,
        }))
    };
    if with_copies {
        let namespace = workloads.namespace();
        let copies = primary::copies(rollout, &namespace, &workloads.stable_name, &workloads.data)
            .map_err(invalid)?;
        workloads
            .primaries
            .apply_copies(&copies)
            .await
            .map_err(|e| Error::Workload(Box::new(e)))?;
    }
    let stable = spec.stable.clone().unwrap_or_default();
    let replicas = primary::replicas(
        workloads.stable.as_ref(),
        &workloads.canary,
        spec.canary.replicas,
    );
    let body = primary::desired(
        rollout,
        &workloads.canary,
        &workloads.stable_name,
        &stable.pod_labels,
        release,
        replicas,
    )
    .map_err(invalid)?;
    let primaries = &workloads.primaries;
    let workload = |e| Error::Workload(Box::new(e));
    let applied = primaries
        .apply(&workloads.stable_name, &body)
        .await
        .map_err(workload)?;
    if primary::drift(&applied, &workloads.canary, release, &workloads.stable_name).is_none() {
        return Ok(applied);
    }
    // Another manager's fields survived the apply: take them out of the template.
    primaries
        .repair(
            &workloads.stable_name,
            &primary::template_repair(&applied, &body),
        )
        .await
        .map_err(workload)
}

impl FrontEnd for KubeFront<'_> {
    fn spec(&self) -> Cow<'_, CanaryRolloutSpec> {
        Cow::Borrowed(&self.rollout.spec)
    }

    fn subject(&self) -> &Subject {
        &self.subject
    }

    fn approve_target(&self) -> ApproveTarget {
        ApproveTarget::in_cluster(&self.subject.name, self.namespace())
    }

    async fn observe(&self, manual: Option<ManualAction>, before_run: bool) -> Observations {
        let (ctx, spec) = (self.ctx, &self.rollout.spec);
        let rollout_key = self.subject.rollout_key.as_str();
        let timeout = driver::interval(spec) / 2;
        let series = RolloutSeries {
            rollout: rollout_key.to_string(),
            stable_version: self.view.stable_version.clone(),
            canary_version: self.view.canary_version.clone(),
        };
        let window = spec.analysis.effective_window().as_std();
        let endpoint = super::source_refs::endpoint(
            &ctx.client,
            self.namespace(),
            &ctx.batcher,
            &spec.prometheus,
        )
        .await;
        let endpoint = &endpoint;
        let metrics = match endpoint {
            Ok(endpoint) => {
                ctx.batcher
                    .observation(endpoint, window, &series, timeout)
                    .await
            }
            Err(reason) => MetricsObservation::Unavailable {
                reason: reason.clone(),
            },
        };
        let custom = driver::custom_observations(spec, rollout_key, |query| async move {
            match endpoint {
                Ok(endpoint) => ctx.batcher.scalar(endpoint, &query).await,
                Err(reason) => Err(reason.clone()),
            }
        })
        .await;
        let resources = match (
            crate::resources::ResourceSelectors::for_spec(spec, self.namespace()),
            endpoint,
        ) {
            (Some(selectors), Ok(endpoint)) => {
                ctx.batcher
                    .resources(endpoint, window, &selectors, timeout)
                    .await
            }
            (Some(_), Err(reason)) => crate::resources::ResourceObservation::Unavailable {
                reason: reason.clone(),
            },
            (None, _) => crate::resources::ResourceObservation::NotQueried,
        };
        let stable_before_run = match (endpoint, before_run) {
            (Ok(endpoint), true) => {
                let lookback = crate::analysis::comparative::STABLE_LOOKBACK.as_std();
                ctx.batcher
                    .stable_before_run(endpoint, lookback, &series, timeout)
                    .await
            }
            _ => None,
        };
        let canary_namespace = spec.workload_namespace(self.namespace());
        let canary_health =
            canary_health(&ctx.client, canary_namespace, &spec.canary.deployment).await;
        Observations {
            metrics,
            custom,
            resources,
            canary_health,
            manual,
            stable_before_run,
        }
    }

    fn release(&self, status: &CanaryRolloutStatus) -> Option<ReleaseObservation> {
        let workloads = self.workloads.as_ref()?;
        Some(release_observation(
            workloads,
            status,
            &self.subject.rollout_key,
        ))
    }

    /// The status, applied whole (see [`status`]); then the manual request is marked
    /// handled, only once the status says it was.
    async fn save_status(&self, new: &CanaryRolloutStatus) -> Result<(), Error> {
        let mut new = new.clone();
        new.observed_generation = self.rollout.metadata.generation;
        let api: Api<CanaryRollout> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        status::write(&api, self.latest, &new).await?;
        if let Some(value) = &self.manual.consumed {
            let params = PatchParams {
                field_manager: Some(field_managers::CONTROLLER.to_string()),
                ..PatchParams::default()
            };
            let annotations = json!({"metadata": {"annotations": {HANDLED_ANNOTATION: value}}});
            api.patch(&self.subject.name, &params, &Patch::Merge(&annotations))
                .await?;
        }
        Ok(())
    }

    async fn event(&self, reason: &'static str, message: &str, warning: bool) {
        publish(self.ctx, self.rollout, reason, message, warning).await;
    }

    fn notification_client(&self) -> Option<&crate::http::Client> {
        Some(&self.ctx.webhook)
    }

    /// Providers read in the cluster (AlertProvider, then its Secrets); a failed delivery is
    /// counted and raised as a Warning `AlertFailed` on this rollout, from the delivery's task.
    fn alerting(&self) -> Option<crate::alerts::Alerting> {
        let recorder = self.ctx.recorder.clone();
        let reference = self.rollout.object_ref(&());
        let on_failure = move |failure: crate::alerts::report::Failure| {
            let (recorder, reference) = (recorder.clone(), reference.clone());
            tokio::spawn(async move {
                let event = Event {
                    type_: EventType::Warning,
                    reason: crate::alerts::report::ALERT_FAILED.to_string(),
                    note: Some(failure.message.chars().take(1000).collect()),
                    action: failure.event_action(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    warn!(error = %e, "could not publish the AlertFailed event");
                }
            });
        };
        let sink = crate::alerts::report::Report {
            counter: self.ctx.metrics.alerts.clone(),
            on_failure,
        };
        Some(self.ctx.alerting.with_sink(std::sync::Arc::new(sink)))
    }
}

/// Reads the workload and the generated stable, and applies the generated stable when it
/// is missing (the bootstrap: the workload's template, which becomes stable without a run)
/// or differs from what it must be (drift, repaired with a Warning Event `StableDrifted`).
pub async fn read_workloads(
    ctx: &Context,
    rollout: &CanaryRollout,
    namespace: &str,
) -> Result<Workloads, Error> {
    let spec = &rollout.spec;
    let canary_namespace = spec.workload_namespace(namespace);
    let deployments = Deployments::new(ctx.client.clone(), canary_namespace);
    let primaries = Primaries::new(ctx.client.clone(), canary_namespace);
    let workload = |e| Error::Workload(Box::new(e));
    let canary = deployments
        .get(&spec.canary.deployment)
        .await
        .map_err(workload)?;
    let stable_name = spec.stable_name().unwrap_or_default();
    let stable = primaries.get(&stable_name).await.map_err(workload)?;
    let data = primary::read_config_data(&ctx.client, canary_namespace, &canary)
        .await
        .map_err(workload)?;
    let key = format!("{namespace}/{}", rollout.name_any());
    ctx.wakes.saw(key.clone(), revision_of(&canary));
    ctx.wakes.saw_refs(key, data.keys().cloned().collect());
    let mut workloads = Workloads {
        deployments,
        primaries,
        canary,
        data,
        stable_name,
        stable,
        problem: None,
    };
    workloads.problem = stable_problem(rollout, &workloads);
    if workloads.problem.is_none() {
        converge_stable(ctx, rollout, &mut workloads).await?;
    }
    Ok(workloads)
}

/// Applies the generated stable when it is missing (the bootstrap) or differs from what its
/// recorded release must be (a repaired drift), then its autoscaler's copy.
async fn converge_stable(
    ctx: &Context,
    rollout: &CanaryRollout,
    workloads: &mut Workloads,
) -> Result<(), Error> {
    let spec = &rollout.spec;
    let recorded = workloads.stable.as_ref().and_then(Release::recorded_on);
    // Without a recorded release (a lost annotation), stable keeps what it runs: only a
    // bootstrap, with no stable at all, takes the workload's template unanalysed.
    let release = recorded.clone().unwrap_or_else(|| match &workloads.stable {
        Some(live) => Release::of_live(live, &workloads.stable_name),
        None => Release::of_workload(&workloads.canary, &workloads.data),
    });
    if let Some(live) = &workloads.stable {
        let body = primary::desired(
            rollout,
            &workloads.canary,
            &workloads.stable_name,
            &spec.stable.clone().unwrap_or_default().pod_labels,
            &release,
            primary::replicas(Some(live), &workloads.canary, spec.canary.replicas),
        );
        if body
            .is_ok_and(|body| primary::converged(live, &workloads.canary, &body, &release, rollout))
        {
            sync_autoscaler(ctx, rollout, workloads).await;
            return Ok(());
        }
        if let Some(why) = recorded
            .as_ref()
            .and_then(|r| primary::drift(live, &workloads.canary, r, &workloads.stable_name))
        {
            let message = format!(
                "stable {}: {why}; applied again (the controller owns it: change the workload instead)",
                workloads.stable_name
            );
            warn!(stable = %workloads.stable_name, why, "generated stable drifted; repairing");
            publish(
                ctx,
                rollout,
                crate::engine::reasons::STABLE_DRIFTED,
                &message,
                true,
            )
            .await;
        }
    } else {
        if let Some(problem) = renamed_stable(rollout, workloads).await? {
            workloads.problem = Some(problem);
            return Ok(());
        }
        let message = format!(
            "stable {} generated from {} (revision {}): it takes every user once it is rolled out",
            workloads.stable_name, spec.canary.deployment, release.revision
        );
        info!(stable = %workloads.stable_name, revision = %release.revision, "generating the stable Deployment");
        publish(ctx, rollout, "StableGenerated", &message, false).await;
    }
    // A bootstrap takes the workload's data along: the stable's copies are made first.
    let bootstrap = workloads.stable.is_none();
    workloads.stable = Some(apply_stable(rollout, workloads, &release, bootstrap).await?);
    sync_autoscaler(ctx, rollout, workloads).await;
    Ok(())
}

/// Keeps the generated stable's copy of the workload's autoscaler (see
/// [`super::autoscalers`]). Best effort: a failure is a Warning Event, and stable keeps
/// serving at the replicas it has.
async fn sync_autoscaler(ctx: &Context, rollout: &CanaryRollout, workloads: &Workloads) {
    let Some((kind, name)) = autoscalers::named(rollout) else {
        return;
    };
    let namespace = workloads.namespace();
    let result = Autoscalers::new(ctx.client.clone(), &namespace)
        .sync(rollout, kind, &name, &workloads.stable_name)
        .await;
    match result {
        Ok(None) => {}
        Ok(Some(copy)) => info!(copy, source = %name, "the generated stable's autoscaler applied"),
        Err(e) => {
            let message = format!(
                "the generated stable's copy of autoscaler {name} could not be applied: {e}; stable keeps its replicas"
            );
            warn!(message);
            publish(ctx, rollout, "StableAutoscalerFailed", &message, true).await;
        }
    }
}

/// Why the generated stable cannot be applied, naming the field: an old-style
/// `spec.stable.deployment`, subset labels that cannot tell the pods apart, or a Deployment
/// of that name that this rollout did not generate.
fn stable_problem(rollout: &CanaryRollout, workloads: &Workloads) -> Option<String> {
    let stable = rollout.spec.stable.clone().unwrap_or_default();
    if let Some(old) = &stable.deployment {
        return Some(format!(
            "spec.stable.deployment: the stable Deployment is generated now ({}), not named; remove spec.stable.deployment {old} (README, \"Migrating from a hand-written stable Deployment\")",
            workloads.stable_name
        ));
    }
    if let Err(e) =
        crate::validate::workloads::check_stable_labels(&workloads.canary, &stable.pod_labels)
    {
        return Some(e.to_string());
    }
    let workload_namespace = workloads.namespace();
    if rollout.namespace().as_deref() != Some(workload_namespace.as_str()) {
        return Some(format!(
            "spec.canary.namespace: the workload is in {workload_namespace}, the rollout in {}: the generated stable, owned by the rollout, must be in the rollout's namespace (an ownerReference cannot cross namespaces)",
            rollout.namespace().unwrap_or_default()
        ));
    }
    let live = workloads.stable.as_ref()?;
    if !primary::is_generated_by(live, rollout) {
        return Some(format!(
            "spec.stable.name: Deployment {} exists and was not generated by this rollout (no label {}={}, no ownerReference to it); name another, or delete it",
            workloads.stable_name,
            primary::ROLLOUT_LABEL,
            rollout.name_any()
        ));
    }
    let wanted = primary::selector(&workloads.canary, &stable.pod_labels);
    let current = live.spec.selector.match_labels.clone().unwrap_or_default();
    (current != wanted).then(|| {
        format!(
            "spec.stable.podLabels: the generated stable {} selects on {current:?}, and a Deployment's selector cannot change; delete {} to have it generated again with {wanted:?}",
            workloads.stable_name, workloads.stable_name
        )
    })
}

/// Another Deployment this rollout generated under another name (`spec.stable.name` or the
/// workload renamed): refused rather than leaving two stables in the stable subset.
async fn renamed_stable(
    rollout: &CanaryRollout,
    workloads: &Workloads,
) -> Result<Option<String>, Error> {
    let generated = workloads
        .primaries
        .generated_by(&rollout.name_any())
        .await
        .map_err(|e| Error::Workload(Box::new(e)))?;
    Ok(generated
        .into_iter()
        .find(|name| *name != workloads.stable_name)
        .map(|old| {
            format!(
                "spec.stable.name: this rollout's generated stable is {old}, not {}; set the name back, or delete {old} first (two stables would both serve the stable subset)",
                workloads.stable_name
            )
        }))
}

/// An Event on the rollout (best effort: a failure is logged); the note is cut at 1000
/// characters.
pub(super) async fn publish(
    ctx: &Context,
    rollout: &CanaryRollout,
    reason: &str,
    message: &str,
    warning: bool,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(message.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// The lifecycle's view of the workload and the generated stable: the canary on its own
/// revision, stable on the run's revision (the one a promotion applies to it).
pub fn release_observation(
    workloads: &Workloads,
    status: &CanaryRolloutStatus,
    rollout_key: &str,
) -> ReleaseObservation {
    let canary = &workloads.canary;
    let canary_revision = config_refs::release_revision(&revision_of(canary), &workloads.data);
    let run_revision = status
        .canary_revision
        .clone()
        .unwrap_or_else(|| canary_revision.clone());
    let stable = workloads.stable.as_ref();
    let stable_revision =
        stable.map(|s| primary::observed_revision(s, canary, &workloads.stable_name));
    let stable_state = match (stable, &stable_revision) {
        (Some(s), Some(revision)) if *revision == run_revision => rollout_state(s),
        _ => WorkloadState::Stopped,
    };
    let failed = stable
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(FAILED_REVISION_ANNOTATION).cloned());
    ReleaseObservation {
        rollout_key: rollout_key.to_string(),
        canary: rollout_state(canary),
        stable: stable_state,
        stable_revision,
        canary_revision,
        recorded: RecordedRevisions {
            promoted: stable.and_then(Release::recorded_on).map(|r| r.revision),
            failed,
        },
        problem: workloads.problem.clone(),
    }
}

/// The rollout as the gate webhooks and notifications name it.
pub fn subject_of(rollout: &CanaryRollout) -> Subject {
    Subject {
        name: rollout.name_any(),
        namespace: rollout.namespace().unwrap_or_else(|| "default".to_string()),
        rollout_key: rollout.rollout_key(),
    }
}

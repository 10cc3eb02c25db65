//! The cluster's [`Executor`]: the weight on the WasmPlugin, the canary's scale, the stable
//! template copy, Events on the CanaryRollout and the notification webhook.

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::deployments::Deployments;
use super::reconcile::Context;
use crate::crd::CanaryRollout;
use crate::driver::Executor;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::target::wasmplugin::WasmPluginTarget;
use crate::target::WeightTarget;

/// The two Deployments as read this tick (release lifecycle only).
pub struct Workloads {
    pub deployments: Deployments,
    pub canary: Deployment,
    pub stable: Deployment,
}

pub struct KubeExecutor<'a> {
    pub ctx: &'a Context,
    pub rollout: &'a CanaryRollout,
    pub target: &'a WasmPluginTarget<Metrics>,
    pub rollout_key: String,
    /// The weight read from the plugin at the start of this tick.
    pub observed_weight: f64,
    pub workloads: Option<Workloads>,
}

impl KubeExecutor<'_> {
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

impl Executor for KubeExecutor<'_> {
    type Error = Error;

    async fn current_weight(&self) -> Result<f64, Error> {
        Ok(self.observed_weight)
    }

    async fn set_weight(&self, weight: f64, salt: Option<&str>) -> Result<(), Error> {
        self.target
            .set_weight_and_salt(&self.rollout_key, weight, salt)
            .await?;
        info!(weight, salt, "weight set");
        Ok(())
    }

    async fn set_slow_threshold(&self, ms: f64) -> Result<(), Error> {
        self.target.set_slow_threshold(&self.rollout_key, ms).await?;
        info!(ms, "slowThresholdMs set for the latency test");
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

    async fn promote_stable(&self, revision: &str) -> Result<(), Error> {
        let workloads = self.workloads()?;
        workloads
            .deployments
            .copy_template(&workloads.stable, &workloads.canary, revision)
            .await
            .map_err(|e| Error::Workload(Box::new(e)))?;
        info!(revision, "canary pod template copied onto stable");
        Ok(())
    }

    async fn event(&self, reason: &'static str, message: &str, warning: bool) {
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
        let reference = self.rollout.object_ref(&());
        if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }

    async fn notify(&self, message: &str) {
        let Some(notification) = &self.rollout.spec.notification else {
            return;
        };
        let body = json!({
            "rollout": self.rollout.name_any(),
            "namespace": self.rollout.namespace(),
            "text": message,
        });
        if let Err(e) = self
            .ctx
            .webhook
            .post(&notification.webhook)
            .json(&body)
            .send()
            .await
        {
            warn!(error = %e.without_url(), "notification webhook failed");
        }
    }
}

//! The weight target in a cluster: Istio's `WasmPlugin` (`extensions.istio.io/v1alpha1`).
//!
//! The controller owns one field per rollout, `spec.pluginConfig.rollouts.<key>.weight`, and
//! changes it with a JSON merge patch under the `stickycanary` field manager. Nothing else in
//! the plugin is touched, and its status (Istio's) is never written. Before each patch the
//! plugin is read and the config it would end up with is checked with the filter's schema,
//! so a patch that the filter would reject is never sent. The patch carries the
//! `metadata.resourceVersion` that was read, so a concurrent edit makes it fail with 409
//! (a merge patch without one is applied unconditionally), and the read, check and patch
//! are done again.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::{
    apply_rollout_fields, apply_weight, parse_plugin_config, slow_threshold_field, view_of,
    weight_json, RolloutView, TargetError, WeightTarget,
};

/// How often a 409 Conflict is retried before giving up.
const CONFLICT_RETRIES: u32 = 3;

/// The `WasmPlugin` kind.
pub fn wasmplugin_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("extensions.istio.io", "v1alpha1", "WasmPlugin"),
        "wasmplugins",
    )
}

/// Counts patch outcomes: `success`, `api_error`, `timeout`, ... (see [`TargetError::metric_label`]).
pub trait PatchOutcomes: Send + Sync {
    fn record(&self, outcome: &str);
}

impl<T: PatchOutcomes + ?Sized> PatchOutcomes for std::sync::Arc<T> {
    fn record(&self, outcome: &str) {
        (**self).record(outcome);
    }
}

/// Discards outcomes (tests, CLI one-shots).
pub struct NoOutcomes;
impl PatchOutcomes for NoOutcomes {
    fn record(&self, _outcome: &str) {}
}

/// One WasmPlugin, addressed by namespace and name.
pub struct WasmPluginTarget<O: PatchOutcomes = NoOutcomes> {
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
    timeout: Duration,
    outcomes: O,
}

impl WasmPluginTarget<NoOutcomes> {
    pub fn new(client: Client, namespace: &str, name: &str, timeout: Duration) -> Self {
        Self::with_outcomes(client, namespace, name, timeout, NoOutcomes)
    }
}

impl<O: PatchOutcomes> WasmPluginTarget<O> {
    pub fn with_outcomes(
        client: Client,
        namespace: &str,
        name: &str,
        timeout: Duration,
        outcomes: O,
    ) -> Self {
        WasmPluginTarget {
            api: Api::namespaced_with(client, namespace, &wasmplugin_resource()),
            namespace: namespace.to_string(),
            name: name.to_string(),
            timeout,
            outcomes,
        }
    }

    fn target(&self) -> String {
        format!("WasmPlugin {}/{}", self.namespace, self.name)
    }

    fn api_error(&self, e: kube::Error) -> TargetError {
        match &e {
            kube::Error::Api(status) if status.code == 404 => TargetError::NotFound {
                target: self.target(),
            },
            _ => TargetError::Api {
                target: self.target(),
                source: e,
            },
        }
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, TargetError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.api_error(e)),
            Err(_) => Err(TargetError::Timeout {
                target: self.target(),
                seconds: self.timeout.as_secs().max(1),
            }),
        }
    }

    /// The plugin's `spec.pluginConfig`.
    pub async fn plugin_config(&self) -> Result<Value, TargetError> {
        self.read().await.map(|(config, _)| config)
    }

    /// The plugin's `spec.pluginConfig` and the `resourceVersion` it was read at.
    async fn read(&self) -> Result<(Value, Option<String>), TargetError> {
        let plugin = self.bounded(self.api.get(&self.name)).await?;
        let config = plugin
            .data
            .pointer("/spec/pluginConfig")
            .cloned()
            .ok_or_else(|| TargetError::InvalidConfig {
                target: self.target(),
                reason: "spec.pluginConfig is missing".to_string(),
            })?;
        Ok((config, plugin.metadata.resource_version))
    }

    async fn patch_once(
        &self,
        rollout_key: &str,
        weight: f64,
        salt: Option<&str>,
    ) -> Result<(), TargetError> {
        let (current, resource_version) = self.read().await?;
        // Refuse before writing anything if the filter would reject the result.
        apply_weight(&current, rollout_key, weight, salt, &self.target())?;
        self.merge_patch(weight_patch(rollout_key, weight, salt), resource_version)
            .await
    }

    async fn slow_threshold_once(&self, rollout_key: &str, ms: f64) -> Result<(), TargetError> {
        let (current, resource_version) = self.read().await?;
        let field = slow_threshold_field(ms);
        apply_rollout_fields(&current, rollout_key, field.clone(), &self.target())?;
        let body = json!({"spec": {"pluginConfig": {"rollouts": {rollout_key: field}}}});
        self.merge_patch(body, resource_version).await
    }

    /// Sends a merge patch of the plugin, conditional on the resourceVersion that was read.
    async fn merge_patch(
        &self,
        mut body: Value,
        resource_version: Option<String>,
    ) -> Result<(), TargetError> {
        let params = PatchParams {
            field_manager: Some(crate::field_managers::CONTROLLER.to_string()),
            ..PatchParams::default()
        };
        // The resourceVersion that was read makes the patch conditional: if anyone wrote
        // the plugin since, the API server answers 409 and we read and check again, so
        // the config that was validated is the one that gets changed.
        if let Some(rv) = resource_version {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let patch = Patch::Merge(body);
        self.bounded(self.api.patch(&self.name, &params, &patch))
            .await?;
        Ok(())
    }
}

/// The merge patch body: the one weight field and nothing else, plus the cohort salt on a
/// run's first weight, so the filter never sees the new salt with the old weight or the
/// other way round.
pub fn weight_patch(rollout_key: &str, weight: f64, salt: Option<&str>) -> Value {
    let mut patch = json!({"spec": {"pluginConfig": {"rollouts": {rollout_key: {"weight": weight_json(weight)}}}}});
    if let (Some(salt), Some(rollout)) = (
        salt,
        patch
            .pointer_mut(&format!(
                "/spec/pluginConfig/rollouts/{}",
                pointer_escape(rollout_key)
            ))
            .and_then(Value::as_object_mut),
    ) {
        rollout.insert("salt".to_string(), Value::from(salt));
    }
    patch
}

/// A JSON pointer token (RFC 6901): `~` and `/` escaped.
fn pointer_escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

pub use crate::kube_error::one_line;

impl<O: PatchOutcomes> WeightTarget for WasmPluginTarget<O> {
    async fn set_slow_threshold(&self, rollout_key: &str, ms: f64) -> Result<(), TargetError> {
        self.with_conflict_retries(|| self.slow_threshold_once(rollout_key, ms))
            .await
    }

    async fn current(&self, rollout_key: &str) -> Result<RolloutView, TargetError> {
        let config = self.plugin_config().await?;
        let parsed = parse_plugin_config(&config, &self.target())?;
        view_of(&parsed, rollout_key, &self.target())
    }

    async fn set_weight(
        &self,
        rollout_key: &str,
        weight: f64,
        salt: Option<&str>,
    ) -> Result<(), TargetError> {
        self.with_conflict_retries(|| self.patch_once(rollout_key, weight, salt))
            .await
    }
}

impl<O: PatchOutcomes> WasmPluginTarget<O> {
    /// Runs one read-check-patch until it is not refused by a conflict (a few times).
    async fn with_conflict_retries<F, Fut>(&self, mut patch: F) -> Result<(), TargetError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), TargetError>>,
    {
        let mut attempt = 0;
        loop {
            let result = patch().await;
            match result {
                Ok(()) => {
                    self.outcomes.record("success");
                    return Ok(());
                }
                // A conflict means someone else wrote the plugin between our read and our
                // patch: read it again and re-check, a few times, with a short backoff.
                Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => {
                    self.outcomes.record("conflict");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => {
                    self.outcomes.record(e.metric_label());
                    return Err(e);
                }
            }
        }
    }
}

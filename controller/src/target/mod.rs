//! Where a rollout's weight lives: an Istio WasmPlugin in a cluster, or the ECDS file of a
//! standalone Envoy. Both change exactly one field, `rollouts.<key>.weight` of the plugin
//! config, and both check the result against the filter's own schema before writing it.

pub mod ecds;
pub mod wasmplugin;

use std::future::Future;

use serde_json::Value;
use stickycanary_filter::config::PluginConfig;

/// Why a weight could not be read or written. The message is one line naming the
/// object and the reason; a Kubernetes error is kept as the `source()`.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{target}: rollout key {key:?} is not in the plugin config")]
    MissingKey { target: String, key: String },
    #[error("{target}: plugin config is invalid: {reason}")]
    InvalidConfig { target: String, reason: String },
    #[error("{target}: {reason}")]
    Io { target: String, reason: String },
    #[error(
        "{target}: kubernetes API error: {}",
        crate::kube_error::one_line(source)
    )]
    Api {
        target: String,
        #[source]
        source: kube::Error,
    },
    #[error("{target}: not found")]
    NotFound { target: String },
    #[error("{target}: timed out after {seconds}s")]
    Timeout { target: String, seconds: u64 },
}

impl TargetError {
    /// Whether this is a 409 Conflict from the API server (by status code).
    pub fn is_conflict(&self) -> bool {
        matches!(self, TargetError::Api { source, .. } if crate::kube_error::is_conflict(source))
    }

    /// A short label for metrics (`stickycanary_weight_patch_total{outcome}`), from a fixed set.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TargetError::MissingKey { .. } => "missing_key",
            TargetError::InvalidConfig { .. } => "invalid_config",
            TargetError::Io { .. } => "io_error",
            TargetError::Api { .. } => "api_error",
            TargetError::NotFound { .. } => "not_found",
            TargetError::Timeout { .. } => "timeout",
        }
    }
}

/// The versions a rollout's traffic is labelled with, and its current weight.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutView {
    pub weight: f64,
    pub stable_version: String,
    pub canary_version: String,
}

/// Something holding rollout weights.
pub trait WeightTarget: Send + Sync {
    /// The current weight and version names of `rollout_key`.
    fn current(
        &self,
        rollout_key: &str,
    ) -> impl Future<Output = Result<RolloutView, TargetError>> + Send;

    /// The current weight of `rollout_key`.
    fn current_weight(
        &self,
        rollout_key: &str,
    ) -> impl Future<Output = Result<f64, TargetError>> + Send {
        async move { self.current(rollout_key).await.map(|view| view.weight) }
    }

    /// Sets `rollouts.<rollout_key>.weight` and, when given, `rollouts.<rollout_key>.salt`
    /// in the same write (a new run's cohort), and nothing else.
    fn set_weight(
        &self,
        rollout_key: &str,
        weight: f64,
        salt: Option<&str>,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Sets `rollouts.<rollout_key>.slowThresholdMs` (the comparative latency test's
    /// threshold for a run). Targets that cannot write it refuse.
    fn set_slow_threshold(
        &self,
        rollout_key: &str,
        ms: f64,
    ) -> impl Future<Output = Result<(), TargetError>> + Send {
        let _ = rollout_key;
        async move {
            Err(TargetError::InvalidConfig {
                target: "weight target".to_string(),
                reason: format!("cannot write slowThresholdMs {ms} here"),
            })
        }
    }
}

/// JSON for a weight: whole numbers stay integers so configs read naturally (`10`, not `10.0`).
pub fn weight_json(weight: f64) -> Value {
    if weight.fract() == 0.0 && (0.0..=100.0).contains(&weight) {
        Value::from(weight as i64)
    } else {
        Value::from(weight)
    }
}

/// Applies `weight` (and `salt`, when given) to `rollouts.<key>` of a plugin config held
/// as JSON, and checks the result with the filter's schema. The returned value is what
/// would be deployed.
pub fn apply_weight(
    plugin_config: &Value,
    key: &str,
    weight: f64,
    salt: Option<&str>,
    target: &str,
) -> Result<Value, TargetError> {
    let mut fields = serde_json::Map::new();
    fields.insert("weight".to_string(), weight_json(weight));
    if let Some(salt) = salt {
        fields.insert("salt".to_string(), Value::from(salt));
    }
    apply_rollout_fields(plugin_config, key, fields, target)
}

/// Sets `fields` in `rollouts.<key>` of a plugin config held as JSON, and checks the result
/// with the filter's schema. The returned value is what would be deployed.
pub fn apply_rollout_fields(
    plugin_config: &Value,
    key: &str,
    fields: serde_json::Map<String, Value>,
    target: &str,
) -> Result<Value, TargetError> {
    let mut updated = plugin_config.clone();
    let rollout = updated
        .get_mut("rollouts")
        .and_then(|r| r.get_mut(key))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| TargetError::MissingKey {
            target: target.to_string(),
            key: key.to_string(),
        })?;
    rollout.extend(fields);
    parse_plugin_config(&updated, target)?;
    Ok(updated)
}

/// The `slowThresholdMs` field for a threshold in ms: whole milliseconds within the
/// filter's range (1 to 600000), so a histogram boundary such as 300 is written as `300`.
pub fn slow_threshold_field(ms: f64) -> serde_json::Map<String, Value> {
    let whole = if ms.is_finite() {
        ms.ceil().clamp(1.0, 600_000.0)
    } else {
        600_000.0
    };
    let mut fields = serde_json::Map::new();
    fields.insert("slowThresholdMs".to_string(), Value::from(whole as u64));
    fields
}

/// Parses a plugin config with the filter's schema.
pub fn parse_plugin_config(
    plugin_config: &Value,
    target: &str,
) -> Result<PluginConfig, TargetError> {
    let bytes = serde_json::to_vec(plugin_config).map_err(|e| TargetError::InvalidConfig {
        target: target.to_string(),
        reason: e.to_string(),
    })?;
    PluginConfig::from_json(&bytes).map_err(|e| TargetError::InvalidConfig {
        target: target.to_string(),
        reason: e.to_string(),
    })
}

/// The view of `key` in a parsed plugin config.
pub fn view_of(config: &PluginConfig, key: &str, target: &str) -> Result<RolloutView, TargetError> {
    let rollout = config
        .rollouts
        .get(key)
        .ok_or_else(|| TargetError::MissingKey {
            target: target.to_string(),
            key: key.to_string(),
        })?;
    Ok(RolloutView {
        weight: rollout.weight,
        stable_version: rollout.stable_version.clone(),
        canary_version: rollout.canary_version.clone(),
    })
}

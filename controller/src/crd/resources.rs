//! The `spec.analysis.resources` block of a CanaryRollout.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::WorkloadRef;
use crate::duration::Duration;

/// Resource checks on the canary's pods. Each of the three is optional; the block needs at
/// least one. `memory` and `cpu` compare against stable, so they need `stable`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChecks {
    /// The stable Deployment, whose pods are the baseline for `memory` and `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<WorkloadRef>,
    /// How long a resource breach must last before it rolls back.
    #[serde(rename = "for", default = "default_resources_for")]
    pub for_duration: Duration,
    /// Canary CPU throttling: throttled CFS periods over all periods, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_throttling: Option<ThrottlingCheck>,
    /// Canary memory working set per pod against stable's per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<IncreaseCheck>,
    /// Canary CPU usage per pod (cores) against stable's per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<IncreaseCheck>,
}

fn default_resources_for() -> Duration {
    Duration::from_mins(5)
}

/// Roll back when the canary's containers are throttled in more than `maxPercent` of
/// their CFS periods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThrottlingCheck {
    /// Kubernetes' own `CPUThrottlingHigh` alert (kubernetes-mixin) pages at 25%.
    #[serde(default = "default_max_throttled_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_percent: f64,
    /// The first stage (1-based) at which this check is judged; before it, it is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 1))]
    pub from_stage: Option<u32>,
}

fn default_max_throttled_percent() -> f64 {
    25.0
}

/// Roll back when the canary's per-pod figure is more than `maxIncreasePercent` above
/// stable's per-pod figure (canary 180 MiB against stable 100 MiB is +80%).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncreaseCheck {
    #[serde(default = "default_max_increase_percent")]
    #[schemars(range(min = 0.0))]
    pub max_increase_percent: f64,
    /// The first stage (1-based) at which this check is judged; before it, it is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 1))]
    pub from_stage: Option<u32>,
}

fn default_max_increase_percent() -> f64 {
    50.0
}

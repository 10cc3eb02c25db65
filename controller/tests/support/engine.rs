//! Fixtures the engine's table tests share: a clock, traffic windows, observations and a
//! minimal spec. Each test file adds only what its rules need.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use stickycanary::crd::CanaryRolloutSpec;
use stickycanary::observation::{
    CanaryHealth, ManualAction, MetricsObservation, Observations, VersionWindow,
};

/// The clock most engine tests start at.
pub const T0: &str = "2026-11-26T06:00:00Z";

/// `seconds` after the instant `t0` (RFC 3339).
pub fn at_from(t0: &str, seconds: i64) -> Timestamp {
    t0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(seconds)
}

/// `seconds` after [`T0`].
pub fn at(seconds: i64) -> Timestamp {
    at_from(T0, seconds)
}

/// One version's window: `requests`, `error_percent` of them errors, p99 `p99_ms` (none
/// without requests).
pub fn window_p99(requests: f64, error_percent: f64, p99_ms: f64) -> VersionWindow {
    VersionWindow {
        requests,
        errors: requests * error_percent / 100.0,
        p99_ms: (requests > 0.0).then_some(p99_ms),
        latency_buckets: Vec::new(),
        shards: Vec::new(),
    }
}

/// [`window_p99`] at a p99 of 120ms, well inside the default latency check.
pub fn window(requests: f64, error_percent: f64) -> VersionWindow {
    window_p99(requests, error_percent, 120.0)
}

/// Observations of `metrics` with a healthy canary, no custom or resource checks.
pub fn observe(metrics: MetricsObservation, manual: Option<ManualAction>) -> Observations {
    Observations {
        metrics,
        custom: Vec::new(),
        resources: Default::default(),
        canary_health: CanaryHealth::Healthy,
        manual,
        stable_before_run: None,
    }
}

/// `canary` against a stable of 9000 requests at 1% errors.
pub fn traffic(canary: VersionWindow) -> Observations {
    observe(
        MetricsObservation::Window {
            canary,
            stable: window(9000.0, 1.0),
        },
        None,
    )
}

/// A spec naming the plugin, the canary and a Prometheus, plus `yaml` (more top-level fields).
pub fn spec(yaml: &str) -> CanaryRolloutSpec {
    serde_yaml::from_str(&format!(
        "wasmPlugin: {{name: stickycanary}}\ncanary: {{deployment: checkout-canary}}\nprometheus: {{address: \"http://127.0.0.1:9090\"}}\n{yaml}"
    ))
    .unwrap()
}

/// The world-changing actions of a decision only (no Events, no notifications).
pub fn world(decision: &stickycanary::engine::Decision) -> Vec<stickycanary::engine::Action> {
    use stickycanary::engine::Action;
    decision
        .actions
        .iter()
        .filter(|a| !matches!(a, Action::Event { .. } | Action::Notify(_)))
        .cloned()
        .collect()
}

/// The action that scales the canary down after its run of `revision`.
pub fn scale_down(revision: &str) -> stickycanary::engine::Action {
    stickycanary::engine::Action::ScaleCanaryDown {
        revision: revision.to_string(),
    }
}

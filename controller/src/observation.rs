//! What the world looked like at one analysis tick: the decision engine's input besides
//! the spec, the stored status and the clock. The I/O side (Prometheus, pod watcher,
//! CLI) fills these in; the engine never does I/O itself.

/// One version's traffic over the analysis window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionWindow {
    /// Requests completed in the window (from `stickycanary_requests_total`, `source="hash"`).
    pub requests: f64,
    /// Of those, responses with a 5xx status.
    pub errors: f64,
    /// 99th percentile latency in milliseconds; `None` when there were no requests.
    pub p99_ms: Option<f64>,
    /// Histogram buckets over the window: `(le in ms, cumulative count)`, ascending `le`,
    /// the last one being `+Inf` (`f64::INFINITY`). Empty when unknown.
    pub latency_buckets: Vec<(f64, f64)>,
}

impl VersionWindow {
    /// Error rate in percent, `None` without requests (no data is not a 0% error rate).
    pub fn error_rate_percent(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors * 100.0 / self.requests)
    }
}

/// The per-version metrics query result. Zero requests means "no data", not "healthy".
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsObservation {
    /// Prometheus could not be queried (connection refused, timeout, query error).
    Unavailable { reason: String },
    Window {
        canary: VersionWindow,
        stable: VersionWindow,
    },
}

/// The result of one custom PromQL check (`spec.analysis.custom[*]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomObservation {
    pub name: String,
    /// `Ok(Some(v))`: a value; `Ok(None)`: the query returned no data (inconclusive);
    /// `Err(reason)`: the query failed (Prometheus unavailable).
    pub value: Result<Option<f64>, String>,
}

/// What the pod watcher saw of the canary workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryHealth {
    Healthy,
    /// Not known (no pods yet, or the watcher is not running, e.g. in local mode).
    Unknown,
    /// A canary pod was OOMKilled or is in CrashLoopBackOff: roll back at once.
    Crashing {
        pod: String,
        /// `OOMKilled` or `CrashLoopBackOff`.
        reason: String,
    },
}

/// A one-shot request from an operator (CLI or annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualAction {
    /// Skip the remaining stages and go to 100%.
    Promote,
    /// Roll back to 0% now.
    Abort,
    /// Hold the current weight and freeze the stage timer.
    Pause,
    /// Undo `Pause`.
    Resume,
}

impl ManualAction {
    pub const ALL: [ManualAction; 4] = [
        ManualAction::Promote,
        ManualAction::Abort,
        ManualAction::Pause,
        ManualAction::Resume,
    ];

    /// The action's name on the command line, in the request annotation and request file.
    /// The one mapping between actions and strings: [`ManualAction::parse`] reads it back.
    pub const fn as_str(self) -> &'static str {
        match self {
            ManualAction::Promote => "promote",
            ManualAction::Abort => "abort",
            ManualAction::Pause => "pause",
            ManualAction::Resume => "resume",
        }
    }

    /// The action named `name` (exactly as [`ManualAction::as_str`] writes it).
    pub fn parse(name: &str) -> Option<ManualAction> {
        ManualAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for ManualAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the engine is told at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    pub metrics: MetricsObservation,
    pub custom: Vec<CustomObservation>,
    /// The pods' resource figures (`spec.analysis.resources`); `NotQueried` without them.
    pub resources: crate::resources::ResourceObservation,
    pub canary_health: CanaryHealth,
    pub manual: Option<ManualAction>,
}

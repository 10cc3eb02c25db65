//! What the world looked like at one analysis tick: the decision engine's input besides
//! the spec, the stored status and the clock. The I/O side (Prometheus, pod watcher,
//! CLI) fills these in; the engine never does I/O itself.

mod resources;

pub use resources::{PodUsage, ResourceObservation};

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
    /// Per user shard (index = the `shard` label, contract 4's
    /// `stickycanary_shard_requests_total`): this version's requests, 5xx and slow requests.
    /// Empty when the filter exports no shard series (an older filter): the analysis then
    /// falls back to request-level statistics. Zeros, not empty, when it exports them but
    /// the window saw no traffic.
    pub shards: Vec<ShardCounts>,
}

/// One shard's traffic on one version over a window. Each shard holds a random slice of the
/// users (hash bits independent of the version choice), so shards are independent units of
/// evidence even when one user produces many errors: all of that user's requests land in
/// one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShardCounts {
    pub requests: f64,
    /// `outcome="error"`: 5xx responses.
    pub errors: f64,
    /// `outcome="slow"`: non-5xx responses slower than the filter's `slowThresholdMs`.
    pub slow: f64,
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
    /// Run the last failed revision again, with a new cohort.
    Retry,
}

/// Where a Deployment (or, in local mode, a hook) stands on the revision a run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadState {
    /// Not running the revision and not asked to: scaled to 0, template not copied yet,
    /// or (local mode) its hook has not run for this revision since the loop started.
    Stopped,
    /// Asked to; rolling out (pods not all updated and ready yet).
    Starting,
    /// Every desired replica is updated to the revision and available.
    Ready,
    /// The rollout failed (a hook exited non-zero, a Deployment reported
    /// `ProgressDeadlineExceeded`).
    Failed(String),
}

/// The release lifecycle's view of the two workloads. `None` (see `engine::decide_release`) means
/// there is no revision source: the rollout behaves as a single run (no lifecycle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseObservation {
    /// The rollout key (the per-run salt is `<rolloutKey>-<revision>`).
    pub rollout_key: String,
    /// The canary's revision now (hash of its pod template, or `spec.canary.revision`).
    pub canary_revision: String,
    /// The revision stable's pod template has now, read every tick (in local mode: what
    /// `--on-promote` last made stable serve, unknown after a restart). Every decision about
    /// reverts, promotion and drift uses this observed value, never a remembered one.
    pub stable_revision: Option<String>,
    /// The canary workload on `canary_revision`.
    pub canary: WorkloadState,
    /// The stable workload on the run's revision (`status.canaryRevision`), from its rollout
    /// status fields (`observedGeneration`, `updatedReplicas`, `availableReplicas`...).
    pub stable: WorkloadState,
    /// What the controller recorded on the Deployments themselves, so that a wiped status
    /// loses nothing it needs.
    pub recorded: RecordedRevisions,
    /// Why the two workloads cannot run a release lifecycle together (selectors on
    /// different label keys, or pods the subsets cannot tell apart), naming the field: the
    /// rollout holds in `InvalidSpec` until it is fixed.
    pub problem: Option<String>,
}

/// Revisions the controller wrote on the Deployments (annotations), re-read every tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedRevisions {
    /// The revision the controller last copied onto stable (`stickycanary.dev/revision` on
    /// the stable Deployment). Stable's template on another revision has drifted.
    pub promoted: Option<String>,
    /// The canary revision whose run last failed (`stickycanary.dev/failed-revision` on the
    /// generated stable Deployment): not run again on the same cohort without a `retry`.
    pub failed: Option<String>,
}

impl ManualAction {
    pub const ALL: [ManualAction; 5] = [
        ManualAction::Promote,
        ManualAction::Abort,
        ManualAction::Pause,
        ManualAction::Resume,
        ManualAction::Retry,
    ];

    /// The action's name on the command line, in the request annotation and request file.
    /// The one mapping between actions and strings: [`ManualAction::parse`] reads it back.
    pub const fn as_str(self) -> &'static str {
        match self {
            ManualAction::Promote => "promote",
            ManualAction::Abort => "abort",
            ManualAction::Pause => "pause",
            ManualAction::Resume => "resume",
            ManualAction::Retry => "retry",
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
    pub resources: ResourceObservation,
    pub canary_health: CanaryHealth,
    pub manual: Option<ManualAction>,
    /// Stable's per-shard counts over the hour up to now, read only when the engine asks
    /// for them (`engine::reads_stable_before_run`: once per run); `None` when not read or
    /// when the query failed (it is asked again at the next tick).
    pub stable_before_run: Option<Vec<ShardCounts>>,
}

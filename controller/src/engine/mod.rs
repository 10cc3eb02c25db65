//! The decision engine: `(spec, status, now, observations) -> (new status, actions)`.
//!
//! Pure and synchronous: no clock, no I/O, no randomness. The controller and local mode
//! gather [`Observations`], call [`decide`], apply the actions (set the weight, raise the
//! Events, post the notifications) and store the returned status. Because every timer lives
//! in the status, a restarted controller continues exactly where the last one stopped.
//!
//! Rules, in the order they are applied each tick:
//! 1. Without a revision source, `Promoted` and `RolledBack` are final: nothing happens.
//!    With one ([`decide_release`]) they wait for the next revision instead.
//! 2. A manual action the phase cannot take is refused with an `ActionRefused` Event
//!    (`engine/manual.rs`). A manual abort, then a crashing canary pod, roll back at once.
//! 3. An invalid spec moves to `InvalidSpec` and holds the weight until the spec is fixed;
//!    otherwise a manual promote goes to 100%.
//! 4. Pause (manual or `spec.paused`) holds the weight and freezes the stage timer; resume
//!    moves the stage start forward by the time spent paused. Checks keep guarding a
//!    paused rollout: a breach still rolls back. A run paused before its first weight
//!    (`ScalingUp`) resumes its scale-up.
//! 5. `Pending` starts the first stage.
//! 6. Each check gives Pass, Fail, Inconclusive or Unavailable. A window with fewer than
//!    `minRequests` canary requests makes every check Inconclusive. A Fail that lasts
//!    uninterrupted for the check's `for` rolls back (a Pass ends the breach; Inconclusive
//!    and Unavailable neither extend nor end it).
//! 7. Unavailable metrics hold the stage; after `unavailableGrace` the rollout fails safe.
//! 8. A stage advances when its duration has passed and every check passed in the latest
//!    window. The last stage promotes the same way (at once if it has no duration).
//!
//! With a revision source ([`decide_release`]), the release lifecycle wraps these rules
//! (see [`release`]): a new canary revision resets the run and starts a new one (weight 0
//! until the canary is ready), a promotion rolls stable out and hands users back to it, a
//! rollback scales the canary down after a drain delay; terminal phases wait for the next
//! revision instead of ending the rollout.

pub mod approve;
pub mod checks;
mod comparative;
pub mod gates;
mod judge;
mod lifecycle;
mod manual;
mod observed;
mod record;
pub mod release;
pub mod resources;
pub mod schedule;
pub mod stage_gate;
pub mod stages;

pub use comparative::reads_stable_before_run;
pub use k8s_openapi::jiff::Timestamp;

use self::checks::Check;
use self::lifecycle::{apply_pause_intent, promote, roll_back, spec_is_usable, start};
use self::record::Tick;
use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::observation::{CanaryHealth, ManualAction, Observations, ReleaseObservation};

/// Event reasons (CamelCase, as Kubernetes Events expect).
pub mod reasons {
    pub const STAGE_ADVANCED: &str = "StageAdvanced";
    pub const INCONCLUSIVE: &str = "Inconclusive";
    pub const ROLLING_BACK: &str = "RollingBack";
    pub const PROMOTED: &str = "Promoted";
    pub const PAUSED: &str = "Paused";
    pub const RESUMED: &str = "Resumed";
    pub const PROMETHEUS_UNAVAILABLE: &str = "PrometheusUnavailable";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const WAITING: &str = "WaitingForRelease";
    pub const INITIALIZING: &str = "Initializing";
    pub const INITIALIZED: &str = "Initialized";
    pub const RELEASE_STARTED: &str = "ReleaseStarted";
    pub const RESTARTED: &str = "RunRestarted";
    pub const REVERTED: &str = "Reverted";
    pub const PROMOTING: &str = "Promoting";
    pub const FINALISING: &str = "Finalising";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const PROMOTION_FAILED: &str = "PromotionFailed";
    pub const SCALED_DOWN: &str = "ScaledDown";
    pub const RETRY_IGNORED: &str = "RetryIgnored";
    /// A manual action the rollout's phase cannot take (Warning): it is not carried out.
    pub const ACTION_REFUSED: &str = "ActionRefused";
    pub const GATE_WAITING: &str = "GateWaiting";
    pub const GATE_OPENED: &str = "GateOpened";
    pub const STABLE_DRIFTED: &str = "StableDrifted";
}

/// Something the caller must do to carry out a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the rollout's weight (percent of users on canary) on the target.
    SetWeight(f64),
    /// Raise a Kubernetes Event on the CanaryRollout.
    Event {
        reason: &'static str,
        message: String,
        warning: bool,
    },
    /// Post this line to `spec.notification.webhook` (only emitted when one is set).
    Notify(String),
    /// Set the weight and the rollout's cohort salt in one write (a run's first weight,
    /// only ever leaving 0, so no user changes cohort while on the canary).
    SetWeightWithSalt { weight: f64, salt: String },
    /// Bring the canary up on `revision` (replicas, KEDA pause lifted, `--on-scale-up`).
    ScaleCanaryUp { revision: String },
    /// Stop the canary (replicas 0, KEDA paused at 0, `--on-scale-down`).
    ScaleCanaryDown { revision: String },
    /// Roll `revision` out on stable (copy the canary's pod template, `--on-promote`).
    PromoteStable { revision: String },
    /// Set the rollout's `slowThresholdMs` in the filter's config: the comparative latency
    /// test's threshold for this run, so that the user shards count its slow requests.
    SetSlowThreshold(f64),
    /// Record on the canary workload that `revision`'s run failed (best effort; the
    /// `stickycanary.dev/failed-revision` annotation), so a wiped status does not run it
    /// again on the same cohort.
    RecordFailedRevision { revision: String },
}

impl Action {
    /// The weight this action writes, if it writes one.
    pub fn weight(&self) -> Option<f64> {
        match self {
            Action::SetWeight(weight) | Action::SetWeightWithSalt { weight, .. } => Some(*weight),
            _ => None,
        }
    }

    /// The filter `slowThresholdMs` this action writes, if it writes one.
    pub fn slow_threshold_ms(&self) -> Option<f64> {
        match self {
            Action::SetSlowThreshold(ms) => Some(*ms),
            _ => None,
        }
    }
}

/// The outcome of one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: CanaryRolloutStatus,
    pub actions: Vec<Action>,
}

impl Decision {
    /// The weight this decision sets, if it changes it.
    pub fn new_weight(&self) -> Option<f64> {
        self.actions.iter().rev().find_map(Action::weight)
    }

    /// The Event reasons raised, in order.
    pub fn event_reasons(&self) -> Vec<&'static str> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Event { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

/// Decide one tick with the checks the spec asks for.
pub fn decide(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
) -> Decision {
    let checks = checks::for_spec(&spec.analysis);
    decide_with(spec, status, now, observations, &checks)
}

/// Decide one tick with the release lifecycle: `release` is what the canary and stable
/// workloads look like now (`None`: no revision source, the same as [`decide`]).
pub fn decide_release(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
    release: Option<&ReleaseObservation>,
) -> Decision {
    decide_gated(
        spec,
        status,
        now,
        observations,
        release,
        &gates::GateInput::default(),
    )
}

/// [`decide_release`] with the answers of this tick's gate webhooks (see [`gates`]):
/// `rollout` webhooks join the checks, gates hold where they stand in the run.
pub fn decide_gated(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
    release: Option<&ReleaseObservation>,
    gate_input: &gates::GateInput,
) -> Decision {
    let mut checks = checks::for_spec(&spec.analysis);
    checks.extend(gates::rollout_checks(spec, gate_input));
    run_with_gates(
        spec,
        status,
        now,
        observations,
        release,
        &checks,
        gate_input.clone(),
    )
}

/// Decide one tick with an explicit list of checks (the extension point for new kinds of
/// analysis, and for simulations that compare check sets on the same traffic).
pub fn decide_with(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
    checks: &[Box<dyn Check>],
) -> Decision {
    run_with_gates(
        spec,
        status,
        now,
        observations,
        None,
        checks,
        gates::GateInput::default(),
    )
}

fn run_with_gates(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
    release: Option<&ReleaseObservation>,
    checks: &[Box<dyn Check>],
    gate_input: gates::GateInput,
) -> Decision {
    let mut tick = Tick {
        status: status.clone(),
        actions: Vec::new(),
        now,
        notify: spec.notification.is_some(),
        spec_error: None,
        scale_down_delay: release.map(|_| spec.scale_down_delay),
        finalize: release.is_some() && spec.promotion.finalize,
        gates: gate_input,
        stable_drift: None,
    };
    step(spec, observations, release, checks, &mut tick);
    if release.is_some() {
        observed::after(status, &mut tick);
    }
    gates::finish(&mut tick);
    tick.refresh_conditions();
    Decision {
        status: tick.status,
        actions: tick.actions,
    }
}

fn step(
    spec: &CanaryRolloutSpec,
    observations: &Observations,
    release: Option<&ReleaseObservation>,
    checks: &[Box<dyn Check>],
    tick: &mut Tick,
) {
    if let Some(release) = release {
        observed::observe(release, tick);
        // These two decide the tick before any manual action could be taken: one asked for
        // is refused with an Event, never dropped.
        if observed::undo_promotion(release, tick) {
            let why = "the canary was reverted, and the promotion is being undone";
            manual::refuse(observations.manual, why, tick);
            return;
        }
        // No user on the canary: nothing to roll back, so no run starts on workloads that
        // cannot run one.
        if tick.status.weight == 0.0 && !observed::workloads_are_usable(release, tick) {
            let why = manual::held_by_workloads(release.problem.as_deref(), tick.status.weight);
            manual::refuse(observations.manual, &why, tick);
            return;
        }
        if release::before(spec, observations.manual, release, tick) {
            return;
        }
    }
    // A manual action the phase cannot take is refused with an Event, never dropped.
    let manual = manual::admit(spec, observations.manual, tick);
    if tick.status.phase.is_terminal() {
        return;
    }
    // Abort and a crashing canary roll back whatever else is going on, even with a spec
    // that no longer validates: getting users off a broken canary needs no stages.
    // (An abort in Promoting or Finalising was refused above: stable is taking over.)
    if manual == Some(ManualAction::Abort) {
        roll_back(
            tick,
            "aborted".to_string(),
            "aborted by an operator".to_string(),
        );
        return;
    }
    // Promoting and Finalising are past the analysis: stable is taking over.
    let handing_over = matches!(tick.status.phase, Phase::Promoting | Phase::Finalising);
    if let (CanaryHealth::Crashing { pod, reason }, false) =
        (&observations.canary_health, handing_over)
    {
        roll_back(
            tick,
            format!("crash:{reason}"),
            format!("canary pod {pod} is {reason}"),
        );
        return;
    }
    if !handing_over && gates::rollback_requested(spec, tick) {
        return;
    }
    if let Some(release) = release {
        if !observed::workloads_are_usable(release, tick) {
            let why = manual::held_by_workloads(release.problem.as_deref(), tick.status.weight);
            manual::refuse(manual, &why, tick);
            return;
        }
    }
    if !spec_is_usable(spec, tick) {
        return;
    }
    if manual == Some(ManualAction::Promote) {
        promote(
            tick,
            spec,
            "manual-promote",
            "promoted by an operator".to_string(),
        );
        return;
    }
    // Pause comes before the lifecycle's own phases, so that it holds a run from its first
    // tick: a paused ScalingUp never writes the first weight.
    apply_pause_intent(spec, manual, tick);
    if let Some(release) = release {
        if release::during(spec, release, tick) {
            return;
        }
    }
    if tick.status.phase == Phase::Pending {
        start(spec, tick);
        return;
    }
    if tick.status.stage_started_at.is_none() {
        // Paused before the first stage: there is no canary traffic to judge.
        return;
    }
    gates::track_window(spec, tick);
    judge::analyse(spec, observations, checks, tick);
}

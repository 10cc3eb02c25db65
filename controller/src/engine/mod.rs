//! The decision engine: `(spec, status, now, observations) -> (new status, actions)`.
//!
//! Pure and synchronous: no clock, no I/O, no randomness. The controller and local mode
//! gather [`Observations`], call [`decide`], apply the actions (set the weight, raise the
//! Events, post the notifications) and store the returned status. Because every timer lives
//! in the status, a restarted controller continues exactly where the last one stopped.
//!
//! Rules, in the order they are applied each tick:
//! 1. `Promoted` and `RolledBack` are final: nothing happens.
//! 2. An invalid spec moves to `Failed` and holds the weight until the spec is fixed.
//! 3. A manual abort, then a crashing canary pod, roll back at once; a manual promote goes
//!    to 100%.
//! 4. Pause (manual or `spec.paused`) holds the weight and freezes the stage timer; resume
//!    moves the stage start forward by the time spent paused. Checks keep guarding a
//!    paused rollout: a breach still rolls back.
//! 5. `Pending` starts the first stage.
//! 6. Each check gives Pass, Fail, Inconclusive or Unavailable. A window with fewer than
//!    `minRequests` canary requests makes every check Inconclusive. A Fail that lasts
//!    uninterrupted for the check's `for` rolls back (a Pass ends the breach; Inconclusive
//!    and Unavailable neither extend nor end it).
//! 7. Unavailable metrics hold the stage; after `unavailableGrace` the rollout fails safe.
//! 8. A stage advances when its duration has passed and every check passed in the latest
//!    window. The last stage promotes the same way (at once if it has no duration).

pub mod checks;
mod record;
pub mod stages;

use std::collections::BTreeSet;

pub use k8s_openapi::jiff::Timestamp;

use self::checks::{Check, CheckInput, Evaluation, Outcome};
use self::record::Tick;
use crate::crd::{
    AnalysisRecord, CanaryRolloutSpec, CanaryRolloutStatus, CheckResult, Phase, Verdict,
    VersionSummary,
};
use crate::duration::Duration;
use crate::observation::{
    CanaryHealth, ManualAction, MetricsObservation, Observations, VersionWindow,
};

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
        self.actions.iter().rev().find_map(|action| match action {
            Action::SetWeight(weight) => Some(*weight),
            _ => None,
        })
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

/// Decide one tick with an explicit list of checks (the extension point for new kinds of
/// analysis, and for simulations that compare check sets on the same traffic).
pub fn decide_with(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: Timestamp,
    observations: &Observations,
    checks: &[Box<dyn Check>],
) -> Decision {
    let mut tick = Tick {
        status: status.clone(),
        actions: Vec::new(),
        now,
        notify: spec.notification.is_some(),
        spec_error: None,
    };
    step(spec, observations, checks, &mut tick);
    tick.refresh_conditions();
    Decision {
        status: tick.status,
        actions: tick.actions,
    }
}

fn step(
    spec: &CanaryRolloutSpec,
    observations: &Observations,
    checks: &[Box<dyn Check>],
    tick: &mut Tick,
) {
    if tick.status.phase.is_terminal() {
        return;
    }
    if !spec_is_usable(spec, tick) {
        return;
    }
    if observations.manual == Some(ManualAction::Abort) {
        roll_back(
            tick,
            "aborted".to_string(),
            "aborted by an operator".to_string(),
        );
        return;
    }
    if let CanaryHealth::Crashing { pod, reason } = &observations.canary_health {
        roll_back(
            tick,
            format!("crash:{reason}"),
            format!("canary pod {pod} is {reason}"),
        );
        return;
    }
    if observations.manual == Some(ManualAction::Promote) {
        promote(
            tick,
            spec,
            "manual-promote",
            "promoted by an operator".to_string(),
        );
        return;
    }
    apply_pause_intent(spec, observations.manual, tick);
    if tick.status.phase == Phase::Pending {
        start(spec, tick);
        return;
    }
    if tick.status.stage_started_at.is_none() {
        // Paused before the first stage: there is no canary traffic to judge.
        return;
    }
    analyse(spec, observations, checks, tick);
}

/// Validates the spec; moves to `Failed` (holding the weight) while it is invalid, and
/// back to where it was once it is fixed.
fn spec_is_usable(spec: &CanaryRolloutSpec, tick: &mut Tick) -> bool {
    if let Err(errors) = crate::validate::validate_spec(spec) {
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if tick.status.phase != Phase::Failed {
            tick.transition(Phase::Failed, "invalid-spec");
            let message = format!("holding weight {}%: {text}", tick.status.weight);
            tick.event(reasons::INVALID_SPEC, message, true);
        }
        tick.spec_error = Some(text);
        return false;
    }
    if tick.status.phase == Phase::Failed {
        let status = &mut tick.status;
        status.stage_index = stages::clamp_index(spec, status.stage_index);
        let to = if status.paused_at.is_some() {
            Phase::Paused
        } else if status.stage_started_at.is_some() {
            Phase::Progressing
        } else {
            Phase::Pending
        };
        tick.transition(to, "spec-fixed");
        let message = format!("the spec is valid again; continuing as {to}");
        tick.event(reasons::RESUMED, message, false);
    }
    true
}

fn apply_pause_intent(spec: &CanaryRolloutSpec, manual: Option<ManualAction>, tick: &mut Tick) {
    match manual {
        Some(ManualAction::Pause) => tick.status.manual_pause = true,
        Some(ManualAction::Resume) => tick.status.manual_pause = false,
        _ => {}
    }
    let want_paused = spec.paused || tick.status.manual_pause;
    let phase = tick.status.phase;
    if want_paused && phase != Phase::Paused {
        tick.status.paused_at = Some(tick.now_time());
        tick.transition(Phase::Paused, "paused");
        let why = if spec.paused {
            "spec.paused is true"
        } else {
            "paused by an operator"
        };
        let message = format!(
            "holding weight {}% with the stage timer frozen: {why}",
            tick.status.weight
        );
        tick.event(reasons::PAUSED, message, false);
    } else if !want_paused && phase == Phase::Paused {
        let now = tick.now;
        let status = &mut tick.status;
        if let (Some(started), Some(paused_at)) = (&status.stage_started_at, &status.paused_at) {
            // Freeze the stage clock: the paused span does not count toward the stage.
            status.stage_started_at =
                Some(stages::shifted(started, stages::elapsed(now, paused_at)));
        }
        let paused_for = status
            .paused_at
            .take()
            .map(|paused_at| stages::elapsed(now, &paused_at))
            .unwrap_or_default();
        let to = if status.stage_started_at.is_some() {
            Phase::Progressing
        } else {
            Phase::Pending
        };
        tick.transition(to, "resumed");
        let message = format!(
            "resumed after {paused_for} paused at weight {}%",
            tick.status.weight
        );
        tick.event(reasons::RESUMED, message, false);
    } else if manual == Some(ManualAction::Resume) && spec.paused {
        let message = "resume ignored: spec.paused is true (set it to false)".to_string();
        tick.event(reasons::PAUSED, message, true);
    }
}

fn start(spec: &CanaryRolloutSpec, tick: &mut Tick) {
    let status = &mut tick.status;
    status.breach_started_at.clear();
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.rollback_reason = None;
    enter_stage(spec, tick, 0, "started");
}

/// Make `index` the current stage: set its weight and restart the stage clock.
fn enter_stage(spec: &CanaryRolloutSpec, tick: &mut Tick, index: u32, reason: &str) {
    let Some(stage) = stages::stage(spec, index) else {
        return;
    };
    // Stages only go up (validated), but never let a mid-rollout spec edit lower the weight.
    let weight = stage.weight.max(tick.status.weight);
    tick.status.stage_index = index;
    tick.status.stage_started_at = Some(tick.now_time());
    tick.status.inconclusive_since = None;
    if stages::is_last(spec, index) && stages::hold_for(stage).is_zero() {
        let message = format!("reached the last stage; canary promoted to {weight}%");
        promote(tick, spec, "promoted", message);
        return;
    }
    tick.set_weight(weight);
    tick.transition(Phase::Progressing, reason);
    let message = format!(
        "{}: weight set to {weight}% for {}",
        stages::describe(spec, index, weight),
        stages::hold_for(stage)
    );
    tick.event(reasons::STAGE_ADVANCED, message, false);
}

fn promote(tick: &mut Tick, spec: &CanaryRolloutSpec, reason: &str, message: String) {
    if tick.status.weight != 100.0 {
        tick.set_weight(100.0);
    }
    let status = &mut tick.status;
    status.stage_index = stages::clamp_index(spec, u32::MAX);
    status.paused_at = None;
    status.manual_pause = false;
    status.inconclusive_since = None;
    status.prometheus_unavailable_since = None;
    status.breach_started_at.clear();
    tick.transition(Phase::Promoted, reason);
    tick.event(reasons::PROMOTED, message, false);
}

fn roll_back(tick: &mut Tick, reason: String, detail: String) {
    tick.set_weight(0.0);
    let status = &mut tick.status;
    status.rollback_reason = Some(reason.clone());
    status.paused_at = None;
    status.manual_pause = false;
    status.inconclusive_since = None;
    tick.transition(Phase::RolledBack, &reason);
    let message = format!("rolling back to 0% ({reason}): {detail}");
    tick.event(reasons::ROLLING_BACK, message, true);
}

/// One evaluated check.
struct Judged {
    name: String,
    breach_for: Duration,
    evaluation: Evaluation,
}

fn analyse(
    spec: &CanaryRolloutSpec,
    observations: &Observations,
    checks: &[Box<dyn Check>],
    tick: &mut Tick,
) {
    let analysis = &spec.analysis;
    let input = CheckInput {
        observations,
        analysis,
    };
    let mut judged: Vec<Judged> = checks
        .iter()
        .map(|check| Judged {
            name: check.name(),
            breach_for: check.breach_for(),
            evaluation: check.evaluate(&input),
        })
        .collect();

    let thin_window = match &observations.metrics {
        MetricsObservation::Window { canary, .. }
            if canary.requests < analysis.min_requests as f64 =>
        {
            Some(format!(
                "thin window: {} canary requests < minRequests {}",
                canary.requests, analysis.min_requests
            ))
        }
        _ => None,
    };
    if let Some(thin) = &thin_window {
        for check in &mut judged {
            if check.evaluation.outcome != Outcome::Unavailable {
                check.evaluation.outcome = Outcome::Inconclusive;
                check.evaluation.message = format!("{thin} ({})", check.evaluation.message);
            }
        }
    }
    if let MetricsObservation::Window { canary, stable } = &observations.metrics {
        tick.status.last_analysis = Some(AnalysisRecord {
            at: tick.now_time(),
            canary: summary(canary),
            stable: summary(stable),
            checks: judged.iter().map(check_result).collect(),
        });
    }

    if let Some((reason, detail)) = track_breaches(&judged, tick) {
        roll_back(tick, reason, detail);
        return;
    }
    let unavailable = match &observations.metrics {
        MetricsObservation::Unavailable { reason } => Some(reason.clone()),
        MetricsObservation::Window { .. } => judged
            .iter()
            .find(|check| check.evaluation.outcome == Outcome::Unavailable)
            .map(|check| format!("{}: {}", check.name, check.evaluation.message)),
    };
    if let Some(reason) = unavailable {
        if hold_while_unavailable(spec, tick, reason) {
            return;
        }
    } else {
        tick.status.prometheus_unavailable_since = None;
        track_inconclusive(spec, &judged, thin_window, tick);
    }
    advance_if_passed(spec, &judged, tick);
}

/// Starts, keeps or ends each check's breach timer; returns the rollback reason and
/// detail of the first check whose breach has lasted its `for`.
fn track_breaches(judged: &[Judged], tick: &mut Tick) -> Option<(String, String)> {
    let now = tick.now_time();
    let breaches = &mut tick.status.breach_started_at;
    let names: BTreeSet<&str> = judged.iter().map(|check| check.name.as_str()).collect();
    breaches.retain(|name, _| names.contains(name.as_str()));
    let mut tripped = None;
    for check in judged {
        match check.evaluation.outcome {
            Outcome::Fail => {
                let started = breaches
                    .entry(check.name.clone())
                    .or_insert_with(|| now.clone());
                let lasted = stages::elapsed(tick.now, started);
                if lasted >= check.breach_for && tripped.is_none() {
                    let detail = format!(
                        "{} for {lasted} (limit {})",
                        check.evaluation.message, check.breach_for
                    );
                    tripped = Some((check.name.clone(), detail));
                }
            }
            Outcome::Pass => {
                breaches.remove(&check.name);
            }
            Outcome::Inconclusive | Outcome::Unavailable => {}
        }
    }
    tripped
}

/// Records how long metrics have been unavailable; rolls back once the grace is over.
/// Returns true when it rolled back.
fn hold_while_unavailable(spec: &CanaryRolloutSpec, tick: &mut Tick, reason: String) -> bool {
    let grace = spec.analysis.unavailable_grace;
    let since = match &tick.status.prometheus_unavailable_since {
        Some(since) => since.clone(),
        None => {
            let now = tick.now_time();
            tick.status.prometheus_unavailable_since = Some(now.clone());
            let message = format!(
                "holding weight {}%: {reason}; rolling back if it lasts {grace}",
                tick.status.weight
            );
            tick.event(reasons::PROMETHEUS_UNAVAILABLE, message, true);
            now
        }
    };
    let lasted = stages::elapsed(tick.now, &since);
    if lasted >= grace {
        let detail = format!("metrics unavailable for {lasted} (grace {grace}): {reason}");
        roll_back(tick, "prometheus-unavailable".to_string(), detail);
        return true;
    }
    false
}

/// One Inconclusive Event per streak of inconclusive windows, not one per interval.
fn track_inconclusive(
    spec: &CanaryRolloutSpec,
    judged: &[Judged],
    thin_window: Option<String>,
    tick: &mut Tick,
) {
    let first_inconclusive = judged
        .iter()
        .find(|check| check.evaluation.outcome == Outcome::Inconclusive);
    let Some(check) = first_inconclusive else {
        tick.status.inconclusive_since = None;
        return;
    };
    if tick.status.inconclusive_since.is_some() {
        return;
    }
    tick.status.inconclusive_since = Some(tick.now_time());
    let why =
        thin_window.unwrap_or_else(|| format!("{}: {}", check.name, check.evaluation.message));
    let status = &tick.status;
    let message = format!(
        "holding {}: {why}",
        stages::describe(spec, status.stage_index, status.weight)
    );
    tick.event(reasons::INCONCLUSIVE, message, false);
}

fn advance_if_passed(spec: &CanaryRolloutSpec, judged: &[Judged], tick: &mut Tick) {
    if tick.status.phase != Phase::Progressing {
        return;
    }
    let index = stages::clamp_index(spec, tick.status.stage_index);
    let Some(stage) = stages::stage(spec, index) else {
        return;
    };
    if stage.weight > tick.status.weight {
        // The target lags the stage (e.g. the stages were edited): catch up, never down.
        tick.set_weight(stage.weight);
    }
    let all_passed = judged
        .iter()
        .all(|check| check.evaluation.outcome == Outcome::Pass);
    let Some(started) = &tick.status.stage_started_at else {
        return;
    };
    let hold_for = stages::hold_for(stage);
    if !all_passed || stages::elapsed(tick.now, started) < hold_for {
        return;
    }
    if stages::is_last(spec, index) {
        let message = format!(
            "{} passed for {hold_for}; canary promoted to 100%",
            stages::describe(spec, index, tick.status.weight)
        );
        promote(tick, spec, "promoted", message);
    } else {
        enter_stage(spec, tick, index + 1, "stage-advanced");
    }
}

fn summary(window: &VersionWindow) -> VersionSummary {
    VersionSummary {
        requests: window.requests,
        error_rate_percent: window.error_rate_percent(),
        p99_ms: window.p99_ms,
    }
}

fn check_result(check: &Judged) -> CheckResult {
    let evaluation = &check.evaluation;
    CheckResult {
        name: check.name.clone(),
        verdict: match evaluation.outcome {
            Outcome::Pass => Verdict::Pass,
            Outcome::Fail => Verdict::Fail,
            Outcome::Inconclusive | Outcome::Unavailable => Verdict::Inconclusive,
        },
        value: evaluation.value,
        threshold: evaluation.threshold,
        message: evaluation.message.clone(),
    }
}

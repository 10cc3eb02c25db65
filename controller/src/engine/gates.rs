//! What gate answers mean to a run (contract 5, "Gates").
//!
//! The I/O side asks [`due`] which webhooks to call before a tick, calls them, and hands
//! the answers in as a [`GateInput`]. The engine then holds at three points:
//!
//! - **scale-up** (a new run's canary): `confirm-rollout` and the schedule;
//! - **start** (the first weight): `confirm-rollout`, `pre-rollout` (a failed check: past
//!   its `for` the run rolls back), `confirm-traffic-increase`, the schedule;
//! - **raise** (every later weight increase): `confirm-traffic-increase`, plus
//!   `confirm-promotion` into the last stage, and the schedule.
//!
//! A hold is recorded once in `status.gate` with one Event; the wait's reason may change
//! (403, then a timeout) without another Event. Holding never stops the analysis, so a
//! breach, a crash, an abort or a `rollback` webhook still roll back: gates and windows
//! only ever keep a canary from going further. While a window is closed mid-stage the
//! stage clock stops, as with `pause`.

use super::approve::run_revision;
use super::record::Tick;
use super::schedule::{self, WindowState};
use super::{lifecycle::roll_back, reasons, stages};
use crate::crd::{ApprovalRecord, GateWait, Webhook, WebhookType};
use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::duration::Duration;
use crate::observation::{ReleaseObservation, WorkloadState};

/// `status.gate.gate` of a wait for a rollout window.
pub const SCHEDULE: &str = "schedule";

/// The answers of this tick's webhook calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateInput {
    pub calls: Vec<WebhookCall>,
    /// Who the rollout is for `stickycanary approve`, so a manual gate's Event gives the
    /// command to run (`None`, e.g. in simulations: the Event names no command).
    pub approve_target: Option<super::approve::ApproveTarget>,
}

impl GateInput {
    /// The answer of the webhook `name`, if it was called this tick.
    pub fn outcome(&self, name: &str) -> Option<&CallOutcome> {
        self.calls
            .iter()
            .find(|call| call.name == name)
            .map(|call| &call.outcome)
    }
}

/// One webhook call's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCall {
    pub name: String,
    pub kind: WebhookType,
    pub outcome: CallOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// A 2xx answer.
    Passed { status: u16 },
    /// Anything else. `summary` is the status code or what went wrong (`timeout after
    /// 10s`, `connection failed`); `body` the first 200 bytes of the answer. Neither ever
    /// holds the URL.
    Failed { summary: String, body: String },
}

impl CallOutcome {
    pub fn passed(&self) -> bool {
        matches!(self, CallOutcome::Passed { .. })
    }

    /// `403`, or `403: <body>` when there is a body.
    pub fn detail(&self) -> String {
        match self {
            CallOutcome::Passed { status } => status.to_string(),
            CallOutcome::Failed { summary, body } if body.is_empty() => summary.clone(),
            CallOutcome::Failed { summary, body } => format!("{summary}: {body}"),
        }
    }

    fn summary(&self) -> String {
        match self {
            CallOutcome::Passed { status } => status.to_string(),
            CallOutcome::Failed { summary, .. } => summary.clone(),
        }
    }
}

/// How long the current stage's clock has run at `now` (`None` before the first stage).
/// The clock stops while a rollout window is closed or a freeze lasts (`status.gate` is a
/// `schedule` wait): that span is taken off here, and given back to `stageStartedAt` for
/// good when the wait ends. Both live in the status, so a restart counts the same.
pub fn clock_elapsed(status: &CanaryRolloutStatus, now: jiff::Timestamp) -> Option<Duration> {
    let started = status.stage_started_at.as_ref()?;
    let ran = stages::elapsed(now, started);
    let stopped = status
        .gate
        .as_ref()
        .filter(|wait| wait.gate == SCHEDULE)
        .map(|wait| stages::elapsed(now, &wait.since).min(ran))
        .unwrap_or(Duration::ZERO);
    Some(Duration::from(
        ran.as_std().saturating_sub(stopped.as_std()),
    ))
}

/// The webhooks (with a `url`) of the types to call before this tick, in spec order.
pub fn due<'a>(
    spec: &'a CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    release: Option<&ReleaseObservation>,
    now: jiff::Timestamp,
) -> Vec<&'a Webhook> {
    let kinds = due_types(spec, status, release, now);
    spec.webhooks
        .iter()
        .filter(|webhook| webhook.url.is_some() && kinds.contains(&webhook.kind))
        .collect()
}

fn due_types(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    release: Option<&ReleaseObservation>,
    now: jiff::Timestamp,
) -> Vec<WebhookType> {
    use WebhookType::*;
    let new_run = release.is_some_and(|release| {
        let revision = Some(release.canary_revision.as_str());
        status.canary_revision.as_deref() != revision
            && release
                .stable_revision
                .as_deref()
                .or(status.stable_revision.as_deref())
                != revision
    });
    if new_run {
        return vec![ConfirmRollout];
    }
    match status.phase {
        Phase::ScalingUp => match release.map(|r| &r.canary) {
            Some(WorkloadState::Ready) => starting(spec),
            _ => vec![ConfirmRollout],
        },
        Phase::Pending if release.is_none() => starting(spec),
        Phase::Progressing => {
            let mut kinds = vec![Rollout, Rollback];
            let index = status.stage_index;
            let elapsed = clock_elapsed(status, now).is_some_and(|ran| {
                stages::stage(spec, index).is_some_and(|stage| ran >= stages::hold_for(stage))
            });
            if elapsed && !stages::is_last(spec, index) {
                kinds.push(ConfirmTrafficIncrease);
                if stages::is_last(spec, index + 1) {
                    kinds.push(ConfirmPromotion);
                }
            }
            kinds
        }
        Phase::Paused if status.stage_started_at.is_some() => vec![Rollout, Rollback],
        _ => Vec::new(),
    }
}

/// The gates before a run's first weight (see [`Point::Start`]).
fn starting(spec: &CanaryRolloutSpec) -> Vec<WebhookType> {
    use WebhookType::*;
    let mut kinds = vec![ConfirmRollout, PreRollout, ConfirmTrafficIncrease];
    if stages::is_last(spec, 0) {
        kinds.push(ConfirmPromotion);
    }
    kinds
}

/// Where a run may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Point {
    /// Before a new run's canary is scaled up.
    ScaleUp,
    /// Before the first weight.
    Start,
    /// Before a later weight increase; `into_last`: into the last stage (100%).
    Raise { into_last: bool },
    /// Before the promotion after a last stage with a duration (the schedule only:
    /// `confirm-promotion` was asked before the last stage's 100%).
    Promote,
}

/// Whether the run must wait at `point` this tick. Records the wait (one Event per wait),
/// or its end; a failing `pre-rollout` past its `for` rolls the run back (then also true).
pub(super) fn hold(spec: &CanaryRolloutSpec, tick: &mut Tick, point: Point) -> bool {
    let revision = run_revision(&tick.status);
    let window = schedule::state(spec.schedule.as_ref(), tick.now);
    if !window.is_open() {
        wait_for_window(tick, &window, &revision);
        return true;
    }
    let kinds: &[WebhookType] = match point {
        Point::ScaleUp => &[WebhookType::ConfirmRollout],
        Point::Start => &[
            WebhookType::ConfirmRollout,
            WebhookType::PreRollout,
            WebhookType::ConfirmTrafficIncrease,
        ],
        Point::Raise { .. } => &[WebhookType::ConfirmTrafficIncrease],
        Point::Promote => &[],
    };
    let into_last = match point {
        Point::Start => stages::is_last(spec, 0),
        Point::Raise { into_last } => into_last,
        Point::ScaleUp | Point::Promote => false,
    };
    // The stage a weight increase enters: `confirm-traffic-increase` approvals name it.
    let entering = match point {
        Point::Start => Some(0),
        Point::Raise { .. } => Some(tick.status.stage_index.saturating_add(1)),
        Point::ScaleUp | Point::Promote => None,
    };
    let promotion = into_last.then_some(WebhookType::ConfirmPromotion);
    for kind in kinds.iter().copied().chain(promotion) {
        let wanted = approval_key(&tick.status, kind, &revision, entering);
        for webhook in spec.webhooks.iter().filter(|w| w.kind == kind) {
            if blocks(webhook, tick, &wanted) {
                return true;
            }
        }
    }
    opened(tick);
    false
}

/// What an approval of `kind` must name to open the gate now: the run's revision and
/// attempt (an approval does not outlive its run: a `retry` waits again), and for
/// `confirm-traffic-increase` the stage the raise enters (one approval, one raise).
pub(super) fn approval_key(
    status: &CanaryRolloutStatus,
    kind: WebhookType,
    revision: &str,
    entering: Option<u32>,
) -> ApprovalRecord {
    ApprovalRecord {
        revision: revision.to_string(),
        attempt: Some(status.attempt.max(1)),
        stage: entering.filter(|_| kind == WebhookType::ConfirmTrafficIncrease),
    }
}

/// Whether this gate webhook keeps the run waiting (recording why).
fn blocks(webhook: &Webhook, tick: &mut Tick, wanted: &ApprovalRecord) -> bool {
    let kind = webhook.kind;
    let revision = wanted.revision.as_str();
    if webhook.url.is_none() {
        // `approval: manual` (validation allows nothing else without a URL).
        if tick.status.approvals.approves(kind, wanted) {
            return false;
        }
        wait(
            tick,
            kind.as_str(),
            "manual approval".to_string(),
            revision,
            Some(wanted),
            None,
            None,
        );
        return true;
    }
    let Some(outcome) = tick.gates.outcome(&webhook.name).cloned() else {
        // Not asked this tick (the I/O side asks at the next one): hold, quietly.
        return true;
    };
    let breach_key = format!("webhook:{}", webhook.name);
    if outcome.passed() {
        tick.status.breach_started_at.remove(&breach_key);
        return false;
    }
    let reason = format!("webhook {}: {}", webhook.name, outcome.summary());
    if kind == WebhookType::PreRollout {
        // A failed check, not a wait: past its `for` the run rolls back.
        let now = tick.now_time();
        let started = tick
            .status
            .breach_started_at
            .entry(breach_key.clone())
            .or_insert(now)
            .clone();
        let lasted = stages::elapsed(tick.now, &started);
        if lasted >= webhook.breach_for() {
            let detail = format!(
                "pre-rollout webhook {} failing for {lasted} (limit {}): {}",
                webhook.name,
                webhook.breach_for(),
                outcome.detail()
            );
            tick.status.gate = None;
            roll_back(tick, breach_key, detail);
            return true;
        }
    }
    let detail = outcome.detail();
    wait(
        tick,
        kind.as_str(),
        reason,
        revision,
        None,
        None,
        Some(detail),
    );
    true
}

/// Records a wait at `gate` (`manual`: the approval that opens it). The first tick of a
/// wait raises one Event; later ticks only refresh the reason.
fn wait(
    tick: &mut Tick,
    gate: &str,
    reason: String,
    revision: &str,
    manual: Option<&ApprovalRecord>,
    next_window: Option<jiff::Timestamp>,
    detail: Option<String>,
) {
    let now = tick.now_time();
    let (attempt, stage) = manual.map_or((None, None), |key| (key.attempt, key.stage));
    if let Some(current) = &mut tick.status.gate {
        if current.gate == gate
            && current.revision == revision
            && current.attempt == attempt
            && current.stage == stage
        {
            current.reason = reason;
            current.next_window =
                next_window.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
            return;
        }
    }
    leave_schedule(tick);
    let manual = manual.is_some();
    let wait = GateWait {
        gate: gate.to_string(),
        reason,
        since: now,
        revision: revision.to_string(),
        manual,
        next_window: next_window.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        attempt,
        stage,
    };
    let mut message = format!("{} at weight {}%", wait.describe(), tick.status.weight);
    if manual {
        match &tick.gates.approve_target {
            Some(target) => message.push_str(&format!(
                "; approve with: {}",
                target.command(gate, revision)
            )),
            None => message.push_str(&format!(
                "; approve revision {revision} with stickycanary approve --gate {gate}"
            )),
        }
    } else if let Some(detail) = detail {
        message.push_str(&format!("; answer {detail}"));
    }
    tick.status.gate = Some(wait);
    tick.event(reasons::GATE_WAITING, message, false);
}

fn wait_for_window(tick: &mut Tick, window: &WindowState, revision: &str) {
    let next = match window {
        WindowState::Closed { next_open } => *next_open,
        _ => None,
    };
    wait(
        tick,
        SCHEDULE,
        window.describe(),
        revision,
        None,
        next,
        None,
    );
}

/// The wait (if any) is over: one Event, and a window's frozen stage time given back.
fn opened(tick: &mut Tick) {
    let Some(wait) = tick.status.gate.clone() else {
        return;
    };
    leave_schedule(tick);
    tick.status.gate = None;
    let waited = stages::elapsed(tick.now, &wait.since);
    let message = if wait.manual {
        format!(
            "{} approved for revision {} after {waited}",
            wait.gate, wait.revision
        )
    } else if wait.gate == SCHEDULE {
        format!("a rollout window is open after {waited} outside one")
    } else {
        format!("{} passed after {waited}", wait.gate)
    };
    tick.event(reasons::GATE_OPENED, message, false);
}

/// Leaving a schedule wait: the stage clock did not run while the window was closed.
fn leave_schedule(tick: &mut Tick) {
    let Some(wait) = &tick.status.gate else {
        return;
    };
    if wait.gate != SCHEDULE {
        return;
    }
    // Callers replace or clear the wait right after, so the span is given back once.
    let frozen = stages::elapsed(tick.now, &wait.since);
    if let Some(started) = &tick.status.stage_started_at {
        tick.status.stage_started_at = Some(stages::shifted(started, frozen));
    }
}

/// A pause begins during a schedule wait: the frozen span so far is given back to the stage
/// clock and the wait is dropped quietly (the pause now holds the clock; after a resume a
/// window still closed records a new wait).
pub(super) fn end_schedule_wait(tick: &mut Tick) {
    if tick
        .status
        .gate
        .as_ref()
        .is_some_and(|wait| wait.gate == SCHEDULE)
    {
        leave_schedule(tick);
        tick.status.gate = None;
    }
}

/// Each tick of a stage: a window that closes stops the stage clock (one Event); one
/// that opens again starts it. The analysis goes on either way.
pub(super) fn track_window(spec: &CanaryRolloutSpec, tick: &mut Tick) {
    if tick.status.phase != Phase::Progressing || tick.status.stage_started_at.is_none() {
        return;
    }
    let window = schedule::state(spec.schedule.as_ref(), tick.now);
    let revision = run_revision(&tick.status);
    if !window.is_open() {
        wait_for_window(tick, &window, &revision);
    } else if tick
        .status
        .gate
        .as_ref()
        .is_some_and(|wait| wait.gate == SCHEDULE)
    {
        opened(tick);
    }
}

/// A `rollback` webhook that answered 2xx rolls the run back now (true then).
pub(super) fn rollback_requested(spec: &CanaryRolloutSpec, tick: &mut Tick) -> bool {
    if !matches!(tick.status.phase, Phase::Progressing | Phase::Paused) {
        return false;
    }
    let asked = spec
        .webhooks
        .iter()
        .filter(|webhook| webhook.kind == WebhookType::Rollback)
        .find_map(|webhook| match tick.gates.outcome(&webhook.name) {
            Some(CallOutcome::Passed { status }) => Some((webhook.name.clone(), *status)),
            _ => None,
        });
    let Some((name, status)) = asked else {
        return false;
    };
    tick.status.gate = None;
    roll_back(
        tick,
        format!("webhook:{name}"),
        format!("rollback webhook {name} answered {status}"),
    );
    true
}

/// After the tick: a wait that no longer applies (the run ended, rolled back, or another
/// revision took over) is dropped without an Event.
pub(super) fn finish(tick: &mut Tick) {
    let Some(wait) = &tick.status.gate else {
        return;
    };
    let live = matches!(
        tick.status.phase,
        Phase::Pending | Phase::ScalingUp | Phase::Progressing | Phase::Paused
    ) && wait.revision == run_revision(&tick.status);
    if !live {
        tick.status.gate = None;
    }
}

/// `rollout` webhooks as analysis checks: each call's answer is a Pass or a Fail with the
/// webhook's own `for`; a webhook not called this tick is inconclusive.
pub(super) fn rollout_checks(
    spec: &CanaryRolloutSpec,
    input: &GateInput,
) -> Vec<Box<dyn super::checks::Check>> {
    spec.webhooks
        .iter()
        .filter(|webhook| webhook.kind == WebhookType::Rollout && webhook.url.is_some())
        .map(|webhook| {
            Box::new(RolloutWebhookCheck {
                name: webhook.name.clone(),
                breach_for: webhook.breach_for(),
                outcome: input.outcome(&webhook.name).cloned(),
            }) as Box<dyn super::checks::Check>
        })
        .collect()
}

struct RolloutWebhookCheck {
    name: String,
    breach_for: crate::duration::Duration,
    outcome: Option<CallOutcome>,
}

impl super::checks::Check for RolloutWebhookCheck {
    fn name(&self) -> String {
        format!("webhook:{}", self.name)
    }

    fn breach_for(&self) -> crate::duration::Duration {
        self.breach_for
    }

    fn evaluate(&self, _input: &super::checks::CheckInput<'_>) -> super::checks::Evaluation {
        use super::checks::{Evaluation, Outcome};
        match &self.outcome {
            Some(CallOutcome::Passed { status }) => Evaluation::new(
                Outcome::Pass,
                None,
                None,
                format!("webhook {} answered {status}", self.name),
            ),
            Some(failed) => Evaluation::new(
                Outcome::Fail,
                None,
                None,
                format!("webhook {} failed: {}", self.name, failed.detail()),
            ),
            None => Evaluation::new(
                Outcome::Inconclusive,
                None,
                None,
                format!("webhook {} was not called this interval", self.name),
            ),
        }
    }
}

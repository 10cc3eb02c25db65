//! The release lifecycle's rules (contract 5, "Release lifecycle"), one test per transition.
//! A simulated clock ticks every 30s; the release observation says which revision the
//! canary runs and where the canary and stable workloads stand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::jiff::Timestamp;
use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use stickycanary::engine::{decide_release, reasons, Action, Decision};
use stickycanary::observation::{
    ManualAction, MetricsObservation, Observations, ReleaseObservation, WorkloadState,
};
use support::engine::{scale_down, window, world};

fn spec() -> CanaryRolloutSpec {
    support::engine::spec(
        r#"
rolloutKey: checkout
stable: {}
stages:
  - {weight: 10, duration: 1m}
  - {weight: 100}
progressDeadline: 2m
scaleDownDelay: 30s
"#,
    )
}

fn at(seconds: i64) -> Timestamp {
    support::engine::at_from("2026-11-30T06:00:00Z", seconds)
}

fn traffic(error_percent: f64, manual: Option<ManualAction>) -> Observations {
    let metrics = MetricsObservation::Window {
        canary: window(1000.0, error_percent),
        stable: window(9000.0, 1.0),
    };
    support::engine::observe(metrics, manual)
}

fn healthy() -> Observations {
    traffic(1.0, None)
}

fn release(canary: &str, stable: &str, canary_state: WorkloadState) -> ReleaseObservation {
    ReleaseObservation {
        rollout_key: "checkout".to_string(),
        canary_revision: canary.to_string(),
        stable_revision: Some(stable.to_string()),
        canary: canary_state,
        stable: WorkloadState::Stopped,
        recorded: Default::default(),
        problem: None,
    }
}

fn with_stable(mut release: ReleaseObservation, stable: WorkloadState) -> ReleaseObservation {
    release.stable = stable;
    release
}

/// A rollout driven by a simulated clock (30s per tick).
struct Sim {
    spec: CanaryRolloutSpec,
    status: CanaryRolloutStatus,
    now: i64,
}

impl Sim {
    fn new(spec: CanaryRolloutSpec) -> Self {
        Sim {
            spec,
            status: CanaryRolloutStatus::default(),
            now: 0,
        }
    }

    fn tick(&mut self, observations: &Observations, release: &ReleaseObservation) -> Decision {
        let decision = decide_release(
            &self.spec,
            &self.status,
            at(self.now),
            observations,
            Some(release),
        );
        self.status = decision.status.clone();
        self.now += 30;
        decision
    }

    /// Walks a fresh run of `r2` (stable `r1`) to the Promoting phase.
    fn walk_to_promoting(&mut self) -> Decision {
        self.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
        self.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
        for _ in 0..10 {
            let decision = self.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
            if self.status.phase == Phase::Promoting {
                return decision;
            }
        }
        panic!("never reached Promoting: {:?}", self.status);
    }
}

fn scale_up(revision: &str) -> Action {
    Action::ScaleCanaryUp {
        revision: revision.to_string(),
    }
}

fn record_failed(revision: &str) -> Action {
    Action::RecordFailedRevision {
        revision: revision.to_string(),
    }
}

#[test]
fn first_sight_of_a_canary_equal_to_stable_waits_for_a_release_and_touches_nothing() {
    let mut sim = Sim::new(spec());
    let at_rest = with_stable(
        release("r1", "r1", WorkloadState::Stopped),
        WorkloadState::Ready,
    );
    let decision = sim.tick(&healthy(), &at_rest);
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.canary_revision.as_deref(), Some("r1"));
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(decision.event_reasons(), vec![reasons::WAITING]);
    // And it stays that way.
    let decision = sim.tick(&healthy(), &release("r1", "r1", WorkloadState::Ready));
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
}

#[test]
fn the_bootstrap_keeps_users_on_the_workload_until_the_generated_stable_is_ready_then_hands_them_over(
) {
    let mut sim = Sim::new(spec());
    let workload = release("r1", "r1", WorkloadState::Ready);
    // The generated stable was just created: it has no ready pods yet.
    let decision = sim.tick(
        &healthy(),
        &with_stable(workload.clone(), WorkloadState::Starting),
    );
    assert_eq!(sim.status.phase, Phase::Initializing);
    assert_eq!(world(&decision), vec![Action::SetWeight(100.0)]);
    assert_eq!(decision.event_reasons(), vec![reasons::INITIALIZING]);
    // Still rolling out: nothing moves, no Event again.
    let decision = sim.tick(
        &healthy(),
        &with_stable(workload.clone(), WorkloadState::Starting),
    );
    assert_eq!(world(&decision), vec![]);
    assert_eq!(decision.event_reasons(), Vec::<&str>::new());
    // Ready: every user to stable, no run, the workload drains then is scaled down.
    let decision = sim.tick(
        &healthy(),
        &with_stable(workload.clone(), WorkloadState::Ready),
    );
    assert_eq!(sim.status.phase, Phase::Initialized);
    assert_eq!(world(&decision), vec![Action::SetWeight(0.0)]);
    assert_eq!(decision.event_reasons(), vec![reasons::INITIALIZED]);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert!(sim.status.scale_down_at.is_some());
    // scaleDownDelay (30s) later: the scale-down, and Initialized waits for a release.
    let decision = sim.tick(
        &healthy(),
        &with_stable(workload.clone(), WorkloadState::Ready),
    );
    assert_eq!(world(&decision), vec![scale_down("r1")]);
    assert_eq!(sim.status.phase, Phase::Initialized);
    assert!(sim.status.phase.is_terminal());
    // The next template of the workload is a release.
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(world(&decision), vec![scale_up("r2")]);
}

#[test]
fn a_generated_stable_that_does_not_roll_out_keeps_users_on_the_workload_with_one_warning() {
    let mut sim = Sim::new(spec());
    let workload = release("r1", "r1", WorkloadState::Ready);
    sim.tick(
        &healthy(),
        &with_stable(workload.clone(), WorkloadState::Starting),
    );
    let failed = WorkloadState::Failed("ProgressDeadlineExceeded: no progress".into());
    let decision = sim.tick(&healthy(), &with_stable(workload.clone(), failed.clone()));
    assert_eq!(sim.status.phase, Phase::Initializing);
    assert_eq!(sim.status.weight, 100.0);
    assert_eq!(world(&decision), vec![]);
    assert_eq!(decision.event_reasons(), vec![reasons::INITIALIZING]);
    assert!(
        decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Event { warning: true, .. })),
        "{:?}",
        decision.actions
    );
    let decision = sim.tick(&healthy(), &with_stable(workload.clone(), failed));
    assert_eq!(decision.event_reasons(), Vec::<&str>::new());
    // Fixed: the hand-over happens.
    sim.tick(&healthy(), &with_stable(workload, WorkloadState::Ready));
    assert_eq!(sim.status.phase, Phase::Initialized);
    assert_eq!(sim.status.weight, 0.0);
}

#[test]
fn a_manual_action_on_the_tick_a_new_revision_arrives_is_answered_not_dropped() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    // Users on r2 at 100%, stable taking over; r3 arrives with an abort on the same tick.
    let decision = sim.tick(
        &traffic(1.0, Some(ManualAction::Abort)),
        &release("r3", "r1", WorkloadState::Stopped),
    );
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(sim.status.canary_revision.as_deref(), Some("r3"));
    let reasons = decision.event_reasons();
    assert!(reasons.contains(&reasons::ACTION_REFUSED), "{reasons:?}");
    let refused = decision.actions.iter().find_map(|a| match a {
        Action::Event {
            reason, message, ..
        } if *reason == reasons::ACTION_REFUSED => Some(message.clone()),
        _ => None,
    });
    assert!(refused
        .unwrap()
        .contains("revision r3 arrived on this tick"));
}

#[test]
fn first_sight_of_a_different_canary_starts_a_run_at_weight_zero_with_a_new_cohort() {
    let mut sim = Sim::new(spec());
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(world(&decision), vec![scale_up("r2")]);
    assert_eq!(sim.status.weight, 0.0);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(sim.status.canary_revision.as_deref(), Some("r2"));
    assert_eq!(sim.status.salt.as_deref(), Some("checkout-r2"));
    assert_eq!(decision.event_reasons(), vec![reasons::RELEASE_STARTED]);
}

#[test]
fn the_weight_stays_at_zero_until_the_canary_is_ready_then_leaves_zero_with_the_salt() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    for _ in 0..3 {
        let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Starting));
        assert_eq!(world(&decision), vec![], "nothing while the pods start");
        assert_eq!(sim.status.weight, 0.0);
        assert_eq!(sim.status.phase, Phase::ScalingUp);
    }
    // A canary found scaled to 0 again is asked up again (idempotent).
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(world(&decision), vec![scale_up("r2")]);
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r2".to_string()
        }]
    );
    assert_eq!(sim.status.phase, Phase::Progressing);
    // Later weights leave the salt alone: the cohort never changes within a run.
    for _ in 0..4 {
        let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
        assert!(
            !world(&decision)
                .iter()
                .any(|a| matches!(a, Action::SetWeightWithSalt { .. })),
            "{decision:?}"
        );
    }
}

#[test]
fn a_canary_not_ready_within_progress_deadline_fails_the_run_and_is_scaled_down_after_the_delay() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped)); // t=0
    let mut failed = None;
    for _ in 0..6 {
        let now = sim.now;
        let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Starting));
        if sim.status.phase != Phase::ScalingUp {
            failed = Some((now, decision));
            break;
        }
    }
    let (when, decision) = failed.expect("the deadline never fired");
    assert_eq!(when, 150, "2m deadline: the first tick past 120s");
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(
        sim.status.rollback_reason.as_deref(),
        Some("scale-up-deadline")
    );
    assert!(sim
        .status
        .failure_reason
        .as_deref()
        .unwrap()
        .contains("progressDeadline 2m"));
    assert_eq!(sim.status.failed_revision.as_deref(), Some("r2"));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0), record_failed("r2")]
    );
    // 30s later the canary is scaled down, once.
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Starting));
    assert_eq!(world(&decision), vec![scale_down("r2")]);
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(world(&decision), vec![]);
}

#[test]
fn a_failed_scale_up_fails_the_run_with_its_reason() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let failed = WorkloadState::Failed("--on-scale-up exited with exit status: 3".into());
    sim.tick(&healthy(), &release("r2", "r1", failed));
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(
        sim.status.rollback_reason.as_deref(),
        Some("scale-up-failed")
    );
    assert!(sim
        .status
        .failure_reason
        .as_deref()
        .unwrap()
        .contains("exit status: 3"));
}

#[test]
fn promotion_rolls_stable_out_then_finalises_then_succeeds() {
    let mut sim = Sim::new(spec());
    let decision = sim.walk_to_promoting();
    assert_eq!(
        world(&decision),
        vec![
            Action::SetWeight(100.0),
            Action::PromoteStable {
                revision: "r2".into()
            }
        ]
    );
    assert_eq!(sim.status.weight, 100.0);
    let ready = release("r2", "r1", WorkloadState::Ready);
    // Stable rolling: users stay on the canary.
    let decision = sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Starting),
    );
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.phase, Phase::Promoting);
    // Stable done: every user back on stable, which now runs r2.
    let decision = sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Ready),
    );
    assert_eq!(world(&decision), vec![Action::SetWeight(0.0)]);
    assert_eq!(sim.status.phase, Phase::Finalising);
    assert_eq!(decision.event_reasons(), vec![reasons::FINALISING]);
    // The drain delay (30s) passes, then the canary is scaled down and the run is done.
    let decision = sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Ready),
    );
    assert_eq!(world(&decision), vec![scale_down("r2")]);
    assert_eq!(sim.status.phase, Phase::Succeeded);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r2"));
    assert_eq!(sim.status.last_promoted_revision.as_deref(), Some("r2"));
    assert_eq!(decision.event_reasons(), vec![reasons::SUCCEEDED]);
    let ready_condition = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready_condition.status, "True");
    // Nothing more until the next revision.
    let decision = sim.tick(&healthy(), &release("r2", "r2", WorkloadState::Stopped));
    assert_eq!(world(&decision), vec![]);
}

#[test]
fn the_drain_delay_holds_the_scale_down_in_finalising() {
    let mut spec = spec();
    spec.scale_down_delay = stickycanary::duration::Duration::from_secs(90);
    let mut sim = Sim::new(spec);
    sim.walk_to_promoting();
    let ready = with_stable(
        release("r2", "r1", WorkloadState::Ready),
        WorkloadState::Ready,
    );
    sim.tick(&healthy(), &ready); // Finalising at t
    for _ in 0..2 {
        let decision = sim.tick(&healthy(), &ready); // t+30, t+60
        assert_eq!(world(&decision), vec![]);
        assert_eq!(sim.status.phase, Phase::Finalising);
    }
    let decision = sim.tick(&healthy(), &ready); // t+90
    assert_eq!(world(&decision), vec![scale_down("r2")]);
}

#[test]
fn a_failed_stable_rollout_keeps_users_on_the_canary_and_marks_the_run_failed() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    let failed = WorkloadState::Failed("ProgressDeadlineExceeded: ReplicaSet timed out".into());
    let decision = sim.tick(
        &healthy(),
        &with_stable(release("r2", "r1", WorkloadState::Ready), failed),
    );
    assert_eq!(
        world(&decision),
        vec![record_failed("r2")],
        "the weight stays at 100"
    );
    assert_eq!(sim.status.phase, Phase::PromotionFailed);
    assert_eq!(sim.status.weight, 100.0);
    assert_eq!(sim.status.failed_revision.as_deref(), Some("r2"));
    assert!(sim
        .status
        .failure_reason
        .as_deref()
        .unwrap()
        .contains("ProgressDeadlineExceeded"));
    assert_eq!(decision.event_reasons(), vec![reasons::PROMOTION_FAILED]);
    let degraded = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PromotionFailed")
    );
}

#[test]
fn a_stable_rollout_past_progress_deadline_fails_the_promotion() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    let rolling = with_stable(
        release("r2", "r1", WorkloadState::Ready),
        WorkloadState::Starting,
    );
    for _ in 0..4 {
        sim.tick(&healthy(), &rolling); // +30s..+120s: not past yet
        assert_eq!(sim.status.phase, Phase::Promoting);
    }
    sim.tick(&healthy(), &rolling); // +150s
    assert_eq!(sim.status.phase, Phase::PromotionFailed);
    assert!(sim
        .status
        .failure_reason
        .as_deref()
        .unwrap()
        .contains("missed progressDeadline 2m"));
    assert_eq!(sim.status.weight, 100.0);
}

#[test]
fn a_stable_template_lost_before_it_was_copied_is_copied_again() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    let decision = sim.tick(
        &healthy(),
        &with_stable(
            release("r2", "r1", WorkloadState::Ready),
            WorkloadState::Stopped,
        ),
    );
    assert_eq!(
        world(&decision),
        vec![Action::PromoteStable {
            revision: "r2".into()
        }]
    );
}

#[test]
fn a_rollback_sets_weight_zero_at_once_and_scales_the_canary_down_after_the_delay() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    let ready = release("r2", "r1", WorkloadState::Ready);
    let mut rolled_back = None;
    for _ in 0..10 {
        let decision = sim.tick(&traffic(30.0, None), &ready);
        if sim.status.phase == Phase::RolledBack {
            rolled_back = Some(decision);
            break;
        }
    }
    let decision = rolled_back.expect("no rollback");
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0), record_failed("r2")]
    );
    assert_eq!(sim.status.failed_revision.as_deref(), Some("r2"));
    assert!(sim.status.scale_down_at.is_some());
    let decision = sim.tick(&traffic(30.0, None), &ready);
    assert_eq!(world(&decision), vec![scale_down("r2")]);
    assert_eq!(decision.event_reasons(), vec![reasons::SCALED_DOWN]);
    assert!(sim.status.scale_down_at.is_none());
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(world(&decision), vec![], "scaled down once");
    assert_eq!(sim.status.phase, Phase::RolledBack);
}

#[test]
fn an_abort_while_scaling_up_rolls_back_and_scales_down_after_the_delay() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let starting = release("r2", "r1", WorkloadState::Starting);
    sim.tick(&traffic(1.0, Some(ManualAction::Abort)), &starting);
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(sim.status.rollback_reason.as_deref(), Some("aborted"));
    let decision = sim.tick(&healthy(), &starting);
    assert_eq!(world(&decision), vec![scale_down("r2")]);
}

#[test]
fn a_new_revision_mid_run_puts_users_back_on_stable_first_then_resets_and_rotates_the_salt() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    // A breach in progress: its timer must not carry over to the next revision.
    sim.tick(
        &traffic(30.0, None),
        &release("r2", "r1", WorkloadState::Ready),
    );
    assert!(!sim.status.breach_started_at.is_empty());
    assert_eq!(sim.status.weight, 10.0);

    let decision = sim.tick(&healthy(), &release("r3", "r1", WorkloadState::Stopped));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0), scale_up("r3")],
        "weight 0 before anything else"
    );
    assert_eq!(
        decision.event_reasons(),
        vec![reasons::RESTARTED, reasons::RELEASE_STARTED]
    );
    let status = &sim.status;
    assert_eq!(status.phase, Phase::ScalingUp);
    assert_eq!(status.weight, 0.0);
    assert_eq!(status.stage_index, 0);
    assert!(status.stage_started_at.is_none());
    assert!(status.breach_started_at.is_empty());
    assert!(status.comparative.is_none());
    assert!(status.last_analysis.is_none());
    assert_eq!(status.canary_revision.as_deref(), Some("r3"));
    assert_eq!(status.salt.as_deref(), Some("checkout-r3"));

    let decision = sim.tick(&healthy(), &release("r3", "r1", WorkloadState::Ready));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r3".into()
        }]
    );
}

#[test]
fn a_fixed_cohort_keeps_the_plugin_salt() {
    let mut spec = spec();
    spec.cohort.rotate = false;
    let mut sim = Sim::new(spec);
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    assert_eq!(sim.status.salt, None);
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    assert_eq!(world(&decision), vec![Action::SetWeight(10.0)]);
}

#[test]
fn retry_runs_the_failed_revision_again_with_a_new_cohort() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let ready = release("r2", "r1", WorkloadState::Ready);
    sim.tick(&traffic(1.0, Some(ManualAction::Abort)), &ready);
    assert_eq!(sim.status.phase, Phase::RolledBack);
    let first_salt = "checkout-r2";

    let decision = sim.tick(&traffic(1.0, Some(ManualAction::Retry)), &ready);
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(sim.status.attempt, 2);
    assert_eq!(sim.status.salt.as_deref(), Some("checkout-r2-2"));
    assert_ne!(sim.status.salt.as_deref(), Some(first_salt));
    assert!(
        sim.status.scale_down_at.is_none(),
        "the pending scale-down is cancelled"
    );
    assert_eq!(
        world(&decision),
        vec![],
        "the canary is still up: no scale-up needed"
    );
    let decision = sim.tick(&healthy(), &ready);
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r2-2".into()
        }]
    );
    // A retry of a run that did not fail is ignored, with a warning.
    let decision = sim.tick(&traffic(1.0, Some(ManualAction::Retry)), &ready);
    assert_eq!(world(&decision), vec![]);
    assert_eq!(decision.event_reasons(), vec![reasons::RETRY_IGNORED]);
    assert_eq!(sim.status.phase, Phase::Progressing);
}

#[test]
fn finalize_false_stops_at_100_percent_and_touches_no_deployment() {
    let mut spec = spec();
    spec.promotion.finalize = false;
    let mut sim = Sim::new(spec);
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let ready = release("r2", "r1", WorkloadState::Ready);
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(world(&sim.tick(&healthy(), &ready)));
    }
    assert_eq!(sim.status.phase, Phase::Promoted);
    assert_eq!(sim.status.weight, 100.0);
    assert!(
        !all.iter().any(|a| matches!(
            a,
            Action::PromoteStable { .. } | Action::ScaleCanaryDown { .. }
        )),
        "{all:?}"
    );
    // A new revision still starts a new run, users first back to stable.
    let decision = sim.tick(&healthy(), &release("r3", "r1", WorkloadState::Stopped));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0), scale_up("r3")]
    );
}

/// Saves the status as JSON (what the CR or the status file holds) and reads it back.
fn round_trip(status: &CanaryRolloutStatus) -> CanaryRolloutStatus {
    serde_json::from_str(&serde_json::to_string(status).unwrap()).unwrap()
}

#[test]
fn a_restart_from_saved_status_resumes_every_new_phase_exactly() {
    // (phase reached, the observation of the next tick)
    let mut cases: Vec<(CanaryRolloutStatus, i64, ReleaseObservation)> = Vec::new();
    let spec = spec();

    let mut sim = Sim::new(spec.clone());
    sim.tick(
        &healthy(),
        &with_stable(
            release("r1", "r1", WorkloadState::Ready),
            WorkloadState::Ready,
        ),
    );
    cases.push((
        sim.status.clone(),
        sim.now,
        release("r2", "r1", WorkloadState::Stopped),
    ));

    // The bootstrap: the generated stable rolling out, then ready.
    let mut sim = Sim::new(spec.clone());
    let bootstrap = release("r1", "r1", WorkloadState::Ready);
    sim.tick(
        &healthy(),
        &with_stable(bootstrap.clone(), WorkloadState::Starting),
    );
    cases.push((
        sim.status.clone(),
        sim.now,
        with_stable(bootstrap.clone(), WorkloadState::Ready),
    ));
    sim.tick(
        &healthy(),
        &with_stable(bootstrap.clone(), WorkloadState::Ready),
    );
    cases.push((
        sim.status.clone(),
        sim.now + 60,
        with_stable(bootstrap, WorkloadState::Ready),
    ));

    let mut sim = Sim::new(spec.clone());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    cases.push((
        sim.status.clone(),
        sim.now + 120,
        release("r2", "r1", WorkloadState::Starting),
    ));
    cases.push((
        sim.status.clone(),
        sim.now,
        release("r2", "r1", WorkloadState::Ready),
    ));

    let mut sim = Sim::new(spec.clone());
    sim.walk_to_promoting();
    let ready = release("r2", "r1", WorkloadState::Ready);
    cases.push((
        sim.status.clone(),
        sim.now,
        with_stable(ready.clone(), WorkloadState::Ready),
    ));
    sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Ready),
    );
    assert_eq!(sim.status.phase, Phase::Finalising);
    cases.push((
        sim.status.clone(),
        sim.now,
        with_stable(ready.clone(), WorkloadState::Ready),
    ));
    sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Ready),
    );
    assert_eq!(sim.status.phase, Phase::Succeeded);
    cases.push((
        sim.status.clone(),
        sim.now,
        release("r3", "r2", WorkloadState::Stopped),
    ));

    let mut sim = Sim::new(spec.clone());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    sim.tick(&traffic(1.0, Some(ManualAction::Abort)), &ready);
    cases.push((sim.status.clone(), sim.now, ready.clone()));

    let mut phases = Vec::new();
    for (status, now, next) in cases {
        phases.push(status.phase);
        let live = decide_release(&spec, &status, at(now), &healthy(), Some(&next));
        let restored = round_trip(&status);
        assert_eq!(restored, status, "the status survives JSON");
        let resumed = decide_release(&spec, &restored, at(now), &healthy(), Some(&next));
        assert_eq!(resumed, live, "phase {}", status.phase);
        assert_ne!(
            world(&live),
            vec![],
            "each case moves the run on ({})",
            status.phase
        );
    }
    assert_eq!(
        phases,
        vec![
            Phase::WaitingForRelease,
            Phase::Initializing,
            Phase::Initialized,
            Phase::ScalingUp,
            Phase::ScalingUp,
            Phase::Promoting,
            Phase::Finalising,
            Phase::Succeeded,
            Phase::RolledBack,
        ]
    );
}

#[test]
fn without_a_revision_source_promotion_ends_at_promoted_as_before() {
    let spec = spec();
    let mut status = CanaryRolloutStatus::default();
    let mut actions = Vec::new();
    for tick in 0..8 {
        let decision = decide_release(&spec, &status, at(tick * 30), &healthy(), None);
        actions.extend(world(&decision));
        status = decision.status;
    }
    assert_eq!(status.phase, Phase::Promoted);
    assert_eq!(
        actions,
        vec![Action::SetWeight(10.0), Action::SetWeight(100.0)]
    );
}

// --- Lifecycle edges (issue 23) ---------------------------------------------------------

fn paused_spec() -> CanaryRolloutSpec {
    let mut spec = spec();
    spec.paused = true;
    spec
}

/// Every weight the decisions wrote, in order.
fn weights(decisions: &[Decision]) -> Vec<f64> {
    decisions
        .iter()
        .flat_map(|decision| decision.actions.iter().filter_map(Action::weight))
        .collect()
}

#[test]
fn with_spec_paused_a_new_revision_never_gets_its_first_weight() {
    let mut sim = Sim::new(paused_spec());
    let mut decisions = vec![sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped))];
    for _ in 0..4 {
        decisions.push(sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready)));
        assert_eq!(sim.status.phase, Phase::Paused);
    }
    assert_eq!(weights(&decisions), Vec::<f64>::new(), "paused: no weight");
    assert_eq!(sim.status.weight, 0.0);
    assert!(decisions[0].event_reasons().contains(&reasons::PAUSED));
    // Unpaused: the run goes on from its scale-up; the first weight leaves 0 with the salt.
    sim.spec.paused = false;
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r2".into()
        }]
    );
    assert_eq!(sim.status.phase, Phase::Progressing);
}

#[test]
fn a_pause_while_scaling_up_holds_the_first_weight_until_resumed() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let decision = sim.tick(
        &traffic(1.0, Some(ManualAction::Pause)),
        &release("r2", "r1", WorkloadState::Starting),
    );
    assert_eq!(sim.status.phase, Phase::Paused);
    assert_eq!(decision.event_reasons(), vec![reasons::PAUSED]);
    let ready = release("r2", "r1", WorkloadState::Ready);
    for _ in 0..3 {
        let decision = sim.tick(&healthy(), &ready);
        assert_eq!(world(&decision), vec![], "no first weight while paused");
    }
    let decision = sim.tick(&traffic(1.0, Some(ManualAction::Resume)), &ready);
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r2".into()
        }]
    );
    assert_eq!(sim.status.phase, Phase::Progressing);
}

#[test]
fn a_manual_action_the_phase_cannot_take_is_refused_with_an_event_and_changes_nothing() {
    let ready = release("r2", "r1", WorkloadState::Ready);
    let promoting = with_stable(ready.clone(), WorkloadState::Starting);
    // (what the rollout is doing, the action, the observation of that tick)
    let scaling_up = || {
        let mut sim = Sim::new(spec());
        sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
        sim
    };
    let progressing = || {
        let mut sim = Sim::new(spec());
        sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
        sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
        sim
    };
    let in_promotion = || {
        let mut sim = Sim::new(spec());
        sim.walk_to_promoting();
        sim
    };
    let rolled_back = || {
        let mut sim = progressing();
        sim.tick(&traffic(1.0, Some(ManualAction::Abort)), &ready);
        sim.tick(&healthy(), &ready);
        sim
    };
    let starting = release("r2", "r1", WorkloadState::Starting);
    let cases: Vec<(&str, Sim, ManualAction, ReleaseObservation)> = vec![
        (
            "promote while scaling up",
            scaling_up(),
            ManualAction::Promote,
            starting.clone(),
        ),
        (
            "resume while not paused",
            progressing(),
            ManualAction::Resume,
            ready.clone(),
        ),
        (
            "abort while promoting",
            in_promotion(),
            ManualAction::Abort,
            promoting.clone(),
        ),
        (
            "pause while promoting",
            in_promotion(),
            ManualAction::Pause,
            promoting.clone(),
        ),
        (
            "promote while promoting",
            in_promotion(),
            ManualAction::Promote,
            promoting.clone(),
        ),
        (
            "abort after a rollback",
            rolled_back(),
            ManualAction::Abort,
            ready.clone(),
        ),
        (
            "pause after a rollback",
            rolled_back(),
            ManualAction::Pause,
            ready.clone(),
        ),
        (
            "promote after a rollback",
            rolled_back(),
            ManualAction::Promote,
            ready.clone(),
        ),
    ];
    for (what, mut sim, action, observed) in cases {
        let before = sim.status.clone();
        let decision = sim.tick(&traffic(1.0, Some(action)), &observed);
        assert_eq!(
            decision.event_reasons(),
            vec![reasons::ACTION_REFUSED],
            "{what}: {decision:?}"
        );
        let refused = decision
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Event {
                    message, warning, ..
                } => Some((message.clone(), *warning)),
                _ => None,
            })
            .unwrap();
        assert!(refused.1, "{what}: a Warning");
        assert!(
            refused.0.starts_with(&format!("{action} refused"))
                && refused.0.contains(before.phase.as_str()),
            "{what}: the Event names the action and the phase: {}",
            refused.0
        );
        assert_eq!(world(&decision), vec![], "{what}: nothing done");
        assert_eq!(sim.status.phase, before.phase, "{what}");
        assert_eq!(sim.status.weight, before.weight, "{what}");
        assert!(!sim.status.manual_pause, "{what}: no pause left pending");
    }
}

#[test]
fn retry_after_a_failed_promotion_starts_at_weight_zero_and_writes_the_new_salt() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    let ready = release("r2", "r1", WorkloadState::Ready);
    let failed = WorkloadState::Failed("ProgressDeadlineExceeded".into());
    sim.tick(&healthy(), &with_stable(ready.clone(), failed.clone()));
    assert_eq!(sim.status.phase, Phase::PromotionFailed);
    assert_eq!(sim.status.weight, 100.0);

    let retried = with_stable(ready.clone(), failed);
    let decision = sim.tick(&traffic(1.0, Some(ManualAction::Retry)), &retried);
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0)],
        "users leave the canary before the new run"
    );
    assert_eq!(sim.status.weight, 0.0);
    assert_eq!(sim.status.salt.as_deref(), Some("checkout-r2-2"));
    let decision = sim.tick(&healthy(), &retried);
    assert_eq!(
        world(&decision),
        vec![Action::SetWeightWithSalt {
            weight: 10.0,
            salt: "checkout-r2-2".into()
        }],
        "the first stage's weight, with the new cohort's salt"
    );
    assert_eq!(sim.status.weight, 10.0);
    // The first stage holds for its duration at 10%, not at 100%.
    let decision = sim.tick(&healthy(), &retried);
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.weight, 10.0);
}

#[test]
fn a_revert_sets_weight_zero_first_and_scales_the_canary_down_only_after_the_drain() {
    let mut spec = spec();
    spec.scale_down_delay = stickycanary::duration::Duration::from_secs(60);
    let mut sim = Sim::new(spec.clone());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    assert_eq!(sim.status.weight, 10.0);
    let reverted = release("r1", "r1", WorkloadState::Ready);
    let decision = sim.tick(&healthy(), &reverted); // t = 60
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0)],
        "drain first"
    );
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(decision.event_reasons(), vec![reasons::REVERTED]);
    assert!(sim.status.scale_down_at.is_some());
    // Restart mid-drain: the saved status still knows when to scale down.
    sim.status = round_trip(&sim.status);
    let decision = sim.tick(&healthy(), &reverted); // t = 90: 30s into a 60s drain
    assert_eq!(world(&decision), vec![]);
    let decision = sim.tick(&healthy(), &reverted); // t = 120
    assert_eq!(world(&decision), vec![scale_down("r1")]);
    assert_eq!(decision.event_reasons(), vec![reasons::SCALED_DOWN]);
    let decision = sim.tick(&healthy(), &release("r1", "r1", WorkloadState::Stopped));
    assert_eq!(world(&decision), vec![], "scaled down once");
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
}

#[test]
fn a_revert_before_any_user_reached_the_canary_scales_it_down_at_once() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let decision = sim.tick(&healthy(), &release("r1", "r1", WorkloadState::Starting));
    assert_eq!(world(&decision), vec![scale_down("r1")]);
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
}

#[test]
fn a_spec_made_invalid_while_finalising_then_fixed_finishes_the_run_and_never_raises_the_weight() {
    let mut spec = spec();
    spec.scale_down_delay = stickycanary::duration::Duration::from_secs(90);
    let mut sim = Sim::new(spec.clone());
    sim.walk_to_promoting();
    let done = with_stable(
        release("r2", "r1", WorkloadState::Ready),
        WorkloadState::Ready,
    );
    let mut decisions = vec![sim.tick(&healthy(), &done)];
    assert_eq!(sim.status.phase, Phase::Finalising);
    let mut broken = spec.clone();
    broken.stages[1].weight = 50.0; // the last stage must be at 100
    sim.spec = broken;
    decisions.push(sim.tick(&healthy(), &done));
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    sim.spec = spec;
    decisions.push(sim.tick(&healthy(), &done));
    assert_eq!(
        sim.status.phase,
        Phase::Finalising,
        "back where it was, not Progressing"
    );
    decisions.push(sim.tick(&healthy(), &done));
    assert_eq!(sim.status.phase, Phase::Succeeded);
    assert_eq!(
        weights(&decisions),
        vec![0.0],
        "users never go back to the canary"
    );
    assert!(world(decisions.last().unwrap()).contains(&scale_down("r2")));
}

#[test]
fn a_spec_made_invalid_while_paused_before_the_first_weight_returns_to_paused() {
    let mut sim = Sim::new(spec());
    sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Stopped));
    let starting = release("r2", "r1", WorkloadState::Starting);
    sim.tick(&traffic(1.0, Some(ManualAction::Pause)), &starting);
    assert_eq!(sim.status.phase, Phase::Paused);
    let good = sim.spec.clone();
    sim.spec.stages[1].weight = 50.0;
    sim.tick(&healthy(), &starting);
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    sim.spec = good;
    let decision = sim.tick(&healthy(), &release("r2", "r1", WorkloadState::Ready));
    assert_eq!(sim.status.phase, Phase::Paused);
    assert_eq!(world(&decision), vec![]);
}

#[test]
fn spec_paused_during_the_hand_over_says_once_that_the_hand_over_completes() {
    let mut sim = Sim::new(spec());
    sim.walk_to_promoting();
    let ready = release("r2", "r1", WorkloadState::Ready);
    sim.spec.paused = true;
    let decision = sim.tick(
        &healthy(),
        &with_stable(ready.clone(), WorkloadState::Starting),
    );
    assert_eq!(decision.event_reasons(), vec![reasons::PAUSED]);
    let warned = decision.actions.iter().any(|a| {
        matches!(a, Action::Event { message, warning: true, .. }
            if message.contains("the hand-over to stable completes"))
    });
    assert!(warned, "{decision:?}");
    // Said once; the hand-over goes on: Finalising, then Succeeded.
    let done = with_stable(ready, WorkloadState::Ready);
    let decision = sim.tick(&healthy(), &done);
    assert_eq!(sim.status.phase, Phase::Finalising);
    assert_eq!(decision.event_reasons(), vec![reasons::FINALISING]);
    let decision = sim.tick(&healthy(), &done);
    assert_eq!(sim.status.phase, Phase::Succeeded);
    assert_eq!(decision.event_reasons(), vec![reasons::SUCCEEDED]);
    assert!(sim.status.paused_at.is_none());
    // The next run starts paused.
    let decision = sim.tick(&healthy(), &release("r3", "r2", WorkloadState::Stopped));
    assert_eq!(sim.status.phase, Phase::Paused);
    assert_eq!(world(&decision), vec![]);
}

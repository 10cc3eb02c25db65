//! Stable is observed, never assumed (contract 5, "Release lifecycle", rules 11 to 13): a
//! revert while stable is taking a run over undoes the promotion, stable drift is reported,
//! and a wiped status is re-derived from what the Deployments say. A simulated clock ticks
//! every 30s; each tick says what the canary runs and what stable's template runs now.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use stickycanary::engine::{decide_release, reasons, Action, Decision};
use stickycanary::observation::{
    ManualAction, MetricsObservation, Observations, RecordedRevisions, ReleaseObservation,
    WorkloadState,
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

fn healthy(manual: Option<ManualAction>) -> Observations {
    let metrics = MetricsObservation::Window {
        canary: window(1000.0, 1.0),
        stable: window(9000.0, 1.0),
    };
    support::engine::observe(metrics, manual)
}

/// What the two Deployments say: the canary on `canary` (`canary_state`), stable's template
/// on `stable` with `stable_state` on the run's revision, `promoted` as the revision the
/// controller last copied onto stable.
fn world_is(
    canary: &str,
    canary_state: WorkloadState,
    stable: &str,
    stable_state: WorkloadState,
    promoted: Option<&str>,
) -> ReleaseObservation {
    ReleaseObservation {
        rollout_key: "checkout".to_string(),
        canary_revision: canary.to_string(),
        stable_revision: Some(stable.to_string()),
        canary: canary_state,
        stable: stable_state,
        recorded: RecordedRevisions {
            promoted: promoted.map(str::to_string),
            failed: None,
        },
        problem: None,
    }
}

use WorkloadState::{Ready, Starting, Stopped};

struct Sim {
    spec: CanaryRolloutSpec,
    status: CanaryRolloutStatus,
    now: i64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            spec: spec(),
            status: CanaryRolloutStatus::default(),
            now: 0,
        }
    }

    fn tick(&mut self, release: &ReleaseObservation) -> Decision {
        self.tick_with(healthy(None), release)
    }

    fn tick_with(&mut self, observations: Observations, release: &ReleaseObservation) -> Decision {
        let decision = decide_release(
            &self.spec,
            &self.status,
            support::engine::at_from("2026-11-30T06:00:00Z", self.now),
            &observations,
            Some(release),
        );
        // What the controller stores, read back: the status must carry everything.
        let text = serde_json::to_string(&decision.status).unwrap();
        self.status = serde_json::from_str(&text).unwrap();
        self.now += 30;
        decision
    }

    /// A run of `r2` over a stable on `r1`, up to the tick that starts the promotion.
    fn walk_to_promoting(&mut self) {
        self.tick(&world_is("r2", Stopped, "r1", Stopped, None));
        for _ in 0..10 {
            self.tick(&world_is("r2", Ready, "r1", Stopped, None));
            if self.status.phase == Phase::Promoting {
                return;
            }
        }
        panic!("never reached Promoting: {:?}", self.status);
    }

    fn condition(&self, kind: &str) -> (String, String) {
        let c = self
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }
}

fn copy(revision: &str) -> Action {
    Action::PromoteStable {
        revision: revision.to_string(),
    }
}

#[test]
fn the_status_reports_the_stable_revision_observed_while_stable_takes_the_run_over() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(sim.status.promoted_from.as_deref(), Some("r1"));
    // The copy landed: stable's template is r2 and rolling.
    sim.tick(&world_is("r2", Ready, "r2", Starting, Some("r2")));
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r2"));
    assert_eq!(
        sim.status.promoted_from.as_deref(),
        Some("r1"),
        "what stable ran before the promotion is kept"
    );
}

#[test]
fn a_revert_during_promoting_copies_the_reverted_revision_back_and_keeps_users_on_the_canary_until_stable_rolled_back(
) {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    sim.tick(&world_is("r2", Ready, "r2", Starting, Some("r2")));
    assert_eq!(sim.status.weight, 100.0);
    // Git reverts the canary to r1 while stable is rolling r2 out.
    let decision = sim.tick(&world_is("r1", Starting, "r2", Stopped, Some("r2")));
    assert_eq!(
        world(&decision),
        vec![copy("r1")],
        "stable goes back to r1; the weight stays at 100 (users on the serving canary)"
    );
    assert_eq!(sim.status.phase, Phase::Promoting);
    assert_eq!(sim.status.weight, 100.0);
    assert_eq!(sim.status.canary_revision.as_deref(), Some("r1"));
    assert_eq!(decision.event_reasons(), vec![reasons::REVERTED]);
    // Stable rolling back to r1: users stay on the canary.
    let decision = sim.tick(&world_is("r1", Ready, "r1", Starting, Some("r1")));
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.weight, 100.0);
    // Stable rolled back: weight 0, then the drain, then the scale-down.
    let decision = sim.tick(&world_is("r1", Ready, "r1", Ready, Some("r1")));
    assert_eq!(world(&decision), vec![Action::SetWeight(0.0)]);
    assert_eq!(sim.status.phase, Phase::Finalising);
    let decision = sim.tick(&world_is("r1", Ready, "r1", Ready, Some("r1")));
    assert_eq!(world(&decision), vec![scale_down("r1")]);
    assert_eq!(decision.event_reasons(), vec![reasons::REVERTED]);
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_ne!(
        sim.status.last_promoted_revision.as_deref(),
        Some("r2"),
        "r2 was never promoted"
    );
    assert_eq!(sim.condition("Ready").0, "True");
    assert_eq!(sim.condition("Degraded").0, "False");
    // Nothing more happens.
    let decision = sim.tick(&world_is("r1", Stopped, "r1", Ready, Some("r1")));
    assert_eq!(world(&decision), vec![]);
}

#[test]
fn a_revert_during_finalising_rolls_stable_back_before_the_canary_is_scaled_down() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    sim.tick(&world_is("r2", Ready, "r2", Ready, Some("r2")));
    assert_eq!(sim.status.phase, Phase::Finalising);
    assert_eq!(sim.status.weight, 0.0);
    let decision = sim.tick(&world_is("r1", Starting, "r2", Stopped, Some("r2")));
    assert_eq!(
        world(&decision),
        vec![copy("r1")],
        "the weight stays at 0: stable serves while it rolls back"
    );
    assert_eq!(sim.status.phase, Phase::Finalising);
    // The drain delay has passed, but stable is still rolling back: the canary stays up.
    sim.now += 60;
    let decision = sim.tick(&world_is("r1", Ready, "r1", Starting, Some("r1")));
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.phase, Phase::Finalising);
    let decision = sim.tick(&world_is("r1", Ready, "r1", Ready, Some("r1")));
    assert_eq!(world(&decision), vec![scale_down("r1")]);
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(sim.condition("Ready").0, "True");
}

#[test]
fn a_revert_after_a_failed_promotion_rolls_stable_back_with_users_on_the_canary_meanwhile() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    let failed = WorkloadState::Failed("ProgressDeadlineExceeded".into());
    sim.tick(&world_is("r2", Ready, "r2", failed, Some("r2")));
    assert_eq!(sim.status.phase, Phase::PromotionFailed);
    assert_eq!(sim.status.weight, 100.0);
    let decision = sim.tick(&world_is("r1", Starting, "r2", Stopped, Some("r2")));
    assert_eq!(world(&decision), vec![copy("r1")]);
    assert_eq!(sim.status.phase, Phase::Promoting);
    assert_eq!(sim.status.weight, 100.0, "stable does not serve yet");
    sim.tick(&world_is("r1", Ready, "r1", Ready, Some("r1")));
    assert_eq!(sim.status.weight, 0.0);
    sim.tick(&world_is("r1", Ready, "r1", Ready, Some("r1")));
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
}

#[test]
fn a_status_saved_mid_promotion_before_promoted_from_existed_still_undoes_a_revert() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    // The old controller kept the pre-promotion revision in stableRevision until Succeeded.
    sim.status.promoted_from = None;
    sim.status.stable_revision = Some("r1".into());
    let decision = sim.tick(&world_is("r1", Starting, "r2", Stopped, Some("r2")));
    assert_eq!(world(&decision), vec![copy("r1")]);
    assert_eq!(sim.status.phase, Phase::Promoting);
}

#[test]
fn a_new_revision_during_promoting_is_not_an_undo() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    let decision = sim.tick(&world_is("r3", Starting, "r2", Stopped, Some("r2")));
    assert!(!world(&decision).contains(&copy("r3")));
    assert_eq!(sim.status.phase, Phase::ScalingUp);
}

#[test]
fn stable_drifting_after_success_is_reported_once_and_the_rollout_is_not_ready() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    sim.tick(&world_is("r2", Ready, "r2", Ready, Some("r2")));
    sim.tick(&world_is("r2", Ready, "r2", Ready, Some("r2")));
    assert_eq!(sim.status.phase, Phase::Succeeded);
    assert_eq!(sim.condition("Ready").0, "True");
    // A GitOps self-heal puts stable's template back on r1 (our annotation stays).
    let decision = sim.tick(&world_is("r2", Stopped, "r1", Stopped, Some("r2")));
    assert_eq!(decision.event_reasons(), vec![reasons::STABLE_DRIFTED]);
    assert_eq!(world(&decision), vec![], "reported, not fought");
    assert_eq!(sim.status.stable_revision.as_deref(), Some("r1"));
    assert_eq!(
        sim.condition("Degraded"),
        ("True".to_string(), "StableDrifted".to_string())
    );
    assert_eq!(sim.condition("Ready").0, "False");
    let decision = sim.tick(&world_is("r2", Stopped, "r1", Stopped, Some("r2")));
    assert_eq!(decision.event_reasons(), Vec::<&str>::new(), "one Event");
    assert_eq!(sim.condition("Degraded").0, "True");
    // Put back: Ready again.
    sim.tick(&world_is("r2", Stopped, "r2", Ready, Some("r2")));
    assert_eq!(sim.condition("Degraded").0, "False");
    assert_eq!(sim.condition("Ready").0, "True");
}

#[test]
fn a_status_wiped_after_promotion_scales_the_leftover_canary_down_after_the_drain() {
    let mut sim = Sim::new();
    // Wiped while Finalising: both Deployments on r2, the canary still up.
    let decision = sim.tick(&world_is("r2", Ready, "r2", Ready, Some("r2")));
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert_eq!(sim.status.last_promoted_revision.as_deref(), Some("r2"));
    assert_eq!(world(&decision), vec![], "the drain first");
    let decision = sim.tick(&world_is("r2", Ready, "r2", Ready, Some("r2")));
    assert_eq!(world(&decision), vec![scale_down("r2")]);
    let decision = sim.tick(&world_is("r2", Stopped, "r2", Ready, Some("r2")));
    assert_eq!(world(&decision), vec![]);
}

#[test]
fn a_status_wiped_after_a_rollback_does_not_rerun_the_failed_revision_on_the_same_cohort() {
    let mut sim = Sim::new();
    let mut release = world_is("r2", Ready, "r1", Stopped, None);
    release.recorded.failed = Some("r2".into());
    let decision = sim.tick(&release);
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(sim.status.failed_revision.as_deref(), Some("r2"));
    assert!(
        !world(&decision).iter().any(|a| matches!(
            a,
            Action::ScaleCanaryUp { .. } | Action::SetWeightWithSalt { .. }
        )),
        "{decision:?}"
    );
    let decision = sim.tick(&release);
    assert_eq!(world(&decision), vec![scale_down("r2")]);
    // A retry runs it again, with another cohort.
    sim.tick_with(healthy(Some(ManualAction::Retry)), &release);
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert_eq!(sim.status.salt.as_deref(), Some("checkout-r2-2"));
}

#[test]
fn a_failed_run_asks_for_its_revision_to_be_recorded_on_the_canary_once() {
    let mut sim = Sim::new();
    sim.tick(&world_is("r2", Stopped, "r1", Stopped, None));
    let ready = world_is("r2", Ready, "r1", Stopped, None);
    let decision = sim.tick_with(healthy(Some(ManualAction::Abort)), &ready);
    let recorded = Action::RecordFailedRevision {
        revision: "r2".into(),
    };
    assert!(world(&decision).contains(&recorded));
    let decision = sim.tick(&ready);
    assert!(!world(&decision).contains(&recorded));
}

#[test]
fn deployments_that_cannot_run_a_lifecycle_hold_the_rollout_in_invalid_spec_until_fixed() {
    let mut sim = Sim::new();
    sim.tick(&world_is("r1", Stopped, "r1", Ready, None));
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    let mut broken = world_is("r2", Stopped, "r1", Ready, None);
    broken.problem = Some("spec.stable.deployment: selects on other keys".into());
    let decision = sim.tick(&broken);
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    assert_eq!(world(&decision), vec![], "no run starts");
    assert_eq!(decision.event_reasons(), vec![reasons::INVALID_SPEC]);
    let degraded = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "InvalidSpec");
    assert_eq!(
        degraded.message,
        "spec.stable.deployment: selects on other keys"
    );
    let decision = sim.tick(&broken);
    assert_eq!(decision.event_reasons(), Vec::<&str>::new(), "one Event");
    // Fixed: back where it was, and the new revision starts its run.
    sim.tick(&world_is("r1", Stopped, "r1", Ready, None));
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    sim.tick(&world_is("r2", Stopped, "r1", Ready, None));
    assert_eq!(sim.status.phase, Phase::ScalingUp);
}

#[test]
fn a_revert_before_stable_was_touched_drains_while_one_during_promoting_undoes_the_copy() {
    // The two revert rules side by side in one world: stable still on r1 (Progressing) is a
    // plain revert (rule 3: weight 0, the drain, then the scale-down); stable already given
    // r2 (Promoting) is the undo of the promotion (rule 12: stable gets r1 back).
    let mut sim = Sim::new();
    sim.tick(&world_is("r2", Stopped, "r1", Stopped, None));
    sim.tick(&world_is("r2", Ready, "r1", Stopped, None));
    assert_eq!(sim.status.phase, Phase::Progressing);
    assert_eq!(sim.status.weight, 10.0);
    let decision = sim.tick(&world_is("r1", Starting, "r1", Stopped, None));
    assert_eq!(
        world(&decision),
        vec![Action::SetWeight(0.0)],
        "no copy (stable never left r1), no scale-down before the drain"
    );
    assert_eq!(sim.status.phase, Phase::WaitingForRelease);
    assert!(sim.status.scale_down_at.is_some());
    let decision = sim.tick(&world_is("r1", Ready, "r1", Stopped, None));
    assert_eq!(
        world(&decision),
        vec![scale_down("r1")],
        "after the 30s drain"
    );

    let mut sim = Sim::new();
    sim.walk_to_promoting();
    sim.tick(&world_is("r2", Ready, "r2", Starting, Some("r2")));
    let decision = sim.tick(&world_is("r1", Starting, "r2", Stopped, Some("r2")));
    assert_eq!(world(&decision), vec![copy("r1")]);
    assert_eq!(sim.status.weight, 100.0);
    assert_eq!(sim.status.scale_down_at, None);
}

#[test]
fn a_retry_on_the_tick_a_revert_undoes_a_failed_promotion_is_refused_not_dropped() {
    let mut sim = Sim::new();
    sim.walk_to_promoting();
    let failed = WorkloadState::Failed("ProgressDeadlineExceeded".into());
    sim.tick(&world_is("r2", Ready, "r2", failed, Some("r2")));
    assert_eq!(sim.status.phase, Phase::PromotionFailed);
    let decision = sim.tick_with(
        healthy(Some(ManualAction::Retry)),
        &world_is("r1", Starting, "r2", Stopped, Some("r2")),
    );
    assert_eq!(world(&decision), vec![copy("r1")], "the revert wins");
    assert_eq!(
        decision.event_reasons(),
        vec![reasons::REVERTED, reasons::ACTION_REFUSED]
    );
    assert_eq!(sim.status.attempt, 1, "no second run");
}

#[test]
fn a_manual_action_while_the_deployments_hold_the_rollout_is_refused_not_dropped() {
    let mut sim = Sim::new();
    sim.tick(&world_is("r1", Stopped, "r1", Ready, None));
    let mut broken = world_is("r2", Stopped, "r1", Ready, None);
    broken.problem = Some("spec.stable.deployment: selects on other keys".into());
    sim.tick(&broken);
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    // Weight 0: held before any other rule.
    let decision = sim.tick_with(healthy(Some(ManualAction::Pause)), &broken);
    assert_eq!(decision.event_reasons(), vec![reasons::ACTION_REFUSED]);
    assert!(decision.actions.iter().any(|a| matches!(a,
        Action::Event { message, .. } if message.contains("selects on other keys"))));
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    assert!(!sim.status.manual_pause);

    // With users on the canary: the promote of the tick the Deployments break is refused,
    // and the weight is held where it is.
    let mut sim = Sim::new();
    sim.tick(&world_is("r2", Stopped, "r1", Stopped, None));
    sim.tick(&world_is("r2", Ready, "r1", Stopped, None));
    assert_eq!(sim.status.weight, 10.0);
    let mut broken = world_is("r2", Ready, "r1", Stopped, None);
    broken.problem = Some("spec.stable.deployment: selects on other keys".into());
    let decision = sim.tick_with(healthy(Some(ManualAction::Promote)), &broken);
    assert_eq!(
        decision.event_reasons(),
        vec![reasons::INVALID_SPEC, reasons::ACTION_REFUSED]
    );
    assert_eq!(world(&decision), vec![]);
    assert_eq!(sim.status.weight, 10.0);
}

#[test]
fn a_promote_while_the_deployments_hold_users_on_the_canary_is_refused_naming_the_deployments() {
    let mut sim = Sim::new();
    sim.tick(&world_is("r2", Stopped, "r1", Stopped, None));
    sim.tick(&world_is("r2", Ready, "r1", Stopped, None));
    let mut broken = world_is("r2", Ready, "r1", Stopped, None);
    broken.problem = Some("spec.stable.deployment: selects on other keys".into());
    sim.tick(&broken);
    assert_eq!(sim.status.phase, Phase::InvalidSpec);
    assert_eq!(sim.status.weight, 10.0);
    let decision = sim.tick_with(healthy(Some(ManualAction::Promote)), &broken);
    let refused: Vec<&String> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Event {
                reason, message, ..
            } if *reason == reasons::ACTION_REFUSED => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", decision.actions);
    assert!(
        refused[0].starts_with(
            "promote refused: the rollout is InvalidSpec: the Deployments cannot run a release lifecycle"
        ),
        "{}",
        refused[0]
    );
    assert_eq!(sim.status.weight, 10.0);
}

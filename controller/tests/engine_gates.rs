//! Gates (contract 5, "Gates"): each webhook type passing, failing and timing out, manual
//! approvals keyed by revision and kept across restarts, and rollout windows (including
//! across a daylight-saving change) that hold raises but never rollbacks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::jiff::Timestamp;
use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use stickycanary::crd::{RolloutWindow, Schedule, WebhookType};
use stickycanary::engine::gates::{due, CallOutcome, GateInput, WebhookCall};
use stickycanary::engine::schedule::{self, WindowState};
use stickycanary::engine::{decide_gated, reasons, Action, Decision};
use stickycanary::observation::{ManualAction, Observations, ReleaseObservation, WorkloadState};
use support::engine::window;

const BASE: &str = r#"
rolloutKey: checkout
analysis: {errorRate: {maxPercent: 5, for: 1m}}
stages:
  - {weight: 10, duration: 1m}
  - {weight: 50, duration: 1m}
  - {weight: 100}
"#;

fn spec(extra: &str) -> CanaryRolloutSpec {
    support::engine::spec(&format!("{BASE}{extra}"))
}

fn at(seconds: i64) -> Timestamp {
    support::engine::at_from("2026-11-30T10:00:00Z", seconds)
}

fn traffic(error_percent: f64) -> Observations {
    support::engine::traffic(window(1000.0, error_percent))
}

fn passed(name: &str, kind: WebhookType) -> WebhookCall {
    WebhookCall {
        name: name.to_string(),
        kind,
        outcome: CallOutcome::Passed { status: 200 },
    }
}

fn failed(name: &str, kind: WebhookType, summary: &str) -> WebhookCall {
    WebhookCall {
        name: name.to_string(),
        kind,
        outcome: CallOutcome::Failed {
            summary: summary.to_string(),
            body: "not yet".to_string(),
        },
    }
}

fn calls(list: Vec<WebhookCall>) -> GateInput {
    GateInput {
        calls: list,
        ..GateInput::default()
    }
}

/// A rollout on a simulated clock (30s per tick).
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

    fn tick_with(
        &mut self,
        observations: &Observations,
        release: Option<&ReleaseObservation>,
        input: &GateInput,
    ) -> Decision {
        let decision = decide_gated(
            &self.spec,
            &self.status,
            at(self.now),
            observations,
            release,
            input,
        );
        self.status = decision.status.clone();
        self.now += 30;
        decision
    }

    fn tick(&mut self, input: &GateInput) -> Decision {
        self.tick_with(&traffic(1.0), None, input)
    }

    /// Ticks with healthy traffic until the weight is `weight`.
    fn until_weight(&mut self, weight: f64, input: &GateInput) {
        for _ in 0..20 {
            if self.status.weight == weight {
                return;
            }
            self.tick(input);
        }
        panic!("never reached {weight}%: {:?}", self.status);
    }

    fn waiting(&self) -> String {
        self.status
            .gate
            .as_ref()
            .map(|wait| wait.describe())
            .unwrap_or_default()
    }
}

fn count(decision: &Decision, reason: &str) -> usize {
    decision
        .event_reasons()
        .iter()
        .filter(|r| **r == reason)
        .count()
}

fn release(revision: &str, canary: WorkloadState) -> ReleaseObservation {
    ReleaseObservation {
        rollout_key: "checkout".to_string(),
        canary_revision: revision.to_string(),
        stable_revision: Some("r1".to_string()),
        canary,
        stable: WorkloadState::Stopped,
        recorded: Default::default(),
        problem: None,
    }
}

// --- confirm-rollout -----------------------------------------------------------------

#[test]
fn confirm_rollout_holds_the_scale_up_until_it_passes_with_one_event_per_wait() {
    let mut sim = Sim::new(spec(
        "stable: {}\nwebhooks:\n  - {name: change-window, type: confirm-rollout, url: \"http://127.0.0.1:9/ok\"}\n",
    ));
    let stopped = release("r2", WorkloadState::Stopped);
    let webhook_names: Vec<&str> = due(&sim.spec, &sim.status, Some(&stopped), at(0))
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(
        webhook_names,
        ["change-window"],
        "a new revision asks confirm-rollout"
    );

    let refused = calls(vec![failed(
        "change-window",
        WebhookType::ConfirmRollout,
        "403",
    )]);
    let first = sim.tick_with(&traffic(1.0), Some(&stopped), &refused);
    assert_eq!(sim.status.phase, Phase::ScalingUp);
    assert!(!first
        .actions
        .iter()
        .any(|a| matches!(a, Action::ScaleCanaryUp { .. })));
    assert_eq!(count(&first, reasons::GATE_WAITING), 1);
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-rollout (webhook change-window: 403)"
    );

    let timed_out = calls(vec![failed(
        "change-window",
        WebhookType::ConfirmRollout,
        "timeout after 10s",
    )]);
    for _ in 0..5 {
        let again = sim.tick_with(&traffic(1.0), Some(&stopped), &timed_out);
        assert_eq!(
            count(&again, reasons::GATE_WAITING),
            0,
            "one Event per wait, not per interval"
        );
        assert!(!again
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScaleCanaryUp { .. })));
    }
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-rollout (webhook change-window: timeout after 10s)"
    );
    assert_eq!(
        sim.status.phase,
        Phase::ScalingUp,
        "a wait is not a failure, even past progressDeadline"
    );

    let ok = calls(vec![passed("change-window", WebhookType::ConfirmRollout)]);
    let open = sim.tick_with(&traffic(1.0), Some(&stopped), &ok);
    assert!(open.actions.contains(&Action::ScaleCanaryUp {
        revision: "r2".to_string()
    }));
    assert_eq!(count(&open, reasons::GATE_OPENED), 1);
    assert_eq!(sim.status.gate, None);
}

// --- pre-rollout -----------------------------------------------------------------------

#[test]
fn pre_rollout_holds_weight_zero_then_rolls_back_past_its_for() {
    let mut sim = Sim::new(spec(
        "webhooks:\n  - {name: smoke, type: pre-rollout, url: \"http://127.0.0.1:9/smoke\", for: 1m}\n",
    ));
    let failing = calls(vec![failed("smoke", WebhookType::PreRollout, "500")]);
    sim.tick(&failing);
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Pending, 0.0));
    assert_eq!(
        sim.waiting(),
        "waiting for pre-rollout (webhook smoke: 500)"
    );
    sim.tick(&failing);
    assert_eq!(sim.status.phase, Phase::Pending, "30s of failures < for 1m");
    let last = sim.tick(&failing);
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(sim.status.rollback_reason.as_deref(), Some("webhook:smoke"));
    assert_eq!(last.new_weight(), Some(0.0));
    assert_eq!(sim.status.gate, None, "a rolled-back run waits for nothing");
}

#[test]
fn pre_rollout_that_passes_starts_the_first_stage() {
    let mut sim = Sim::new(spec(
        "webhooks:\n  - {name: smoke, type: pre-rollout, url: \"http://127.0.0.1:9/smoke\"}\n",
    ));
    let not_asked = sim.tick(&GateInput::default());
    assert_eq!(
        not_asked.new_weight(),
        None,
        "a webhook not asked yet holds, quietly"
    );
    assert!(not_asked.event_reasons().is_empty());
    let decision = sim.tick(&calls(vec![passed("smoke", WebhookType::PreRollout)]));
    assert_eq!(decision.new_weight(), Some(10.0));
    assert_eq!(sim.status.phase, Phase::Progressing);
}

// --- rollout -------------------------------------------------------------------------

#[test]
fn rollout_webhook_is_a_check_with_its_own_for() {
    let extra = "webhooks:\n  - {name: load-test, type: rollout, url: \"http://127.0.0.1:9/load\", for: 1m}\n";
    let mut sim = Sim::new(spec(extra));
    let ok = calls(vec![passed("load-test", WebhookType::Rollout)]);
    sim.tick(&ok);
    assert_eq!(sim.status.weight, 10.0);
    let listed: Vec<WebhookType> = due(&sim.spec, &sim.status, None, at(sim.now))
        .iter()
        .map(|w| w.kind)
        .collect();
    assert_eq!(
        listed,
        [WebhookType::Rollout],
        "asked every interval while progressing"
    );
    // Passing load tests let the stage advance after its minute.
    sim.until_weight(50.0, &ok);
    let checks = &sim.status.last_analysis.as_ref().unwrap().checks;
    assert!(
        checks.iter().any(|c| c.name == "webhook:load-test"),
        "{checks:?}"
    );

    // Timeouts fail like any failure; past `for` the run rolls back.
    let timeout = calls(vec![failed(
        "load-test",
        WebhookType::Rollout,
        "timeout after 10s",
    )]);
    sim.tick(&timeout);
    sim.tick(&timeout);
    assert_eq!(sim.status.phase, Phase::Progressing);
    sim.tick(&timeout);
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(
        sim.status.rollback_reason.as_deref(),
        Some("webhook:load-test")
    );
}

// --- confirm-traffic-increase ----------------------------------------------------------

#[test]
fn confirm_traffic_increase_holds_every_raise_but_not_a_rollback() {
    let extra = "webhooks:\n  - {name: capacity, type: confirm-traffic-increase, url: \"http://127.0.0.1:9/cap\"}\n";
    let mut sim = Sim::new(spec(extra));
    let ok = calls(vec![passed(
        "capacity",
        WebhookType::ConfirmTrafficIncrease,
    )]);
    let no = calls(vec![failed(
        "capacity",
        WebhookType::ConfirmTrafficIncrease,
        "409",
    )]);
    sim.tick(&ok);
    assert_eq!(sim.status.weight, 10.0, "the first weight is a raise too");
    for _ in 0..6 {
        sim.tick(&no);
    }
    assert_eq!(sim.status.weight, 10.0);
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-traffic-increase (webhook capacity: 409)"
    );
    // Still guarded: a breach rolls back while waiting.
    for _ in 0..3 {
        sim.tick_with(&traffic(20.0), None, &no);
    }
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(sim.status.gate, None);
}

// --- confirm-promotion (manual) and approvals -----------------------------------------

const MANUAL_PROMOTION: &str =
    "webhooks:\n  - {name: release-manager, type: confirm-promotion, approval: manual}\n";

#[test]
fn confirm_promotion_waits_for_an_approval_of_the_runs_revision() {
    let mut sim = Sim::new(spec(&format!("stable: {{}}\n{MANUAL_PROMOTION}")));
    let ready = release("r2", WorkloadState::Ready);
    let none = GateInput::default();
    for _ in 0..12 {
        sim.tick_with(&traffic(1.0), Some(&ready), &none);
    }
    assert_eq!(
        (sim.status.phase, sim.status.weight),
        (Phase::Progressing, 50.0)
    );
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-promotion (manual approval)"
    );
    let wait = sim.status.gate.clone().unwrap();
    assert!(wait.manual);
    assert_eq!(wait.revision, "r2");

    // An approval of another revision does not open it.
    sim.status
        .approvals
        .approve(WebhookType::ConfirmPromotion, "r1");
    sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert_eq!(sim.status.weight, 50.0);

    // The run's own revision does; the approval is then in the status for good.
    sim.status
        .approvals
        .approve(WebhookType::ConfirmPromotion, "r2");
    let opened = sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert_eq!(opened.new_weight(), Some(100.0));
    assert_eq!(count(&opened, reasons::GATE_OPENED), 1);
    assert_eq!(sim.status.phase, Phase::Promoting);
}

#[test]
fn an_approval_for_v2_never_lets_v3_through() {
    let mut sim = Sim::new(spec(&format!("stable: {{}}\n{MANUAL_PROMOTION}")));
    let none = GateInput::default();
    sim.status
        .approvals
        .approve(WebhookType::ConfirmPromotion, "v2");
    let v3 = release("v3", WorkloadState::Ready);
    for _ in 0..15 {
        sim.tick_with(&traffic(1.0), Some(&v3), &none);
    }
    assert_eq!(sim.status.weight, 50.0);
    assert_eq!(sim.status.gate.as_ref().unwrap().revision, "v3");
}

#[test]
fn a_restart_keeps_approvals_and_the_wait() {
    let mut sim = Sim::new(spec(MANUAL_PROMOTION));
    let none = GateInput::default();
    sim.until_weight(50.0, &none);
    for _ in 0..4 {
        sim.tick(&none);
    }
    assert!(sim.status.gate.is_some());
    sim.status
        .approvals
        .approve(WebhookType::ConfirmPromotion, "unversioned");
    // What a restarted controller reads back: the status as the API server stored it.
    let stored = serde_json::to_string(&sim.status).unwrap();
    assert!(
        stored.contains(r#""approvals":{"confirmPromotion":{"revision":"unversioned"}}"#),
        "{stored}"
    );
    let mut restarted = Sim {
        spec: sim.spec.clone(),
        status: serde_json::from_str(&stored).unwrap(),
        now: sim.now,
    };
    let decision = restarted.tick(&none);
    assert_eq!(decision.new_weight(), Some(100.0));
    assert_eq!(restarted.status.phase, Phase::Promoted);
}

#[test]
fn a_breach_while_waiting_for_promotion_still_rolls_back() {
    let mut sim = Sim::new(spec(MANUAL_PROMOTION));
    let none = GateInput::default();
    sim.until_weight(50.0, &none);
    for _ in 0..3 {
        sim.tick(&none);
    }
    assert!(sim.waiting().starts_with("waiting for confirm-promotion"));
    for _ in 0..3 {
        sim.tick_with(&traffic(30.0), None, &none);
    }
    assert_eq!(sim.status.phase, Phase::RolledBack);
}

// --- rollback --------------------------------------------------------------------------

#[test]
fn a_rollback_webhook_answering_2xx_rolls_back_and_anything_else_does_not() {
    let extra =
        "webhooks:\n  - {name: kill-switch, type: rollback, url: \"http://127.0.0.1:9/kill\"}\n";
    let mut sim = Sim::new(spec(extra));
    sim.tick(&GateInput::default());
    assert_eq!(sim.status.weight, 10.0);
    for summary in ["404", "timeout after 10s", "connection failed"] {
        sim.tick(&calls(vec![failed(
            "kill-switch",
            WebhookType::Rollback,
            summary,
        )]));
        assert_eq!(
            sim.status.phase,
            Phase::Progressing,
            "{summary} is not an abort"
        );
    }
    let decision = sim.tick(&calls(vec![passed("kill-switch", WebhookType::Rollback)]));
    assert_eq!(decision.new_weight(), Some(0.0));
    assert_eq!(
        sim.status.rollback_reason.as_deref(),
        Some("webhook:kill-switch")
    );
}

#[test]
fn event_and_post_rollout_webhooks_are_never_gates() {
    let extra = "webhooks:\n  - {name: chat, type: event, url: \"http://127.0.0.1:9/e\"}\n  - {name: report, type: post-rollout, url: \"http://127.0.0.1:9/p\"}\n";
    let mut sim = Sim::new(spec(extra));
    for _ in 0..10 {
        assert!(due(&sim.spec, &sim.status, None, at(sim.now)).is_empty());
        sim.tick(&GateInput::default());
    }
    assert_eq!(sim.status.phase, Phase::Promoted);
}

// --- windows ---------------------------------------------------------------------------

fn berlin_weekdays() -> Schedule {
    Schedule {
        windows: vec![RolloutWindow {
            cron: "0 9 * * 1-5".to_string(),
            duration: "7h".parse().unwrap(),
            time_zone: "Europe/Berlin".to_string(),
        }],
        freeze: false,
    }
}

fn utc(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn a_window_opens_and_closes_on_local_time_across_a_dst_change() {
    let schedule = berlin_weekdays();
    let state = |t: &str| schedule::state(Some(&schedule), utc(t));
    // Friday 27 March 2026, CET (UTC+1): 09:00-16:00 local is 08:00-15:00 UTC.
    assert_eq!(
        state("2026-03-27T07:59:00Z"),
        WindowState::Closed {
            next_open: Some(utc("2026-03-27T08:00:00Z"))
        }
    );
    assert_eq!(state("2026-03-27T08:00:00Z"), WindowState::Open);
    assert_eq!(state("2026-03-27T14:59:59Z"), WindowState::Open);
    // Clocks go forward on Sunday 29 March: Monday's window is 07:00-14:00 UTC (CEST).
    assert_eq!(
        state("2026-03-27T15:00:00Z"),
        WindowState::Closed {
            next_open: Some(utc("2026-03-30T07:00:00Z"))
        }
    );
    assert_eq!(
        state("2026-03-30T06:59:00Z"),
        WindowState::Closed {
            next_open: Some(utc("2026-03-30T07:00:00Z"))
        }
    );
    assert_eq!(state("2026-03-30T07:00:00Z"), WindowState::Open);
    assert_eq!(state("2026-03-30T13:59:00Z"), WindowState::Open);
    assert_eq!(
        state("2026-03-30T14:00:00Z"),
        WindowState::Closed {
            next_open: Some(utc("2026-03-31T07:00:00Z"))
        }
    );
    // And back on Sunday 25 October: Monday 26 October opens at 08:00 UTC again.
    assert_eq!(
        state("2026-10-26T07:30:00Z"),
        WindowState::Closed {
            next_open: Some(utc("2026-10-26T08:00:00Z"))
        }
    );
    assert_eq!(state("2026-10-26T08:30:00Z"), WindowState::Open);
    // A freeze holds whatever the windows say; no schedule is always open.
    let frozen = Schedule {
        freeze: true,
        ..berlin_weekdays()
    };
    assert_eq!(
        schedule::state(Some(&frozen), utc("2026-03-30T08:00:00Z")),
        WindowState::Frozen
    );
    assert_eq!(
        schedule::state(None, utc("2026-03-30T03:00:00Z")),
        WindowState::Open
    );
}

#[test]
fn outside_a_window_no_run_starts_and_status_says_when_the_next_opens() {
    // 2026-11-30 is a Monday; the simulated clock starts at 10:00 UTC = 11:00 Berlin.
    let mut spec = spec("");
    spec.schedule = Some(Schedule {
        windows: vec![RolloutWindow {
            cron: "0 12 * * *".to_string(),
            duration: "1h".parse().unwrap(),
            time_zone: "Europe/Berlin".to_string(),
        }],
        freeze: false,
    });
    let mut sim = Sim::new(spec);
    let first = sim.tick(&GateInput::default());
    assert_eq!((sim.status.phase, sim.status.weight), (Phase::Pending, 0.0));
    let wait = sim.status.gate.clone().unwrap();
    assert_eq!(wait.gate, "schedule");
    assert_eq!(
        wait.next_window.as_ref().map(|t| t.0),
        Some(utc("2026-11-30T11:00:00Z"))
    );
    assert!(
        sim.waiting()
            .contains("the next opens at 2026-11-30T11:00:00Z"),
        "{}",
        sim.waiting()
    );
    assert_eq!(count(&first, reasons::GATE_WAITING), 1);
    sim.now = 3600; // 12:00 Berlin
    let open = sim.tick(&GateInput::default());
    assert_eq!(open.new_weight(), Some(10.0));
    assert_eq!(count(&open, reasons::GATE_OPENED), 1);
}

#[test]
fn a_freeze_holds_raises_and_the_stage_clock_but_never_a_rollback() {
    let mut sim = Sim::new(spec(""));
    let none = GateInput::default();
    sim.tick(&none);
    assert_eq!(sim.status.weight, 10.0);
    // Frozen 30s into the 1m stage (the next tick sees it).
    sim.spec.schedule = Some(Schedule {
        windows: vec![],
        freeze: true,
    });
    for _ in 0..10 {
        sim.tick(&none);
    }
    assert_eq!(
        sim.status.weight, 10.0,
        "frozen: no raise however long the stage ran"
    );
    assert_eq!(
        sim.waiting(),
        "waiting for schedule (frozen (spec.schedule.freeze))"
    );
    // Thawed: the 5 frozen minutes do not count, so the stage still needs its last 30s.
    sim.spec.schedule = None;
    sim.tick(&none);
    assert_eq!(
        sim.status.weight, 10.0,
        "the stage clock did not run while frozen"
    );
    assert_eq!(sim.status.gate, None);
    sim.tick(&none);
    assert_eq!(sim.status.weight, 50.0);
    // Frozen again, a breach still rolls back.
    sim.spec.schedule = Some(Schedule {
        windows: vec![],
        freeze: true,
    });
    for _ in 0..3 {
        sim.tick_with(&traffic(40.0), None, &none);
    }
    assert_eq!(sim.status.phase, Phase::RolledBack);
    assert_eq!(sim.status.weight, 0.0);
}

// --- Lifecycle edges (issue 23): freeze at the last stage, approvals per run and stage ----

fn frozen() -> Option<Schedule> {
    Some(Schedule {
        windows: vec![],
        freeze: true,
    })
}

fn with_manual(mut observations: Observations, action: ManualAction) -> Observations {
    observations.manual = Some(action);
    observations
}

/// Records an approval as `stickycanary approve` stores it in `status.approvals.<field>`.
fn approve(status: &mut CanaryRolloutStatus, field: &str, record: serde_json::Value) {
    let mut approvals = serde_json::to_value(&status.approvals).unwrap();
    approvals[field] = record;
    status.approvals = serde_json::from_value(approvals).unwrap();
}

#[test]
fn a_freeze_holds_a_last_stage_with_a_duration_and_promoting_waits_for_the_thaw() {
    let mut bake = spec("stable: {}\n");
    bake.stages =
        serde_yaml::from_str("[{weight: 10, duration: 1m}, {weight: 100, duration: 2m}]").unwrap();
    let mut sim = Sim::new(bake);
    let none = GateInput::default();
    let ready = release("r2", WorkloadState::Ready);
    sim.tick_with(
        &traffic(1.0),
        Some(&release("r2", WorkloadState::Stopped)),
        &none,
    ); // t=0
    while sim.status.weight < 100.0 {
        sim.tick_with(&traffic(1.0), Some(&ready), &none);
        assert!(sim.now < 600, "never reached the last stage");
    }
    // At 100% since the previous tick; the next tick is 30s into the 2m bake.
    let last_started = sim.now - 30;
    sim.spec.schedule = frozen();
    let mut all = Vec::new();
    for _ in 0..20 {
        let decision = sim.tick_with(&traffic(1.0), Some(&ready), &none);
        all.extend(decision.actions);
    }
    assert!(
        !all.iter()
            .any(|a| matches!(a, Action::PromoteStable { .. })),
        "no promotion while frozen: {all:?}"
    );
    assert_eq!(sim.status.phase, Phase::Progressing);
    assert_eq!(
        sim.waiting(),
        "waiting for schedule (frozen (spec.schedule.freeze))"
    );
    // Thawed: 30s of the bake ran before the freeze, so it needs 90s more.
    let thawed = sim.now;
    sim.spec.schedule = None;
    let promoted_at = loop {
        let now = sim.now;
        let decision = sim.tick_with(&traffic(1.0), Some(&ready), &none);
        if decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::PromoteStable { .. }))
        {
            break now;
        }
        assert!(sim.now < thawed + 600, "never promoted after the thaw");
    };
    assert_eq!(
        promoted_at - thawed,
        90,
        "the frozen {}s did not count",
        thawed - last_started - 30
    );
    assert_eq!(sim.status.phase, Phase::Promoting);
}

#[test]
fn a_manual_promote_while_frozen_is_refused_with_an_event() {
    let mut sim = Sim::new(spec(""));
    let none = GateInput::default();
    sim.tick(&none);
    assert_eq!(sim.status.weight, 10.0);
    sim.spec.schedule = frozen();
    let decision = sim.tick_with(
        &with_manual(traffic(1.0), ManualAction::Promote),
        None,
        &none,
    );
    assert_eq!(sim.status.weight, 10.0);
    assert_eq!(sim.status.phase, Phase::Progressing);
    assert!(
        decision.event_reasons().contains(&reasons::ACTION_REFUSED),
        "{decision:?}"
    );
    assert_eq!(decision.new_weight(), None);
}

#[test]
fn a_freeze_still_lets_a_rollback_and_its_drain_happen() {
    let mut sim = Sim::new(spec("stable: {}\n"));
    let none = GateInput::default();
    let ready = release("r2", WorkloadState::Ready);
    sim.tick_with(
        &traffic(1.0),
        Some(&release("r2", WorkloadState::Stopped)),
        &none,
    );
    sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert_eq!(sim.status.weight, 10.0);
    sim.spec.schedule = frozen();
    sim.tick_with(
        &with_manual(traffic(1.0), ManualAction::Abort),
        Some(&ready),
        &none,
    );
    assert_eq!(
        (sim.status.phase, sim.status.weight),
        (Phase::RolledBack, 0.0)
    );
    let decision = sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert!(decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::ScaleCanaryDown { .. })));
}

const MANUAL_ROLLOUT: &str =
    "webhooks:\n  - {name: release-manager, type: confirm-rollout, approval: manual}\n";

#[test]
fn an_approval_does_not_outlive_its_run_so_a_retry_waits_at_the_gate_again() {
    let mut sim = Sim::new(spec(&format!("stable: {{}}\n{MANUAL_ROLLOUT}")));
    let none = GateInput::default();
    let ready = release("r2", WorkloadState::Ready);
    sim.tick_with(
        &traffic(1.0),
        Some(&release("r2", WorkloadState::Stopped)),
        &none,
    );
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-rollout (manual approval)"
    );
    approve(
        &mut sim.status,
        "confirmRollout",
        serde_json::json!({"revision": "r2", "attempt": 1}),
    );
    sim.tick_with(
        &traffic(1.0),
        Some(&release("r2", WorkloadState::Stopped)),
        &none,
    );
    sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert_eq!(sim.status.weight, 10.0);
    sim.tick_with(
        &with_manual(traffic(1.0), ManualAction::Abort),
        Some(&ready),
        &none,
    );
    assert_eq!(sim.status.phase, Phase::RolledBack);

    sim.tick_with(
        &with_manual(traffic(1.0), ManualAction::Retry),
        Some(&ready),
        &none,
    );
    assert_eq!(sim.status.attempt, 2);
    for _ in 0..4 {
        sim.tick_with(&traffic(1.0), Some(&ready), &none);
        assert_eq!(
            sim.status.weight, 0.0,
            "run 1's approval does not open run 2"
        );
    }
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-rollout (manual approval)"
    );
    approve(
        &mut sim.status,
        "confirmRollout",
        serde_json::json!({"revision": "r2", "attempt": 2}),
    );
    sim.tick_with(&traffic(1.0), Some(&ready), &none);
    assert_eq!(sim.status.weight, 10.0);
}

const MANUAL_RAISES: &str =
    "webhooks:\n  - {name: capacity-owner, type: confirm-traffic-increase, approval: manual}\n";

#[test]
fn one_traffic_increase_approval_opens_one_raise() {
    let mut sim = Sim::new(spec(MANUAL_RAISES));
    let none = GateInput::default();
    sim.tick(&none);
    assert_eq!(sim.status.weight, 0.0);
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-traffic-increase (manual approval)"
    );
    approve(
        &mut sim.status,
        "confirmTrafficIncrease",
        serde_json::json!({"revision": "unversioned", "stage": 0}),
    );
    sim.tick(&none);
    assert_eq!(sim.status.weight, 10.0);
    for _ in 0..6 {
        sim.tick(&none);
    }
    assert_eq!(
        sim.status.weight, 10.0,
        "the approval of 10% does not open 50%"
    );
    assert_eq!(
        sim.waiting(),
        "waiting for confirm-traffic-increase (manual approval)"
    );
    approve(
        &mut sim.status,
        "confirmTrafficIncrease",
        serde_json::json!({"revision": "unversioned", "stage": 1}),
    );
    sim.tick(&none);
    assert_eq!(sim.status.weight, 50.0);
    for _ in 0..6 {
        sim.tick(&none);
    }
    assert_eq!(
        sim.status.weight, 50.0,
        "nor does the approval of 50% open 100%"
    );
}

#[test]
fn a_pause_during_a_freeze_does_not_count_the_stopped_time_twice() {
    let mut sim = Sim::new(spec(""));
    let none = GateInput::default();
    sim.tick(&none); // t=0: 10%, the 1m stage starts
    sim.spec.schedule = frozen();
    while sim.now < 180 {
        sim.tick(&none); // t=30..150: frozen 30s into the stage
    }
    sim.tick_with(&with_manual(traffic(1.0), ManualAction::Pause), None, &none); // t=180
    assert_eq!(sim.status.phase, Phase::Paused);
    while sim.now < 300 {
        sim.tick(&none);
    }
    sim.spec.schedule = None;
    sim.tick_with(
        &with_manual(traffic(1.0), ManualAction::Resume),
        None,
        &none,
    ); // t=300
    assert_eq!(
        sim.status.weight, 10.0,
        "30s ran before the freeze: 30s to go"
    );
    let raised = sim.now;
    sim.tick(&none); // t=330: 60s of running time
    assert_eq!(
        sim.status.weight, 50.0,
        "the stage ran 30s + 30s; frozen and paused time counted once, not twice (at t={raised})"
    );
}

//! The decision engine's rules (contract 5), each test named for one rule. A simulated
//! clock ticks every analysis interval (30s by default) and feeds scripted observations.

// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use stickycanary::crd::{
    CanaryRolloutSpec, CanaryRolloutStatus, CheckResult, CompareStableCheck, CustomCheck, Outcome,
    Phase, HISTORY_LIMIT,
};
use stickycanary::duration::Duration;
use stickycanary::engine::{decide, reasons, Action, Decision};
use stickycanary::observation::{
    CanaryHealth, CustomObservation, ManualAction, MetricsObservation, Observations,
};
use support::engine::{at, traffic, window_p99};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn spec() -> CanaryRolloutSpec {
    support::engine::spec("")
}

const MIN: i64 = 60;

/// 1000 canary requests, 1% errors, p99 120ms: comfortably inside the seed's thresholds.
fn healthy() -> Observations {
    traffic(window_p99(1000.0, 1.0, 120.0))
}

fn erroring(percent: f64) -> Observations {
    traffic(window_p99(1000.0, percent, 120.0))
}

fn slow(p99_ms: f64) -> Observations {
    traffic(window_p99(1000.0, 1.0, p99_ms))
}

fn thin(requests: f64) -> Observations {
    traffic(window_p99(requests, 1.0, 120.0))
}

fn prometheus_down() -> Observations {
    Observations {
        metrics: MetricsObservation::Unavailable {
            reason: "connection refused".to_string(),
        },
        ..healthy()
    }
}

fn crashing(reason: &str) -> Observations {
    Observations {
        canary_health: CanaryHealth::Crashing {
            pod: "checkout-canary-7d9f-abcde".to_string(),
            reason: reason.to_string(),
        },
        ..healthy()
    }
}

fn manual(action: ManualAction) -> Observations {
    Observations {
        manual: Some(action),
        stable_before_run: None,
        ..healthy()
    }
}

fn with_custom(
    mut observations: Observations,
    name: &str,
    value: Result<Option<f64>, String>,
) -> Observations {
    observations.custom.push(CustomObservation {
        name: name.to_string(),
        value,
    });
    observations
}

/// A rollout driven by a simulated clock; keeps every decision for assertions.
struct Sim {
    spec: CanaryRolloutSpec,
    status: CanaryRolloutStatus,
    now: i64,
    decisions: Vec<(i64, Decision)>,
}

impl Sim {
    fn new(spec: CanaryRolloutSpec) -> Self {
        Sim {
            spec,
            status: CanaryRolloutStatus::default(),
            now: 0,
            decisions: Vec::new(),
        }
    }

    /// A rollout already started at t=0 (weight 10).
    fn started(spec: CanaryRolloutSpec) -> Self {
        let mut sim = Sim::new(spec);
        sim.tick(&healthy());
        sim
    }

    fn interval(&self) -> i64 {
        i64::try_from(self.spec.analysis.interval.as_millis() / 1000).unwrap()
    }

    /// Decide at the current time, then move the clock one interval on.
    fn tick(&mut self, observations: &Observations) -> Decision {
        let decision = decide(&self.spec, &self.status, at(self.now), observations);
        self.status = decision.status.clone();
        self.decisions.push((self.now, decision.clone()));
        self.now += self.interval();
        decision
    }

    /// Tick until (not including) `until` seconds with the same observations.
    fn run_until(&mut self, until: i64, observations: &Observations) {
        while self.now < until {
            self.tick(observations);
        }
    }

    /// Times (seconds) at which the weight was set, with the weight.
    fn weight_changes(&self) -> Vec<(i64, f64)> {
        self.decisions
            .iter()
            .filter_map(|(time, d)| d.new_weight().map(|w| (*time, w)))
            .collect()
    }

    fn events(&self, reason: &str) -> Vec<(i64, String)> {
        self.decisions
            .iter()
            .flat_map(|(time, d)| {
                d.actions.iter().filter_map(move |action| match action {
                    Action::Event {
                        reason: r, message, ..
                    } if *r == reason => Some((*time, message.clone())),
                    _ => None,
                })
            })
            .collect()
    }

    /// The latest analysis's result for the check `name`.
    fn check(&self, name: &str) -> CheckResult {
        let analysis = self.status.last_analysis.as_ref().unwrap();
        let check = analysis.checks.iter().find(|check| check.name == name);
        check.cloned().unwrap()
    }

    /// When the rollout rolled back, and why.
    fn rolled_back(&self) -> Option<(i64, String)> {
        self.decisions.iter().find_map(|(time, d)| {
            (d.status.phase == Phase::RolledBack)
                .then(|| (*time, d.status.rollback_reason.clone().unwrap_or_default()))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------

#[test]
fn pending_starts_the_first_stage() {
    let mut sim = Sim::new(spec());
    let decision = sim.tick(&healthy());
    assert_eq!(decision.status.phase, Phase::Progressing);
    assert_eq!(decision.status.stage_index, 0);
    assert_eq!(decision.new_weight(), Some(10.0));
    assert_eq!(decision.event_reasons(), [reasons::STAGE_ADVANCED]);
    assert_eq!(
        decision.status.stage_started_at.as_ref().map(|t| t.0),
        Some(at(0))
    );
}

#[test]
fn healthy_canary_walks_10_25_50_100_in_the_configured_times() {
    let mut sim = Sim::new(spec());
    sim.run_until(2 * 60 * MIN, &healthy());
    // Stages 10%/10m, 25%/15m, 50%/20m, then 100%.
    assert_eq!(
        sim.weight_changes(),
        [
            (0, 10.0),
            (10 * MIN, 25.0),
            (25 * MIN, 50.0),
            (45 * MIN, 100.0)
        ]
    );
    assert_eq!(sim.status.phase, Phase::Promoted);
    assert_eq!(sim.status.weight, 100.0);
    assert_eq!(sim.status.stage_index, 3);
    assert_eq!(sim.events(reasons::STAGE_ADVANCED).len(), 3);
    assert_eq!(sim.events(reasons::PROMOTED).len(), 1);
    assert_eq!(sim.events(reasons::ROLLING_BACK).len(), 0);
    let ready = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
}

#[test]
fn custom_stages_and_interval_are_honoured() {
    let mut spec = spec();
    spec.analysis.interval = Duration::from_secs(10);
    spec.stages = serde_yaml::from_str(
        "[{weight: 5, duration: 1m}, {weight: 50, duration: 30s}, {weight: 100, duration: 1m}]",
    )
    .unwrap();
    let mut sim = Sim::new(spec);
    sim.run_until(10 * MIN, &healthy());
    // The last stage has a duration, so 100% is held for 1m before promotion.
    assert_eq!(sim.weight_changes(), [(0, 5.0), (60, 50.0), (90, 100.0)]);
    let promoted_at = sim.events(reasons::PROMOTED)[0].0;
    assert_eq!(promoted_at, 150);
}

#[test]
fn stage_does_not_advance_while_any_check_fails_even_after_its_duration() {
    let mut sim = Sim::started(spec());
    sim.run_until(9 * MIN, &healthy());
    // A short latency breach over the end of the stage (under its 3m `for`).
    sim.run_until(11 * MIN, &slow(900.0));
    assert_eq!(sim.status.weight, 10.0);
    assert!(sim.rolled_back().is_none());
    // The first passing window after the duration advances.
    sim.tick(&healthy());
    assert_eq!(sim.weight_changes().last(), Some(&(11 * MIN, 25.0)));
}

// ---------------------------------------------------------------------------------------
// Breaches
// ---------------------------------------------------------------------------------------

struct BreachCase {
    rule: &'static str,
    bad: Observations,
    bad_from: i64,
    /// The bad observations stop here (healthy afterwards); `None`: never.
    bad_until: Option<i64>,
    /// When the rollback must happen and its reason; `None`: no rollback.
    expected: Option<(i64, &'static str)>,
}

fn run_breach(case: &BreachCase, spec: CanaryRolloutSpec) {
    let mut sim = Sim::started(spec);
    while sim.now < 20 * MIN && sim.status.phase != Phase::RolledBack {
        let bad = sim.now >= case.bad_from && case.bad_until.is_none_or(|until| sim.now < until);
        let observations = if bad { case.bad.clone() } else { healthy() };
        sim.tick(&observations);
    }
    let rolled_back = sim.rolled_back();
    assert_eq!(
        rolled_back
            .as_ref()
            .map(|(time, reason)| (*time, reason.as_str())),
        case.expected,
        "rule: {}",
        case.rule
    );
    if rolled_back.is_some() {
        assert_eq!(sim.status.weight, 0.0, "rule: {}", case.rule);
        assert_eq!(sim.weight_changes().last().map(|c| c.1), Some(0.0));
        assert_eq!(
            sim.events(reasons::ROLLING_BACK).len(),
            1,
            "rule: {}",
            case.rule
        );
    }
}

#[test]
fn error_breach_of_two_minutes_rolls_back_and_of_one_minute_does_not() {
    let cases = [
        BreachCase {
            rule: "10% errors from 2m for good: rollback 2m later",
            bad: erroring(10.0),
            bad_from: 2 * MIN,
            bad_until: None,
            expected: Some((4 * MIN, "error-rate")),
        },
        BreachCase {
            rule: "10% errors for one minute (three windows), then healthy: no rollback",
            bad: erroring(10.0),
            bad_from: 2 * MIN,
            bad_until: Some(3 * MIN + 30),
            expected: None,
        },
        BreachCase {
            rule: "errors at exactly the 5% limit are not a breach",
            bad: erroring(5.0),
            bad_from: MIN,
            bad_until: None,
            expected: None,
        },
    ];
    for case in &cases {
        run_breach(case, spec());
    }
}

#[test]
fn latency_breach_of_three_minutes_rolls_back() {
    let cases = [
        BreachCase {
            rule: "p99 800ms from 1m for good: rollback 3m later",
            bad: slow(800.0),
            bad_from: MIN,
            bad_until: None,
            expected: Some((4 * MIN, "latency")),
        },
        BreachCase {
            rule: "p99 800ms for 2m30s, then healthy: no rollback",
            bad: slow(800.0),
            bad_from: MIN,
            bad_until: Some(3 * MIN + 30),
            expected: None,
        },
    ];
    for case in &cases {
        run_breach(case, spec());
    }
}

#[test]
fn thresholds_and_for_windows_are_configurable() {
    let mut spec = spec();
    spec.analysis.error_rate.max_percent = 1.0;
    spec.analysis.error_rate.for_duration = Duration::ZERO;
    run_breach(
        &BreachCase {
            rule: "for: 0s rolls back on the first breaching window",
            bad: erroring(2.0),
            bad_from: 90,
            bad_until: None,
            expected: Some((90, "error-rate")),
        },
        spec,
    );
}

#[test]
fn a_passing_window_ends_the_breach_and_the_next_one_starts_afresh() {
    let mut sim = Sim::started(spec());
    sim.run_until(90, &healthy());
    sim.run_until(3 * MIN, &erroring(10.0)); // 90s of breach
    sim.tick(&healthy()); // interrupts it
    assert!(sim.status.breach_started_at.is_empty());
    sim.run_until(6 * MIN, &erroring(10.0)); // from 3m30s: 2m30s, rolls back at 5m30s
    assert_eq!(
        sim.rolled_back(),
        Some((5 * MIN + 30, "error-rate".to_string()))
    );
}

#[test]
fn compare_stable_breach_rolls_back() {
    let mut spec = spec();
    spec.analysis.compare_stable = Some(CompareStableCheck {
        max_increase_percent_points: 1.0,
        for_duration: Duration::from_mins(1),
        from_stage: None,
    });
    // 3% on canary vs 1% on stable: under the absolute 5% but 2 points above stable.
    run_breach(
        &BreachCase {
            rule: "canary 2 points above stable for 1m",
            bad: erroring(3.0),
            bad_from: MIN,
            bad_until: None,
            expected: Some((2 * MIN, "compare-stable")),
        },
        spec,
    );
}

fn conversion_check(min: Option<f64>, max: Option<f64>) -> CustomCheck {
    CustomCheck {
        name: "conversion".to_string(),
        query: "sum(rate(orders_total[1m]))".to_string(),
        min,
        max,
        for_duration: Duration::from_mins(1),
        from_stage: None,
    }
}

#[test]
fn custom_check_out_of_bounds_rolls_back_with_its_name() {
    let mut spec = spec();
    spec.analysis.custom = vec![conversion_check(Some(0.5), None)];
    run_breach(
        &BreachCase {
            rule: "custom value below min for 1m",
            bad: with_custom(healthy(), "conversion", Ok(Some(0.2))),
            bad_from: MIN,
            bad_until: None,
            expected: Some((2 * MIN, "custom:conversion")),
        },
        spec,
    );
}

#[test]
fn custom_check_without_data_holds_and_with_an_error_counts_as_unavailable() {
    let mut spec = spec();
    spec.analysis.custom = vec![conversion_check(None, Some(10.0))];
    let mut sim = Sim::started(spec.clone());
    sim.run_until(30 * MIN, &with_custom(healthy(), "conversion", Ok(None)));
    assert_eq!(sim.status.weight, 10.0, "no data must hold the stage");
    assert_eq!(sim.events(reasons::INCONCLUSIVE).len(), 1);
    let checks = &sim.status.last_analysis.as_ref().unwrap().checks;
    let custom = checks
        .iter()
        .find(|c| c.name == "custom:conversion")
        .unwrap();
    assert_eq!(custom.verdict, Outcome::Inconclusive);

    let mut sim = Sim::started(spec);
    sim.run_until(MIN, &with_custom(healthy(), "conversion", Ok(Some(3.0))));
    sim.run_until(
        10 * MIN,
        &with_custom(healthy(), "conversion", Err("bad_data".to_string())),
    );
    assert_eq!(sim.events(reasons::PROMETHEUS_UNAVAILABLE).len(), 1);
    assert_eq!(
        sim.rolled_back(),
        Some((6 * MIN, "prometheus-unavailable".to_string()))
    );
}

#[test]
fn crashloop_or_oomkill_rolls_back_at_once() {
    for reason in ["CrashLoopBackOff", "OOMKilled"] {
        let mut sim = Sim::started(spec());
        sim.run_until(2 * MIN, &healthy());
        let decision = sim.tick(&crashing(reason));
        assert_eq!(decision.status.phase, Phase::RolledBack);
        assert_eq!(decision.new_weight(), Some(0.0));
        assert_eq!(
            decision.status.rollback_reason,
            Some(format!("crash:{reason}"))
        );
        let (_, message) = &sim.events(reasons::ROLLING_BACK)[0];
        assert!(message.contains("checkout-canary-7d9f-abcde"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------
// Thin windows and missing metrics
// ---------------------------------------------------------------------------------------

#[test]
fn thin_window_holds_and_never_promotes() {
    let mut sim = Sim::started(spec());
    // 99 requests < minRequests 100, even with errors that would otherwise breach.
    let mut thin_and_bad = thin(99.0);
    if let MetricsObservation::Window { canary, .. } = &mut thin_and_bad.metrics {
        canary.errors = 50.0;
        canary.p99_ms = Some(5000.0);
    }
    sim.run_until(3 * 60 * MIN, &thin_and_bad);
    assert_eq!(sim.status.phase, Phase::Progressing);
    assert_eq!(sim.weight_changes(), [(0, 10.0)]);
    assert!(sim.status.breach_started_at.is_empty());
    let inconclusive = sim.events(reasons::INCONCLUSIVE);
    assert_eq!(
        inconclusive.len(),
        1,
        "one event per streak, not per interval"
    );
    assert!(
        inconclusive[0].1.contains("99 canary requests"),
        "{}",
        inconclusive[0].1
    );
    let checks = &sim.status.last_analysis.as_ref().unwrap().checks;
    assert!(checks.iter().all(|c| c.verdict == Outcome::Inconclusive));

    // Enough traffic again: the long-finished stage advances at the first passing window.
    let resumed_at = sim.now;
    sim.tick(&healthy());
    assert_eq!(sim.weight_changes().last(), Some(&(resumed_at, 25.0)));
    assert!(sim.status.inconclusive_since.is_none());
    // A new thin streak raises a new event.
    sim.run_until(sim.now + 5 * MIN, &thin(10.0));
    assert_eq!(sim.events(reasons::INCONCLUSIVE).len(), 2);
}

#[test]
fn breach_timer_is_neither_extended_nor_ended_by_inconclusive_windows() {
    let mut sim = Sim::started(spec());
    sim.run_until(MIN, &erroring(10.0)); // breach starts at 30s
    sim.run_until(3 * MIN, &thin(5.0));
    assert_eq!(sim.status.breach_started_at.len(), 1);
    assert!(sim.rolled_back().is_none(), "thin windows never fail");
    sim.tick(&erroring(10.0)); // at 3m: breached since 30s, over the 2m limit
    assert_eq!(sim.rolled_back(), Some((3 * MIN, "error-rate".to_string())));
}

#[test]
fn prometheus_down_holds_then_fails_safe_after_the_grace_period() {
    let mut sim = Sim::started(spec());
    sim.run_until(12 * MIN, &healthy()); // now in stage 2 (25%) since 10m
    sim.run_until(30 * MIN, &prometheus_down());
    // Held at 25% from 12m, then rolled back at 12m + 5m grace.
    assert_eq!(
        sim.rolled_back(),
        Some((17 * MIN, "prometheus-unavailable".to_string()))
    );
    let held: Vec<f64> = sim
        .decisions
        .iter()
        .filter(|(time, _)| (12 * MIN..17 * MIN).contains(time))
        .map(|(_, d)| d.status.weight)
        .collect();
    assert!(held.iter().all(|w| *w == 25.0), "{held:?}");
    assert_eq!(sim.events(reasons::PROMETHEUS_UNAVAILABLE).len(), 1);
}

#[test]
fn prometheus_back_within_the_grace_period_carries_on() {
    let mut sim = Sim::started(spec());
    sim.run_until(2 * MIN, &healthy());
    sim.run_until(6 * MIN, &prometheus_down()); // 4m < 5m grace
    let degraded = sim
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "True");
    sim.tick(&healthy());
    assert!(sim.status.prometheus_unavailable_since.is_none());
    sim.run_until(30 * MIN, &healthy());
    assert!(sim.rolled_back().is_none());
    // Unavailability does not freeze the stage clock, but blocks advancing while it lasts.
    assert_eq!(sim.weight_changes()[1], (10 * MIN, 25.0));
}

// ---------------------------------------------------------------------------------------
// Manual actions
// ---------------------------------------------------------------------------------------

#[test]
fn manual_abort_rolls_back() {
    let mut sim = Sim::started(spec());
    sim.run_until(12 * MIN, &healthy());
    let decision = sim.tick(&manual(ManualAction::Abort));
    assert_eq!(decision.status.phase, Phase::RolledBack);
    assert_eq!(decision.status.rollback_reason.as_deref(), Some("aborted"));
    assert_eq!(decision.new_weight(), Some(0.0));
}

#[test]
fn manual_promote_goes_straight_to_100() {
    let mut sim = Sim::started(spec());
    sim.run_until(3 * MIN, &healthy());
    let decision = sim.tick(&manual(ManualAction::Promote));
    assert_eq!(decision.status.phase, Phase::Promoted);
    assert_eq!(decision.new_weight(), Some(100.0));
    assert_eq!(decision.status.stage_index, 3);
    assert_eq!(decision.event_reasons(), [reasons::PROMOTED]);
}

#[test]
fn pause_freezes_the_stage_timer_and_resume_continues_it() {
    let mut sim = Sim::started(spec());
    sim.run_until(4 * MIN, &healthy());
    let paused = sim.tick(&manual(ManualAction::Pause)); // at 4m
    assert_eq!(paused.status.phase, Phase::Paused);
    assert_eq!(paused.event_reasons(), [reasons::PAUSED]);
    sim.run_until(60 * MIN, &healthy()); // paused for 56m: no advance
    assert_eq!(sim.status.weight, 10.0);
    assert_eq!(sim.status.phase, Phase::Paused, "a one-shot pause persists");
    let resumed = sim.tick(&manual(ManualAction::Resume)); // at 60m
    assert_eq!(resumed.status.phase, Phase::Progressing);
    assert_eq!(resumed.event_reasons(), [reasons::RESUMED]);
    // 4m of the 10m stage had passed before the pause, so it ends 6m after resuming.
    sim.run_until(90 * MIN, &healthy());
    assert_eq!(sim.weight_changes()[1], (66 * MIN, 25.0));
}

#[test]
fn spec_paused_pauses_and_clearing_it_resumes() {
    let mut sim = Sim::started(spec());
    sim.run_until(5 * MIN, &healthy());
    sim.spec.paused = true;
    sim.run_until(20 * MIN, &healthy());
    assert_eq!(sim.status.phase, Phase::Paused);
    assert_eq!(sim.events(reasons::PAUSED).len(), 1);
    // A manual resume cannot override spec.paused: it says so.
    sim.tick(&manual(ManualAction::Resume));
    assert_eq!(sim.status.phase, Phase::Paused);
    sim.run_until(21 * MIN, &healthy());
    sim.spec.paused = false;
    sim.run_until(40 * MIN, &healthy());
    // 5m before the pause + 5m after resuming at 21m.
    assert_eq!(sim.weight_changes()[1], (26 * MIN, 25.0));
}

#[test]
fn checks_still_guard_a_paused_rollout() {
    let mut sim = Sim::started(spec());
    sim.tick(&manual(ManualAction::Pause)); // at 30s
    sim.run_until(10 * MIN, &erroring(20.0)); // breach from 1m
    assert_eq!(sim.status.history[1].to, Phase::Paused);
    assert_eq!(sim.rolled_back(), Some((3 * MIN, "error-rate".to_string())));
}

#[test]
fn pausing_before_the_start_keeps_the_weight_at_zero() {
    let mut spec = spec();
    spec.paused = true;
    let mut sim = Sim::new(spec);
    sim.run_until(10 * MIN, &healthy());
    assert_eq!(sim.status.phase, Phase::Paused);
    assert!(sim.weight_changes().is_empty());
    sim.spec.paused = false;
    let decision = sim.tick(&healthy());
    assert_eq!(decision.new_weight(), Some(10.0));
    assert_eq!(
        decision.event_reasons(),
        [reasons::RESUMED, reasons::STAGE_ADVANCED]
    );
}

// ---------------------------------------------------------------------------------------
// Restarts, invariants, bookkeeping
// ---------------------------------------------------------------------------------------

#[test]
fn restart_from_a_saved_status_continues_the_same_stage_with_elapsed_time_kept() {
    let mut first = Sim::started(spec());
    first.run_until(17 * MIN, &healthy()); // stage 2 (25%) since 10m
    first.run_until(18 * MIN, &erroring(10.0)); // a breach in progress since 17m

    // The controller dies; its successor reads the status back from the API server.
    let saved_json = serde_json::to_string(&first.status).unwrap();
    let saved_yaml = serde_yaml::to_string(&first.status).unwrap();
    for restored in [
        serde_json::from_str::<CanaryRolloutStatus>(&saved_json).unwrap(),
        serde_yaml::from_str::<CanaryRolloutStatus>(&saved_yaml).unwrap(),
    ] {
        assert_eq!(restored, first.status);
        let mut second = Sim::new(spec());
        second.status = restored;
        second.now = first.now;
        let decision = second.tick(&erroring(10.0));
        assert_eq!(decision.new_weight(), None, "no restart of the rollout");
        assert_eq!(decision.status.stage_index, 1);
        second.run_until(20 * MIN, &erroring(10.0));
        // The breach began at 17m before the restart: rollback at 19m, not 2m after it.
        assert_eq!(
            second.rolled_back(),
            Some((19 * MIN, "error-rate".to_string()))
        );
    }

    // And with healthy traffic the stage ends at 25m as if nothing had happened.
    let mut third = Sim::new(spec());
    third.status = serde_json::from_str(&saved_json).unwrap();
    third.now = first.now;
    third.run_until(30 * MIN, &healthy());
    assert_eq!(third.weight_changes(), [(25 * MIN, 50.0)]);
}

/// A small deterministic generator, so the sequences below are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn weight_never_decreases_except_on_rollback() {
    let mut rollbacks = 0;
    let mut promotions = 0;
    for seed in 0..200 {
        let mut rng = Lcg(seed);
        let mut sim = Sim::new(spec());
        let mut weight = 0.0;
        while sim.now < 3 * 60 * MIN && !sim.status.phase.is_terminal() {
            let observations = match rng.next(40) {
                0 => erroring(30.0),
                1 => slow(2000.0),
                2 => thin(3.0),
                3 => prometheus_down(),
                4 if rng.next(10) == 0 => manual(ManualAction::Pause),
                5 => manual(ManualAction::Resume),
                6 if rng.next(5) == 0 => crashing("OOMKilled"),
                7 if rng.next(20) == 0 => manual(ManualAction::Promote),
                _ => healthy(),
            };
            let decision = sim.tick(&observations);
            if let Some(new_weight) = decision.new_weight() {
                if decision.status.phase == Phase::RolledBack {
                    assert_eq!(new_weight, 0.0);
                } else {
                    assert!(
                        new_weight >= weight,
                        "seed {seed}: {weight} -> {new_weight}"
                    );
                }
                weight = new_weight;
            }
            assert_eq!(
                decision.status.weight, weight,
                "status tracks the weight set"
            );
        }
        match sim.status.phase {
            Phase::RolledBack => rollbacks += 1,
            Phase::Promoted => promotions += 1,
            _ => {}
        }
    }
    // The mix exercises both endings.
    assert!(
        rollbacks > 10 && promotions > 10,
        "{rollbacks} rollbacks, {promotions} promotions"
    );
}

#[test]
fn terminal_phases_do_nothing() {
    for phase in [Phase::Promoted, Phase::RolledBack] {
        let status = CanaryRolloutStatus {
            phase,
            weight: if phase == Phase::Promoted { 100.0 } else { 0.0 },
            ..Default::default()
        };
        for observations in [
            crashing("OOMKilled"),
            manual(ManualAction::Abort),
            erroring(90.0),
            healthy(),
        ] {
            let decision = decide(&spec(), &status, at(0), &observations);
            // An abort is answered (refused: the rollout is over), and nothing else happens.
            let answer = if observations.manual.is_some() {
                vec![reasons::ACTION_REFUSED]
            } else {
                vec![]
            };
            assert_eq!(decision.event_reasons(), answer, "{phase}");
            assert!(
                decision
                    .actions
                    .iter()
                    .all(|a| matches!(a, Action::Event { .. } | Action::Notify(_))),
                "{phase}: {:?}",
                decision.actions
            );
            assert_eq!(decision.status.phase, phase);
            assert_eq!(decision.status.weight, status.weight);
        }
    }
}

#[test]
fn invalid_spec_fails_holding_the_weight_until_fixed() {
    let mut sim = Sim::started(spec());
    sim.run_until(3 * MIN, &healthy());
    sim.spec.stages[2].weight = 20.0; // goes down after 25
    let decision = sim.tick(&healthy());
    assert_eq!(decision.status.phase, Phase::InvalidSpec);
    assert_eq!(decision.new_weight(), None);
    let (_, message) = &sim.events(reasons::INVALID_SPEC)[0];
    assert!(
        message.contains("spec.stages[2].weight: weights must not go down (20 after 25)"),
        "{message}"
    );
    sim.run_until(5 * MIN, &healthy());
    assert_eq!(sim.events(reasons::INVALID_SPEC).len(), 1);
    sim.spec.stages[2].weight = 50.0;
    let decision = sim.tick(&healthy());
    assert_eq!(decision.status.phase, Phase::Progressing);
    assert_eq!(decision.event_reasons(), [reasons::RESUMED]);
}

#[test]
fn every_transition_is_recorded_and_history_is_bounded() {
    let mut sim = Sim::new(spec());
    sim.run_until(2 * 60 * MIN, &healthy());
    let history: Vec<(Phase, Phase, f64)> = sim
        .status
        .history
        .iter()
        .map(|t| (t.from, t.to, t.weight))
        .collect();
    assert_eq!(
        history,
        [
            (Phase::Pending, Phase::Progressing, 10.0),
            (Phase::Progressing, Phase::Progressing, 25.0),
            (Phase::Progressing, Phase::Progressing, 50.0),
            (Phase::Progressing, Phase::Promoted, 100.0),
        ]
    );

    let mut sim = Sim::started(spec());
    for _ in 0..30 {
        sim.tick(&manual(ManualAction::Pause));
        sim.tick(&manual(ManualAction::Resume));
    }
    assert_eq!(sim.status.history.len(), HISTORY_LIMIT);
    assert_eq!(sim.status.history.last().unwrap().reason, "resumed");
}

#[test]
fn notifications_are_sent_only_when_a_webhook_is_configured() {
    let count_notify = |sim: &Sim| {
        sim.decisions
            .iter()
            .flat_map(|(_, d)| d.actions.iter())
            .filter(|a| matches!(a, Action::Notify(_)))
            .count()
    };
    let mut quiet = Sim::new(spec());
    quiet.run_until(60 * MIN, &healthy());
    assert_eq!(count_notify(&quiet), 0);

    let mut spec = spec();
    spec.notification = serde_yaml::from_str("{webhook: 'http://127.0.0.1:1/hook'}").unwrap();
    let mut loud = Sim::new(spec);
    loud.run_until(60 * MIN, &healthy());
    // One per event: 3 stage advances + promotion.
    assert_eq!(count_notify(&loud), 4);
}

#[test]
fn last_analysis_records_both_versions_and_every_check() {
    let mut sim = Sim::started(spec());
    let decision = sim.tick(&erroring(8.0));
    let analysis = decision.status.last_analysis.unwrap();
    assert_eq!(analysis.at.0, at(30));
    assert_eq!(analysis.canary.requests, 1000.0);
    assert_eq!(analysis.canary.error_rate_percent, Some(8.0));
    assert_eq!(analysis.stable.requests, 9000.0);
    let verdicts: Vec<(&str, Outcome)> = analysis
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [("error-rate", Outcome::Fail), ("latency", Outcome::Pass)]
    );
    assert_eq!(analysis.checks[0].threshold, Some(5.0));
    assert!(decision.status.breach_started_at.contains_key("error-rate"));
}

#[test]
fn editing_stages_mid_rollout_never_lowers_the_weight() {
    let mut sim = Sim::started(spec());
    sim.run_until(12 * MIN, &healthy()); // stage 2 at 25%
                                         // Still a valid spec, but the next stage is now below the current weight.
    sim.spec.stages = serde_yaml::from_str(
        "[{weight: 10, duration: 10m}, {weight: 15, duration: 15m}, {weight: 20, duration: 20m}, {weight: 100}]",
    )
    .unwrap();
    sim.run_until(30 * MIN, &healthy());
    assert_eq!(sim.status.stage_index, 2);
    assert_eq!(sim.status.weight, 25.0, "held, not lowered to 20");
    assert!(sim
        .weight_changes()
        .iter()
        .all(|(_, weight)| *weight >= 10.0));
}

#[test]
fn abort_and_crash_roll_back_even_while_the_spec_is_invalid() {
    for observations in [manual(ManualAction::Abort), crashing("OOMKilled")] {
        let mut sim = Sim::started(spec());
        sim.run_until(2 * MIN, &healthy());
        sim.spec.stages.clear();
        sim.tick(&healthy());
        assert_eq!(sim.status.phase, Phase::InvalidSpec);
        let decision = sim.tick(&observations);
        assert_eq!(decision.status.phase, Phase::RolledBack);
        assert_eq!(decision.new_weight(), Some(0.0));
    }
}

#[test]
fn comparative_check_keeps_its_evidence_in_status_and_rolls_back_a_worse_canary() {
    let mut spec = spec();
    spec.analysis.comparative = Some(Default::default());
    // 4% on canary vs 1% on stable: inside the absolute 5% rule, clearly worse than stable.
    let mut sim = Sim::started(spec);
    sim.run_until(5 * MIN, &erroring(4.0));
    let state = sim.status.comparative.clone();
    assert!(state.is_some(), "evidence is stored in status");
    let restored: CanaryRolloutStatus =
        serde_json::from_str(&serde_json::to_string(&sim.status).unwrap()).unwrap();
    assert_eq!(restored.comparative, state, "and survives a restart");
    sim.run_until(30 * MIN, &erroring(4.0));
    let (_, reason) = sim.rolled_back().expect("a worse canary is rolled back");
    assert_eq!(reason, "comparative-errors");
}

#[test]
fn stable_before_the_run_is_read_once_per_run_and_kept_in_status() {
    let mut spec = spec();
    spec.analysis.comparative = Some(Default::default());
    let mut sim = Sim::started(spec.clone());
    assert!(
        stickycanary::engine::reads_stable_before_run(&spec, &sim.status),
        "the first analysed tick asks for it"
    );
    // Stable's hour before: shard 4 holds an error-prone user (60 errors where the others
    // have 6), 16 shards of 3600 requests.
    let shards: Vec<stickycanary::observation::ShardCounts> = (0..16)
        .map(|shard| stickycanary::observation::ShardCounts {
            requests: 3600.0,
            errors: if shard == 4 { 60.0 } else { 6.0 },
            slow: 0.0,
        })
        .collect();
    let with_history = Observations {
        stable_before_run: Some(shards),
        ..healthy()
    };
    sim.tick(&with_history);
    let state = sim.status.comparative.clone().expect("evidence in status");
    let before = state.stable_before_run.clone().expect("recorded");
    assert_eq!(before.outlying_error_shards, vec![4]);
    assert_eq!(before.requests, 16.0 * 3600.0);
    assert_eq!(before.errors, 150.0);
    assert_eq!(state.errors.stable_outlying_shards, vec![4]);
    assert!(
        !stickycanary::engine::reads_stable_before_run(&spec, &sim.status),
        "read once: not asked again"
    );
    // A restarted controller reads it from the status, and another reading does not replace it.
    let restored: CanaryRolloutStatus =
        serde_json::from_str(&serde_json::to_string(&sim.status).unwrap()).unwrap();
    assert_eq!(restored.comparative, sim.status.comparative);
    let other = Observations {
        stable_before_run: Some(vec![Default::default(); 16]),
        ..healthy()
    };
    sim.tick(&other);
    let state = sim.status.comparative.clone().unwrap();
    assert_eq!(state.stable_before_run, Some(before));
    // Without the comparative check nothing is read.
    let plain = self::spec();
    assert!(!stickycanary::engine::reads_stable_before_run(
        &plain,
        &Sim::started(plain.clone()).status
    ));
}

/// Canary at `percent` errors against stable's 1%, both with a histogram (every request
/// under 250ms), so that both comparative tests judge.
fn with_histograms(percent: f64) -> Observations {
    let histogram = |mut window: stickycanary::observation::VersionWindow| {
        window.latency_buckets = vec![(250.0, window.requests), (f64::INFINITY, window.requests)];
        window
    };
    Observations {
        metrics: MetricsObservation::Window {
            canary: histogram(window_p99(1000.0, percent, 120.0)),
            stable: histogram(window_p99(9000.0, 1.0, 120.0)),
        },
        ..healthy()
    }
}

#[test]
fn a_stage_that_hands_canary_all_the_traffic_waits_while_canary_leans_worse_for_one_more_duration()
{
    // 1.6% against 1%: about 2.5 standard errors of lean after two minutes at 10%, while
    // the e-value stays far from 1/α for the four minutes this test looks at.
    let leaning = with_histograms(1.6);
    let spec = |stages: &str| {
        let mut spec = support::engine::spec(&format!("stages: {stages}"));
        spec.analysis.comparative = Some(Default::default());
        spec
    };
    // The stage before 100% holds past its 2m ...
    let mut last = Sim::started(spec("[{weight: 10, duration: 2m}, {weight: 100}]"));
    last.run_until(4 * MIN, &leaning);
    assert_eq!(last.weight_changes(), [(0, 10.0)], "no promotion within 4m");
    let errors = last.check("comparative-errors");
    assert_eq!(errors.verdict, Outcome::Inconclusive, "{}", errors.message);
    assert!(
        errors.message.contains("leans above stable's"),
        "{}",
        errors.message
    );
    assert!(errors.value.unwrap() < errors.threshold.unwrap());
    // ... for one more stage duration at most: a healthy canary that leans by chance waits
    // 2m, not for ever.
    last.tick(&leaning);
    assert_eq!(last.weight_changes(), [(0, 10.0), (4 * MIN, 100.0)]);
    assert_eq!(last.status.phase, Phase::Promoted);

    // Once the test over every shard has failed (a restarted controller reads it from the
    // status), the same lean holds the pass past the extension.
    let mut rejected = Sim::started(spec("[{weight: 10, duration: 2m}, {weight: 100}]"));
    rejected.run_until(3 * MIN, &leaning);
    let state = rejected
        .status
        .comparative
        .as_mut()
        .expect("evidence in status");
    state.errors.all_shards_rejected = true;
    rejected.run_until(6 * MIN, &leaning);
    assert_eq!(
        rejected.weight_changes(),
        [(0, 10.0)],
        "no promotion within 6m"
    );
    let errors = rejected.check("comparative-errors");
    assert_eq!(errors.verdict, Outcome::Inconclusive, "{}", errors.message);
    assert!(
        errors
            .message
            .contains("the test over every shard has failed, so holding until canary leans less"),
        "{}",
        errors.message
    );
    // ... until the e-value decides.
    rejected.run_until(8 * MIN, &leaning);
    let (_, reason) = rejected.rolled_back().expect("the held canary is failed");
    assert_eq!(reason, "comparative-errors");

    // A stage that does not hand over advances at its duration, as before.
    let mut earlier = Sim::started(spec(
        "[{weight: 10, duration: 2m}, {weight: 50, duration: 2m}, {weight: 100}]",
    ));
    earlier.run_until(2 * MIN + 1, &leaning);
    assert_eq!(earlier.weight_changes(), [(0, 10.0), (2 * MIN, 50.0)]);

    // Alike versions pass the last stage at its duration.
    let mut healthy = Sim::started(spec("[{weight: 10, duration: 2m}, {weight: 100}]"));
    healthy.run_until(2 * MIN + 1, &with_histograms(1.0));
    assert_eq!(healthy.weight_changes(), [(0, 10.0), (2 * MIN, 100.0)]);
}

/// Both versions at `percent` errors: the service is failing, not the canary.
fn both_erroring(percent: f64) -> Observations {
    Observations {
        metrics: MetricsObservation::Window {
            canary: window_p99(1000.0, percent, 120.0),
            stable: window_p99(9000.0, percent, 120.0),
        },
        ..healthy()
    }
}

#[test]
fn a_guard_rail_breach_stable_shares_holds_with_the_comparative_check_and_rolls_back_without() {
    // Without the comparative check the seed's rule stands as written: 10% for 2m rolls back.
    let mut plain = Sim::started(spec());
    plain.run_until(5 * MIN, &both_erroring(10.0));
    assert_eq!(
        plain.rolled_back().map(|(_, r)| r),
        Some("error-rate".into())
    );

    // With it, the shared breach holds the stage (no rollback, no promotion) ...
    let mut spec = spec();
    spec.analysis.comparative = Some(Default::default());
    let mut sim = Sim::started(spec.clone());
    sim.run_until(20 * MIN, &both_erroring(10.0));
    assert_eq!(sim.rolled_back(), None);
    assert_eq!(sim.status.weight, 10.0, "a held stage does not advance");
    let check = sim.check("error-rate");
    assert_eq!(check.verdict, Outcome::Inconclusive);
    assert!(
        check.message.contains("stable error rate 10%"),
        "{}",
        check.message
    );
    assert!(sim.status.breach_started_at.is_empty());

    // ... a breach that was running starts over once stable shares it (latency here: with
    // no histogram buckets the comparative test has nothing to say about it) ...
    let mut sim = Sim::started(spec.clone());
    sim.run_until(MIN, &healthy());
    sim.run_until(3 * MIN, &slow(800.0)); // 2m of a 3m breach
    sim.tick(&both_slow(800.0));
    assert!(sim.status.breach_started_at.is_empty());
    sim.run_until(5 * MIN + 30, &slow(800.0)); // 2m again: still under 3m
    assert_eq!(sim.rolled_back(), None, "2m + 2m is not one 3m breach");

    // ... and a canary-only breach still rolls back after its 3m.
    sim.run_until(8 * MIN, &slow(800.0));
    assert_eq!(
        sim.rolled_back(),
        Some((6 * MIN + 30, "latency".to_string()))
    );
}

/// Both versions with p99 `p99_ms`.
fn both_slow(p99_ms: f64) -> Observations {
    Observations {
        metrics: MetricsObservation::Window {
            canary: window_p99(1000.0, 1.0, p99_ms),
            stable: window_p99(9000.0, 1.0, p99_ms),
        },
        ..healthy()
    }
}

//! Checks that start at a stage (`fromStage`) and the resource checks
//! (`analysis.resources`), driven through the real `engine::decide` on a simulated clock
//! that ticks every analysis interval (30s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use stickycanary::crd::{CanaryRollout, CanaryRolloutSpec, CanaryRolloutStatus, Outcome, Phase};
use stickycanary::engine::{checks, decide, reasons, stage_gate, Action, Decision};
use stickycanary::observation::Observations;
use stickycanary::resources::{PodUsage, ResourceObservation};
use support::engine::{at, window};

const MIN: i64 = 60;
const MIB: f64 = 1024.0 * 1024.0;

fn spec(analysis_yaml: &str) -> CanaryRolloutSpec {
    support::engine::spec(&format!("analysis:\n{analysis_yaml}"))
}

/// Enough traffic on both versions, canary at `canary_error_percent`, stable at 1%.
fn traffic(canary_error_percent: f64, resources: ResourceObservation) -> Observations {
    Observations {
        resources,
        ..support::engine::traffic(window(1000.0, canary_error_percent))
    }
}

fn usage(throttled_percent: Option<f64>, memory_mib: Option<f64>, cpu: Option<f64>) -> PodUsage {
    PodUsage {
        pods: 2,
        cpu_cores_per_pod: cpu,
        memory_bytes_per_pod: memory_mib.map(|mib| mib * MIB),
        throttled_percent,
    }
}

fn resources(canary: PodUsage, stable: PodUsage) -> ResourceObservation {
    ResourceObservation::Window { canary, stable }
}

/// Stable's pods: 100 MiB, 0.2 cores, throttled in 2% of periods.
fn stable_pods() -> PodUsage {
    usage(Some(2.0), Some(100.0), Some(0.2))
}

/// A rollout on a simulated clock; keeps every decision.
struct Sim {
    spec: CanaryRolloutSpec,
    status: CanaryRolloutStatus,
    now: i64,
    decisions: Vec<(i64, Decision)>,
}

impl Sim {
    /// Started at t=0 (stage 1, weight 10); the first analysis is at t=30s.
    fn started(spec: CanaryRolloutSpec) -> Self {
        let mut sim = Sim {
            spec,
            status: CanaryRolloutStatus::default(),
            now: 0,
            decisions: Vec::new(),
        };
        sim.tick(&traffic(1.0, ResourceObservation::NotQueried));
        sim
    }

    fn tick(&mut self, observations: &Observations) -> Decision {
        let decision = decide(&self.spec, &self.status, at(self.now), observations);
        self.status = decision.status.clone();
        self.decisions.push((self.now, decision.clone()));
        self.now += 30;
        decision
    }

    fn run_until(&mut self, until: i64, observations: &Observations) {
        while self.now < until && !self.status.phase.is_terminal() {
            self.tick(observations);
        }
    }

    fn rolled_back(&self) -> Option<(i64, String)> {
        self.decisions.iter().find_map(|(time, d)| {
            (d.status.phase == Phase::RolledBack)
                .then(|| (*time, d.status.rollback_reason.clone().unwrap_or_default()))
        })
    }

    /// Times at which a later stage was entered (StageAdvanced after the start at t=0),
    /// with the new stage index.
    fn advances(&self) -> Vec<(i64, u32)> {
        self.decisions
            .iter()
            .filter(|(time, d)| *time > 0 && d.event_reasons().contains(&reasons::STAGE_ADVANCED))
            .map(|(time, d)| (*time, d.status.stage_index))
            .collect()
    }

    fn judged_names(&self) -> Vec<String> {
        self.status
            .last_analysis
            .as_ref()
            .map(|analysis| analysis.checks.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    fn verdict(&self, name: &str) -> Option<Outcome> {
        self.status
            .last_analysis
            .as_ref()?
            .checks
            .iter()
            .find(|check| check.name == name)
            .map(|check| check.verdict)
    }
}

// ---------------------------------------------------------------------------------------
// fromStage
// ---------------------------------------------------------------------------------------

#[test]
fn a_check_from_stage_2_is_ignored_at_stage_1_and_judged_from_stage_2() {
    // The canary fails 7% of requests throughout; errorRate (5%, for 1m) starts at stage 2.
    let mut sim = Sim::started(spec("  errorRate: {maxPercent: 5, for: 1m, fromStage: 2}"));
    let failing = traffic(7.0, ResourceObservation::NotQueried);
    sim.run_until(10 * MIN, &failing);
    assert_eq!(sim.rolled_back(), None, "ignored during stage 1");
    assert_eq!(
        sim.judged_names(),
        ["latency"],
        "not even listed at stage 1"
    );
    assert!(sim.status.breach_started_at.is_empty());

    // Stage 1's other checks pass, so the stage advances at 10m as if it were not there.
    sim.tick(&failing);
    assert_eq!(sim.advances(), [(10 * MIN, 1)]);
    // From stage 2 it is judged: Fail from 10m30s, rolled back once that lasted 1m.
    sim.run_until(20 * MIN, &failing);
    assert_eq!(sim.verdict("error-rate"), Some(Outcome::Fail));
    assert_eq!(
        sim.rolled_back(),
        Some((11 * MIN + 30, "error-rate".to_string()))
    );
}

#[test]
fn without_from_stage_the_same_canary_rolls_back_in_stage_1() {
    let mut sim = Sim::started(spec("  errorRate: {maxPercent: 5, for: 1m}"));
    sim.run_until(10 * MIN, &traffic(7.0, ResourceObservation::NotQueried));
    assert_eq!(sim.rolled_back(), Some((90, "error-rate".to_string())));
}

#[test]
fn from_stage_gates_every_kind_of_check_by_its_name() {
    let spec = spec(
        r#"
  errorRate: {fromStage: 1}
  latencyP99: {fromStage: 2}
  compareStable: {maxIncreasePercentPoints: 2, for: 2m, fromStage: 3}
  custom:
    - {name: orders, query: "vector(1)", min: 1, for: 1m, fromStage: 3}
    - {name: always, query: "vector(1)", min: 1, for: 1m}
  resources:
    stable: {deployment: checkout-stable}
    cpuThrottling: {fromStage: 2}
    memory: {fromStage: 4}
    cpu: {}
"#,
    );
    let active_at = |stage_index: u32| -> Vec<String> {
        checks::for_spec(&spec.analysis)
            .iter()
            .map(|check| check.name())
            .filter(|name| stage_gate::applies(&spec.analysis, name, stage_index))
            .collect()
    };
    assert_eq!(
        active_at(0),
        ["error-rate", "custom:always", "resources:cpu"]
    );
    assert_eq!(
        active_at(1),
        [
            "error-rate",
            "latency",
            "custom:always",
            "resources:cpu-throttling",
            "resources:cpu"
        ]
    );
    assert_eq!(active_at(2).len(), 7, "{:?}", active_at(2));
    assert_eq!(active_at(3).len(), 8, "every check from stage 4");
}

/// The seed ADR's promotion table, as the shipped example writes it:
/// 10%: error rate and p99; 25%: the same plus no CPU throttling (OOM is always a rollback);
/// 50%: the same plus business metrics.
#[test]
fn the_example_rollout_writes_the_seeds_table_stage_by_stage() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/examples/canaryrollout-checkout.yaml"
    );
    let rollout: CanaryRollout =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    stickycanary::validate::validate_rollout(&rollout).unwrap();
    let analysis = &rollout.spec.analysis;
    let active_at = |stage_index: u32| -> Vec<String> {
        checks::for_spec(analysis)
            .iter()
            .map(|check| check.name())
            .filter(|name| stage_gate::applies(analysis, name, stage_index))
            .collect()
    };
    let weights: Vec<f64> = rollout.spec.stages.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [10.0, 25.0, 50.0, 100.0]);
    assert_eq!(active_at(0), ["error-rate", "latency"]);
    let stage2 = active_at(1);
    assert!(
        stage2.starts_with(&["error-rate".to_string(), "latency".to_string()])
            && stage2.contains(&"resources:cpu-throttling".to_string())
            && !stage2.iter().any(|name| name.starts_with("custom:")),
        "{stage2:?}"
    );
    let stage3 = active_at(2);
    assert!(
        stage3.contains(&"custom:payment-success".to_string())
            && stage2.iter().all(|name| stage3.contains(name)),
        "{stage3:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Resource checks
// ---------------------------------------------------------------------------------------

const RESOURCES: &str = r#"
  resources:
    stable: {deployment: checkout-stable}
    for: 2m
    cpuThrottling: {maxPercent: 25}
    memory: {maxIncreasePercent: 50}
    cpu: {maxIncreasePercent: 50}
"#;

#[test]
fn throttling_above_the_limit_for_its_for_rolls_back_with_resources_cpu_throttling() {
    let mut sim = Sim::started(spec(RESOURCES));
    let throttled = traffic(
        1.0,
        resources(usage(Some(40.0), Some(100.0), Some(0.2)), stable_pods()),
    );
    sim.run_until(10 * MIN, &throttled);
    // Fail from the first analysis at 30s; 2m later it rolls back.
    let (time, reason) = sim.rolled_back().expect("rolled back");
    assert_eq!((time, reason.as_str()), (150, "resources:cpu-throttling"));
    assert_eq!(sim.status.weight, 0.0);
    let rolling_back = sim
        .decisions
        .last()
        .unwrap()
        .1
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Event {
                reason: reasons::ROLLING_BACK,
                message,
                ..
            } => Some(message.clone()),
            _ => None,
        });
    assert_eq!(
        rolling_back.as_deref(),
        Some("rolling back to 0% (resources:cpu-throttling): canary CPU throttled in 40% of periods, above max 25% for 2m (limit 2m)")
    );
}

#[test]
fn throttling_within_the_limit_passes_and_the_stage_advances() {
    let mut sim = Sim::started(spec(RESOURCES));
    let fine = traffic(
        1.0,
        resources(usage(Some(25.0), Some(140.0), Some(0.29)), stable_pods()),
    );
    sim.run_until(10 * MIN + 1, &fine);
    assert_eq!(sim.rolled_back(), None);
    assert_eq!(sim.advances(), [(10 * MIN, 1)]);
    for name in [
        "resources:cpu-throttling",
        "resources:memory",
        "resources:cpu",
    ] {
        assert_eq!(sim.verdict(name), Some(Outcome::Pass), "{name}");
    }
}

#[test]
fn memory_80_percent_above_stable_rolls_back() {
    let mut sim = Sim::started(spec(RESOURCES));
    let heavy = traffic(
        1.0,
        resources(usage(Some(2.0), Some(180.0), Some(0.2)), stable_pods()),
    );
    sim.run_until(10 * MIN, &heavy);
    assert_eq!(
        sim.rolled_back(),
        Some((150, "resources:memory".to_string()))
    );
    let memory = sim
        .status
        .last_analysis
        .as_ref()
        .unwrap()
        .checks
        .iter()
        .find(|c| c.name == "resources:memory")
        .unwrap()
        .clone();
    assert_eq!(memory.verdict, Outcome::Fail);
    assert_eq!(memory.threshold, Some(50.0));
    assert!((memory.value.unwrap() - 80.0).abs() < 1e-9, "{memory:?}");
    assert_eq!(
        memory.message,
        "canary memory working set 180 MiB per pod against stable 100 MiB: +80%, above max +50%"
    );
}

#[test]
fn cpu_per_pod_is_judged_against_stable_per_pod() {
    let mut sim = Sim::started(spec(RESOURCES));
    // 0.4 cores per canary pod against 0.2 per stable pod: +100%.
    let busy = traffic(
        1.0,
        resources(usage(Some(2.0), Some(100.0), Some(0.4)), stable_pods()),
    );
    sim.run_until(10 * MIN, &busy);
    assert_eq!(sim.rolled_back(), Some((150, "resources:cpu".to_string())));
}

#[test]
fn missing_series_are_inconclusive_and_never_a_breach() {
    for (case, observation) in [
        (
            "no canary series",
            resources(PodUsage::default(), stable_pods()),
        ),
        (
            "no stable series",
            resources(usage(None, Some(900.0), Some(5.0)), PodUsage::default()),
        ),
        (
            "stable at zero",
            resources(
                usage(None, Some(900.0), Some(5.0)),
                usage(None, Some(0.0), Some(0.0)),
            ),
        ),
        ("not queried", ResourceObservation::NotQueried),
    ] {
        let mut sim = Sim::started(spec(RESOURCES));
        sim.run_until(30 * MIN, &traffic(1.0, observation));
        assert_eq!(sim.rolled_back(), None, "{case}");
        assert!(sim.status.breach_started_at.is_empty(), "{case}");
        for name in [
            "resources:cpu-throttling",
            "resources:memory",
            "resources:cpu",
        ] {
            assert_eq!(
                sim.verdict(name),
                Some(Outcome::Inconclusive),
                "{case}: {name}"
            );
        }
        // Inconclusive holds the stage, and says so once per streak.
        assert_eq!(sim.status.stage_index, 0, "{case}");
        assert_eq!(sim.advances(), [], "{case}");
        let inconclusive_events = sim
            .decisions
            .iter()
            .filter(|(_, d)| d.event_reasons().contains(&reasons::INCONCLUSIVE))
            .count();
        assert_eq!(inconclusive_events, 1, "{case}");
    }
}

#[test]
fn a_failing_resource_query_is_unavailable_and_fails_safe_after_the_grace() {
    let mut sim = Sim::started(spec(RESOURCES));
    let down = traffic(
        1.0,
        ResourceObservation::Unavailable {
            reason: "prometheus http://127.0.0.1:9090: timeout".to_string(),
        },
    );
    sim.run_until(30 * MIN, &down);
    // First unavailable at 30s; the default grace is 5m.
    assert_eq!(
        sim.rolled_back(),
        Some((5 * MIN + 30, "prometheus-unavailable".to_string()))
    );
}

#[test]
fn a_breach_timer_only_starts_once_the_check_applies() {
    // Throttled from the start, but the check starts at stage 2 (10m): it trips 2m after.
    let mut sim = Sim::started(spec(
        r#"
  resources:
    for: 2m
    cpuThrottling: {maxPercent: 25, fromStage: 2}
"#,
    ));
    let throttled = traffic(
        1.0,
        resources(usage(Some(60.0), None, None), PodUsage::default()),
    );
    sim.run_until(30 * MIN, &throttled);
    assert_eq!(sim.advances(), [(10 * MIN, 1)]);
    assert_eq!(
        sim.rolled_back(),
        Some((12 * MIN + 30, "resources:cpu-throttling".to_string()))
    );
}

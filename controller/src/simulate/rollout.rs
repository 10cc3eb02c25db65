//! One simulated rollout, driven tick by tick through the real `engine::decide`.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::scenario::Scenario;
use super::traffic::{self, Slice, VersionLoad};
use super::users::{CellRates, Moment, Population, UserModel, SHARDS};
use crate::analysis::ComparativeCheck;
use crate::crd::{
    default_stages, Analysis, CanaryRolloutSpec, CanaryRolloutStatus, CanaryWorkload, Phase,
    PrometheusSource, WasmPluginRef,
};
use crate::duration::Duration;
use crate::engine;
use crate::observation::{CanaryHealth, MetricsObservation, Observations, ShardCounts};

/// Seconds of traffic per generated slice (the window and interval are multiples of it).
pub const SLICE_S: u64 = 10;
/// `analysis.interval`.
pub const INTERVAL_S: u64 = 30;
/// `analysis.window`.
pub const WINDOW_S: u64 = 60;
/// Stable-only traffic drawn before each run: what stable's shard series show over the
/// controller's lookback (`analysis::comparative::STABLE_LOOKBACK`) at the run's first
/// analysis.
pub const BEFORE_RUN_S: u64 = 3600;
/// A rollout still running after this long is reported as stuck.
pub const GIVE_UP_AFTER_S: u64 = 3 * 3600;

/// Which checks the rollout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// The seed's absolute thresholds only (error rate > 5% for 2m, p99 > 500ms for 3m).
    Thresholds,
    /// The same thresholds (the CRD's defaults, no comparative check) with the filter's
    /// per-user-shard series: the guard rails need a broad breach.
    ThresholdsByShard,
    /// The same thresholds as guard rails plus `analysis.comparative` (defaults), with
    /// request-level statistics: a filter without shard series.
    Comparative,
    /// The same spec as `Comparative`, with the filter's per-user-shard series: the
    /// cluster-robust comparison and guard rails that need a broad breach.
    ClusterRobust,
}

impl Variant {
    pub fn label(&self) -> &'static str {
        match self {
            Variant::Thresholds => "thresholds",
            Variant::ThresholdsByShard => "thresholds, by shard",
            Variant::Comparative => "thresholds + comparative, request-level",
            Variant::ClusterRobust => "thresholds + comparative, by shard",
        }
    }

    /// Whether the engine sees per-shard series.
    pub fn with_shards(&self) -> bool {
        matches!(self, Variant::ClusterRobust | Variant::ThresholdsByShard)
    }

    /// Whether the spec has `analysis.comparative`.
    pub fn comparative(&self) -> bool {
        matches!(self, Variant::Comparative | Variant::ClusterRobust)
    }
}

/// How a rollout ended, in seconds since it started.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Promoted { after_s: f64 },
    RolledBack { after_s: f64, reason: String },
    Stuck,
}

/// The rollout spec the simulation uses: the seed's stages and thresholds.
pub fn spec_for(scenario: &Scenario, variant: Variant) -> CanaryRolloutSpec {
    let analysis = Analysis {
        interval: Duration::from_secs(INTERVAL_S),
        window: Some(Duration::from_secs(WINDOW_S)),
        min_requests: scenario.min_requests,
        comparative: variant.comparative().then(ComparativeCheck::default),
        ..Analysis::default()
    };
    CanaryRolloutSpec {
        wasm_plugin: WasmPluginRef {
            name: "simulated".to_string(),
            namespace: None,
        },
        rollout_key: None,
        canary: CanaryWorkload {
            deployment: "simulated".to_string(),
            namespace: None,
            revision: None,
            replicas: 1,
            scaled_object: None,
            horizontal_pod_autoscaler: None,
        },
        stages: default_stages(),
        analysis,
        prometheus: PrometheusSource::default(),
        notification: None,
        alerts: Vec::new(),
        paused: false,
        stable: None,
        progress_deadline: Duration::from_mins(10),
        scale_down_delay: Duration::from_secs(30),
        cohort: Default::default(),
        promotion: Default::default(),
        revert_on_deletion: false,
        webhooks: Vec::new(),
        schedule: None,
    }
}

/// The per-rollout random draws that stay fixed for its whole run.
struct World {
    diurnal_phase: f64,
    burst_start_s: f64,
    population: Population,
    /// Per shard (canary, stable) rates at `cells_weight` and `cells_moment`.
    cells: [(CellRates, CellRates); SHARDS],
    cells_weight: f64,
    cells_moment: Moment,
    /// The filter's `slowThresholdMs` in effect (what the controller last wrote).
    slow_threshold_ms: f64,
}

impl World {
    fn cells_at(
        &mut self,
        scenario: &Scenario,
        weight: f64,
        middle_s: f64,
    ) -> &[(CellRates, CellRates); SHARDS] {
        let moment = Moment {
            started: middle_s >= 0.0,
            bot_failing: self
                .population
                .bot_starts_failing_at_s()
                .is_none_or(|at| middle_s >= at),
        };
        if self.cells_weight != weight || self.cells_moment != moment {
            let extra = scenario.canary_error_rate - scenario.stable_error_rate;
            self.cells = self.population.cells(weight, extra, moment);
            self.cells_weight = weight;
            self.cells_moment = moment;
        }
        &self.cells
    }
}

/// Run one rollout to its end. The same `seed` gives the same users and traffic for every
/// variant (until their weights differ).
pub fn run(scenario: &Scenario, variant: Variant, users: UserModel, seed: u64) -> End {
    let mut rng = StdRng::seed_from_u64(seed);
    let diurnal_phase = rng.random::<f64>() * std::f64::consts::TAU;
    let burst_start_s = 120.0 + rng.random::<f64>() * 2280.0;
    let population = Population::draw(
        users,
        scenario.total_rps,
        scenario.stable_error_rate,
        &scenario.extras(),
        &mut rng,
    );
    let extra = scenario.canary_error_rate - scenario.stable_error_rate;
    let moment = Moment::default();
    let mut world = World {
        diurnal_phase,
        burst_start_s,
        cells: population.cells(0.0, extra, moment),
        cells_weight: 0.0,
        cells_moment: moment,
        population,
        slow_threshold_ms: traffic::SLOW_THRESHOLD_MS,
    };
    let before_run = variant
        .with_shards()
        .then(|| stable_before_run(scenario, &mut world, seed));
    let spec = spec_for(scenario, variant);
    let start = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut status = CanaryRolloutStatus::default();
    let slices_per_window = (WINDOW_S / SLICE_S) as usize;
    // Before the rollout starts stable serves everyone: the first windows hold that traffic.
    let mut slices: Vec<(Slice, Slice)> = (0..slices_per_window)
        .map(|slice| {
            let middle_s = (slice as f64 - slices_per_window as f64 + 0.5) * SLICE_S as f64;
            draw_slice(scenario, &mut world, 0.0, middle_s, &mut rng)
        })
        .collect();
    let mut elapsed_s = 0;
    loop {
        let now = start + SignedDuration::from_secs(elapsed_s as i64);
        let first = slices.len().saturating_sub(slices_per_window);
        let recent = &slices[first..];
        let canary: Vec<Slice> = recent.iter().map(|(canary, _)| *canary).collect();
        let stable: Vec<Slice> = recent.iter().map(|(_, stable)| *stable).collect();
        let observations = Observations {
            metrics: MetricsObservation::Window {
                canary: traffic::window(&canary, variant.with_shards()),
                stable: traffic::window(&stable, variant.with_shards()),
            },
            custom: Vec::new(),
            resources: crate::resources::ResourceObservation::NotQueried,
            canary_health: CanaryHealth::Healthy,
            manual: None,
            stable_before_run: engine::reads_stable_before_run(&spec, &status)
                .then(|| before_run.clone())
                .flatten(),
        };
        let decision = engine::decide(&spec, &status, now, &observations);
        if let Some(ms) = decision
            .actions
            .iter()
            .find_map(engine::Action::slow_threshold_ms)
        {
            world.slow_threshold_ms = ms;
        }
        status = decision.status;
        match status.phase {
            Phase::Promoted => {
                return End::Promoted {
                    after_s: elapsed_s as f64,
                }
            }
            Phase::RolledBack => {
                return End::RolledBack {
                    after_s: elapsed_s as f64,
                    reason: status.rollback_reason.clone().unwrap_or_default(),
                }
            }
            _ => {}
        }
        if elapsed_s >= GIVE_UP_AFTER_S {
            return End::Stuck;
        }
        for _ in 0..INTERVAL_S / SLICE_S {
            let middle_s = (elapsed_s + SLICE_S / 2) as f64;
            slices.push(draw_slice(
                scenario,
                &mut world,
                status.weight,
                middle_s,
                &mut rng,
            ));
            elapsed_s += SLICE_S;
        }
        if slices.len() > slices_per_window {
            slices.drain(..slices.len() - slices_per_window);
        }
    }
}

/// Stable's per-shard counts over the [`BEFORE_RUN_S`] before the run: every user on stable
/// but those that arrive with the rollout, a bot that starts failing mid-run not failing
/// yet. Drawn from its own random stream, so the run's traffic is the same with or without
/// it.
fn stable_before_run(scenario: &Scenario, world: &mut World, seed: u64) -> Vec<ShardCounts> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00B5_F02E_7A11_5EED);
    let cells = world.cells_at(scenario, 0.0, -(BEFORE_RUN_S as f64) / 2.0);
    let stable_cells: [CellRates; SHARDS] = std::array::from_fn(|shard| cells[shard].1);
    let stable = VersionLoad {
        cells: &stable_cells,
        seconds: BEFORE_RUN_S as f64,
        extra_error_rate: 0.0,
        median_ms: traffic::median_for_p99(scenario.stable_p99_ms),
        slow_threshold_ms: world.slow_threshold_ms,
    };
    traffic::draw(&stable, &mut rng).shards.to_vec()
}

/// Canary's and stable's traffic for the slice around `middle_s` at `weight`.
fn draw_slice(
    scenario: &Scenario,
    world: &mut World,
    weight: f64,
    middle_s: f64,
    rng: &mut StdRng,
) -> (Slice, Slice) {
    let swing =
        (std::f64::consts::TAU * middle_s / scenario.diurnal_period_s + world.diurnal_phase).sin();
    let seconds = (1.0 + scenario.diurnal_amplitude * swing) * SLICE_S as f64;
    let burst = scenario
        .burst
        .filter(|burst| {
            middle_s >= world.burst_start_s && middle_s < world.burst_start_s + burst.duration_s
        })
        .map(|burst| burst.extra_error_rate)
        .unwrap_or(0.0);
    let warm_up = scenario
        .warm_up
        .map(|warm| 1.0 + warm.extra * (-middle_s.max(0.0) / warm.time_constant_s).exp())
        .unwrap_or(1.0);
    let median_ms = traffic::median_for_p99(scenario.stable_p99_ms);
    let slow_threshold_ms = world.slow_threshold_ms;
    let cells = world.cells_at(scenario, weight, middle_s);
    let canary_cells: [CellRates; SHARDS] = std::array::from_fn(|shard| cells[shard].0);
    let stable_cells: [CellRates; SHARDS] = std::array::from_fn(|shard| cells[shard].1);
    let canary = VersionLoad {
        cells: &canary_cells,
        seconds,
        extra_error_rate: burst,
        median_ms: median_ms * scenario.canary_latency_factor * warm_up,
        slow_threshold_ms,
    };
    let stable = VersionLoad {
        cells: &stable_cells,
        seconds,
        extra_error_rate: burst,
        median_ms,
        slow_threshold_ms,
    };
    (traffic::draw(&canary, rng), traffic::draw(&stable, rng))
}

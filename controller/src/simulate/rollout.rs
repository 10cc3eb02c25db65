//! One simulated rollout, driven tick by tick through the real `engine::decide`.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::scenario::Scenario;
use super::traffic::{self, Slice, VersionLoad};
use crate::analysis::ComparativeCheck;
use crate::crd::{
    default_stages, Analysis, CanaryRolloutSpec, CanaryRolloutStatus, CanaryWorkload, Phase,
    PrometheusSource, WasmPluginRef,
};
use crate::duration::Duration;
use crate::engine;
use crate::observation::{CanaryHealth, MetricsObservation, Observations};

/// Seconds of traffic per generated slice (the window and interval are multiples of it).
pub const SLICE_S: u64 = 10;
/// `analysis.interval`.
pub const INTERVAL_S: u64 = 30;
/// `analysis.window`.
pub const WINDOW_S: u64 = 60;
/// A rollout still running after this long is reported as stuck.
pub const GIVE_UP_AFTER_S: u64 = 3 * 3600;

/// Which checks the rollout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// The seed's absolute thresholds only (error rate > 5% for 2m, p99 > 500ms for 3m).
    Thresholds,
    /// The same thresholds as guard rails plus `analysis.comparative` (defaults).
    Comparative,
}

impl Variant {
    pub fn label(&self) -> &'static str {
        match self {
            Variant::Thresholds => "thresholds",
            Variant::Comparative => "thresholds + comparative",
        }
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
        comparative: (variant == Variant::Comparative).then(ComparativeCheck::default),
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
        },
        stages: default_stages(),
        analysis,
        prometheus: PrometheusSource::default(),
        notification: None,
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
    share_factor: f64,
    burst_start_s: f64,
}

/// Run one rollout to its end. The same `seed` gives the same traffic for both variants
/// (until their weights differ).
pub fn run(scenario: &Scenario, variant: Variant, seed: u64) -> End {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal: f64 = StandardNormal.sample(&mut rng);
    let world = World {
        diurnal_phase: rng.random::<f64>() * std::f64::consts::TAU,
        share_factor: (1.0 + scenario.cohort_share_jitter * normal).max(0.0),
        burst_start_s: 120.0 + rng.random::<f64>() * 2280.0,
    };
    let spec = spec_for(scenario, variant);
    let start = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut status = CanaryRolloutStatus::default();
    let slices_per_window = (WINDOW_S / SLICE_S) as usize;
    // Before the rollout starts stable serves everyone: the first windows hold that traffic.
    let mut slices: Vec<(Slice, Slice)> = (0..slices_per_window)
        .map(|slice| {
            let middle_s = (slice as f64 - slices_per_window as f64 + 0.5) * SLICE_S as f64;
            draw_slice(scenario, &world, 0.0, middle_s, &mut rng)
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
                canary: traffic::window(&canary),
                stable: traffic::window(&stable),
            },
            custom: Vec::new(),
            canary_health: CanaryHealth::Healthy,
            manual: None,
        };
        status = engine::decide(&spec, &status, now, &observations).status;
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
                &world,
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

/// Canary's and stable's traffic for the slice around `middle_s` at `weight`.
fn draw_slice(
    scenario: &Scenario,
    world: &World,
    weight: f64,
    middle_s: f64,
    rng: &mut StdRng,
) -> (Slice, Slice) {
    let swing =
        (std::f64::consts::TAU * middle_s / scenario.diurnal_period_s + world.diurnal_phase).sin();
    let mean_requests =
        scenario.total_rps * (1.0 + scenario.diurnal_amplitude * swing) * SLICE_S as f64;
    let canary_share = match weight {
        w if w <= 0.0 => 0.0,
        w if w >= 100.0 => 1.0,
        w => (w / 100.0 * world.share_factor).clamp(0.0, 1.0),
    };
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
    let canary = VersionLoad {
        mean_requests: mean_requests * canary_share,
        error_rate: (scenario.canary_error_rate + burst).min(1.0),
        median_ms: median_ms * scenario.canary_latency_factor * warm_up,
    };
    let stable = VersionLoad {
        mean_requests: mean_requests * (1.0 - canary_share),
        error_rate: (scenario.stable_error_rate + burst).min(1.0),
        median_ms,
    };
    (traffic::draw(&canary, rng), traffic::draw(&stable, rng))
}

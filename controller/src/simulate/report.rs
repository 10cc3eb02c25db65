//! Many rollouts per scenario and variant, summarised into the figures the goals name.

use std::collections::BTreeMap;

use super::rollout::{self, End, Variant};
use super::scenario::{self, Scenario};
use super::users::UserModel;

/// How many rollouts to simulate, and over which users.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub healthy_runs: usize,
    pub regression_runs: usize,
    pub seed: u64,
    /// Worker threads (results do not depend on it).
    pub threads: usize,
    /// The ordinary users of every population.
    pub users: UserModel,
    /// Only the scenarios whose name contains this (each keeps its catalog seeds, so its
    /// figures are the same as in the full run).
    pub only: Option<String>,
}

impl Options {
    /// The figures recorded in BENCHMARKS.md.
    pub fn full() -> Self {
        Options {
            healthy_runs: 2000,
            regression_runs: 500,
            seed: 20261126,
            threads: default_threads(),
            users: UserModel::default(),
            only: None,
        }
    }

    /// A small run for tests and a quick look.
    pub fn quick() -> Self {
        Options {
            healthy_runs: 200,
            regression_runs: 60,
            ..Options::full()
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A detection within this many seconds counts toward the "within 2 minutes" goal.
pub const FAST_DETECTION_S: f64 = 120.0;
/// ... and within this many toward the "within 5 minutes" goal.
pub const FIVE_MINUTES_S: f64 = 300.0;

/// One scenario under one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub variant: Variant,
    pub runs: usize,
    pub promoted: usize,
    pub stuck: usize,
    /// Seconds from the start to the rollback, per rolled-back run.
    pub rollback_times_s: Vec<f64>,
    pub promotion_times_s: Vec<f64>,
    /// Rollbacks per reason (`error-rate`, `comparative-errors`, ...).
    pub rollback_reasons: BTreeMap<String, usize>,
}

impl ScenarioResult {
    pub fn rolled_back(&self) -> usize {
        self.rollback_times_s.len()
    }

    /// Share of runs rolled back: the false-positive rate for a healthy canary, the
    /// detection rate for a regression.
    pub fn rollback_rate(&self) -> f64 {
        ratio(self.rolled_back(), self.runs)
    }

    pub fn rollback_within_rate(&self, seconds: f64) -> f64 {
        let fast = self
            .rollback_times_s
            .iter()
            .filter(|t| **t <= seconds)
            .count();
        ratio(fast, self.runs)
    }

    pub fn median_rollback_s(&self) -> Option<f64> {
        median(&self.rollback_times_s)
    }

    /// Share of runs promoted: the seed's promotion-success SLO (above 95%) for a healthy
    /// canary.
    pub fn promotion_rate(&self) -> f64 {
        ratio(self.promoted, self.runs)
    }

    pub fn median_promotion_s(&self) -> Option<f64> {
        median(&self.promotion_times_s)
    }
}

fn ratio(count: usize, runs: usize) -> f64 {
    if runs == 0 {
        0.0
    } else {
        count as f64 / runs as f64
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// The seed of run `run` of scenario `index`: the same for both variants. The base is
/// mixed before the run number goes in, so two bases never share runs (with a plain XOR,
/// bases 1, 2 and 3 gave the same 500 runs in a different order, and the same figures).
pub fn run_seed(base: u64, index: usize, run: usize) -> u64 {
    splitmix64(splitmix64(base ^ ((index as u64) << 40)) ^ run as u64)
}

fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Simulate one scenario under one variant.
pub fn simulate(
    index: usize,
    scenario: &Scenario,
    variant: Variant,
    options: &Options,
) -> ScenarioResult {
    let runs = if scenario.healthy {
        options.healthy_runs
    } else {
        options.regression_runs
    };
    let threads = options.threads.clamp(1, runs.max(1));
    let chunk = runs.div_ceil(threads).max(1);
    let ends: Vec<End> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..runs)
            .step_by(chunk)
            .map(|first| {
                scope.spawn(move || {
                    (first..(first + chunk).min(runs))
                        .map(|run| {
                            let seed = run_seed(options.seed, index, run);
                            rollout::run(scenario, variant, options.users, seed)
                        })
                        .collect::<Vec<End>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    let mut result = ScenarioResult {
        scenario: scenario.clone(),
        variant,
        runs: ends.len(),
        promoted: 0,
        stuck: 0,
        rollback_times_s: Vec::new(),
        promotion_times_s: Vec::new(),
        rollback_reasons: BTreeMap::new(),
    };
    for end in ends {
        match end {
            End::Promoted { after_s } => {
                result.promoted += 1;
                result.promotion_times_s.push(after_s);
            }
            End::RolledBack { after_s, reason } => {
                result.rollback_times_s.push(after_s);
                *result.rollback_reasons.entry(reason).or_default() += 1;
            }
            End::Stuck => result.stuck += 1,
        }
    }
    result
}

/// Every scenario of the catalog (or those `options.only` names) under each variant, in
/// report order.
pub fn simulate_all(options: &Options) -> Vec<ScenarioResult> {
    let mut results = Vec::new();
    let wanted = |scenario: &Scenario| {
        options
            .only
            .as_deref()
            .is_none_or(|only| scenario.name.contains(only))
    };
    for (index, scenario) in scenario::catalog().iter().enumerate() {
        if !wanted(scenario) {
            continue;
        }
        for variant in [
            Variant::Thresholds,
            Variant::ThresholdsByShard,
            Variant::Comparative,
            Variant::ClusterRobust,
        ] {
            results.push(simulate(index, scenario, variant, options));
        }
    }
    results
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn minutes(seconds: Option<f64>) -> String {
    match seconds {
        Some(seconds) if seconds < 600.0 => format!("{seconds:.0}s"),
        Some(seconds) => format!("{:.1}m", seconds / 60.0),
        None => "-".to_string(),
    }
}

fn reasons(result: &ScenarioResult) -> String {
    if result.rollback_reasons.is_empty() {
        return "-".to_string();
    }
    result
        .rollback_reasons
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The results as two Markdown tables (healthy canaries, then regressions).
pub fn render_markdown(results: &[ScenarioResult], options: &Options) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Seed {}, {} runs per healthy scenario, {} per regression; {} ordinary users, activity σ {}; stages 10%/10m, 25%/15m, 50%/20m, 100%; interval 30s, window 1m.\n\n",
        options.seed,
        options.healthy_runs,
        options.regression_runs,
        options.users.users,
        options.users.activity_sigma
    ));
    let healthy = results.iter().filter(|r| r.scenario.healthy).map(|result| {
        vec![
            result.scenario.name.to_string(),
            result.variant.label().to_string(),
            result.runs.to_string(),
            format!(
                "{} ({})",
                percent(result.rollback_rate()),
                result.rolled_back()
            ),
            format!("{} ({})", percent(result.promotion_rate()), result.promoted),
            minutes(result.median_promotion_s()),
            result.stuck.to_string(),
            reasons(result),
        ]
    });
    out.push_str(&table(
        "| healthy canary | checks | runs | false-positive rollbacks | promotion success (SLO > 95%) | median promotion time | stuck | rollbacks by check |\n|---|---|---:|---:|---:|---:|---:|---|\n",
        healthy,
    ));
    let regressions = results
        .iter()
        .filter(|r| !r.scenario.healthy)
        .map(|result| {
            vec![
                result.scenario.name.to_string(),
                result.variant.label().to_string(),
                result.runs.to_string(),
                percent(result.rollback_rate()),
                percent(result.rollback_within_rate(FAST_DETECTION_S)),
                percent(result.rollback_within_rate(FIVE_MINUTES_S)),
                result.promoted.to_string(),
                minutes(result.median_rollback_s()),
                reasons(result),
            ]
        });
    out.push_str(&table(
        "\n| regression (10% weight, 50 req/s) | checks | runs | detected in the rollout | detected within 2m | within 5m | promoted | median time to detection | rollbacks by check |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n",
        regressions,
    ));
    out
}

/// `head` (the header and alignment rows) and one row per item, or nothing without rows.
fn table(head: &str, rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<String> = rows
        .map(|cells| format!("| {} |\n", cells.join(" | ")))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!("{head}{}", rows.concat())
}

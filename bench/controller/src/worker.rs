//! The measured child process for one rollout count: N CanaryRollouts, then K intervals of
//! what the reconciler does per interval, against the real Prometheus the parent started.
//!
//! Per interval and per rollout it calls the reconciler's own code: `MetricsBatcher::observation`
//! (the first call of the interval sends the batched queries, the others read the shared
//! batch) and `engine::decide`, feeding each rollout's new status into the next interval.
//! Not included (no cluster here): the WasmPlugin read/patch, pod health and the status patch
//! to the API server, which are per-rollout HTTP calls to Kubernetes, not to Prometheus.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use stickycanary::engine::{self, Action, Timestamp};
use stickycanary::k8s::batch::MetricsBatcher;
use stickycanary::observation::{CanaryHealth, MetricsObservation, Observations};
use stickycanary::prometheus::{MetricsSource, RolloutSeries};

use crate::exporter::rollout_key;
use crate::probe;

/// What the worker asks of its run.
pub struct WorkerArgs {
    pub rollouts: usize,
    pub prometheus: String,
    pub intervals: usize,
    pub interval: Duration,
}

/// One interval's cost.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct IntervalSample {
    pub queries: u64,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    /// Rollouts whose window had canary traffic (the batch really carried their series).
    pub rollouts_with_data: usize,
    /// Batch fetches sent in this interval (3 queries each) and the wall time they took.
    pub fetches: u64,
    pub fetch_ms: f64,
    pub unavailable: usize,
    pub set_weight_actions: usize,
}

/// The worker's whole result, written as JSON for the parent.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct WorkerResult {
    pub rollouts: usize,
    pub intervals: Vec<IntervalSample>,
    /// RSS after the runtime, the client and the N specs exist, before the first interval.
    pub rss_before_kib: u64,
    /// Peak RSS of the whole worker (VmHWM).
    pub peak_rss_kib: u64,
    /// Phases at the end, e.g. `Progressing` x N: the engine really ran.
    pub final_phases: Vec<(String, usize)>,
    pub first_unavailable_reason: Option<String>,
}

/// The spec every benchmark rollout uses: the default stages and checks plus compareStable
/// and the comparative test, so each decide runs every built-in check.
pub fn spec(key: &str, prometheus: &str, interval: Duration) -> Result<CanaryRolloutSpec, String> {
    let value = serde_json::json!({
        "wasmPlugin": {"name": "stickycanary"},
        "rolloutKey": key,
        "canary": {"deployment": format!("{key}-canary")},
        "analysis": {
            "interval": format!("{}s", interval.as_secs().max(1)),
            "window": "10s",
            "compareStable": {"maxIncreasePercentPoints": 2, "for": "2m"},
            "comparative": {}
        },
        "prometheus": {"address": prometheus}
    });
    serde_json::from_value(value).map_err(|e| format!("benchmark spec for {key}: {e}"))
}

/// Runs the intervals and returns the measurements.
pub async fn run(args: &WorkerArgs) -> Result<WorkerResult, String> {
    let specs = (0..args.rollouts)
        .map(|i| spec(&rollout_key(i), &args.prometheus, args.interval))
        .collect::<Result<Vec<_>, _>>()?;
    let series: Vec<RolloutSeries> = (0..args.rollouts)
        .map(|i| RolloutSeries::with_default_versions(&rollout_key(i)))
        .collect();
    let mut statuses = vec![CanaryRolloutStatus::default(); args.rollouts];
    let batcher = MetricsBatcher::new(
        Duration::from_secs(10),
        prometheus_client::metrics::counter::Counter::default(),
    );
    // The source the batcher queries through; it counts every query it sends.
    let endpoint = batcher.plain(&args.prometheus);
    let source = batcher.source(&endpoint)?;
    let rss_before_kib = probe::status_kib("VmRSS").unwrap_or(0);

    let mut samples = Vec::with_capacity(args.intervals);
    let mut first_unavailable_reason = None;
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..args.intervals {
        ticker.tick().await;
        let (queries0, cpu0, wall0) = (source.queries_issued(), probe::cpu_time(), Instant::now());
        let mut sample = IntervalSample {
            queries: 0,
            wall_ms: 0.0,
            cpu_ms: 0.0,
            rollouts_with_data: 0,
            fetches: 0,
            fetch_ms: 0.0,
            unavailable: 0,
            set_weight_actions: 0,
        };
        for ((spec, series), status) in specs.iter().zip(&series).zip(statuses.iter_mut()) {
            // As the reconciler: the batch may be at most half an interval old.
            let window = spec.analysis.effective_window().as_std();
            let (before, started) = (source.queries_issued(), Instant::now());
            let metrics = batcher
                .observation(&endpoint, window, series, args.interval / 2)
                .await;
            if source.queries_issued() > before {
                sample.fetches += 1;
                sample.fetch_ms += started.elapsed().as_secs_f64() * 1000.0;
            }
            match &metrics {
                MetricsObservation::Window { canary, .. } if canary.requests > 0.0 => {
                    sample.rollouts_with_data += 1;
                }
                MetricsObservation::Window { .. } => {}
                MetricsObservation::Unavailable { reason } => {
                    sample.unavailable += 1;
                    first_unavailable_reason.get_or_insert_with(|| reason.clone());
                }
            }
            let observations = Observations {
                metrics,
                custom: Vec::new(),
                resources: Default::default(),
                canary_health: CanaryHealth::Healthy,
                manual: None,
                stable_before_run: None,
            };
            let decision = engine::decide(spec, status, Timestamp::now(), &observations);
            sample.set_weight_actions += decision
                .actions
                .iter()
                .filter(|a| matches!(a, Action::SetWeight(_)))
                .count();
            *status = decision.status;
        }
        sample.wall_ms = wall0.elapsed().as_secs_f64() * 1000.0;
        sample.cpu_ms = (probe::cpu_time().saturating_sub(cpu0)).as_secs_f64() * 1000.0;
        sample.queries = source.queries_issued() - queries0;
        samples.push(sample);
    }

    Ok(WorkerResult {
        rollouts: args.rollouts,
        intervals: samples,
        rss_before_kib,
        peak_rss_kib: probe::status_kib("VmHWM").unwrap_or(0),
        final_phases: phase_counts(&statuses),
        first_unavailable_reason,
    })
}

fn phase_counts(statuses: &[CanaryRolloutStatus]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for status in statuses {
        let name = phase_name(status.phase);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
}

fn phase_name(phase: Phase) -> String {
    phase.as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_spec_parses_with_the_requested_window_and_checks() {
        let s = spec("r0007", "http://127.0.0.1:9", Duration::from_secs(1)).unwrap();
        assert_eq!(s.rollout_key.as_deref(), Some("r0007"));
        assert_eq!(
            s.analysis.effective_window().as_std(),
            Duration::from_secs(10)
        );
        assert!(s.analysis.compare_stable.is_some());
        assert!(s.analysis.comparative.is_some());
    }
}

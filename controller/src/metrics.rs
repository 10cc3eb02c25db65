//! The controller's own metrics, served on `/metrics` in the Prometheus text format.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::crd::{CanaryRolloutSpec, Phase};
use crate::target::wasmplugin::PatchOutcomes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub rollout: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// `stickycanary_rollbacks_total`'s labels: which rollout, and the engine's rollback reason
/// (`error-rate`, `latency`, `aborted`, `prometheus-unavailable`, `crash:OOMKilled`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RollbackLabels {
    pub namespace: String,
    pub rollout: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// The metric handles (cheap to clone: each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub rollout_weight: Family<RolloutLabels, Gauge<f64, AtomicU64>>,
    pub rollout_phase: Family<PhaseLabels, Gauge>,
    pub analysis: Family<ResultLabels, Counter>,
    pub rollbacks: Family<RollbackLabels, Counter>,
    /// Every rollback series created, so a forgotten rollout loses all of them.
    rollback_series: Arc<Mutex<BTreeSet<RollbackLabels>>>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub weight_patches: Family<OutcomeLabels, Counter>,
    pub prometheus_queries: Counter,
    pub leader: Gauge,
    /// `stickycanary_alerts_total{provider, type, outcome}`.
    pub alerts: crate::alerts::report::AlertCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rollout_weight = Family::<RolloutLabels, Gauge<f64, AtomicU64>>::default();
        let rollout_phase = Family::<PhaseLabels, Gauge>::default();
        let analysis = Family::<ResultLabels, Counter>::default();
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let weight_patches = Family::<OutcomeLabels, Counter>::default();
        let prometheus_queries = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "stickycanary_rollout_weight",
            "Current canary weight (percent) of each rollout",
            rollout_weight.clone(),
        );
        registry.register(
            "stickycanary_rollout_phase",
            "1 for the rollout's current phase, 0 for the others",
            rollout_phase.clone(),
        );
        registry.register(
            "stickycanary_analysis",
            "Analysis ticks by result (pass, fail, inconclusive, unavailable, ...)",
            analysis.clone(),
        );
        registry.register(
            "stickycanary_rollbacks",
            "Rollbacks by rollout and reason (the engine's reasons: error-rate, latency, aborted, ...)",
            rollbacks.clone(),
        );
        registry.register(
            "stickycanary_reconcile_errors",
            "Failed reconciles by error label",
            reconcile_errors.clone(),
        );
        registry.register(
            "stickycanary_reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "stickycanary_weight_patch",
            "Weight writes to the WasmPlugin or ECDS file by outcome",
            weight_patches.clone(),
        );
        registry.register(
            "stickycanary_prometheus_queries",
            "Queries sent to Prometheus (flat per interval, whatever the number of rollouts)",
            prometheus_queries.clone(),
        );
        registry.register(
            "stickycanary_leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let alerts = crate::alerts::report::AlertCounter::default();
        alerts.register(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            rollout_weight,
            rollout_phase,
            analysis,
            rollbacks,
            rollback_series: Arc::new(Mutex::new(BTreeSet::new())),
            reconcile_errors,
            reconcile_duration,
            weight_patches,
            prometheus_queries,
            leader,
            alerts,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records a rollout's weight and phase: `stickycanary_rollout_phase` is 1 for the
    /// current phase and 0 for every other one of [`Phase::ALL`].
    pub fn set_rollout(&self, namespace: &str, rollout: &str, weight: f64, phase: Phase) {
        self.rollout_weight
            .get_or_create(&RolloutLabels {
                namespace: namespace.to_string(),
                rollout: rollout.to_string(),
            })
            .set(weight);
        for candidate in Phase::ALL {
            self.rollout_phase
                .get_or_create(&PhaseLabels {
                    namespace: namespace.to_string(),
                    rollout: rollout.to_string(),
                    phase: candidate.as_str().to_string(),
                })
                .set(i64::from(candidate == phase));
        }
    }

    /// Forgets a deleted rollout's series.
    pub fn forget_rollout(&self, namespace: &str, rollout: &str) {
        self.rollout_weight.remove(&RolloutLabels {
            namespace: namespace.to_string(),
            rollout: rollout.to_string(),
        });
        for candidate in Phase::ALL {
            self.rollout_phase.remove(&PhaseLabels {
                namespace: namespace.to_string(),
                rollout: rollout.to_string(),
                phase: candidate.as_str().to_string(),
            });
        }
        if let Ok(mut series) = self.rollback_series.lock() {
            series.retain(|labels| {
                let ours = labels.namespace == namespace && labels.rollout == rollout;
                if ours {
                    self.rollbacks.remove(labels);
                }
                !ours
            });
        }
    }

    pub fn count_analysis(&self, result: &str) {
        self.analysis
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    fn rollback_counter(&self, namespace: &str, rollout: &str, reason: &str) -> Counter {
        let labels = RollbackLabels {
            namespace: namespace.to_string(),
            rollout: rollout.to_string(),
            reason: reason.to_string(),
        };
        if let Ok(mut series) = self.rollback_series.lock() {
            series.insert(labels.clone());
        }
        self.rollbacks.get_or_create_owned(&labels)
    }

    /// Counts one rollback of `namespace/rollout` for `reason`.
    pub fn count_rollback(&self, namespace: &str, rollout: &str, reason: &str) {
        self.rollback_counter(namespace, rollout, reason).inc();
    }

    /// Creates the rollout's rollback series at 0 for every reason its spec can produce
    /// ([`rollback_reasons`]). Prometheus' `increase()` sees a rollback only as a step
    /// from a scraped 0 to 1; a series born at 1 shows no increase.
    pub fn init_rollbacks(&self, namespace: &str, rollout: &str, spec: &CanaryRolloutSpec) {
        for reason in rollback_reasons(spec) {
            self.rollback_counter(namespace, rollout, &reason);
        }
    }

    pub fn count_reconcile_error(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.to_string(),
            })
            .inc();
    }
}

/// The rollback reasons known before anything happens: the spec's checks (each check's name
/// is its rollback reason), a manual abort and the Prometheus-outage fail-safe. Crash
/// reasons (`crash:<reason>`) name a pod state and are created when they happen.
pub fn rollback_reasons(spec: &CanaryRolloutSpec) -> Vec<String> {
    let mut reasons: Vec<String> = crate::engine::checks::for_spec(&spec.analysis)
        .iter()
        .map(|check| check.name())
        .collect();
    reasons.push("aborted".to_string());
    reasons.push("prometheus-unavailable".to_string());
    reasons
}

/// Patch outcomes land in `stickycanary_weight_patch_total{outcome}`.
impl PatchOutcomes for Metrics {
    fn record(&self, outcome: &str) {
        self.weight_patches
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_contracted_series() {
        let m = Metrics::new();
        m.set_rollout("shop", "checkout", 25.0, Phase::Progressing);
        m.count_analysis("pass");
        m.count_rollback("shop", "checkout", "error-rate");
        m.record("success");
        let text = m.encode();
        assert!(
            text.contains(
                "stickycanary_rollout_weight{namespace=\"shop\",rollout=\"checkout\"} 25.0"
            ),
            "{text}"
        );
        assert!(text.contains("stickycanary_rollout_phase{namespace=\"shop\",rollout=\"checkout\",phase=\"Progressing\"} 1"));
        assert!(text.contains("stickycanary_rollout_phase{namespace=\"shop\",rollout=\"checkout\",phase=\"Paused\"} 0"));
        assert!(text.contains("stickycanary_analysis_total{result=\"pass\"} 1"));
        assert!(
            text.contains("stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"checkout\",reason=\"error-rate\"} 1"),
            "{text}"
        );
        assert!(text.contains("stickycanary_weight_patch_total{outcome=\"success\"} 1"));
        assert!(text.contains("stickycanary_reconcile_duration_seconds_bucket"));
    }

    #[test]
    fn the_phase_series_cover_every_phase_with_one_at_one() {
        // A new Phase variant fails to compile here until it is added to Phase::ALL too.
        for phase in Phase::ALL {
            match phase {
                Phase::Pending
                | Phase::WaitingForRelease
                | Phase::Initializing
                | Phase::Initialized
                | Phase::ScalingUp
                | Phase::Progressing
                | Phase::Paused
                | Phase::Promoting
                | Phase::Finalising
                | Phase::Succeeded
                | Phase::Promoted
                | Phase::RolledBack
                | Phase::PromotionFailed
                | Phase::InvalidSpec => {}
            }
        }
        let m = Metrics::new();
        m.set_rollout("shop", "checkout", 10.0, Phase::Paused);
        let text = m.encode();
        for phase in Phase::ALL {
            let value = i32::from(phase == Phase::Paused);
            let line = format!(
                "stickycanary_rollout_phase{{namespace=\"shop\",rollout=\"checkout\",phase=\"{}\"}} {value}",
                phase.as_str()
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        let distinct: BTreeSet<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(distinct.len(), Phase::ALL.len());
    }

    #[test]
    fn rollback_series_start_at_zero_per_reason_and_are_forgotten_with_the_rollout() {
        let spec: CanaryRolloutSpec = serde_yaml::from_str(
            "wasmPlugin: {name: stickycanary}\ncanary: {deployment: checkout-canary}\n\
             prometheus: {address: 'http://127.0.0.1:9'}\n",
        )
        .unwrap();
        let m = Metrics::new();
        m.init_rollbacks("shop", "checkout", &spec);
        m.init_rollbacks("shop", "search", &spec);
        m.count_rollback("shop", "checkout", "latency");
        let text = m.encode();
        for reason in ["error-rate", "aborted", "prometheus-unavailable"] {
            let zero = format!("stickycanary_rollbacks_total{{namespace=\"shop\",rollout=\"checkout\",reason=\"{reason}\"}} 0");
            assert!(text.contains(&zero), "{zero} in {text}");
        }
        assert!(text.contains("stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"checkout\",reason=\"latency\"} 1"));
        m.forget_rollout("shop", "checkout");
        let text = m.encode();
        assert!(!text.contains("rollout=\"checkout\""), "{text}");
        assert!(text.contains("stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"search\",reason=\"latency\"} 0"));
    }
}

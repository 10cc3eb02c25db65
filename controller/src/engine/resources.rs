//! The resource checks (`spec.analysis.resources`) as engine [`Check`]s: canary CPU
//! throttling against a maximum percentage, and canary memory and CPU per pod against
//! stable's per pod. They read [`ResourceObservation`], never the traffic window, so a
//! Prometheus that has the traffic but not the kubelet's series leaves them inconclusive.

use super::checks::{Check, CheckInput, Evaluation, Outcome};
use crate::crd::Analysis;
use crate::crd::{IncreaseCheck, ResourceChecks};
use crate::duration::Duration;
use crate::resources::{PodUsage, ResourceObservation};

/// Check names, which are also the rollback reasons.
pub const CPU_THROTTLING: &str = "resources:cpu-throttling";
pub const MEMORY: &str = "resources:memory";
pub const CPU: &str = "resources:cpu";

/// The resource checks the spec asks for, in a fixed order.
pub fn for_spec(analysis: &Analysis) -> Vec<Box<dyn Check>> {
    let Some(resources) = &analysis.resources else {
        return Vec::new();
    };
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    if let Some(throttling) = &resources.cpu_throttling {
        checks.push(Box::new(CpuThrottling {
            max_percent: throttling.max_percent,
            breach_for: resources.for_duration,
        }));
    }
    if let Some(memory) = &resources.memory {
        checks.push(Box::new(AgainstStable::memory(memory, resources)));
    }
    if let Some(cpu) = &resources.cpu {
        checks.push(Box::new(AgainstStable::cpu(cpu, resources)));
    }
    checks
}

/// The observed figures, or the evaluation to return when there are none.
fn figures<'a>(input: &CheckInput<'a>) -> Result<(&'a PodUsage, &'a PodUsage), Evaluation> {
    match &input.observations.resources {
        ResourceObservation::Window { canary, stable } => Ok((canary, stable)),
        ResourceObservation::Unavailable { reason } => Err(Evaluation::new(
            Outcome::Unavailable,
            None,
            None,
            format!("resource metrics unavailable: {reason}"),
        )),
        ResourceObservation::NotQueried => Err(Evaluation::new(
            Outcome::Inconclusive,
            None,
            None,
            "no resource metrics were queried (they need cAdvisor's series)".to_string(),
        )),
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Throttled CFS periods of the canary's containers over all their periods.
pub struct CpuThrottling {
    pub max_percent: f64,
    pub breach_for: Duration,
}

impl Check for CpuThrottling {
    fn name(&self) -> String {
        CPU_THROTTLING.to_string()
    }

    fn breach_for(&self) -> Duration {
        self.breach_for
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        let (canary, _) = match figures(input) {
            Ok(figures) => figures,
            Err(evaluation) => return evaluation,
        };
        let Some(throttled) = canary.throttled_percent else {
            return Evaluation::new(
                Outcome::Inconclusive,
                None,
                Some(self.max_percent),
                "no CFS period series for the canary's containers (no pods matched, or no CPU limit)"
                    .to_string(),
            );
        };
        let (outcome, relation) = if throttled > self.max_percent {
            (Outcome::Fail, "above")
        } else {
            (Outcome::Pass, "within")
        };
        Evaluation::new(
            outcome,
            Some(throttled),
            Some(self.max_percent),
            format!(
                "canary CPU throttled in {}% of periods, {relation} max {}%",
                round2(throttled),
                self.max_percent
            ),
        )
    }
}

/// A per-pod figure of canary against stable's, as a relative increase.
pub struct AgainstStable {
    name: &'static str,
    /// The figure in messages: `memory working set`, `CPU`.
    what: &'static str,
    unit: &'static str,
    /// Shown in messages: bytes become MiB, cores stay cores.
    scale: f64,
    measure: fn(&PodUsage) -> Option<f64>,
    max_increase_percent: f64,
    breach_for: Duration,
}

impl AgainstStable {
    pub fn memory(check: &IncreaseCheck, resources: &ResourceChecks) -> Self {
        AgainstStable {
            name: MEMORY,
            what: "memory working set",
            unit: " MiB",
            scale: 1.0 / (1024.0 * 1024.0),
            measure: |usage| usage.memory_bytes_per_pod,
            max_increase_percent: check.max_increase_percent,
            breach_for: resources.for_duration,
        }
    }

    pub fn cpu(check: &IncreaseCheck, resources: &ResourceChecks) -> Self {
        AgainstStable {
            name: CPU,
            what: "CPU",
            unit: " cores",
            scale: 1.0,
            measure: |usage| usage.cpu_cores_per_pod,
            max_increase_percent: check.max_increase_percent,
            breach_for: resources.for_duration,
        }
    }
}

impl Check for AgainstStable {
    fn name(&self) -> String {
        self.name.to_string()
    }

    fn breach_for(&self) -> Duration {
        self.breach_for
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        let (canary, stable) = match figures(input) {
            Ok(figures) => figures,
            Err(evaluation) => return evaluation,
        };
        let (Some(canary_value), Some(stable_value)) =
            ((self.measure)(canary), (self.measure)(stable))
        else {
            return Evaluation::new(
                Outcome::Inconclusive,
                None,
                Some(self.max_increase_percent),
                format!("no {} series for canary or stable pods", self.what),
            );
        };
        if stable_value <= 0.0 {
            // Nothing to compare against: any canary figure would be an infinite increase.
            return Evaluation::new(
                Outcome::Inconclusive,
                None,
                Some(self.max_increase_percent),
                format!("stable's {} per pod is 0", self.what),
            );
        }
        let increase = (canary_value / stable_value - 1.0) * 100.0;
        let (outcome, relation) = if increase > self.max_increase_percent {
            (Outcome::Fail, "above")
        } else {
            (Outcome::Pass, "within")
        };
        Evaluation::new(
            outcome,
            Some(increase),
            Some(self.max_increase_percent),
            format!(
                "canary {} {}{unit} per pod against stable {}{unit}: {:+}%, {relation} max +{}%",
                self.what,
                round2(canary_value * self.scale),
                round2(stable_value * self.scale),
                round2(increase),
                self.max_increase_percent,
                unit = self.unit,
            ),
        )
    }
}

//! Checks that start at a stage (`fromStage`, 1-based): the seed's table grows its criteria
//! stage by stage ("the same, plus no OOM and no CPU throttling" from 25%). A check before
//! its stage is not judged at all: it neither holds nor advances the stage, keeps no breach
//! timer and is not listed in `status.lastAnalysis.checks`.
//!
//! The gate is looked up by check name, so any list of checks handed to the engine
//! (`decide_with`) is gated the same way as the spec's own.

use crate::crd::Analysis;

use super::resources;

/// The `fromStage` the spec sets for the check named `name`, if any.
pub fn from_stage(analysis: &Analysis, name: &str) -> Option<u32> {
    let resource = |pick: fn(&crate::crd::ResourceChecks) -> Option<u32>| {
        analysis.resources.as_ref().and_then(pick)
    };
    match name {
        "error-rate" => analysis.error_rate.from_stage,
        "latency" => analysis.latency_p99.from_stage,
        "compare-stable" => analysis.compare_stable.as_ref()?.from_stage,
        resources::CPU_THROTTLING => {
            resource(|r| r.cpu_throttling.as_ref().and_then(|c| c.from_stage))
        }
        resources::MEMORY => resource(|r| r.memory.as_ref().and_then(|c| c.from_stage)),
        resources::CPU => resource(|r| r.cpu.as_ref().and_then(|c| c.from_stage)),
        other => {
            let custom = other.strip_prefix("custom:")?;
            analysis
                .custom
                .iter()
                .find(|check| check.name == custom)?
                .from_stage
        }
    }
}

/// True when the check named `name` is judged at the stage with 0-based `stage_index`.
pub fn applies(analysis: &Analysis, name: &str, stage_index: u32) -> bool {
    from_stage(analysis, name).is_none_or(|from| stage_index.saturating_add(1) >= from)
}

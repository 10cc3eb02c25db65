//! Checks of `fromStage` on every check and of `spec.analysis.resources`.

use stickycanary_filter::config::validate_label;

use super::ValidationError;
use crate::crd::CanaryRolloutSpec;
use crate::crd::ResourceChecks;

pub(super) fn errors(spec: &CanaryRolloutSpec, errors: &mut Vec<ValidationError>) {
    from_stage_errors(spec, errors);
    if let Some(resources) = &spec.analysis.resources {
        resource_errors(spec, resources, errors);
    }
}

/// Every `fromStage` the spec sets, with its field path.
fn from_stages(spec: &CanaryRolloutSpec) -> Vec<(String, u32)> {
    let analysis = &spec.analysis;
    let mut found = Vec::new();
    let mut add = |field: String, from: Option<u32>| {
        if let Some(from) = from {
            found.push((field, from));
        }
    };
    add("errorRate".into(), analysis.error_rate.from_stage);
    add("latencyP99".into(), analysis.latency_p99.from_stage);
    if let Some(compare) = &analysis.compare_stable {
        add("compareStable".into(), compare.from_stage);
    }
    for (index, custom) in analysis.custom.iter().enumerate() {
        add(format!("custom[{index}]"), custom.from_stage);
    }
    if let Some(resources) = &analysis.resources {
        if let Some(check) = &resources.cpu_throttling {
            add("resources.cpuThrottling".into(), check.from_stage);
        }
        if let Some(check) = &resources.memory {
            add("resources.memory".into(), check.from_stage);
        }
        if let Some(check) = &resources.cpu {
            add("resources.cpu".into(), check.from_stage);
        }
    }
    found
}

/// A check that starts after the last stage would never run: that is a mistake, not a
/// way to switch it off.
fn from_stage_errors(spec: &CanaryRolloutSpec, errors: &mut Vec<ValidationError>) {
    let stages = u32::try_from(spec.stages.len()).unwrap_or(u32::MAX);
    if stages == 0 {
        // Already reported on spec.stages; every fromStage would repeat it.
        return;
    }
    for (field, from) in from_stages(spec) {
        if from == 0 || from > stages {
            errors.push(ValidationError::new(
                format!("spec.analysis.{field}.fromStage"),
                format!("must be a stage number from 1 to {stages} (got {from})"),
            ));
        }
    }
}

fn resource_errors(
    spec: &CanaryRolloutSpec,
    resources: &ResourceChecks,
    errors: &mut Vec<ValidationError>,
) {
    let field = "spec.analysis.resources";
    if resources.cpu_throttling.is_none() && resources.memory.is_none() && resources.cpu.is_none() {
        errors.push(ValidationError::new(
            field,
            "needs cpuThrottling, memory or cpu (an empty block checks nothing)",
        ));
    }
    if let Some(throttling) = &resources.cpu_throttling {
        let max = throttling.max_percent;
        if !(0.0..=100.0).contains(&max) {
            errors.push(ValidationError::new(
                format!("{field}.cpuThrottling.maxPercent"),
                format!("must be a number from 0 to 100 (got {max})"),
            ));
        }
    }
    for (name, check) in [("memory", &resources.memory), ("cpu", &resources.cpu)] {
        let Some(check) = check else { continue };
        let max = check.max_increase_percent;
        if !(max.is_finite() && max >= 0.0) {
            errors.push(ValidationError::new(
                format!("{field}.{name}.maxIncreasePercent"),
                format!("must be a non-negative number (got {max})"),
            ));
        }
    }
    let compares = resources.memory.is_some() || resources.cpu.is_some();
    match &resources.stable {
        None if compares => errors.push(ValidationError::new(
            format!("{field}.stable"),
            "is required by memory and cpu (they compare the canary's pods with stable's)",
        )),
        None => {}
        Some(stable) => {
            if let Err(message) = validate_label(&stable.deployment) {
                errors.push(ValidationError::new(
                    format!("{field}.stable.deployment"),
                    message,
                ));
            }
            if let Some(namespace) = &stable.namespace {
                if let Err(message) = validate_label(namespace) {
                    errors.push(ValidationError::new(
                        format!("{field}.stable.namespace"),
                        message,
                    ));
                }
            }
            let same_namespace = stable.namespace.is_none()
                || stable.namespace.as_deref() == spec.canary.namespace.as_deref();
            if same_namespace && stable.deployment == spec.canary.deployment {
                errors.push(ValidationError::new(
                    format!("{field}.stable.deployment"),
                    format!(
                        "must differ from spec.canary.deployment (both are {:?})",
                        stable.deployment
                    ),
                ));
            }
        }
    }
}

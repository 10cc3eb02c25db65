//! Semantic checks of a `CanaryRollout` that the OpenAPI schema cannot express: weights
//! that only go up, a last stage at 100, durations that must be positive, PromQL that
//! parses, and (given the plugin config) a rollout key that exists.
//!
//! The schema's own bounds are checked again here because local mode reads the spec from
//! a file, without an API server in front of it. Every error is one line naming the field.

pub mod alerts;
pub mod documents;
pub mod gates;
mod stages_and_resources;
pub mod unknown_fields;
pub mod workloads;

use std::collections::BTreeSet;

use stickycanary_filter::config::{validate_label, PluginConfig};

use crate::crd::{CanaryRollout, CanaryRolloutSpec, CustomCheck, Stage};

/// One problem in a spec: `<field path>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path such as `spec.stages[2].weight`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a whole resource: its name (the default rollout key) and its spec.
pub fn validate_rollout(rollout: &CanaryRollout) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    if rollout.spec.rollout_key.is_none() {
        // The name stands in for the rollout key, so it must be a label too.
        let name = rollout.metadata.name.as_deref().unwrap_or_default();
        if let Err(message) = validate_label(name) {
            errors.push(ValidationError::new(
                "metadata.name",
                format!("{message} (it is the default rolloutKey)"),
            ));
        }
    }
    errors.extend(spec_errors(&rollout.spec));
    into_result(errors)
}

/// Checks the spec alone, everything but the rollout key's existence in a plugin.
pub fn validate_spec(spec: &CanaryRolloutSpec) -> Result<(), Vec<ValidationError>> {
    into_result(spec_errors(spec))
}

/// Checks that `rollout_key` names a rollout in the WasmPlugin's plugin config, so the
/// controller never patches a weight into a rollout the filter does not know.
pub fn validate_rollout_key_in(
    rollout_key: &str,
    config: &PluginConfig,
) -> Result<(), ValidationError> {
    if config.rollouts.contains_key(rollout_key) {
        return Ok(());
    }
    let known: Vec<&str> = config.rollouts.keys().map(String::as_str).collect();
    Err(ValidationError::new(
        "spec.rolloutKey",
        format!(
            "rollout {rollout_key:?} is not in the plugin config (it has: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    ))
}

fn into_result(errors: Vec<ValidationError>) -> Result<(), Vec<ValidationError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The generated stable: a name that fits a Deployment name, subset labels to set, and no
/// hand-written stable Deployment (the two-Deployment layout is gone).
fn stable_errors(spec: &CanaryRolloutSpec, errors: &mut Vec<ValidationError>) {
    let (Some(stable), Some(name)) = (&spec.stable, spec.stable_name()) else {
        return;
    };
    if let Some(old) = &stable.deployment {
        errors.push(ValidationError::new(
            "spec.stable.deployment",
            format!("the stable Deployment is generated now ({name}), not named: remove {old} from the rollout (README, \"Migrating from a hand-written stable Deployment\")"),
        ));
    }
    if let Err(message) = validate_label(&name) {
        let field = if stable.name.is_some() {
            "spec.stable.name"
        } else {
            "spec.canary.deployment"
        };
        errors.push(ValidationError::new(
            field,
            format!("the generated stable's name {name}: {message}"),
        ));
    }
    if !stable.scaler_queries.is_empty() && spec.canary.scaled_object.is_none() {
        errors.push(ValidationError::new(
            "spec.stable.scalerQueries",
            "replaces trigger queries in the copy of spec.canary.scaledObject, which is not set",
        ));
    }
    if stable.pod_labels.is_empty() {
        errors.push(ValidationError::new(
            "spec.stable.podLabels",
            "must set at least one label (the stable subset's, e.g. version: stable)",
        ));
    }
}

fn spec_errors(spec: &CanaryRolloutSpec) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let mut label = |field: &str, value: &str| {
        if let Err(message) = validate_label(value) {
            errors.push(ValidationError::new(field, message));
        }
    };
    label("spec.wasmPlugin.name", &spec.wasm_plugin.name);
    if let Some(namespace) = &spec.wasm_plugin.namespace {
        label("spec.wasmPlugin.namespace", namespace);
    }
    if let Some(key) = &spec.rollout_key {
        label("spec.rolloutKey", key);
    }
    label("spec.canary.deployment", &spec.canary.deployment);
    if let Some(namespace) = &spec.canary.namespace {
        label("spec.canary.namespace", namespace);
    }
    if spec.canary.scaled_object.is_some() && spec.canary.horizontal_pod_autoscaler.is_some() {
        errors.push(ValidationError::new(
            "spec.canary.horizontalPodAutoscaler",
            "set either scaledObject or horizontalPodAutoscaler: KEDA's ScaledObject already drives an HPA of its own",
        ));
    }
    stable_errors(spec, &mut errors);
    stage_errors(&spec.stages, &mut errors);
    analysis_errors(spec, &mut errors);
    stages_and_resources::errors(spec, &mut errors);
    url_errors(spec, &mut errors);
    for problem in spec.prometheus.outbound.check("spec.prometheus") {
        let (field, message) = problem
            .split_once(": ")
            .unwrap_or(("spec.prometheus", &problem));
        errors.push(ValidationError::new(field, message));
    }
    gates::webhook_errors(&spec.webhooks, &mut errors);
    gates::schedule_errors(spec.schedule.as_ref(), &mut errors);
    alerts::errors(&spec.alerts, &mut errors);
    errors
}

fn stage_errors(stages: &[Stage], errors: &mut Vec<ValidationError>) {
    let Some(last_index) = stages.len().checked_sub(1) else {
        errors.push(ValidationError::new(
            "spec.stages",
            "needs at least one stage (the last at weight 100)",
        ));
        return;
    };
    let mut previous_weight: Option<f64> = None;
    for (index, stage) in stages.iter().enumerate() {
        let field = format!("spec.stages[{index}]");
        stage_duration_errors(index, last_index, stage, &field, errors);
        if !(0.0..=100.0).contains(&stage.weight) {
            // An out-of-range weight is reported alone, not also as out of order.
            errors.push(ValidationError::new(
                format!("{field}.weight"),
                format!("must be a number from 0 to 100 (got {})", stage.weight),
            ));
            continue;
        }
        if let Some(previous) = previous_weight.filter(|p| stage.weight < *p) {
            errors.push(ValidationError::new(
                format!("{field}.weight"),
                format!(
                    "weights must not go down ({} after {previous})",
                    stage.weight
                ),
            ));
        }
        previous_weight = Some(stage.weight);
    }
    if let Some(last) = stages.last() {
        if last.weight != 100.0 {
            errors.push(ValidationError::new(
                format!("spec.stages[{last_index}].weight"),
                format!("the last stage must be at weight 100 (got {})", last.weight),
            ));
        }
    }
}

/// Every stage but the last needs a positive duration.
fn stage_duration_errors(
    index: usize,
    last_index: usize,
    stage: &Stage,
    field: &str,
    errors: &mut Vec<ValidationError>,
) {
    if index >= last_index {
        return;
    }
    match stage.duration {
        None => errors.push(ValidationError::new(
            format!("{field}.duration"),
            "is required on every stage but the last",
        )),
        Some(duration) if duration.is_zero() => errors.push(ValidationError::new(
            format!("{field}.duration"),
            "must be positive on every stage but the last (got 0s)",
        )),
        Some(_) => {}
    }
}

fn analysis_errors(spec: &CanaryRolloutSpec, errors: &mut Vec<ValidationError>) {
    let analysis = &spec.analysis;
    if analysis.interval.is_zero() {
        errors.push(ValidationError::new(
            "spec.analysis.interval",
            "must be positive (got 0s)",
        ));
    }
    if analysis.window.is_some_and(|window| window.is_zero()) {
        errors.push(ValidationError::new(
            "spec.analysis.window",
            "must be positive (got 0s)",
        ));
    }
    let mut percent = |field: &str, value: f64| {
        if !(0.0..=100.0).contains(&value) {
            errors.push(ValidationError::new(
                field,
                format!("must be a number from 0 to 100 (got {value})"),
            ));
        }
    };
    percent(
        "spec.analysis.errorRate.maxPercent",
        analysis.error_rate.max_percent,
    );
    if let Some(compare) = &analysis.compare_stable {
        percent(
            "spec.analysis.compareStable.maxIncreasePercentPoints",
            compare.max_increase_percent_points,
        );
    }
    let max_ms = analysis.latency_p99.max_ms;
    if !(max_ms.is_finite() && max_ms >= 0.0) {
        errors.push(ValidationError::new(
            "spec.analysis.latencyP99.maxMs",
            format!("must be a non-negative number (got {max_ms})"),
        ));
    }
    if let Some(comparative) = &analysis.comparative {
        let alpha = comparative.alpha;
        if !(0.000001..=0.5).contains(&alpha) {
            errors.push(ValidationError::new(
                "spec.analysis.comparative.alpha",
                format!("must be a number from 0.000001 to 0.5 (got {alpha})"),
            ));
        }
        let increase = comparative.minimum_detectable_increase;
        if !(0.05..=10.0).contains(&increase) {
            errors.push(ValidationError::new(
                "spec.analysis.comparative.minimumDetectableIncrease",
                format!("must be a number from 0.05 to 10 (got {increase})"),
            ));
        }
        if let Some(threshold) = comparative.latency_threshold_ms {
            if !(threshold.is_finite() && threshold >= 0.0) {
                errors.push(ValidationError::new(
                    "spec.analysis.comparative.latencyThresholdMs",
                    format!("must be a non-negative number (got {threshold})"),
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (index, check) in analysis.custom.iter().enumerate() {
        custom_check_errors(index, check, errors);
        if !seen.insert(check.name.as_str()) {
            errors.push(ValidationError::new(
                format!("spec.analysis.custom[{index}].name"),
                format!("duplicate check name {:?}", check.name),
            ));
        }
    }
}

fn custom_check_errors(index: usize, check: &CustomCheck, errors: &mut Vec<ValidationError>) {
    let field = format!("spec.analysis.custom[{index}]");
    if let Err(message) = validate_label(&check.name) {
        errors.push(ValidationError::new(format!("{field}.name"), message));
    }
    if let Err(message) = check_promql(&check.query) {
        errors.push(ValidationError::new(format!("{field}.query"), message));
    }
    for (bound, value) in [("min", check.min), ("max", check.max)] {
        if value.is_some_and(|v| !v.is_finite()) {
            errors.push(ValidationError::new(
                format!("{field}.{bound}"),
                "must be a finite number",
            ));
        }
    }
    match (check.min, check.max) {
        (None, None) => errors.push(ValidationError::new(
            field,
            "needs min or max (a check without a bound can never fail)",
        )),
        (Some(min), Some(max)) if min > max => errors.push(ValidationError::new(
            format!("{field}.min"),
            format!("must not exceed max ({min} > {max})"),
        )),
        _ => {}
    }
}

fn url_errors(spec: &CanaryRolloutSpec, errors: &mut Vec<ValidationError>) {
    let is_http = |value: &str| value.starts_with("http://") || value.starts_with("https://");
    let address = &spec.prometheus.address;
    if !is_http(address) {
        errors.push(ValidationError::new(
            "spec.prometheus.address",
            format!(
                "must be an http:// or https:// URL (got {:?})",
                crate::redact::redacted(address)
            ),
        ));
    }
    // The webhook is not echoed: for most chat services its URL is the credential.
    if spec
        .notification
        .as_ref()
        .is_some_and(|notification| !is_http(&notification.webhook))
    {
        errors.push(ValidationError::new(
            "spec.notification.webhook",
            "must be an http:// or https:// URL (the value is not shown: it may be a secret)",
        ));
    }
}

/// Parses a PromQL expression with `promql-parser` (the grammar Prometheus itself uses),
/// returning the parser's message on failure, flattened to one line.
pub fn check_promql(query: &str) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("must be a PromQL expression (got an empty string)".to_string());
    }
    promql_parser::parser::parse(query)
        .map(|_| ())
        .map_err(|message| {
            let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("invalid PromQL: {one_line}")
        })
}

/// What is valid but unsafe in `spec`, one line each (`validate` prints them as warnings).
pub fn warnings(spec: &CanaryRolloutSpec) -> Vec<ValidationError> {
    let mut warnings = Vec::new();
    if spec.prometheus.outbound.insecure_skip_verify {
        warnings.push(ValidationError::new(
            "spec.prometheus.insecureSkipVerify",
            "Prometheus's TLS certificate is not verified: anyone on the path can read the bearer token and forge the metrics the rollout is judged on (test clusters only; trust a CA with spec.prometheus.ca instead)",
        ));
    }
    warnings
}

/// Why `stickycanary local` cannot run a rollout with resource checks, or `None`.
pub fn local_mode_refusal(spec: &CanaryRolloutSpec) -> Option<ValidationError> {
    spec.analysis.resources.as_ref().map(|_| ValidationError {
        field: "spec.analysis.resources".to_string(),
        message: LOCAL_MODE_NOTE.to_string(),
    })
}

/// The one line `validate` and `local` print about resource checks outside a cluster.
pub const LOCAL_MODE_NOTE: &str = "resource checks read cAdvisor's container metrics, which only a cluster's Prometheus has (the kubelet serves them); local mode has none, so they would hold the rollout forever: remove analysis.resources to run it with `stickycanary local`";

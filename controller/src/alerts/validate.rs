//! Checks of an AlertProvider spec and of a rollout's `alerts`, before anything is sent:
//! each problem one line that starts with the field's path. They read the JSON as written,
//! so an unknown `type` or `severity` is named as such instead of surfacing as a serde
//! error about an enum.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::crd::alerts::{
    AlertProviderSpec, ProviderType, RolloutAlert, SecretKeyRef, Severity, DASHBOARD_PLACEHOLDERS,
};

/// An AlertProvider's `spec`, parsed and checked; `Err` lists every problem.
pub fn provider_spec(spec: &Value) -> Result<AlertProviderSpec, Vec<String>> {
    let types: Vec<&str> = ProviderType::ALL.iter().map(|t| t.as_str()).collect();
    if let Some(problem) = one_of(spec.get("type"), "spec.type", "provider type", &types, true) {
        return Err(vec![problem]);
    }
    let parsed: AlertProviderSpec =
        serde_json::from_value(spec.clone()).map_err(|e| vec![format!("spec: {e}")])?;
    let problems = check_provider(&parsed);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// The checks serde and the CRD schema cannot make.
pub fn check_provider(spec: &AlertProviderSpec) -> Vec<String> {
    let mut problems = Vec::new();
    secret_key_ref(&spec.secret_ref, "spec.secretRef", &mut problems);
    if let Some(ca) = &spec.ca_secret_ref {
        secret_key_ref(ca, "spec.caSecretRef", &mut problems);
    }
    let kind = spec.kind.as_str();
    if spec.channel.is_some() && !spec.kind.has_channel() {
        problems.push(format!(
            "spec.channel: a {kind} webhook posts to the channel it was made for (only slack takes a channel)"
        ));
    }
    if spec.username.is_some() && !spec.kind.has_username() {
        problems.push(format!(
            "spec.username: {kind} takes no username (only slack and discord do)"
        ));
    }
    if let Some(template) = &spec.dashboard_url {
        dashboard_template(template, &mut problems);
    }
    if spec.timeout.is_some_and(|timeout| timeout.is_zero()) {
        problems.push("spec.timeout: must be more than 0".to_string());
    }
    problems
}

/// A CanaryRollout's `spec.alerts`, parsed and checked; `Err` lists every problem.
pub fn rollout_alerts(alerts: &Value) -> Result<Vec<RolloutAlert>, Vec<String>> {
    let Some(entries) = alerts.as_array() else {
        return Err(vec!["spec.alerts: must be a list".to_string()]);
    };
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    // (entry index, problem), so the problems come out in the entries' order.
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut parsed = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = format!("spec.alerts[{index}]");
        let severity = entry.get("severity");
        if let Some(problem) = one_of(
            severity,
            &format!("{field}.severity"),
            "severity",
            &severities,
            false,
        ) {
            problems.push((index, problem));
            continue;
        }
        match serde_json::from_value::<RolloutAlert>(entry.clone()) {
            Ok(alert) => parsed.push((index, alert)),
            Err(e) => problems.push((index, format!("{field}: {e}"))),
        }
    }
    problems.extend(check_entries(
        parsed.iter().map(|(index, alert)| (*index, alert)),
    ));
    problems.sort_by_key(|(index, _)| *index);
    if problems.is_empty() {
        Ok(parsed.into_iter().map(|(_, alert)| alert).collect())
    } else {
        Err(problems.into_iter().map(|(_, problem)| problem).collect())
    }
}

/// The checks of a parsed `spec.alerts` that serde and the CRD schema cannot make (names,
/// a provider listed twice); each one line starting with the field.
pub fn check_rollout_alerts(alerts: &[RolloutAlert]) -> Vec<String> {
    check_entries(alerts.iter().enumerate())
        .into_iter()
        .map(|(_, problem)| problem)
        .collect()
}

fn check_entries<'a>(
    alerts: impl Iterator<Item = (usize, &'a RolloutAlert)>,
) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, alert) in alerts {
        let field = format!("spec.alerts[{index}]");
        let name = &alert.provider_ref.name;
        if !is_dns1123_label(name) {
            problems.push((
                index,
                format!(
                    "{field}.providerRef.name: {name:?} is not an AlertProvider name (a DNS-1123 label)"
                ),
            ));
        }
        if let Some(namespace) = &alert.provider_ref.namespace {
            if !is_dns1123_label(namespace) {
                problems.push((
                    index,
                    format!(
                        "{field}.providerRef.namespace: {namespace:?} is not a namespace name (a DNS-1123 label)"
                    ),
                ));
            }
        }
        let key = (alert.provider_ref.namespace.clone(), name.clone());
        if !seen.insert(key) {
            problems.push((
                index,
                format!("{field}.providerRef: provider {name:?} is listed twice"),
            ));
        }
    }
    problems
}

/// `None` when `value` is one of `allowed` (or absent and optional), else the problem.
fn one_of(
    value: Option<&Value>,
    field: &str,
    what: &str,
    allowed: &[&str],
    required: bool,
) -> Option<String> {
    let choices = allowed.join(", ");
    match value {
        None if required => Some(format!("{field}: required (one of {choices})")),
        None => None,
        Some(Value::String(text)) if allowed.contains(&text.as_str()) => None,
        Some(Value::String(text)) => Some(format!(
            "{field}: unknown {what} {text:?} (one of {choices})"
        )),
        Some(other) => Some(format!(
            "{field}: must be a string, one of {choices} (got {other})"
        )),
    }
}

fn secret_key_ref(reference: &SecretKeyRef, field: &str, problems: &mut Vec<String>) {
    let name = &reference.name;
    if !is_dns1123_subdomain(name) {
        problems.push(format!(
            "{field}.name: {name:?} is not a Secret name (a DNS-1123 subdomain)"
        ));
    }
    if let Some(key) = &reference.key {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            problems.push(format!(
                "{field}.key: {key:?} is not a Secret key (letters, digits, '-', '_', '.')"
            ));
        }
    }
}

fn dashboard_template(template: &str, problems: &mut Vec<String>) {
    if !(template.starts_with("https://") || template.starts_with("http://")) {
        problems.push("spec.dashboardUrl: must start with https:// or http://".to_string());
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            problems.push("spec.dashboardUrl: a '{' is never closed".to_string());
            return;
        };
        let placeholder = &rest[start..start + length + 1];
        if !DASHBOARD_PLACEHOLDERS.contains(&placeholder) {
            problems.push(format!(
                "spec.dashboardUrl: unknown placeholder {placeholder} (use {})",
                DASHBOARD_PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[start + length + 1..];
    }
}

/// RFC 1123 label, as Kubernetes checks names: lower-case alphanumerics and '-',
/// alphanumeric at both ends, 1-63 characters. (Here until the API types get a shared
/// names module; tests/tests/manifests.rs uses it for the chart's names.)
pub fn is_dns1123_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (Secret names,
/// Deployment names, ...).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

//! `stickycanary validate` on YAML: a CanaryRollout alone, or a file of several documents
//! (`---`): CanaryRollouts, AlertProviders and the Secrets they name, and the rollouts'
//! Deployments, as a platform team keeps them together. Each document is parsed once and
//! checked alone, then the references between them are followed: a rollout's providers and
//! their Secrets ([`super::alerts::Bundle`]), and a rollout's workload against its
//! `spec.stable.podLabels` when the workload is in the file
//! ([`super::workloads::check_stable_labels`], the check the controller runs every tick). A reference that leads outside the file is a note, since
//! only the cluster can answer it.

use serde::Deserialize;
use serde_json::Value;

use super::alerts::{provider_errors, raw_alert_errors, Bundle};
use super::unknown_fields::{unknown_alert_provider_fields, unknown_fields};
use super::ValidationError;
use crate::crd::CanaryRollout;
use k8s_openapi::api::apps::v1::Deployment;

/// The kinds `validate` knows, besides a plugin config.
const ROLLOUT: &str = "CanaryRollout";
const PROVIDER: &str = "AlertProvider";
const SECRET: &str = "Secret";
const DEPLOYMENT: &str = "Deployment";

/// The file's Deployments by namespace (`None`: the document names none, so it lands in
/// whatever namespace it is applied to) and name.
type Deployments = Vec<(Option<String>, String, Deployment)>;

/// The Deployment `name` in `namespace` (`None`: the rollout names none), or one without a
/// namespace of its own (it lands in whatever namespace it is applied to).
fn deployment<'a>(
    deployments: &'a Deployments,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a Deployment> {
    deployments
        .iter()
        .find(|(ns, n, _)| {
            n == name && (ns.as_deref() == namespace || ns.is_none() || namespace.is_none())
        })
        .map(|(_, _, d)| d)
}

/// With the rollout's workload in the file (in its namespace, defaulting to the rollout's):
/// the check the controller runs on it every tick ([`super::workloads::check_stable_labels`]).
fn check_deployments(
    rollout: &CanaryRollout,
    deployments: &Deployments,
) -> Result<(), ValidationError> {
    let spec = &rollout.spec;
    let Some(stable) = &spec.stable else {
        return Ok(());
    };
    let canary_namespace = spec
        .canary
        .namespace
        .as_deref()
        .or(rollout.metadata.namespace.as_deref());
    match deployment(deployments, canary_namespace, &spec.canary.deployment) {
        Some(workload) => super::workloads::check_stable_labels(workload, &stable.pod_labels),
        None => Ok(()),
    }
}

/// The report on `text` (read from `name`): `Ok` the lines to print, `Err` the lines of every
/// problem, each prefixed with `name` (and, with several documents, with the object).
pub fn validate_yaml(name: &str, text: &str) -> Result<String, String> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => documents.push(value),
            Err(e) => return Err(format!("{name}: {}", e.to_string().replace('\n', " "))),
        }
    }
    let kind = |document: &Value| {
        document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or(ROLLOUT)
            .to_string()
    };
    match documents.as_slice() {
        // One rollout: the lines it always had (no object prefix).
        [single] if kind(single) == ROLLOUT => rollout(single, Some(text))
            .map(|lines| prefixed(name, "", &lines))
            .map_err(|errors| prefixed(name, "", &errors)),
        [] => Err(format!("{name}: no document")),
        _ => several(name, &documents),
    }
}

fn several(name: &str, documents: &[Value]) -> Result<String, String> {
    let meta = |document: &Value, field: &str| {
        document
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut bundle = Bundle::default();
    let mut deployments = Deployments::new();
    // Deployments that do not parse: their errors, reported on their own documents.
    let mut bad_deployments = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let namespace = meta(document, "namespace").unwrap_or_else(|| "default".to_string());
        let object = meta(document, "name").unwrap_or_default();
        match document.get("kind").and_then(Value::as_str) {
            Some(SECRET) => bundle.add_secret(&namespace, &object, document),
            Some(DEPLOYMENT) => match serde_json::from_value::<Deployment>(document.clone()) {
                Ok(parsed) => deployments.push((meta(document, "namespace"), object, parsed)),
                Err(e) => bad_deployments.push((index, e.to_string().replace('\n', " "))),
            },
            Some(PROVIDER) => {
                if let Ok(spec) = provider_errors(document) {
                    bundle.providers.insert((namespace, object), spec);
                }
            }
            _ => {}
        }
    }
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let namespace = meta(document, "namespace").unwrap_or_else(|| "default".to_string());
        let object = meta(document, "name").unwrap_or_default();
        let kind = document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("(no kind)");
        let label = format!("{kind} {namespace}/{object}: ");
        let result = match kind {
            ROLLOUT => rollout(document, None).and_then(|mut found| {
                let typed: Option<CanaryRollout> = serde_json::from_value(document.clone()).ok();
                if let Some(typed) = typed {
                    check_deployments(&typed, &deployments).map_err(|e| vec![e.to_string()])?;
                    let followed = bundle.follow_alerts(&namespace, &typed.spec.alerts);
                    found.extend(followed.notes.iter().map(|n| format!("note: {n}")));
                }
                Ok(found)
            }),
            DEPLOYMENT => match bad_deployments.iter().find(|(i, _)| *i == index) {
                Some((_, error)) => Err(vec![error.clone()]),
                None => Ok(vec![format!(
                    "note: checked only against the other Deployment of a CanaryRollout in the file"
                )]),
            },
            PROVIDER => provider(document, &namespace, &bundle)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect()),
            SECRET => Ok(vec![format!(
                "Secret {namespace}/{object} (keys: {})",
                bundle
                    .secrets
                    .get(&(namespace.clone(), object.clone()))
                    .map(|keys| keys.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )]),
            other => Ok(vec![format!(
                "note: {other} {namespace}/{object} is not a stickycanary resource, not checked"
            )]),
        };
        match result {
            Ok(found) if kind == SECRET => lines.extend(prefixed_lines(name, "", &found)),
            Ok(found) => lines.extend(prefixed_lines(name, &label, &found)),
            Err(found) => errors.push(prefixed(name, &label, &found)),
        }
    }
    if errors.is_empty() {
        Ok(lines.join("\n"))
    } else {
        Err(errors.join("\n"))
    }
}

/// A CanaryRollout document: `Ok` the lines to print (valid, warnings, notes), `Err` one line
/// per problem. `text`: the document's own YAML, when it is the whole file (serde_yaml's
/// errors then give the line and column).
fn rollout(document: &Value, text: Option<&str>) -> Result<Vec<String>, Vec<String>> {
    let lines = |errors: Vec<ValidationError>| errors.iter().map(ToString::to_string).collect();
    let mut errors = unknown_fields(document);
    // Read as written first: an unknown severity named as such, not as serde's enum error.
    let raw = raw_alert_errors(document);
    if !raw.is_empty() {
        errors.extend(raw);
        return Err(lines(errors));
    }
    let typed = match text {
        Some(text) => serde_yaml::from_str::<CanaryRollout>(text).map_err(|e| e.to_string()),
        None => {
            serde_json::from_value::<CanaryRollout>(document.clone()).map_err(|e| e.to_string())
        }
    };
    let rollout = typed.map_err(|e| vec![e.replace('\n', " ")])?;
    if let Err(invalid) = super::validate_rollout(&rollout) {
        errors.extend(invalid);
    }
    if !errors.is_empty() {
        return Err(lines(errors));
    }
    let mut lines = vec![format!(
        "valid CanaryRollout {} ({} stages, rollout key {}{})",
        rollout.metadata.name.as_deref().unwrap_or_default(),
        rollout.spec.stages.len(),
        rollout.rollout_key(),
        match rollout.spec.alerts.len() {
            0 => String::new(),
            1 => ", 1 alert".to_string(),
            n => format!(", {n} alerts"),
        }
    )];
    for warning in super::warnings(&rollout.spec) {
        lines.push(format!("warning: {warning}"));
    }
    // Valid in a cluster, but `local` would refuse it: say so now, not at the first run.
    if let Some(note) = super::local_mode_refusal(&rollout.spec) {
        lines.push(format!("note: {note}"));
    }
    Ok(lines)
}

/// An AlertProvider document, and its Secrets when the file has them.
fn provider(
    document: &Value,
    namespace: &str,
    bundle: &Bundle,
) -> Result<Vec<String>, Vec<ValidationError>> {
    let mut errors = unknown_alert_provider_fields(document);
    let spec = match provider_errors(document) {
        Ok(spec) => Some(spec),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let Some(spec) = spec else {
        return Err(errors);
    };
    let followed = bundle.follow_provider(namespace, &spec);
    errors.extend(followed.errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut lines = vec![format!(
        "valid AlertProvider ({}, address from Secret {} key {})",
        spec.kind.as_str(),
        spec.secret_ref.name,
        spec.secret_ref
            .key_or(crate::crd::alerts::DEFAULT_ADDRESS_KEY)
    )];
    lines.extend(followed.notes.iter().map(|n| format!("note: {n}")));
    Ok(lines)
}

/// `name: ` (and the object label) before the first line, `name: ` before each warning or
/// note (as `validate` printed them before files had several documents).
fn prefixed(name: &str, label: &str, lines: &[String]) -> String {
    prefixed_lines(name, label, lines).join("\n")
}

fn prefixed_lines(name: &str, label: &str, lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| format!("{name}: {label}{line}"))
        .collect()
}

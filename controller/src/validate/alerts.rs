//! `spec.alerts` in a CanaryRollout, and the AlertProviders and Secrets beside it in one file:
//! what `stickycanary validate` can check offline.
//!
//! Alone, a rollout's `alerts` are checked for names and duplicates (a bad `severity` never
//! gets this far: [`raw_alert_errors`] reads the document as written, so the error names the
//! field instead of surfacing as serde's enum error). With the AlertProvider and its Secret
//! in the same file, the references are followed: the provider a rollout names, the Secret
//! and key a provider names, and that the address is an http(s) URL. What is not in the file
//! cannot be checked offline, and `validate` says so in a note.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::Value;

use super::ValidationError;
use crate::alerts::validate::{check_rollout_alerts, provider_spec, rollout_alerts};
use crate::crd::alerts::{
    AlertProviderSpec, RolloutAlert, SecretKeyRef, DEFAULT_ADDRESS_KEY, DEFAULT_CA_KEY,
};

/// `spec.alerts`'s problems a typed spec can still have (names, a provider listed twice).
pub(super) fn errors(alerts: &[RolloutAlert], errors: &mut Vec<ValidationError>) {
    errors.extend(check_rollout_alerts(alerts).iter().map(|p| split(p)));
}

/// `spec.alerts` of a whole document as written: an unknown severity or a malformed entry,
/// one line each naming the entry's field. Empty when the document has no `spec.alerts`.
pub fn raw_alert_errors(document: &Value) -> Vec<ValidationError> {
    match document.pointer("/spec/alerts") {
        None | Some(Value::Null) => Vec::new(),
        Some(alerts) => rollout_alerts(alerts)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| split(p))
            .collect(),
    }
}

/// An AlertProvider document: its spec checked (the type, the fields its service has, the
/// Secret names and keys, the dashboard template), one line per problem.
pub fn provider_errors(document: &Value) -> Result<AlertProviderSpec, Vec<ValidationError>> {
    let spec = document.get("spec").cloned().unwrap_or(Value::Null);
    provider_spec(&spec).map_err(|problems| problems.iter().map(|p| split(p)).collect())
}

fn split(problem: &str) -> ValidationError {
    let (field, message) = problem.split_once(": ").unwrap_or(("spec", problem));
    ValidationError::new(field, message)
}

/// A `namespace/name` pair.
pub type ObjectKey = (String, String);

/// The Secrets and AlertProviders of one file, for following references offline.
#[derive(Debug, Default)]
pub struct Bundle {
    /// Each Secret's keys, and the values it gives in clear (`stringData`, or `data` decoded).
    pub secrets: BTreeMap<ObjectKey, BTreeMap<String, Option<String>>>,
    pub providers: BTreeMap<ObjectKey, AlertProviderSpec>,
}

/// What following the references found: `errors` are broken references, `notes` the ones
/// that lead outside the file.
#[derive(Debug, Default, PartialEq)]
pub struct Followed {
    pub errors: Vec<ValidationError>,
    pub notes: Vec<String>,
}

impl Bundle {
    /// Remembers a Secret document (`data` is base64, `stringData` plain, as the API takes them).
    pub fn add_secret(&mut self, namespace: &str, name: &str, document: &Value) {
        let mut keys = BTreeMap::new();
        if let Some(data) = document.get("data").and_then(Value::as_object) {
            for (key, value) in data {
                let decoded = value
                    .as_str()
                    .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                keys.insert(key.clone(), decoded);
            }
        }
        if let Some(data) = document.get("stringData").and_then(Value::as_object) {
            for (key, value) in data {
                keys.insert(key.clone(), value.as_str().map(str::to_string));
            }
        }
        self.secrets
            .insert((namespace.to_string(), name.to_string()), keys);
    }

    /// Follows a provider's `secretRef` and `caSecretRef` into the file's Secrets.
    pub fn follow_provider(&self, namespace: &str, spec: &AlertProviderSpec) -> Followed {
        let mut followed = Followed::default();
        let references = [
            (
                "spec.secretRef",
                Some(&spec.secret_ref),
                DEFAULT_ADDRESS_KEY,
            ),
            (
                "spec.caSecretRef",
                spec.ca_secret_ref.as_ref(),
                DEFAULT_CA_KEY,
            ),
        ];
        for (field, reference, default_key) in references {
            let Some(SecretKeyRef { name, .. }) = reference else {
                continue;
            };
            let key = reference.map_or(default_key, |r| r.key_or(default_key));
            let Some(keys) = self.secrets.get(&(namespace.to_string(), name.clone())) else {
                followed.notes.push(format!(
                    "{field}: Secret {namespace}/{name} is not in this file, not checked (the controller reads it when it sends)"
                ));
                continue;
            };
            match keys.get(key) {
                None => {
                    let known: Vec<&str> = keys.keys().map(String::as_str).collect();
                    followed.errors.push(ValidationError::new(
                        format!("{field}.key"),
                        format!(
                            "Secret {namespace}/{name} has no key {key:?} (it has: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                // The address must be a URL; its value is never printed (it is the secret).
                Some(Some(address)) if field == "spec.secretRef" => {
                    let address = address.trim();
                    if !(address.starts_with("https://") || address.starts_with("http://")) {
                        followed.errors.push(ValidationError::new(
                            field,
                            format!(
                                "Secret {namespace}/{name} key {key:?} does not hold an http(s) URL"
                            ),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        followed
    }

    /// Follows a rollout's `alerts` into the file's AlertProviders.
    pub fn follow_alerts(&self, rollout_namespace: &str, alerts: &[RolloutAlert]) -> Followed {
        let mut followed = Followed::default();
        let in_file: BTreeSet<&ObjectKey> = self.providers.keys().collect();
        for (index, alert) in alerts.iter().enumerate() {
            let namespace = alert.provider_namespace(rollout_namespace);
            let key = (namespace.to_string(), alert.provider_ref.name.clone());
            if !in_file.contains(&key) {
                followed.notes.push(format!(
                    "spec.alerts[{index}].providerRef: AlertProvider {namespace}/{} is not in this file, not checked",
                    alert.provider_ref.name
                ));
            }
        }
        followed
    }
}

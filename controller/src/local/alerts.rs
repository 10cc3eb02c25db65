//! Alert providers in local mode, without an API server: `--alert-providers FILE` holds the
//! AlertProvider documents (the same YAML as in a cluster), and each provider's Secret comes
//! from a Secret document in that file, or from `--alert-secrets-dir DIR` laid out as a
//! mounted Secret volume (`DIR/<secret name>/<key>`, one file per key).
//!
//! Both are read at each send (a rotated address is used from the next alert), and a
//! provider keeps its client while what was read is unchanged (the cache compares a hash of
//! the content, standing in for a resourceVersion). A failed delivery is counted in
//! `stickycanary_alerts_total` (served with `--metrics-addr`) and logged as a warning.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::alerts::report::{AlertCounter, Failure, Report};
use crate::alerts::resolve::{Objects, ProviderRead, SecretRead, Versioned};
use crate::alerts::validate::provider_spec;
use crate::alerts::{Alerting, Resolver};

/// Where local mode finds providers and their Secrets.
#[derive(Clone, Debug)]
pub struct FileObjects {
    pub providers_file: PathBuf,
    pub secrets_dir: Option<PathBuf>,
}

/// Local mode's [`Alerting`]: providers from files, outcomes counted in `counter` and
/// failures logged.
pub fn alerting(objects: FileObjects, counter: AlertCounter) -> Alerting {
    let sink = Report {
        counter,
        on_failure: |failure: Failure| {
            tracing::warn!(provider = %failure.provider, "AlertFailed: {}", failure.message);
        },
    };
    Alerting::new(Arc::new(Resolver::new(objects)), Arc::new(sink))
}

fn version_of(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The file's documents, or one line saying why it cannot be read.
fn documents(path: &Path) -> Result<(Vec<Value>, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => found.push(value),
            Err(e) => {
                return Err(format!(
                    "{}: {}",
                    path.display(),
                    e.to_string().replace('\n', " ")
                ))
            }
        }
    }
    Ok((found, version_of(text.as_bytes())))
}

/// The document of `kind` named `namespace/name` (no namespace: `default`).
fn find<'a>(documents: &'a [Value], kind: &str, namespace: &str, name: &str) -> Option<&'a Value> {
    documents.iter().find(|document| {
        let field = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
        field("/kind") == Some(kind)
            && field("/metadata/name") == Some(name)
            && field("/metadata/namespace").unwrap_or("default") == namespace
    })
}

impl Objects for FileObjects {
    async fn alert_provider(&self, namespace: &str, name: &str) -> ProviderRead {
        let (documents, version) = documents(&self.providers_file)?;
        let Some(document) = find(&documents, "AlertProvider", namespace, name) else {
            return Ok(None);
        };
        let spec = document.get("spec").cloned().unwrap_or(Value::Null);
        let spec = provider_spec(&spec).map_err(|problems| problems.join("; "))?;
        Ok(Some(Versioned {
            value: spec,
            resource_version: version,
        }))
    }

    async fn secret_value(&self, namespace: &str, name: &str, key: &str) -> SecretRead {
        let (documents, _) = documents(&self.providers_file)?;
        if let Some(secret) = find(&documents, "Secret", namespace, name) {
            let plain = secret
                .pointer(&format!("/stringData/{key}"))
                .and_then(Value::as_str)
                .map(|text| text.as_bytes().to_vec());
            let encoded = secret
                .pointer(&format!("/data/{key}"))
                .and_then(Value::as_str)
                .map(|text| {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| format!("Secret {name}: key {key:?} is not base64"))
                })
                .transpose()?;
            return Ok(plain.or(encoded).map(|value| Versioned {
                resource_version: version_of(&value),
                value,
            }));
        }
        let Some(dir) = &self.secrets_dir else {
            return Ok(None);
        };
        // Names and keys are checked (a DNS-1123 subdomain, letters, digits, '-', '_', '.')
        // before any resolve, so neither can climb out of the directory.
        if name.contains('/') || key.contains('/') || name.starts_with('.') || key == ".." {
            return Ok(None);
        }
        match std::fs::read(dir.join(name).join(key)) {
            Ok(value) => Ok(Some(Versioned {
                resource_version: version_of(&value),
                value,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}/{name}/{key}: {e}", dir.display())),
        }
    }
}

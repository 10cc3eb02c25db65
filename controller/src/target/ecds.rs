//! The weight target of a standalone Envoy: its ECDS file.
//!
//! Envoy watches the file's directory and reloads the filter config when a file is moved
//! over `filter.ecds.json`, so an update is written to `.<name>.tmp` in the same directory,
//! fsynced, and renamed into place: Envoy never sees a half-written file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    apply_rollout_fields, apply_weight, parse_plugin_config, slow_threshold_field, view_of,
    RolloutView, TargetError, WeightTarget,
};

/// An ECDS file (the format in the project brief) holding the stickycanary Wasm config.
#[derive(Clone, Debug)]
pub struct EcdsFileTarget {
    path: PathBuf,
}

impl EcdsFileTarget {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EcdsFileTarget { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn name(&self) -> String {
        format!("ECDS file {}", self.path.display())
    }

    fn io_error(&self, what: &str, e: impl std::fmt::Display) -> TargetError {
        TargetError::Io {
            target: self.name(),
            reason: format!("{what}: {e}"),
        }
    }

    /// Reads the file and returns the whole document plus the plugin config inside it.
    pub fn read(&self) -> Result<(Value, Value), TargetError> {
        let text = fs::read(&self.path).map_err(|e| self.io_error("cannot read", e))?;
        let document: Value =
            serde_json::from_slice(&text).map_err(|e| self.io_error("not valid JSON", e))?;
        let config_string = configuration_value(&document)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.io_error(
                    "no resources[].typed_config.config.configuration.value string",
                    "the stickycanary Wasm config was not found",
                )
            })?;
        let plugin_config: Value =
            serde_json::from_str(config_string).map_err(|e| TargetError::InvalidConfig {
                target: self.name(),
                reason: format!("configuration.value is not JSON: {e}"),
            })?;
        Ok((document, plugin_config))
    }

    /// Writes `document` next to the file and renames it over the file.
    fn replace(&self, document: &Value) -> Result<(), TargetError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "filter.ecds.json".to_string());
        let tmp = dir.join(format!(".{file_name}.tmp"));
        let bytes =
            serde_json::to_vec_pretty(document).map_err(|e| self.io_error("cannot encode", e))?;
        let mut file =
            fs::File::create(&tmp).map_err(|e| self.io_error("cannot create temp file", e))?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| self.io_error("cannot write temp file", e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| self.io_error("cannot rename temp file", e))?;
        // Make the rename itself durable; a failure here does not undo the update.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn set_weight_sync(
        &self,
        rollout_key: &str,
        weight: f64,
        salt: Option<&str>,
    ) -> Result<(), TargetError> {
        let (_, plugin_config) = self.read()?;
        let updated = apply_weight(&plugin_config, rollout_key, weight, salt, &self.name())?;
        self.write_plugin_config(&updated)
    }

    fn set_slow_threshold_sync(&self, rollout_key: &str, ms: f64) -> Result<(), TargetError> {
        let (_, plugin_config) = self.read()?;
        let updated = apply_rollout_fields(
            &plugin_config,
            rollout_key,
            slow_threshold_field(ms),
            &self.name(),
        )?;
        self.write_plugin_config(&updated)
    }

    /// Replaces the plugin config in the file (re-read, so the rest of the document is
    /// what is there now).
    fn write_plugin_config(&self, updated: &Value) -> Result<(), TargetError> {
        let (mut document, _) = self.read()?;
        let encoded =
            serde_json::to_string(updated).map_err(|e| self.io_error("cannot encode", e))?;
        match configuration_value_mut(&mut document) {
            Some(slot) => *slot = Value::String(encoded),
            None => return Err(self.io_error("cannot update", "configuration.value vanished")),
        }
        self.replace(&document)
    }

    /// The rollout's view, read synchronously (startup checks).
    pub fn current_sync(&self, rollout_key: &str) -> Result<RolloutView, TargetError> {
        let (_, plugin_config) = self.read()?;
        let parsed = parse_plugin_config(&plugin_config, &self.name())?;
        view_of(&parsed, rollout_key, &self.name())
    }
}

/// The stickycanary resource: the one named `stickycanary`, else the first with a Wasm config.
fn wasm_config_index(document: &Value) -> Option<usize> {
    let resources = document.get("resources")?.as_array()?;
    let has_config = |r: &Value| {
        r.pointer("/typed_config/config/configuration/value")
            .is_some_and(Value::is_string)
    };
    resources
        .iter()
        .position(|r| {
            r.get("name").and_then(Value::as_str) == Some("stickycanary") && has_config(r)
        })
        .or_else(|| resources.iter().position(has_config))
}

fn configuration_value(document: &Value) -> Option<&Value> {
    let index = wasm_config_index(document)?;
    document.pointer(&format!(
        "/resources/{index}/typed_config/config/configuration/value"
    ))
}

fn configuration_value_mut(document: &mut Value) -> Option<&mut Value> {
    let index = wasm_config_index(document)?;
    document.pointer_mut(&format!(
        "/resources/{index}/typed_config/config/configuration/value"
    ))
}

impl WeightTarget for EcdsFileTarget {
    async fn set_slow_threshold(&self, rollout_key: &str, ms: f64) -> Result<(), TargetError> {
        let this = self.clone();
        let key = rollout_key.to_string();
        tokio::task::spawn_blocking(move || this.set_slow_threshold_sync(&key, ms))
            .await
            .map_err(|e| self.io_error("writer task failed", e))?
    }

    async fn current(&self, rollout_key: &str) -> Result<RolloutView, TargetError> {
        let this = self.clone();
        let key = rollout_key.to_string();
        tokio::task::spawn_blocking(move || this.current_sync(&key))
            .await
            .map_err(|e| self.io_error("reader task failed", e))?
    }

    async fn set_weight(
        &self,
        rollout_key: &str,
        weight: f64,
        salt: Option<&str>,
    ) -> Result<(), TargetError> {
        let this = self.clone();
        let key = rollout_key.to_string();
        let salt = salt.map(str::to_string);
        tokio::task::spawn_blocking(move || this.set_weight_sync(&key, weight, salt.as_deref()))
            .await
            .map_err(|e| self.io_error("writer task failed", e))?
    }
}

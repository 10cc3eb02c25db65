//! Contract 1: the plugin configuration (`pluginConfig`), its defaults and its validation.
//!
//! This module is the single source of the schema: the filter parses it in
//! `on_configure` and the controller uses the same types to read, patch and validate it.
//! Every error is one line that starts with the path of the offending field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Default name of the request header that carries the chosen version to routing.
pub const DEFAULT_ROUTE_HEADER: &str = "x-canary-version";
/// Header a tester sends alongside an override when `override.token` is set.
pub const OVERRIDE_TOKEN_HEADER: &str = "x-canary-override-token";
/// Longest DNS-1123 label.
const MAX_LABEL_LEN: usize = 63;

/// A rejected configuration. `Display` is one line: `<field path>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `rollouts.checkout.weight`; `(root)` for the document.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The whole plugin configuration: one filter serves any number of rollouts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default = "default_route_header")]
    pub route_header: String,
    #[serde(default)]
    pub expose_version_header: bool,
    /// Keyed by rollout name so the controller can merge-patch one rollout's weight alone.
    #[serde(default)]
    pub rollouts: BTreeMap<String, RolloutConfig>,
}

/// One rollout: which requests it owns, and how users are split between the versions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutConfig {
    /// Exact host names or `*.suffix` wildcards, matched against `:authority` without port.
    pub hosts: Vec<String>,
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Percentage of users on canary, 0 to 100, with 0.01 resolution.
    #[serde(deserialize_with = "deserialize_weight")]
    pub weight: f64,
    /// Hash salt; `None` means the rollout name (see [`RolloutConfig::effective_salt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default = "default_stable_version")]
    pub stable_version: String,
    #[serde(default = "default_canary_version")]
    pub canary_version: String,
    /// Where the user id comes from, first non-empty value wins.
    #[serde(default = "default_identity")]
    pub identity: Vec<IdentitySource>,
    #[serde(default)]
    pub anonymous: AnonymousConfig,
    /// Tester overrides; `None` (or `null`) disables them.
    #[serde(default)]
    pub r#override: Option<OverrideConfig>,
    /// A hash-routed request that took longer than this many milliseconds counts as `slow`
    /// in the shard stats (issue 17); `None` means [`DEFAULT_SLOW_THRESHOLD_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_threshold_ms: Option<u32>,
}

/// `slowThresholdMs` when omitted: the seed's p99 limit.
pub const DEFAULT_SLOW_THRESHOLD_MS: u32 = 500;
/// `slowThresholdMs` range: 1 ms to 10 minutes.
pub const SLOW_THRESHOLD_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=600_000;

/// `{"header": "x-user-id"}` or `{"cookie": "session"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum IdentitySource {
    Header(String),
    Cookie(String),
}

/// What happens to a request that carries no identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousConfig {
    #[serde(default)]
    pub assign: AnonymousAssign,
    #[serde(default = "default_anonymous_cookie")]
    pub cookie: String,
    #[serde(default = "default_max_age_seconds")]
    pub max_age_seconds: u64,
    /// Adds `; Secure` to the minted cookie (an addition to contract 1; default false).
    #[serde(default)]
    pub secure: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AnonymousAssign {
    /// Mint an id, hash it like any user, and set it as a cookie so the user stays put.
    #[default]
    Cookie,
    /// Send identity-less requests to stable.
    Stable,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideConfig {
    #[serde(default = "default_override_header")]
    pub header: Option<String>,
    #[serde(default = "default_override_cookie")]
    pub cookie: Option<String>,
    /// When set, an override counts only with `x-canary-override-token` equal to it.
    #[serde(default)]
    pub token: Option<String>,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig {
            assign: AnonymousAssign::Cookie,
            cookie: default_anonymous_cookie(),
            max_age_seconds: default_max_age_seconds(),
            secure: false,
        }
    }
}

impl Default for OverrideConfig {
    fn default() -> Self {
        OverrideConfig {
            header: default_override_header(),
            cookie: default_override_cookie(),
            token: None,
        }
    }
}

fn default_route_header() -> String {
    DEFAULT_ROUTE_HEADER.to_string()
}
fn default_path_prefix() -> String {
    "/".to_string()
}
fn default_stable_version() -> String {
    "stable".to_string()
}
fn default_canary_version() -> String {
    "canary".to_string()
}
fn default_identity() -> Vec<IdentitySource> {
    vec![IdentitySource::Header("x-user-id".to_string())]
}
fn default_anonymous_cookie() -> String {
    "stickycanary-id".to_string()
}
fn default_max_age_seconds() -> u64 {
    2_592_000
}
fn default_override_header() -> Option<String> {
    Some("x-canary-override".to_string())
}
fn default_override_cookie() -> Option<String> {
    Some("stickycanary-override".to_string())
}

impl RolloutConfig {
    /// The salt actually hashed: the configured one, or the rollout name.
    pub fn effective_salt<'a>(&'a self, rollout_name: &'a str) -> &'a str {
        self.salt.as_deref().unwrap_or(rollout_name)
    }

    /// The slow threshold actually applied: the configured one, or the default.
    pub fn effective_slow_threshold_ms(&self) -> u32 {
        self.slow_threshold_ms.unwrap_or(DEFAULT_SLOW_THRESHOLD_MS)
    }
}

impl PluginConfig {
    /// Parses and validates a `pluginConfig` document.
    pub fn from_json(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let config: PluginConfig =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                // A syntax error has no meaningful field path: report it at the root,
                // with serde's line and column.
                let inner = err.inner();
                let path = if inner.is_syntax() || inner.is_eof() {
                    String::new()
                } else {
                    err.path().to_string()
                };
                ConfigError::new(display_path(&path), serde_message(inner))
            })?;
        deserializer
            .end()
            .map_err(|err| ConfigError::new("(root)", serde_message(&err)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges, names, non-empty lists. Code that builds a
    /// `PluginConfig` by hand (the controller) calls this before publishing it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_header_name(&self.route_header)
            .map_err(|reason| ConfigError::new("routeHeader", reason))?;
        for (name, rollout) in &self.rollouts {
            let at = |field: &str| format!("rollouts.{name}.{field}");
            validate_label(name).map_err(|reason| {
                ConfigError::new(
                    format!("rollouts.{name}"),
                    format!("bad rollout name: {reason}"),
                )
            })?;
            validate_rollout(rollout, &at)?;
        }
        Ok(())
    }
}

fn validate_rollout(
    rollout: &RolloutConfig,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if rollout.hosts.is_empty() {
        return Err(ConfigError::new(at("hosts"), "must list at least one host"));
    }
    for (index, host) in rollout.hosts.iter().enumerate() {
        validate_host(host)
            .map_err(|reason| ConfigError::new(at(&format!("hosts[{index}]")), reason))?;
    }
    if !rollout.path_prefix.starts_with('/') {
        return Err(ConfigError::new(
            at("pathPrefix"),
            format!("must start with '/' (got {:?})", rollout.path_prefix),
        ));
    }
    check_weight(rollout.weight).map_err(|reason| ConfigError::new(at("weight"), reason))?;
    if let Some(ms) = rollout.slow_threshold_ms {
        if !SLOW_THRESHOLD_MS_RANGE.contains(&ms) {
            return Err(ConfigError::new(
                at("slowThresholdMs"),
                format!("must be a whole number of milliseconds from 1 to 600000 (got {ms})"),
            ));
        }
    }
    if rollout.salt.as_deref() == Some("") {
        return Err(ConfigError::new(
            at("salt"),
            "must not be empty (omit it to use the rollout name)",
        ));
    }
    validate_label(&rollout.stable_version)
        .map_err(|reason| ConfigError::new(at("stableVersion"), reason))?;
    validate_label(&rollout.canary_version)
        .map_err(|reason| ConfigError::new(at("canaryVersion"), reason))?;
    if rollout.stable_version == rollout.canary_version {
        return Err(ConfigError::new(
            at("canaryVersion"),
            format!(
                "must differ from stableVersion (both are {:?})",
                rollout.stable_version
            ),
        ));
    }
    // An empty `identity` is allowed: every user is then anonymous (minted cookie id).
    for (index, source) in rollout.identity.iter().enumerate() {
        let field = at(&format!("identity[{index}]"));
        match source {
            IdentitySource::Header(name) => validate_header_name(name),
            IdentitySource::Cookie(name) => validate_cookie_name(name),
        }
        .map_err(|reason| ConfigError::new(field, reason))?;
    }
    validate_cookie_name(&rollout.anonymous.cookie)
        .map_err(|reason| ConfigError::new(at("anonymous.cookie"), reason))?;
    if let Some(override_config) = &rollout.r#override {
        if let Some(header) = &override_config.header {
            validate_header_name(header)
                .map_err(|reason| ConfigError::new(at("override.header"), reason))?;
        }
        if let Some(cookie) = &override_config.cookie {
            validate_cookie_name(cookie)
                .map_err(|reason| ConfigError::new(at("override.cookie"), reason))?;
        }
        if override_config.header.is_none() && override_config.cookie.is_none() {
            return Err(ConfigError::new(
                at("override"),
                "needs a header or a cookie (use null to disable overrides)",
            ));
        }
        if override_config.token.as_deref() == Some("") {
            return Err(ConfigError::new(
                at("override.token"),
                "must not be empty (use null for no token)",
            ));
        }
    }
    Ok(())
}

/// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. Rollout and
/// version names end up inside stat names, so this also blocks stat-tag injection.
pub fn validate_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must be a DNS-1123 label (got an empty string)".to_string());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!(
            "must be a DNS-1123 label of at most {MAX_LABEL_LEN} characters (got {})",
            value.len()
        ));
    }
    let bytes = value.as_bytes();
    let allowed = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-';
    let edge_ok = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let first_and_last_ok = bytes.first().is_some_and(edge_ok) && bytes.last().is_some_and(edge_ok);
    if !bytes.iter().all(allowed) || !first_and_last_ok {
        return Err(format!(
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (got {value:?})"
        ));
    }
    Ok(())
}

/// The weight's contract, shared by the deserializer and `validate`.
fn check_weight(weight: f64) -> Result<(), String> {
    if weight.is_finite() && (0.0..=100.0).contains(&weight) {
        Ok(())
    } else {
        Err(format!("must be a number from 0 to 100 (got {weight})"))
    }
}

/// HTTP token characters (RFC 9110), which is also what Envoy accepts in a header name.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn validate_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!("must be an HTTP header name (got {name:?})"));
    }
    Ok(())
}

/// Cookie names are tokens too; this keeps `;`, `=` and spaces out of a `Set-Cookie` we build.
fn validate_cookie_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!(
            "must be a cookie name made of token characters (got {name:?})"
        ));
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let well_formed = !name.is_empty()
        && !name.contains('*')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'/');
    if !well_formed {
        return Err(format!("must be a host name or '*.suffix' (got {host:?})"));
    }
    Ok(())
}

fn display_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        "(root)".to_string()
    } else {
        path.to_string()
    }
}

/// serde_json's message without its ` at line L column C` tail (the path says where).
fn serde_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    if err.is_syntax() || err.is_eof() {
        return format!("malformed JSON: {full}");
    }
    let tail = format!(" at line {} column {}", err.line(), err.column());
    full.strip_suffix(&tail).unwrap_or(&full).to_string()
}

/// Accepts only JSON numbers, so `"ten"` or `null` gets the weight's own message.
fn deserialize_weight<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct WeightVisitor;

    impl WeightVisitor {
        fn checked<E: de::Error>(weight: f64) -> Result<f64, E> {
            check_weight(weight).map(|()| weight).map_err(E::custom)
        }
    }

    impl<'de> Visitor<'de> for WeightVisitor {
        type Value = f64;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a number from 0 to 100")
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
            Self::checked(value)
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
            Self::checked(value as f64)
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
            Self::checked(value as f64)
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<f64, E> {
            Err(E::custom(format!(
                "must be a number from 0 to 100 (got {value:?})"
            )))
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<f64, E> {
            Err(E::custom(format!(
                "must be a number from 0 to 100 (got {value})"
            )))
        }
        fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
            Err(E::custom("must be a number from 0 to 100 (got null)"))
        }
    }

    deserializer.deserialize_any(WeightVisitor)
}

#[cfg(test)]
mod tests;

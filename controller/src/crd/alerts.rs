//! The API types: the `AlertProvider` resource a platform team defines once, and the
//! `alerts` list a CanaryRollout uses to reference providers (like Flagger's AlertProvider
//! and a Canary's `analysis.alerts`). Sending lives in `crate::alerts`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::DNS1123_LABEL_PATTERN;
use crate::duration::Duration;

/// Where alerts for many rollouts go: a chat service's incoming webhook, or a plain JSON
/// webhook. The address (a webhook URL, itself a secret) is read from a Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "stickycanary.dev",
    version = "v1alpha1",
    kind = "AlertProvider",
    namespaced,
    shortname = "scap",
    category = "stickycanary",
    doc = "A chat service or webhook that CanaryRollouts send alerts to, defined once and referenced by many rollouts.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type")
)]
#[serde(rename_all = "camelCase")]
pub struct AlertProviderSpec {
    /// slack, msteams, discord, googlechat or webhook.
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// The Secret key holding the address (the incoming-webhook URL).
    pub secret_ref: SecretKeyRef,
    /// Slack only: the channel, for webhooks that may post to several (legacy ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Slack and Discord: the name the message is posted under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A Secret key holding extra CA certificates (PEM) for the address's TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A link template for the rollout's dashboard, e.g.
    /// `https://grafana.example/d/sc?var-namespace={namespace}&var-rollout={rollout}`;
    /// `{namespace}`, `{rollout}` and `{revision}` are replaced (URL-encoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// Each delivery attempt's timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// The placeholders a `dashboardUrl` template may use.
pub const DASHBOARD_PLACEHOLDERS: [&str; 3] = ["{namespace}", "{rollout}", "{revision}"];

/// The kinds of provider, each with its service's incoming-webhook format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Slack,
    Msteams,
    Discord,
    Googlechat,
    /// Today's notification JSON: `{"rollout", "namespace", "text"}`.
    Webhook,
}

impl ProviderType {
    pub const ALL: [ProviderType; 5] = [
        ProviderType::Slack,
        ProviderType::Msteams,
        ProviderType::Discord,
        ProviderType::Googlechat,
        ProviderType::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Slack => "slack",
            ProviderType::Msteams => "msteams",
            ProviderType::Discord => "discord",
            ProviderType::Googlechat => "googlechat",
            ProviderType::Webhook => "webhook",
        }
    }

    /// Whether the service lets a message choose its channel / its poster's name.
    pub fn has_channel(self) -> bool {
        self == ProviderType::Slack
    }

    pub fn has_username(self) -> bool {
        matches!(self, ProviderType::Slack | ProviderType::Discord)
    }
}

/// A key of a Secret in the provider's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default `address` for the address and `ca.crt` for a CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SecretKeyRef {
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
}

/// The Secret key of a provider's address when `secretRef.key` is not set.
pub const DEFAULT_ADDRESS_KEY: &str = "address";
/// The Secret key of a provider's CA bundle when `caSecretRef.key` is not set.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

/// How loud an event is. A rollout's alert receives events at its severity and above.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warn,
    Error,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warn, Severity::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// One entry of a CanaryRollout's `alerts`: a provider and the least severity it gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAlert {
    pub provider_ref: ProviderRef,
    /// info: every event; warn: warnings and errors; error: errors only. Default info.
    #[serde(default)]
    pub severity: Severity,
}

/// An AlertProvider by name, in the rollout's namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    #[schemars(regex(pattern = DNS1123_LABEL_PATTERN), length(max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS1123_LABEL_PATTERN), length(max = 63))]
    pub namespace: Option<String>,
}

impl RolloutAlert {
    /// Whether an event of `severity` goes to this alert's provider.
    pub fn wants(&self, severity: Severity) -> bool {
        severity >= self.severity
    }

    /// The provider's namespace: its own, or the rollout's.
    pub fn provider_namespace<'a>(&'a self, rollout_namespace: &'a str) -> &'a str {
        self.provider_ref
            .namespace
            .as_deref()
            .unwrap_or(rollout_namespace)
    }
}

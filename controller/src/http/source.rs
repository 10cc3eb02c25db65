//! The outbound settings a Prometheus source carries besides its address: whom to trust
//! (a CA bundle from a Secret or a ConfigMap, or no verification at all), a bearer token
//! from a Secret, and a timeout. Meant to be flattened into the CanaryRollout's
//! `spec.prometheus` (`#[serde(flatten)] pub outbound: SourceOutbound`); the caller reads
//! the referenced Secret/ConfigMap keys and passes their values to
//! [`SourceOutbound::client_config`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ClientConfig;
use crate::duration::Duration;

/// Prometheus source options (camelCase fields of `spec.prometheus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceOutbound {
    /// Extra CA certificates (PEM) trusted for this source besides the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundleRef>,
    /// Accept any certificate. Test clusters only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// A Secret key holding a bearer token, sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<KeyRef>,
    /// Each query's timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Where a CA bundle lives: exactly one of a Secret key or a ConfigMap key, in the
/// rollout's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SourceOutbound {
    /// One line per problem, each starting with `field` (e.g. `spec.prometheus`).
    pub fn check(&self, field: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(ca) = &self.ca {
            match (&ca.secret_key_ref, &ca.config_map_key_ref) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => problems.push(format!(
                    "{field}.ca: set exactly one of secretKeyRef and configMapKeyRef"
                )),
            }
            if self.insecure_skip_verify {
                problems.push(format!(
                    "{field}.insecureSkipVerify: verification is off, so {field}.ca would not be used"
                ));
            }
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            problems.push(format!("{field}.timeout: must be more than 0"));
        }
        problems
    }

    /// The client for this source, given the values its references point at.
    pub fn client_config(
        &self,
        ca_pem: Option<Vec<u8>>,
        bearer_token: Option<&str>,
    ) -> ClientConfig {
        let mut config = ClientConfig {
            extra_ca_pem: ca_pem,
            insecure_skip_verify: self.insecure_skip_verify,
            ..ClientConfig::default()
        };
        if let Some(timeout) = self.timeout {
            config.timeout = timeout.as_std();
        }
        if let Some(token) = bearer_token {
            config.default_headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", token.trim()),
            ));
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_its_options_from_camel_case_yaml() {
        let outbound: SourceOutbound = serde_yaml::from_str(
            "ca: {configMapKeyRef: {name: corp-ca, key: ca.crt}}\n\
             bearerTokenSecretRef: {name: prom-token, key: token}\n\
             timeout: 5s\n",
        )
        .unwrap();
        assert!(outbound.check("spec.prometheus").is_empty());
        let config = outbound.client_config(Some(b"pem".to_vec()), Some("t0k\n"));
        assert_eq!(config.timeout, std::time::Duration::from_secs(5));
        assert_eq!(config.extra_ca_pem.as_deref(), Some(&b"pem"[..]));
        assert_eq!(
            config.default_headers,
            vec![("Authorization".to_string(), "Bearer t0k".to_string())]
        );
        // Nothing set: nothing serialised, so existing rollouts read back unchanged.
        assert_eq!(
            serde_json::to_string(&SourceOutbound::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn a_ca_needs_exactly_one_place_and_verification_on() {
        let both = SourceOutbound {
            ca: Some(CaBundleRef {
                secret_key_ref: None,
                config_map_key_ref: None,
            }),
            insecure_skip_verify: true,
            ..SourceOutbound::default()
        };
        assert_eq!(
            both.check("spec.prometheus"),
            vec![
                "spec.prometheus.ca: set exactly one of secretKeyRef and configMapKeyRef",
                "spec.prometheus.insecureSkipVerify: verification is off, so spec.prometheus.ca would not be used",
            ]
        );
    }
}

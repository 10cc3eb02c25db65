//! The outbound settings a Prometheus source carries besides its address: whom to trust
//! (a CA bundle from a Secret or a ConfigMap, or no verification at all), credentials (a
//! bearer token, or a username and password, from Secrets), extra headers (literal or from
//! a Secret, e.g. `X-Scope-OrgID` for Mimir, Cortex and Thanos tenancy) and a timeout.
//! Meant to be flattened into the CanaryRollout's `spec.prometheus`
//! (`#[serde(flatten)] pub outbound: SourceOutbound`); the caller reads the referenced
//! Secret/ConfigMap keys and passes their values to [`SourceOutbound::client_config`].

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
    /// Not with `basicAuth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<KeyRef>,
    /// A username and a password from Secret keys, sent as
    /// `Authorization: Basic base64(username:password)` (prometheus-operator's shape).
    /// Not with `bearerTokenSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Headers sent with every query, e.g. `X-Scope-OrgID` for Mimir, Cortex or Thanos
    /// tenancy. Not `Authorization` when `basicAuth` or `bearerTokenSecretRef` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<SourceHeader>,
    /// Each query's timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Basic auth from Secret keys in the rollout's namespace (surrounding whitespace, such as
/// a trailing newline, is trimmed from both).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    pub username: KeyRef,
    pub password: KeyRef,
}

/// One header: a literal `value`, or `valueFrom.secretKeyRef` (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceHeader {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueFrom>,
}

/// Where a header's value lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueFrom {
    pub secret_key_ref: KeyRef,
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

/// The values a source's references point at, read by the caller (from Secrets and
/// ConfigMaps in the cluster, from files and flags in local mode). No `Debug`: it holds
/// credentials.
#[derive(Clone, Default)]
pub struct SourceValues {
    pub ca_pem: Option<Vec<u8>>,
    pub bearer_token: Option<String>,
    /// Username and password.
    pub basic_auth: Option<(String, String)>,
    /// The values of the `headers` that have `valueFrom`, by header name.
    pub header_values: Vec<(String, String)>,
}

/// Why `username` cannot go into Basic auth (RFC 7617 §2: a user-id with a colon), or `None`.
pub fn username_problem(username: &str) -> Option<&'static str> {
    username
        .trim()
        .contains(':')
        .then_some("holds a ':', which Basic auth cannot carry in a username (RFC 7617)")
}

/// RFC 9110 §5.6.2 `token`: what a header name may be made of.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl SourceOutbound {
    /// The auth field that is set (`basicAuth` or `bearerTokenSecretRef`), if any.
    pub fn auth_field(&self) -> Option<&'static str> {
        if self.basic_auth.is_some() {
            Some("basicAuth")
        } else if self.bearer_token_secret_ref.is_some() {
            Some("bearerTokenSecretRef")
        } else {
            None
        }
    }

    /// One line per problem, each starting with `field` (e.g. `spec.prometheus`). No line
    /// holds a header's value.
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
        if self.basic_auth.is_some() && self.bearer_token_secret_ref.is_some() {
            problems.push(format!(
                "{field}.basicAuth: set either basicAuth or bearerTokenSecretRef, not both (each is an Authorization header)"
            ));
        }
        for (index, header) in self.headers.iter().enumerate() {
            let at = format!("{field}.headers[{index}]");
            let name = &header.name;
            if !is_token(name) {
                problems.push(format!(
                    "{at}.name: {name:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                ));
            } else if let Some(auth) = self
                .auth_field()
                .filter(|_| name.eq_ignore_ascii_case("authorization"))
            {
                problems.push(format!(
                    "{at}.name: Authorization is already sent by {field}.{auth}; remove one"
                ));
            } else if let Some(first) = self.headers[..index]
                .iter()
                .position(|other| other.name.eq_ignore_ascii_case(name))
            {
                problems.push(format!(
                    "{at}.name: {name} is already set by {field}.headers[{first}]"
                ));
            }
            match (&header.value, &header.value_from) {
                (Some(value), None) => {
                    if http::HeaderValue::from_str(value).is_err() {
                        problems.push(format!(
                            "{at}.value: not a header value (visible ASCII, spaces and tabs only; the value is not shown)"
                        ));
                    }
                }
                (None, Some(_)) => {}
                _ => problems.push(format!("{at}: set exactly one of value and valueFrom")),
            }
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            problems.push(format!("{field}.timeout: must be more than 0"));
        }
        problems
    }

    /// The client for this source, given the values its references point at. Secret values
    /// lose surrounding whitespace (a Secret made with `echo` ends in a newline).
    pub fn client_config(&self, values: SourceValues) -> ClientConfig {
        let mut config = ClientConfig {
            extra_ca_pem: values.ca_pem,
            insecure_skip_verify: self.insecure_skip_verify,
            ..ClientConfig::default()
        };
        if let Some(timeout) = self.timeout {
            config.timeout = timeout.as_std();
        }
        if let Some(token) = values.bearer_token {
            config.default_headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", token.trim()),
            ));
        }
        if let Some((username, password)) = values.basic_auth {
            use base64::Engine;
            let credentials = format!("{}:{}", username.trim(), password.trim());
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            config
                .default_headers
                .push(("Authorization".to_string(), format!("Basic {encoded}")));
        }
        for header in &self.headers {
            if let Some(value) = &header.value {
                config
                    .default_headers
                    .push((header.name.clone(), value.clone()));
            }
        }
        for (name, value) in values.header_values {
            config
                .default_headers
                .push((name, value.trim().to_string()));
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
        let config = outbound.client_config(SourceValues {
            ca_pem: Some(b"pem".to_vec()),
            bearer_token: Some("t0k\n".to_string()),
            ..SourceValues::default()
        });
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

    #[test]
    fn basic_auth_and_headers_become_the_exact_headers_sent() {
        let outbound: SourceOutbound = serde_yaml::from_str(
            "basicAuth:\n  username: {name: grafana-cloud, key: user}\n  password: {name: grafana-cloud, key: token}\n\
             headers:\n- {name: X-Scope-OrgID, valueFrom: {secretKeyRef: {name: tenant, key: id}}}\n\
             - {name: X-Team, value: checkout}\n",
        )
        .unwrap();
        assert!(outbound.check("spec.prometheus").is_empty());
        let config = outbound.client_config(SourceValues {
            basic_auth: Some(("alice\n".to_string(), "s3cret\n".to_string())),
            header_values: vec![("X-Scope-OrgID".to_string(), "tenant-1\n".to_string())],
            ..SourceValues::default()
        });
        assert_eq!(
            config.default_headers,
            vec![
                // base64("alice:s3cret")
                (
                    "Authorization".to_string(),
                    "Basic YWxpY2U6czNjcmV0".to_string()
                ),
                ("X-Team".to_string(), "checkout".to_string()),
                ("X-Scope-OrgID".to_string(), "tenant-1".to_string()),
            ]
        );
        assert_eq!(
            username_problem("ali:ce"),
            Some("holds a ':', which Basic auth cannot carry in a username (RFC 7617)")
        );
        assert_eq!(username_problem("alice"), None);
    }

    #[test]
    fn one_auth_only_and_headers_need_token_names_and_one_value() {
        let outbound: SourceOutbound = serde_yaml::from_str(
            "bearerTokenSecretRef: {name: t, key: token}\n\
             basicAuth: {username: {name: b, key: u}, password: {name: b, key: p}}\n\
             headers:\n\
             - {name: 'X Scope', value: a}\n\
             - {name: authorization, value: Bearer s3cret}\n\
             - {name: X-Scope-OrgID, value: a}\n\
             - {name: x-scope-orgid, valueFrom: {secretKeyRef: {name: t, key: id}}}\n\
             - {name: X-Empty}\n\
             - {name: X-Bad, value: \"s3cret\\nline\"}\n",
        )
        .unwrap();
        let problems = outbound.check("spec.prometheus");
        assert_eq!(
            problems,
            vec![
                "spec.prometheus.basicAuth: set either basicAuth or bearerTokenSecretRef, not both (each is an Authorization header)",
                "spec.prometheus.headers[0].name: \"X Scope\" is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                "spec.prometheus.headers[1].name: Authorization is already sent by spec.prometheus.basicAuth; remove one",
                "spec.prometheus.headers[3].name: x-scope-orgid is already set by spec.prometheus.headers[2]",
                "spec.prometheus.headers[4]: set exactly one of value and valueFrom",
                "spec.prometheus.headers[5].value: not a header value (visible ASCII, spaces and tabs only; the value is not shown)",
            ]
        );
        assert!(problems.iter().all(|line| !line.contains("s3cret")));
        // Without an auth, an Authorization header of one's own is fine.
        let own: SourceOutbound =
            serde_yaml::from_str("headers: [{name: Authorization, value: Bearer x}]\n").unwrap();
        assert!(own.check("spec.prometheus").is_empty());
    }
}

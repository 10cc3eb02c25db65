//! How local mode reaches Prometheus. There is no cluster to read Secrets from, so the
//! bearer token, the basic-auth password and the CA bundle come from files named by flags,
//! the basic-auth username and Secret-held header values from flags (or their environment
//! variables); the spec's literal headers, `insecureSkipVerify` and `timeout` apply as in
//! the cluster.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::http::source::{username_problem, SourceOutbound, SourceValues};
use crate::http::ClientConfig;

/// The address and the flags' client options.
#[derive(Clone, Debug, Default)]
pub struct PrometheusAccess {
    pub address: String,
    /// `--prometheus-bearer-token-file`: sent as `Authorization: Bearer <token>`.
    pub bearer_token_file: Option<PathBuf>,
    /// `--prometheus-basic-auth-user`, with the password from
    /// `--prometheus-basic-auth-password-file`: sent as `Authorization: Basic …`.
    pub basic_auth_user: Option<String>,
    /// `--prometheus-basic-auth-password-file`.
    pub basic_auth_password_file: Option<PathBuf>,
    /// `--prometheus-ca-file`: PEM certificates trusted besides the host's.
    pub ca_file: Option<PathBuf>,
    /// `--prometheus-header 'Name: value'`, sent with every query.
    pub headers: Vec<(String, String)>,
    /// `--prometheus-insecure-skip-verify` (or the spec's `insecureSkipVerify`).
    pub insecure_skip_verify: bool,
}

impl From<&str> for PrometheusAccess {
    fn from(address: &str) -> Self {
        PrometheusAccess {
            address: address.to_string(),
            ..PrometheusAccess::default()
        }
    }
}

/// `Name: value` (for `--prometheus-header`); the value is never echoed.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value'".to_string())?;
    let name = name.trim();
    if name.is_empty() || http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "{name:?} is not a header name (expected 'Name: value')"
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

impl PrometheusAccess {
    /// Refuses a spec whose references local mode cannot read, naming the flag to use
    /// instead; returns the warnings to print (verification off).
    pub fn check(&self, outbound: &SourceOutbound) -> Result<Vec<String>, Error> {
        let invalid = |line: &str| Err(Error::Invalid(line.to_string()));
        let basic = self.basic_auth_user.is_some() || self.basic_auth_password_file.is_some();
        if self.basic_auth_user.is_some() != self.basic_auth_password_file.is_some() {
            return invalid("--prometheus-basic-auth-user and --prometheus-basic-auth-password-file go together");
        }
        if basic && self.bearer_token_file.is_some() {
            return invalid("--prometheus-basic-auth-user: not with --prometheus-bearer-token-file (each is an Authorization header)");
        }
        let auth_flag = if basic {
            Some("--prometheus-basic-auth-user")
        } else {
            self.bearer_token_file
                .as_ref()
                .map(|_| "--prometheus-bearer-token-file")
        };
        if let Some(flag) = auth_flag {
            let spec_names = outbound.headers.iter().map(|header| header.name.as_str());
            if self
                .headers
                .iter()
                .map(|(name, _)| name.as_str())
                .chain(spec_names)
                .any(|name| name.eq_ignore_ascii_case("authorization"))
            {
                return Err(Error::Invalid(format!(
                    "--prometheus-header: Authorization is already sent by {flag}; remove one"
                )));
            }
        }
        if outbound.basic_auth.is_some() && !basic {
            return invalid("spec.prometheus.basicAuth: local mode reads no Secrets; pass them with --prometheus-basic-auth-user and --prometheus-basic-auth-password-file");
        }
        for (index, header) in outbound.headers.iter().enumerate() {
            let flagged = self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(&header.name));
            if header.value_from.is_some() && !flagged {
                return Err(Error::Invalid(format!(
                    "spec.prometheus.headers[{index}].valueFrom: local mode reads no Secrets; pass the value with --prometheus-header '{}: VALUE'",
                    header.name
                )));
            }
        }
        if outbound.bearer_token_secret_ref.is_some() && self.bearer_token_file.is_none() {
            return Err(Error::Invalid(
                "spec.prometheus.bearerTokenSecretRef: local mode reads no Secrets; pass the token with --prometheus-bearer-token-file".to_string(),
            ));
        }
        if outbound.ca.is_some() && self.ca_file.is_none() {
            return Err(Error::Invalid(
                "spec.prometheus.ca: local mode reads no Secrets or ConfigMaps; pass the bundle with --prometheus-ca-file".to_string(),
            ));
        }
        let mut warnings = Vec::new();
        if self.insecure_skip_verify || outbound.insecure_skip_verify {
            warnings.push(format!(
                "{}: Prometheus's TLS certificate is not verified (anyone on the path can read the token and forge the metrics); test setups only",
                if self.insecure_skip_verify {
                    "--prometheus-insecure-skip-verify"
                } else {
                    "spec.prometheus.insecureSkipVerify"
                }
            ));
        }
        Ok(warnings)
    }

    /// The client options: the spec's, with the flags' credentials, CA bundle and headers
    /// (a header flag replaces the spec's header of the same name); the
    /// query timeout is `default_timeout` unless the spec sets one.
    pub fn client_config(
        &self,
        outbound: &SourceOutbound,
        default_timeout: Duration,
    ) -> Result<ClientConfig, Error> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|e| Error::Invalid(format!("{what} {}: {}", path.display(), e.kind())))
        };
        let token = match &self.bearer_token_file {
            Some(path) => {
                let bytes = read(path, "--prometheus-bearer-token-file")?;
                Some(String::from_utf8(bytes).map_err(|_| {
                    Error::Invalid(format!(
                        "--prometheus-bearer-token-file {}: not UTF-8 text",
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        let basic_auth = match (&self.basic_auth_user, &self.basic_auth_password_file) {
            (Some(username), Some(path)) => {
                if let Some(problem) = username_problem(username) {
                    return Err(Error::Invalid(format!(
                        "--prometheus-basic-auth-user: {problem}"
                    )));
                }
                let bytes = read(path, "--prometheus-basic-auth-password-file")?;
                let password = String::from_utf8(bytes).map_err(|_| {
                    Error::Invalid(format!(
                        "--prometheus-basic-auth-password-file {}: not UTF-8 text",
                        path.display()
                    ))
                })?;
                Some((username.clone(), password))
            }
            _ => None,
        };
        let ca = match &self.ca_file {
            Some(path) => Some(read(path, "--prometheus-ca-file")?),
            None => None,
        };
        let mut config = outbound.client_config(SourceValues {
            ca_pem: ca,
            bearer_token: token,
            basic_auth,
            header_values: Vec::new(),
        });
        if outbound.timeout.is_none() {
            config.timeout = default_timeout;
        }
        config.insecure_skip_verify |= self.insecure_skip_verify;
        config.default_headers.extend(self.headers.iter().cloned());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_flag_is_a_name_and_a_value() {
        assert_eq!(
            parse_header("X-Scope-OrgID: t1"),
            Ok(("X-Scope-OrgID".to_string(), "t1".to_string()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn spec_references_need_their_flags_in_local_mode() {
        let outbound: SourceOutbound =
            serde_yaml::from_str("bearerTokenSecretRef: {name: t, key: token}\n").unwrap();
        let err = PrometheusAccess::from("http://p")
            .check(&outbound)
            .unwrap_err();
        assert!(
            err.to_string().contains("--prometheus-bearer-token-file"),
            "{err}"
        );
        let flags = PrometheusAccess {
            bearer_token_file: Some("/t".into()),
            insecure_skip_verify: true,
            ..PrometheusAccess::from("http://p")
        };
        let warnings = flags.check(&outbound).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("--prometheus-insecure-skip-verify: "));
    }

    #[test]
    fn an_authorization_header_is_refused_beside_an_auth_flag() {
        let flags = PrometheusAccess {
            basic_auth_user: Some("u".into()),
            basic_auth_password_file: Some("/p".into()),
            ..PrometheusAccess::from("http://p")
        };
        let own: SourceOutbound =
            serde_yaml::from_str("headers: [{name: authorization, value: Bearer x}]\n").unwrap();
        let err = flags.check(&own).unwrap_err().to_string();
        assert!(
            err.contains("Authorization is already sent by --prometheus-basic-auth-user"),
            "{err}"
        );
        assert!(flags.check(&SourceOutbound::default()).is_ok());
    }
}

//! What can go wrong with an outbound call, as one line that is safe to put in a log, an
//! Event, a status condition or a metric label.
//!
//! A URL may carry a secret (userinfo, a token in the query or the path of a Slack or Teams
//! webhook) and so may a header (`Authorization`). No variant holds the URL or a header
//! value: the caller knows which source or provider it called and names that instead. The
//! TLS reasons come from rustls's error kinds, which name certificates' problems, never the
//! request.

use std::time::Duration;

/// One failed outbound call or client set-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid URL (it must be an absolute http or https URL)")]
    InvalidUrl,
    #[error("invalid header {name}")]
    InvalidHeader { name: String },
    #[error("CA bundle: {reason}")]
    CaBundle { reason: String },
    #[error("TLS set-up failed: {reason}")]
    TlsSetup { reason: String },
    #[error("timed out after {}", crate::duration::Duration::from(*.0))]
    Timeout(Duration),
    #[error("connection failed: {reason}")]
    Connect { reason: String },
    #[error("TLS: the server's certificate is not trusted ({reason})")]
    CertificateNotTrusted { reason: String },
    #[error("TLS handshake failed ({reason}): is the server speaking plain http on an https URL?")]
    NotTls { reason: String },
    #[error("TLS handshake failed ({reason})")]
    Tls { reason: String },
    #[error("redirect to another host not followed (HTTP {status})")]
    RedirectElsewhere { status: u16 },
    #[error("redirect not followed (HTTP {status}): {reason}")]
    RedirectRefused { status: u16, reason: &'static str },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("answer larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error("request failed ({reason})")]
    Request { reason: String },
}

impl Error {
    /// A short label for a metric (`outcome="timeout"`), one per kind of failure.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidUrl | Error::InvalidHeader { .. } => "invalid_request",
            Error::CaBundle { .. } | Error::TlsSetup { .. } => "tls_setup",
            Error::Timeout(_) => "timeout",
            Error::Connect { .. } => "connect",
            Error::CertificateNotTrusted { .. } => "certificate",
            Error::NotTls { .. } | Error::Tls { .. } => "tls",
            Error::RedirectElsewhere { .. }
            | Error::RedirectRefused { .. }
            | Error::TooManyRedirects(_) => "redirect",
            Error::Status(_) => "status",
            Error::ResponseTooLarge(_) => "too_large",
            Error::Request { .. } => "request",
        }
    }

    /// Whether trying again later may help (a retry loop's question): timeouts, refused
    /// connections, 408, 429 and 5xx answers. Certificates, redirects and 4xx will not heal.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::Connect { .. } | Error::Request { .. } => true,
            Error::Status(status) => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The error of a failed exchange, from hyper's error chain: the rustls error inside it
/// when there is one, else the I/O error kind. Never the error's own text, which may hold
/// the URL.
pub(crate) fn from_client_error(error: &hyper_util::client::legacy::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut io_kind = None;
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return from_rustls(tls);
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            // An io::Error's `source()` skips the error it wraps: step into it instead
            // (hyper-rustls wraps tokio-rustls's io::Error, which wraps the rustls error).
            Some(io) => {
                io_kind.get_or_insert(io.kind());
                io.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => current.source(),
        };
    }
    match io_kind {
        Some(kind) if error.is_connect() => Error::Connect {
            reason: kind.to_string(),
        },
        _ if error.is_connect() => Error::Connect {
            reason: "no connection".to_string(),
        },
        Some(kind) => Error::Request {
            reason: kind.to_string(),
        },
        None => Error::Request {
            reason: "the connection closed before an answer".to_string(),
        },
    }
}

fn from_rustls(error: &rustls::Error) -> Error {
    match error {
        rustls::Error::InvalidCertificate(reason) => Error::CertificateNotTrusted {
            reason: one_line(&format!("{reason:?}")),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            Error::NotTls {
                reason: one_line(&error.to_string()),
            }
        }
        other => Error::Tls {
            reason: one_line(&other.to_string()),
        },
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_one_line_and_names_its_kind() {
        let errors = [
            Error::InvalidUrl,
            Error::Timeout(Duration::from_secs(5)),
            Error::CertificateNotTrusted {
                reason: "UnknownIssuer".into(),
            },
            Error::RedirectElsewhere { status: 302 },
            Error::Status(503),
        ];
        for error in &errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
        assert_eq!(errors[1].to_string(), "timed out after 5s");
        assert_eq!(errors[4].metric_label(), "status");
        assert!(errors[4].is_transient());
        assert!(!Error::Status(404).is_transient());
        assert!(!errors[2].is_transient());
    }
}

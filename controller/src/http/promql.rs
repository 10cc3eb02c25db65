//! An instant PromQL query through the outbound [`Client`], so a Prometheus source gets
//! the same TLS, trust, timeouts and secret handling as every other call. The answer is
//! decoded into `prometheus_http_query`'s types, which the analysis already reads: moving
//! a source off that crate's own (TLS-less) reqwest client changes the transport only.

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::Method;
use prometheus_http_query::response::PromqlResult;
use serde::Deserialize;

use super::{Client, Error};

/// Why a query gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The call failed (connection, TLS, timeout, a status without a Prometheus answer).
    #[error("{0}")]
    Http(#[from] Error),
    /// Prometheus answered with an error (`bad_data`, `timeout`, `execution`, ...).
    #[error("Prometheus refused the query ({kind}): {message}")]
    Prometheus { kind: String, message: String },
    #[error("not a Prometheus answer (HTTP {status})")]
    Undecodable { status: u16 },
}

/// The envelope of every Prometheus API answer.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success {
        data: PromqlResult,
    },
    Error {
        #[serde(rename = "errorType", default)]
        kind: String,
        #[serde(default)]
        error: String,
    },
}

/// `<address>/api/v1/query`: the address may carry a path (a proxy's or AMP's
/// `/workspaces/<id>`), with or without a trailing slash.
pub fn query_url(address: &str) -> String {
    format!("{}/api/v1/query", address.trim_end_matches('/'))
}

/// Evaluates `promql` now, POSTed as a form (no URL length limit, the query stays out of
/// access logs' request lines).
pub async fn instant_query(
    client: &Client,
    address: &str,
    promql: &str,
) -> Result<PromqlResult, QueryError> {
    let form = format!("query={}", encode_form_value(promql));
    let headers = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        ),
        (ACCEPT, HeaderValue::from_static("application/json")),
    ];
    let answer = client
        .send(
            Method::POST,
            &query_url(address),
            &headers,
            Bytes::from(form),
        )
        .await?;
    // Prometheus answers 400/422/503 with its own error envelope: read it first.
    match serde_json::from_slice::<Envelope>(&answer.body) {
        Ok(Envelope::Success { data }) if (200..300).contains(&answer.status) => Ok(data),
        Ok(Envelope::Error { kind, error }) => Err(QueryError::Prometheus {
            kind,
            message: error.split_whitespace().collect::<Vec<_>>().join(" "),
        }),
        _ if !(200..300).contains(&answer.status) => Err(Error::Status(answer.status).into()),
        _ => Err(QueryError::Undecodable {
            status: answer.status,
        }),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn encode_form_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_url_keeps_the_address_path() {
        assert_eq!(
            query_url("http://127.0.0.1:8005/workspaces/ws-1/"),
            "http://127.0.0.1:8005/workspaces/ws-1/api/v1/query"
        );
        assert_eq!(
            query_url("https://prom:9090"),
            "https://prom:9090/api/v1/query"
        );
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            encode_form_value("sum(rate(x{a=\"b\"}[1m])) > 0.5"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29+%3E+0.5"
        );
    }
}

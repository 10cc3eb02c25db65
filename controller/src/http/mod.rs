//! The one outbound HTTP client stack: Prometheus sources, notifications, alert providers
//! and gate webhooks all call out through [`Client`].
//!
//! - **Stack**: hyper 1 + hyper-rustls on rustls's ring provider, which the Kubernetes
//!   client already links (`cargo tree -p stickycanary -i aws-lc-rs` finds nothing).
//! - **Trust** ([`tls`]): the host's CA certificates, `SSL_CERT_FILE`/`SSL_CERT_DIR` when
//!   set, plus an optional PEM bundle per source or provider; `insecure_skip_verify` for
//!   test clusters.
//! - **Time**: a connect timeout and an overall timeout around the whole exchange
//!   (redirects and reading the answer included); the answer is read up to a size cap.
//! - **Redirects**: followed only to the same scheme, host and port, at most
//!   [`MAX_REDIRECTS`] times; 301/302/303 only for GET (a POST is never turned into a GET).
//!   A redirect elsewhere is an error: it could carry a payload or a token somewhere the
//!   spec does not name.
//! - **Secrets**: userinfo in a URL becomes a Basic `Authorization` header; every
//!   configured header is marked sensitive; errors ([`Error`]) never hold the URL or a
//!   header value.
//! - **Per source** ([`source`]): the options a Prometheus source adds to its address;
//!   [`promql`] runs an instant query through this client.

mod error;
pub mod promql;
pub mod source;
pub mod tls;

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};

pub use error::Error;

/// Redirects followed at most (same host only).
pub const MAX_REDIRECTS: usize = 5;

/// How one outbound client behaves. `Default` suits a webhook or a Prometheus query.
#[derive(Clone)]
pub struct ClientConfig {
    /// The whole exchange: connecting, TLS, redirects, reading the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra CA certificates (PEM) trusted besides the host's, e.g. from a Secret.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate. Test clusters only.
    pub insecure_skip_verify: bool,
    /// Sent with every request (e.g. `Authorization`); values are never logged or shown.
    pub default_headers: Vec<(String, String)>,
    /// The most of an answer that is read; a larger one is an error, unless
    /// `truncate_response`.
    pub max_response_bytes: usize,
    /// Read at most `max_response_bytes` and stop there, without an error (a webhook's error
    /// page is only excerpted; the rest is never received).
    pub truncate_response: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            extra_ca_pem: None,
            insecure_skip_verify: false,
            default_headers: Vec::new(),
            max_response_bytes: 8 * 1024 * 1024,
            truncate_response: false,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    // Header values and CA bytes stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self
            .default_headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        f.debug_struct("ClientConfig")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("default_headers", &header_names)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("truncate_response", &self.truncate_response)
            .finish()
    }
}

/// An answer: its status and body (every status is an answer; see
/// [`Response::error_for_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// `Err(Error::Status)` unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Response, Error> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(Error::Status(self.status))
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// An outbound client. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    max_response_bytes: usize,
    truncate_response: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: &ClientConfig) -> Result<Client, Error> {
        let tls = tls::client_config(config.extra_ca_pem.as_deref(), config.insecure_skip_verify)?;
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let headers = config
            .default_headers
            .iter()
            .map(|(name, value)| sensitive_header(name, value))
            .collect::<Result<_, _>>()?;
        Ok(Client {
            inner,
            headers,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            truncate_response: config.truncate_response,
        })
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// POST `body` as JSON to `url`.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Response, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Request {
            reason: format!("body not serialisable ({e})"),
        })?;
        let json = (CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.send(Method::POST, url, &[json], Bytes::from(bytes))
            .await
    }

    /// One exchange, redirects included, within the client's timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let target = Target::parse(url)?;
        let exchange = self.follow(method, target, headers, body);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn follow(
        &self,
        mut method: Method,
        mut target: Target,
        headers: &[(HeaderName, HeaderValue)],
        mut body: Bytes,
    ) -> Result<Response, Error> {
        let origin = target.origin();
        for _ in 0..=MAX_REDIRECTS {
            let request = self.request(&method, &target, headers, body.clone())?;
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| error::from_client_error(&e))?;
            let status = response.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                if self.truncate_response {
                    return Ok(Response {
                        status: status.as_u16(),
                        body: read_truncated(response.into_body(), self.max_response_bytes).await,
                    });
                }
                let bytes = Limited::new(response.into_body(), self.max_response_bytes)
                    .collect()
                    .await
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            Error::ResponseTooLarge(self.max_response_bytes)
                        } else {
                            Error::Request {
                                reason: "the answer broke off".to_string(),
                            }
                        }
                    })?
                    .to_bytes();
                return Ok(Response {
                    status: status.as_u16(),
                    body: bytes,
                });
            }
            let refused = |reason| Error::RedirectRefused {
                status: status.as_u16(),
                reason,
            };
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| refused("no Location"))?;
            let next = target
                .resolve(location)
                .ok_or_else(|| refused("Location not understood"))?;
            if next.origin() != origin {
                return Err(Error::RedirectElsewhere {
                    status: status.as_u16(),
                });
            }
            match status {
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => {}
                _ if method == Method::GET || method == Method::HEAD => {}
                // 301/302/303 would turn the POST into a GET without its body.
                _ => return Err(refused("only 307 and 308 are followed for this method")),
            }
            if status == StatusCode::SEE_OTHER {
                method = Method::GET;
                body = Bytes::new();
            }
            target = next;
        }
        Err(Error::TooManyRedirects(MAX_REDIRECTS))
    }

    fn request(
        &self,
        method: &Method,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, Error> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(target.uri.clone())
            .body(Full::new(body))
            .map_err(|_| Error::InvalidUrl)?;
        let map = request.headers_mut();
        map.insert(USER_AGENT, HeaderValue::from_static("stickycanary"));
        for (name, value) in self.headers.iter().chain(headers) {
            map.insert(name.clone(), value.clone());
        }
        if let Some(basic) = &target.basic_auth {
            if !map.contains_key(AUTHORIZATION) {
                map.insert(AUTHORIZATION, basic.clone());
            }
        }
        Ok(request)
    }
}

/// At most `limit` bytes of `body`; the rest is never received. A body that breaks off
/// keeps what came.
async fn read_truncated(mut body: hyper::body::Incoming, limit: usize) -> Bytes {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(limit);
    Bytes::from(bytes)
}

fn sensitive_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let invalid = || Error::InvalidHeader {
        name: name
            .chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect(),
    };
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok((header, value))
}

/// A request target: the URI without userinfo, and that userinfo as Basic auth.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    basic_auth: Option<HeaderValue>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let uri: Uri = url.parse().map_err(|_| Error::InvalidUrl)?;
        let scheme = uri.scheme_str().ok_or(Error::InvalidUrl)?;
        if scheme != "http" && scheme != "https" {
            return Err(Error::InvalidUrl);
        }
        let authority = uri.authority().ok_or(Error::InvalidUrl)?.as_str();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("{scheme}://{host_port}{path}")
            .parse()
            .map_err(|_| Error::InvalidUrl)?;
        let basic_auth = match userinfo {
            None => None,
            Some(userinfo) => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| Error::InvalidUrl)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Target { uri, basic_auth })
    }

    /// Scheme, host and port (the default port made explicit).
    fn origin(&self) -> (String, String, u16) {
        let scheme = self.uri.scheme_str().unwrap_or_default().to_string();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = self.uri.host().unwrap_or_default().to_ascii_lowercase();
        (scheme, host, self.uri.port_u16().unwrap_or(default_port))
    }

    /// The target a `Location` points at: an absolute URL or an absolute path. Userinfo
    /// carries over only within the same origin (checked by the caller).
    fn resolve(&self, location: &str) -> Option<Target> {
        if location.starts_with('/') && !location.starts_with("//") {
            let authority = self.uri.authority()?.as_str();
            let scheme = self.uri.scheme_str()?;
            let uri = format!("{scheme}://{authority}{location}").parse().ok()?;
            return Some(Target {
                uri,
                basic_auth: self.basic_auth.clone(),
            });
        }
        let next = Target::parse(location).ok()?;
        Some(Target {
            basic_auth: next.basic_auth.or_else(|| self.basic_auth.clone()),
            uri: next.uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_leaves_the_uri_and_becomes_basic_auth() {
        let target = Target::parse("https://alice:s3cret@prom.example:9090/api?q=1").unwrap();
        assert_eq!(target.uri.to_string(), "https://prom.example:9090/api?q=1");
        let auth = target.basic_auth.unwrap();
        assert!(auth.is_sensitive());
        // base64("alice:s3cret")
        assert_eq!(auth.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
    }

    #[test]
    fn only_http_and_https_absolute_urls_are_accepted() {
        for url in ["ftp://host/x", "/relative", "host:80", "https://"] {
            assert_eq!(Target::parse(url).unwrap_err(), Error::InvalidUrl, "{url}");
        }
    }

    #[test]
    fn redirect_origins_compare_scheme_host_and_port() {
        let target = Target::parse("https://Prom.example/a").unwrap();
        let same = target.resolve("https://prom.example:443/b").unwrap();
        assert_eq!(same.origin(), target.origin());
        let path = target.resolve("/c?d=1").unwrap();
        assert_eq!(path.uri.to_string(), "https://Prom.example/c?d=1");
        for elsewhere in [
            "http://prom.example/a",
            "https://other.example/a",
            "https://prom.example:8443/",
        ] {
            assert_ne!(
                target.resolve(elsewhere).unwrap().origin(),
                target.origin(),
                "{elsewhere}"
            );
        }
        assert!(target.resolve("relative/path").is_none());
    }

    #[test]
    fn debug_output_holds_no_header_value() {
        let config = ClientConfig {
            default_headers: vec![("Authorization".into(), "Bearer tok-123".into())],
            ..ClientConfig::default()
        };
        assert!(!format!("{config:?}").contains("tok-123"));
    }
}

//! Loopback servers for the outbound-call tests (gate webhooks, the http client, alert
//! providers): plain http or TLS with a certificate from a CA made at test time, on
//! 127.0.0.1 and a free port, recording every request and answering what the test says.
//! A server stops when dropped (also when the test fails). Include with `mod loopback;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for this test run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, and its key.
    pub fn server_identity(&self) -> Identity {
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (
            certificate.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

pub type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// Answers 200 "ok" to everything.
pub fn ok(_: &Received) -> Answer {
    (200, vec![], "ok".to_string())
}

type Responder = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

pub struct Server {
    /// `http(s)://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback server: TLS presenting `identity` when given, plain http otherwise.
pub async fn serve(
    identity: Option<Identity>,
    respond: impl Fn(&Received) -> Answer + Send + Sync + 'static,
) -> Server {
    let acceptor = identity.map(|(cert, key)| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let recorder = received.clone();
    let respond: Responder = Arc::new(respond);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, recorder, respond) =
                (acceptor.clone(), recorder.clone(), respond.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (recorder, respond) = (recorder.clone(), respond.clone());
                    async move { Ok::<_, Infallible>(answer(request, &recorder, &respond).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Server {
        base,
        received,
        task,
    }
}

async fn answer(
    request: Request<Incoming>,
    recorder: &Mutex<Vec<Received>>,
    respond: &Responder,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let received = Received {
        method,
        target,
        headers,
        body,
    };
    let (status, headers, text) = respond(&received);
    recorder.lock().unwrap().push(received);
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Full::new(Bytes::from(text))).unwrap()
}

/// A TCP server on an https URL that answers in plain http (no TLS).
pub async fn plain_http_on_https() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    Server {
        base,
        received: Arc::default(),
        task,
    }
}

/// A TCP server that accepts and never answers (for timeouts).
pub async fn silent() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    Server {
        base,
        received: Arc::default(),
        task,
    }
}

//! Gate webhooks over https, against a loopback TLS server whose certificate a test CA,
//! made at test time, signed. The webhook client trusts the host's CA certificates
//! (rustls-native-certs, which reads `SSL_CERT_FILE` instead when it is set: the operator's
//! way to add a private CA, and this test's). It asserts that a server the trusted CA signed
//! is called and its 2xx passes with the payload delivered, and that a server signed by
//! another CA, or speaking plain http on an https URL, fails without the URL in the outcome.
//!
//! Own test binary: `SSL_CERT_FILE` is process-wide, set once before any client is built.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Once};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use stickycanary::crd::Webhook;
use stickycanary::engine::gates::CallOutcome;
use stickycanary::gates::webhook::Caller;

const SECRET: &str = "tls-s3cr3t-0815";

/// A certificate authority made for this test run.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
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

    /// A server certificate for 127.0.0.1 and localhost, and its key.
    fn server_identity(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
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

/// Makes the webhook client trust `ca` (once per process, before any `Caller`).
fn trust(ca: &TestCa) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let file = dir.join("ca.pem");
        std::fs::write(&file, ca.issuer.pem()).unwrap();
        // SAFETY: set once, before this test binary builds a client or starts a thread that
        // reads the environment.
        unsafe { std::env::set_var("SSL_CERT_FILE", &file) };
    });
}

/// What the server received.
type Seen = Arc<Mutex<Vec<Value>>>;

struct TlsServer {
    url: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback https server presenting `identity`, answering 200 to every POST.
async fn start_tls(identity: (CertificateDer<'static>, PrivateKeyDer<'static>)) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![identity.0], identity.1)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/{SECRET}/hook", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let recorder = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = recorder.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsServer { url, seen, task }
}

fn webhook(url: &str) -> Webhook {
    serde_json::from_value(json!({
        "name": "checkout-approval",
        "type": "confirm-promotion",
        "url": url,
        "timeout": "5s",
    }))
    .unwrap()
}

fn assert_no_secret(outcome: &CallOutcome) {
    let text = format!("{outcome:?}");
    assert!(!text.contains(SECRET), "the URL leaked: {text}");
}

#[tokio::test]
async fn an_https_webhook_signed_by_a_trusted_ca_passes_and_others_fail_without_the_url() {
    let trusted = TestCa::new("stickycanary test CA");
    trust(&trusted);
    let caller = Caller::new();
    let body = json!({"type": "confirm-promotion", "name": "checkout"});

    // Signed by the CA in SSL_CERT_FILE: the handshake succeeds and the payload arrives.
    let good = start_tls(trusted.server_identity()).await;
    let outcome = caller.call(&webhook(&good.url), &body).await;
    assert_eq!(outcome, CallOutcome::Passed { status: 200 });
    assert_eq!(*good.seen.lock().unwrap(), vec![body.clone()]);

    // Signed by a CA nobody trusts: the client refuses the certificate, nothing is sent.
    let stranger = TestCa::new("some other CA");
    let bad = start_tls(stranger.server_identity()).await;
    let outcome = caller.call(&webhook(&bad.url), &body).await;
    assert!(!outcome.passed(), "{outcome:?}");
    assert_no_secret(&outcome);
    assert!(bad.seen.lock().unwrap().is_empty());

    // An https URL pointing at a server that does not speak TLS fails too.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!("https://{}/{SECRET}/hook", plain.local_addr().unwrap());
    let plain_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = plain.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let outcome = caller.call(&webhook(&plain_url), &body).await;
    plain_task.abort();
    assert!(!outcome.passed(), "{outcome:?}");
    assert_no_secret(&outcome);
}

//! The outbound client (`stickycanary::http`) against loopback servers, plain and TLS, with
//! CAs made at test time: whom it trusts (the CA in `SSL_CERT_FILE`, an extra PEM bundle,
//! nobody else unless told to skip verification), that a failure is one line naming what
//! went wrong and never the URL's userinfo, query or a header value, that redirects go
//! nowhere else, and that the timeout holds. Every exchange is bounded by the client's
//! timeout (5 s, or less where a test says), so no test can hang on a server.
//!
//! Own test binary: `SSL_CERT_FILE` is process-wide, set once before any client is built.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loopback::{ok, serve, Received, TestCa};
use serde_json::json;
use stickycanary::http::{Client, ClientConfig, Error};

const TOKEN: &str = "hdr-t0ken-4711";
const PASSWORD: &str = "pw-s3cret-99";
const QUERY_SECRET: &str = "q-s3cret-42";

/// The CA this process trusts through `SSL_CERT_FILE` (set on first use).
fn trusted_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new("stickycanary http test CA");
        let dir = tempfile::tempdir().unwrap().keep();
        let file = dir.join("ca.pem");
        std::fs::write(&file, ca.pem()).unwrap();
        // SAFETY: set once, before this test binary builds a client; tests that build
        // clients all call trusted_ca() first.
        unsafe { std::env::set_var("SSL_CERT_FILE", &file) };
        ca
    })
}

fn config() -> ClientConfig {
    trusted_ca();
    ClientConfig {
        timeout: Duration::from_secs(5),
        default_headers: vec![("Authorization".into(), format!("Bearer {TOKEN}"))],
        ..ClientConfig::default()
    }
}

fn client() -> Client {
    Client::new(&config()).unwrap()
}

/// A URL on `base` carrying a password and a query token, both secret.
fn secret_url(base: &str) -> String {
    let (scheme, host) = base.split_once("://").unwrap();
    format!("{scheme}://user:{PASSWORD}@{host}/api/v1/query?token={QUERY_SECRET}")
}

/// One line, without any of the secrets, in both Display and Debug.
fn assert_clean(error: &Error) -> String {
    let text = error.to_string();
    let debug = format!("{error:?}");
    assert!(!text.contains('\n'), "more than one line: {text:?}");
    for secret in [TOKEN, PASSWORD, QUERY_SECRET, "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret} in {text:?}");
        assert!(!debug.contains(secret), "{secret} in {debug:?}");
    }
    text
}

#[tokio::test]
async fn a_server_signed_by_the_trusted_ca_is_called_with_headers_and_body() {
    let server = serve(Some(trusted_ca().server_identity()), ok).await;
    let url = format!("{}/hook", server.base);
    let answer = client()
        .post_json(&url, &json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"ok");
    let received: Vec<Received> = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].json(), json!({"text": "hello"}));
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    assert_eq!(received[0].header("user-agent"), Some("stickycanary"));
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn userinfo_is_sent_as_basic_auth_and_never_in_the_request_line() {
    let server = serve(None, ok).await;
    let client = Client::new(&ClientConfig::default()).unwrap();
    client.get(&secret_url(&server.base)).await.unwrap();
    let received = server.received();
    assert_eq!(
        received[0].target,
        format!("/api/v1/query?token={QUERY_SECRET}")
    );
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"));
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
}

#[tokio::test]
async fn another_ca_fails_with_a_clear_line_and_nothing_is_sent() {
    let stranger = TestCa::new("some other CA");
    let server = serve(Some(stranger.server_identity()), ok).await;
    let error = client().get(&secret_url(&server.base)).await.unwrap_err();
    assert!(
        matches!(error, Error::CertificateNotTrusted { .. }),
        "{error:?}"
    );
    let text = assert_clean(&error);
    assert_eq!(
        text,
        "TLS: the server's certificate is not trusted (UnknownIssuer)"
    );
    assert_eq!(error.metric_label(), "certificate");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn an_extra_ca_bundle_is_trusted_besides_the_system_roots() {
    let private = TestCa::new("private Prometheus CA");
    let server = serve(Some(private.server_identity()), ok).await;
    let with_bundle = ClientConfig {
        extra_ca_pem: Some(private.pem().into_bytes()),
        ..config()
    };
    let answer = Client::new(&with_bundle).unwrap().get(&server.base).await;
    assert_eq!(answer.unwrap().status, 200);
    // The SSL_CERT_FILE CA stays trusted alongside the bundle.
    let usual = serve(Some(trusted_ca().server_identity()), ok).await;
    assert!(Client::new(&with_bundle)
        .unwrap()
        .get(&usual.base)
        .await
        .is_ok());

    let bad_bundle = ClientConfig {
        extra_ca_pem: Some(b"just some text".to_vec()),
        ..config()
    };
    let error = Client::new(&bad_bundle).unwrap_err();
    assert_eq!(error.to_string(), "CA bundle: no PEM certificate found");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let stranger = TestCa::new("self-signed somewhere");
    let server = serve(Some(stranger.server_identity()), ok).await;
    let insecure = ClientConfig {
        insecure_skip_verify: true,
        ..config()
    };
    let answer = Client::new(&insecure).unwrap().get(&server.base).await;
    assert_eq!(answer.unwrap().status, 200);
}

#[tokio::test]
async fn plain_http_on_an_https_url_fails_as_not_tls() {
    let server = loopback::plain_http_on_https().await;
    let error = client().get(&secret_url(&server.base)).await.unwrap_err();
    assert!(matches!(error, Error::NotTls { .. }), "{error:?}");
    let text = assert_clean(&error);
    assert!(text.contains("plain http on an https URL"), "{text}");
}

#[tokio::test]
async fn failures_name_their_kind_without_secrets() {
    // An answer that is not 2xx, even one echoing the request, gives only its status.
    let server = serve(None, |r: &Received| (503, vec![], format!("{r:?}"))).await;
    let answer = client().get(&secret_url(&server.base)).await.unwrap();
    let error = answer.error_for_status().unwrap_err();
    assert_eq!(assert_clean(&error), "HTTP 503");
    assert!(error.is_transient());

    // Nobody listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = client()
        .get(&secret_url(&format!("http://{closed}")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_clean(&error);

    // Not a URL at all: the text is not echoed.
    let error = client()
        .get(&format!("ftp://{PASSWORD}"))
        .await
        .unwrap_err();
    assert_eq!(assert_clean(&error), Error::InvalidUrl.to_string());
}

#[tokio::test]
async fn the_timeout_bounds_a_server_that_never_answers() {
    let server = loopback::silent().await;
    let short = ClientConfig {
        timeout: Duration::from_millis(300),
        ..config()
    };
    let started = Instant::now();
    let error = Client::new(&short)
        .unwrap()
        .get(&secret_url(&server.base))
        .await
        .unwrap_err();
    assert_eq!(error, Error::Timeout(Duration::from_millis(300)));
    assert_eq!(assert_clean(&error), "timed out after 300ms");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_host_only() {
    let elsewhere = serve(None, ok).await;
    let target = format!("{}/stolen", elsewhere.base);
    let server = serve(None, move |r: &Received| match r.target.as_str() {
        "/moved" => (
            307,
            vec![("location".into(), "/here".into())],
            String::new(),
        ),
        "/away" => (
            302,
            vec![("location".into(), target.clone())],
            String::new(),
        ),
        "/see-other" => (
            303,
            vec![("location".into(), "/here".into())],
            String::new(),
        ),
        "/loop" => (
            307,
            vec![("location".into(), "/loop".into())],
            String::new(),
        ),
        _ => (200, vec![], "here".into()),
    })
    .await;
    let client = client();
    let body = json!({"n": 1});

    // 307 on the same host: the POST and its body go to the new path.
    let answer = client
        .post_json(&format!("{}/moved", server.base), &body)
        .await
        .unwrap();
    assert_eq!((answer.status, &answer.body[..]), (200, &b"here"[..]));
    let last = server.received().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.target.as_str()),
        ("POST", "/here")
    );
    assert_eq!(last.json(), body);

    // To another host (another port is another origin): refused, nothing sent there.
    let error = client
        .get(&format!("{}/away", server.base))
        .await
        .unwrap_err();
    assert_eq!(error, Error::RedirectElsewhere { status: 302 });
    assert!(elsewhere.received().is_empty());

    // A POST is not silently turned into a GET.
    let error = client
        .post_json(&format!("{}/see-other", server.base), &body)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::RedirectRefused { status: 303, .. }),
        "{error:?}"
    );

    let error = client
        .get(&format!("{}/loop", server.base))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::TooManyRedirects(stickycanary::http::MAX_REDIRECTS)
    );
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_an_error() {
    let server = serve(None, |_: &Received| (200, vec![], "x".repeat(4096))).await;
    let small = ClientConfig {
        max_response_bytes: 1024,
        ..config()
    };
    let error = Client::new(&small)
        .unwrap()
        .get(&server.base)
        .await
        .unwrap_err();
    assert_eq!(error, Error::ResponseTooLarge(1024));
}

#[tokio::test]
async fn an_instant_query_goes_through_the_client_and_decodes_prometheus_answers() {
    use stickycanary::http::promql::{instant_query, QueryError};
    let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"version":"canary"},"value":[1765000000.0,"0.07"]}]}}"#;
    let answers = |r: &Received| -> loopback::Answer {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        match body.as_str() {
            "query=up" => (200, vec![], vector.to_string()),
            "query=bad%28" => (
                400,
                vec![],
                r#"{"status":"error","errorType":"bad_data","error":"parse error:\n unclosed"}"#
                    .into(),
            ),
            "query=down" => (503, vec![], "<html>maintenance</html>".into()),
            _ => (200, vec![], "not json".into()),
        }
    };
    // Behind a path, as with a SigV4 proxy for AMP (`/workspaces/<id>`), over trusted TLS.
    let server = serve(Some(trusted_ca().server_identity()), answers).await;
    let address = format!("{}/workspaces/ws-1/", server.base);
    let client = client();

    let result = instant_query(&client, &address, "up").await.unwrap();
    let samples = result.data().clone().into_vector().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].sample().value(), 0.07);
    assert_eq!(
        samples[0].metric().get("version").map(String::as_str),
        Some("canary")
    );
    let request = &server.received()[0];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/workspaces/ws-1/api/v1/query")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    assert_eq!(
        instant_query(&client, &address, "bad(").await.unwrap_err(),
        QueryError::Prometheus {
            kind: "bad_data".into(),
            message: "parse error: unclosed".into()
        }
    );
    assert_eq!(
        instant_query(&client, &address, "down").await.unwrap_err(),
        QueryError::Http(Error::Status(503))
    );
    assert_eq!(
        instant_query(&client, &address, "other").await.unwrap_err(),
        QueryError::Undecodable { status: 200 }
    );
}

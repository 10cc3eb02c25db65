//! Gate webhooks over https, against a loopback TLS server whose certificate a test CA,
//! made at test time, signed. The webhook client trusts the host's CA certificates
//! (rustls-native-certs, which reads `SSL_CERT_FILE` instead when it is set: the operator's
//! way to add a private CA, and this test's). It asserts that a server the trusted CA signed
//! is called and its 2xx passes with the payload delivered, and that a server signed by
//! another CA, or speaking plain http on an https URL, fails without the URL in the outcome.
//!
//! Own test binary: `SSL_CERT_FILE` is process-wide, set once before any client is built.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;

use std::sync::Once;

use loopback::{ok, serve, Received, TestCa};
use serde_json::{json, Value};
use stickycanary::crd::Webhook;
use stickycanary::engine::gates::CallOutcome;
use stickycanary::gates::webhook::Caller;

const SECRET: &str = "tls-s3cr3t-0815";

/// The webhook URL on a loopback server: the secret is in its path.
fn hook_url(base: &str) -> String {
    format!("{base}/{SECRET}/hook")
}

/// Makes the webhook client trust `ca` (once per process, before any `Caller`).
fn trust(ca: &TestCa) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let file = dir.join("ca.pem");
        std::fs::write(&file, ca.pem()).unwrap();
        // SAFETY: set once, before this test binary builds a client or starts a thread that
        // reads the environment.
        unsafe { std::env::set_var("SSL_CERT_FILE", &file) };
    });
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
    let good = serve(Some(trusted.server_identity()), ok).await;
    let outcome = caller.call(&webhook(&hook_url(&good.base)), &body).await;
    assert_eq!(outcome, CallOutcome::Passed { status: 200 });
    let delivered: Vec<Value> = good.received().iter().map(Received::json).collect();
    assert_eq!(delivered, vec![body.clone()]);

    // Signed by a CA nobody trusts: the client refuses the certificate, nothing is sent.
    let stranger = TestCa::new("some other CA");
    let bad = serve(Some(stranger.server_identity()), ok).await;
    let outcome = caller.call(&webhook(&hook_url(&bad.base)), &body).await;
    assert!(!outcome.passed(), "{outcome:?}");
    assert_no_secret(&outcome);
    assert!(bad.received().is_empty());

    // An https URL pointing at a server that does not speak TLS fails too.
    let plain = loopback::plain_http_on_https().await;
    let outcome = caller.call(&webhook(&hook_url(&plain.base)), &body).await;
    assert!(!outcome.passed(), "{outcome:?}");
    assert_no_secret(&outcome);
}

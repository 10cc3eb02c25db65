//! Gate webhooks over real HTTP: a loopback server answers each webhook type as scripted.
//! The test asserts the payload each type gets, that 2xx passes and anything else fails,
//! the timeout and the body-size cap, and that the URL (which carries a secret here) never
//! reaches a status, an Event or a log line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Router;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use stickycanary::crd::Webhook;
use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use stickycanary::engine::gates::CallOutcome;
use stickycanary::engine::{decide_gated, reasons, Action};
use stickycanary::gates::webhook::{Caller, Subject};
use stickycanary::observation::{MetricsObservation, Observations};
use support::engine::{observe, window_p99};

const SECRET: &str = "s3cr3t-token-4711";

/// What the server saw: path -> payloads.
type Seen = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

struct Server {
    base: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State((seen, base)): State<(Seen, String)>,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri
        .path()
        .trim_start_matches(&format!("/{SECRET}/"))
        .to_string();
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(payload);
    match path.as_str() {
        "confirm-rollout" => (
            StatusCode::FORBIDDEN,
            "outside the change window".to_string(),
        ),
        "echo" => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no capacity; retry {base}/{SECRET}/echo later"),
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, String::new())
        }
        "big" => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(2_000_000)),
        "redirect" => (StatusCode::FOUND, String::new()),
        "rollback" => (StatusCode::NOT_FOUND, String::new()),
        _ => (StatusCode::OK, "ok".to_string()),
    }
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let app = Router::new()
        .fallback(answer)
        .with_state((seen.clone(), base.clone()));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base, seen, task }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}/{SECRET}/{path}?token={SECRET}", self.base)
    }

    fn payloads(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

/// Log lines, captured for the "no URL in logs" assertion.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

fn spec(server: &Server) -> CanaryRolloutSpec {
    let yaml = format!(
        r#"
wasmPlugin: {{name: stickycanary}}
rolloutKey: checkout
canary: {{deployment: checkout-canary}}
prometheus: {{address: "http://127.0.0.1:9090"}}
stages:
  - {{weight: 10, duration: 1m}}
  - {{weight: 100}}
webhooks:
  - {{name: change-window, type: confirm-rollout, url: "{}", metadata: {{team: checkout}}}}
  - {{name: smoke, type: pre-rollout, url: "{}"}}
  - {{name: load-test, type: rollout, url: "{}", metadata: {{cmd: "hey -z 1m http://checkout-canary/"}}}}
  - {{name: capacity, type: confirm-traffic-increase, url: "{}"}}
  - {{name: checkout-approval, type: confirm-promotion, url: "{}"}}
  - {{name: kill-switch, type: rollback, url: "{}"}}
  - {{name: report, type: post-rollout, url: "{}"}}
  - {{name: chat, type: event, url: "{}"}}
"#,
        server.url("confirm-rollout"),
        server.url("pre-rollout"),
        server.url("rollout"),
        server.url("confirm-traffic-increase"),
        server.url("confirm-promotion"),
        server.url("rollback"),
        server.url("post-rollout"),
        server.url("event"),
    );
    let spec: CanaryRolloutSpec = serde_yaml::from_str(&yaml).unwrap();
    stickycanary::validate::validate_spec(&spec).unwrap();
    spec
}

fn subject() -> Subject {
    Subject {
        name: "checkout".to_string(),
        namespace: "shop".to_string(),
        rollout_key: "checkout".to_string(),
    }
}

fn healthy() -> Observations {
    let metrics = MetricsObservation::Window {
        canary: window_p99(1000.0, 1.0, 100.0),
        stable: window_p99(9000.0, 1.0, 100.0),
    };
    observe(metrics, None)
}

fn webhook(spec: &CanaryRolloutSpec, name: &str) -> Webhook {
    spec.webhooks
        .iter()
        .find(|w| w.name == name)
        .unwrap()
        .clone()
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(
        !text.contains(SECRET),
        "{what} shows the webhook URL's secret: {text}"
    );
    assert!(
        !text.contains("token="),
        "{what} shows the webhook URL: {text}"
    );
}

#[tokio::test]
async fn each_webhook_type_is_called_as_scripted_and_urls_never_leak() {
    let server = start().await;
    let (logs, _guard) = capture_logs();
    let mut spec = spec(&server);
    let caller = Caller::new();
    let t0: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
    let mut status = CanaryRolloutStatus::default();
    let mut all_text = String::new();

    // Tick 1 (Pending): confirm-rollout (403), pre-rollout and confirm-traffic-increase.
    let input = caller
        .before_decision(&subject(), &spec, &status, None, t0)
        .await;
    let mut called: Vec<&str> = input.calls.iter().map(|c| c.name.as_str()).collect();
    called.sort_unstable();
    assert_eq!(called, ["capacity", "change-window", "smoke"]);
    let decision = decide_gated(&spec, &status, t0, &healthy(), None, &input);
    assert_eq!(decision.new_weight(), None);
    let waiting = decision.status.gate.clone().unwrap();
    assert_eq!(
        waiting.describe(),
        "waiting for confirm-rollout (webhook change-window: 403)"
    );
    let events: Vec<String> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Event {
                reason, message, ..
            } => Some(format!("{reason}: {message}")),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1);
    assert!(events[0].starts_with(reasons::GATE_WAITING), "{events:?}");
    assert!(
        events[0].contains("answer 403: outside the change window"),
        "{events:?}"
    );
    caller
        .after_decision(&subject(), &spec, &status, &decision)
        .await;
    all_text.push_str(&format!(
        "{events:?} {}",
        serde_json::to_string(&decision.status).unwrap()
    ));

    // The payload: every field, the type, the metadata passed through.
    let payload = &server.payloads("confirm-rollout")[0];
    assert_eq!(
        payload,
        &json!({"name": "checkout", "namespace": "shop", "rolloutKey": "checkout", "phase": "Pending",
                "revision": null, "weight": 0.0, "cohort": null, "type": "confirm-rollout",
                "metadata": {"team": "checkout"}})
    );
    assert_eq!(server.payloads("pre-rollout")[0]["type"], "pre-rollout");
    assert_eq!(
        server.payloads("confirm-traffic-increase")[0]["type"],
        "confirm-traffic-increase"
    );
    // The Event of the wait went to the event webhook, with its message.
    let event = &server.payloads("event")[0];
    assert_eq!(event["type"], "event");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("waiting for confirm-rollout"),
        "{event}"
    );
    status = decision.status;

    // Tick 2: the change window is open now (the script changes): the run starts.
    spec.webhooks[0].url = Some(server.url("ok"));
    let t1 = t0 + k8s_openapi::jiff::SignedDuration::from_secs(30);
    let input = caller
        .before_decision(&subject(), &spec, &status, None, t1)
        .await;
    let decision = decide_gated(&spec, &status, t1, &healthy(), None, &input);
    assert_eq!(decision.new_weight(), Some(10.0));
    assert!(decision.event_reasons().contains(&reasons::GATE_OPENED));
    caller
        .after_decision(&subject(), &spec, &status, &decision)
        .await;
    status = decision.status;
    assert_eq!(status.phase, Phase::Progressing);

    // Tick 3, a minute on: rollout (load test) and rollback (404: no abort) every interval,
    // confirm-traffic-increase and confirm-promotion before the raise to 100%.
    let t2 = t0 + k8s_openapi::jiff::SignedDuration::from_secs(100);
    let input = caller
        .before_decision(&subject(), &spec, &status, None, t2)
        .await;
    let mut called: Vec<&str> = input.calls.iter().map(|c| c.name.as_str()).collect();
    called.sort_unstable();
    assert_eq!(
        called,
        ["capacity", "checkout-approval", "kill-switch", "load-test"]
    );
    assert_eq!(server.payloads("rollout")[0]["phase"], "Progressing");
    assert_eq!(server.payloads("rollout")[0]["weight"], 10.0);
    assert_eq!(
        server.payloads("rollout")[0]["metadata"]["cmd"],
        "hey -z 1m http://checkout-canary/"
    );
    let decision = decide_gated(&spec, &status, t2, &healthy(), None, &input);
    assert_eq!(
        decision.status.phase,
        Phase::Promoted,
        "{:?}",
        decision.status
    );
    caller
        .after_decision(&subject(), &spec, &status, &decision)
        .await;
    // post-rollout once, after the run ended.
    assert_eq!(server.payloads("post-rollout").len(), 1);
    assert_eq!(server.payloads("post-rollout")[0]["phase"], "Promoted");
    all_text.push_str(&format!("{:?}", decision.actions));
    all_text.push_str(&serde_json::to_string(&decision.status).unwrap());

    // A rollback webhook that answers 2xx aborts (checked in the engine tables); here it
    // answered 404 and the run went on.
    assert_eq!(server.payloads("rollback").len(), 1);

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("webhook failed") && logged.contains("change-window"),
        "{logged}"
    );
    assert_no_secret(&logged, "the log");
    assert_no_secret(&all_text, "an Event or the status");
}

#[tokio::test]
async fn timeouts_body_limits_redirects_and_refused_connections_fail_without_the_url() {
    let server = start().await;
    let (logs, _guard) = capture_logs();
    let spec = spec(&server);
    let caller = Caller::new();
    let mut gate = webhook(&spec, "checkout-approval");
    let body = json!({"type": "confirm-promotion"});
    let outcomes = |o: &CallOutcome| o.detail();

    // A slow answer: failed at the webhook's timeout, not the server's 5s.
    gate.url = Some(server.url("slow"));
    gate.timeout = "300ms".parse().unwrap();
    let started = Instant::now();
    let slow = caller.call(&gate, &body).await;
    let took = started.elapsed();
    assert_eq!(outcomes(&slow), "timeout after 300ms");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );

    // A 2 MB error page: the Event gets 200 bytes, and far less than 2 MB is read.
    gate.timeout = "5s".parse().unwrap();
    gate.url = Some(server.url("big"));
    let big = caller.call(&gate, &body).await;
    match &big {
        CallOutcome::Failed { summary, body } => {
            assert_eq!(summary, "500");
            assert_eq!(body.len(), 200);
        }
        other => panic!("{other:?}"),
    }

    // An answer that echoes the URL has it blanked out.
    gate.url = Some(server.url("echo"));
    let echo = caller.call(&gate, &body).await;
    assert!(
        outcomes(&echo).starts_with("503: no capacity; retry <url>"),
        "{}",
        outcomes(&echo)
    );
    assert_no_secret(&outcomes(&echo), "the answer excerpt");

    // Redirects are not followed: a 302 is a failure.
    gate.url = Some(server.url("redirect"));
    assert_eq!(outcomes(&caller.call(&gate, &body).await), "302");

    // Nothing listens: a connection failure, named as such.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    gate.url = Some(format!("http://127.0.0.1:{port}/{SECRET}?token={SECRET}"));
    assert_eq!(
        outcomes(&caller.call(&gate, &body).await),
        "connection failed"
    );

    // A 2xx passes.
    gate.url = Some(server.url("ok"));
    assert_eq!(
        caller.call(&gate, &body).await,
        CallOutcome::Passed { status: 200 }
    );

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_no_secret(&logged, "the log");
}

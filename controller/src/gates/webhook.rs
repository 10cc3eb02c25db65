//! Calling webhooks: one JSON payload, POSTed with a timeout and a cap on the answer read;
//! a 2xx passes, anything else (a status, a timeout, a refused connection) fails.
//!
//! A webhook URL may carry a token (`https://hooks.example/run?token=...`), so it never
//! appears in what this module returns or logs: failures are described by status code or
//! by kind (`timeout after 10s`, `connection failed`), never with the HTTP client's error text
//! (which names the URL), and an answer body that echoes the URL has it blanked out.

use std::sync::OnceLock;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::crd::{Webhook, WebhookType};
use crate::engine::gates::{due, CallOutcome, GateInput, WebhookCall};
use crate::engine::{Action, Decision};
use crate::observation::ReleaseObservation;

/// How much of a failing answer goes into the Event.
pub const BODY_EXCERPT_BYTES: usize = 200;
/// How much of an answer is read at most; the rest is never received.
pub const BODY_READ_LIMIT: usize = 4096;

/// Which rollout a payload is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub namespace: String,
    pub rollout_key: String,
}

/// The one payload every webhook type gets (`message` only for `event`).
pub fn payload(
    subject: &Subject,
    status: &CanaryRolloutStatus,
    revision: Option<&str>,
    webhook: &Webhook,
    message: Option<&str>,
) -> Value {
    let mut body = json!({
        "name": subject.name,
        "namespace": subject.namespace,
        "rolloutKey": subject.rollout_key,
        "phase": status.phase.as_str(),
        "revision": revision.or(status.canary_revision.as_deref()),
        "weight": status.weight,
        "cohort": status.salt,
        "type": webhook.kind.as_str(),
        "metadata": webhook.metadata,
    });
    if let (Some(message), Some(map)) = (message, body.as_object_mut()) {
        map.insert("message".to_string(), Value::String(message.to_string()));
    }
    body
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// The HTTP client for webhooks (http and https). It never follows a redirect: a 3xx
/// fails, and a redirect could carry the payload somewhere the spec does not name.
pub struct Caller {
    client: HttpsClient,
}

impl Caller {
    pub fn new() -> Caller {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            Err(e) => {
                // No CA certificates on this host: https webhooks fail (certificate), http works.
                warn!(error = %e, "no CA certificates found; https webhooks will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|config| {
                        config
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(config) => {
                        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                    }
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                }
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Caller { client }
    }

    /// POSTs `body` to the webhook and judges the answer.
    pub async fn call(&self, webhook: &Webhook, body: &Value) -> CallOutcome {
        let failed = |summary: &str| CallOutcome::Failed {
            summary: summary.to_string(),
            body: String::new(),
        };
        let Some(url) = &webhook.url else {
            return failed("no URL");
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let request = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "stickycanary")
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes)));
        let Ok(request) = request else {
            return failed("invalid URL");
        };
        let timeout = webhook.timeout.as_std().max(Duration::from_millis(1));
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let text = read_limited(response.into_body()).await;
            Ok::<_, hyper_util::client::legacy::Error>((status, text))
        };
        let (status, text) = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return failed(&format!("timeout after {}", webhook.timeout)),
            Ok(Err(e)) if e.is_connect() => return failed("connection failed"),
            Ok(Err(_)) => return failed("request failed"),
            Ok(Ok(answer)) => answer,
        };
        if status.is_success() {
            CallOutcome::Passed {
                status: status.as_u16(),
            }
        } else {
            CallOutcome::Failed {
                summary: status.as_u16().to_string(),
                body: excerpt(&text, url),
            }
        }
    }

    /// Calls the webhooks due before this tick (at once, each within its own timeout).
    pub async fn before_decision(
        &self,
        subject: &Subject,
        spec: &CanaryRolloutSpec,
        status: &CanaryRolloutStatus,
        release: Option<&ReleaseObservation>,
        now: jiff::Timestamp,
    ) -> GateInput {
        let revision = release.map(|release| release.canary_revision.as_str());
        let calls = due(spec, status, release, now)
            .into_iter()
            .map(|webhook| async move {
                let body = payload(subject, status, revision, webhook, None);
                let outcome = self.call(webhook, &body).await;
                log_outcome(subject, webhook, &outcome);
                WebhookCall {
                    name: webhook.name.clone(),
                    kind: webhook.kind,
                    outcome,
                }
            });
        GateInput {
            calls: join_all(calls).await,
            // The front end knows where the rollout lives (namespace or status file).
            approve_target: None,
        }
    }

    /// After a decision was carried out: its Events to the `event` webhooks, and the
    /// `post-rollout` webhooks when the run just ended. Best effort, logged only.
    pub async fn after_decision(
        &self,
        subject: &Subject,
        spec: &CanaryRolloutSpec,
        old: &CanaryRolloutStatus,
        decision: &Decision,
    ) {
        let status = &decision.status;
        let mut calls = Vec::new();
        for action in &decision.actions {
            let Action::Event {
                reason, message, ..
            } = action
            else {
                continue;
            };
            let text = format!("{reason}: {message}");
            for webhook in of_kind(spec, WebhookType::Event) {
                calls.push((
                    webhook,
                    payload(subject, status, None, webhook, Some(&text)),
                ));
            }
        }
        if !ended(old.phase) && ended(status.phase) {
            for webhook in of_kind(spec, WebhookType::PostRollout) {
                calls.push((webhook, payload(subject, status, None, webhook, None)));
            }
        }
        join_all(calls.iter().map(|(webhook, body)| async move {
            let outcome = self.call(webhook, body).await;
            log_outcome(subject, webhook, &outcome);
        }))
        .await;
    }
}

impl Default for Caller {
    fn default() -> Self {
        Caller::new()
    }
}

/// One client for the process (connections are reused across ticks and rollouts).
pub fn shared() -> &'static Caller {
    static CALLER: OnceLock<Caller> = OnceLock::new();
    CALLER.get_or_init(Caller::new)
}

fn of_kind(spec: &CanaryRolloutSpec, kind: WebhookType) -> impl Iterator<Item = &Webhook> {
    spec.webhooks
        .iter()
        .filter(move |webhook| webhook.kind == kind && webhook.url.is_some())
}

/// A run's end: the phases `post-rollout` follows.
fn ended(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Succeeded | Phase::Promoted | Phase::RolledBack | Phase::PromotionFailed
    )
}

fn log_outcome(subject: &Subject, webhook: &Webhook, outcome: &CallOutcome) {
    match outcome {
        CallOutcome::Passed { status } => info!(
            rollout = %subject.name, webhook = %webhook.name, kind = webhook.kind.as_str(), status,
            "webhook passed"
        ),
        CallOutcome::Failed { summary, .. } => warn!(
            rollout = %subject.name, webhook = %webhook.name, kind = webhook.kind.as_str(),
            outcome = %summary, "webhook failed"
        ),
    }
}

/// Reads at most [`BODY_READ_LIMIT`] bytes of the answer; the rest is never received.
async fn read_limited(mut body: hyper::body::Incoming) -> Vec<u8> {
    use http_body_util::BodyExt;
    let mut bytes = Vec::new();
    while bytes.len() < BODY_READ_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(BODY_READ_LIMIT);
    bytes
}

/// The parts of a URL that may be secret, longest first: the URL, the URL without its
/// query, its path, its query and its password.
fn secret_parts(url: &str) -> Vec<String> {
    let mut parts = vec![url.to_string()];
    if let Some((base, query)) = url.split_once('?') {
        parts.push(base.to_string());
        parts.push(query.to_string());
    }
    if let Ok(parsed) = reqwest::Url::parse(url) {
        parts.push(parsed.path().to_string());
        parts.extend(parsed.password().map(str::to_string));
    }
    // A bare `/` or a one-letter query would blank out half the answer for nothing.
    parts.retain(|part| part.len() > 3);
    parts.sort_by_key(|part| std::cmp::Reverse(part.len()));
    parts
}

/// The first [`BODY_EXCERPT_BYTES`] of an answer as one line, with the URL (and its path,
/// query and password, each of which may be the secret) blanked out.
pub fn excerpt(body: &[u8], url: &str) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for part in secret_parts(url) {
        text = text.replace(&part, "<url>");
    }
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > BODY_EXCERPT_BYTES {
        let mut end = BODY_EXCERPT_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line.trim().to_string()
}

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

/// The HTTP client for webhooks: the one outbound stack ([`crate::http::Client`]: the
/// host's CA certificates and `SSL_CERT_FILE`, rustls on ring). A POST follows no 301/302/303
/// and no redirect to another host (the 3xx fails: it could carry the payload somewhere the
/// spec does not name), and at most [`BODY_READ_LIMIT`] bytes of an answer are read.
pub struct Caller {
    client: Result<crate::http::Client, crate::http::Error>,
}

/// The longest any one webhook call may take (each has its own `timeout` below this).
const LONGEST_CALL: Duration = Duration::from_secs(600);

impl Caller {
    pub fn new() -> Caller {
        let client = crate::http::Client::new(&crate::http::ClientConfig {
            timeout: LONGEST_CALL,
            max_response_bytes: BODY_READ_LIMIT,
            truncate_response: true,
            ..crate::http::ClientConfig::default()
        });
        if let Err(e) = &client {
            warn!(error = %e, "no HTTP client for webhooks; every webhook call fails");
        }
        Caller { client }
    }

    /// POSTs `body` to the webhook and judges the answer.
    pub async fn call(&self, webhook: &Webhook, body: &Value) -> CallOutcome {
        use crate::http::Error;
        let failed = |summary: &str| CallOutcome::Failed {
            summary: summary.to_string(),
            body: String::new(),
        };
        let Some(url) = &webhook.url else {
            return failed("no URL");
        };
        let client = match &self.client {
            Ok(client) => client,
            Err(e) => return failed(&e.to_string()),
        };
        let timeout = webhook.timeout.as_std().max(Duration::from_millis(1));
        let answer = match tokio::time::timeout(timeout, client.post_json(url, body)).await {
            Err(_) | Ok(Err(Error::Timeout(_))) => {
                return failed(&format!("timeout after {}", webhook.timeout))
            }
            Ok(Err(Error::InvalidUrl)) => return failed("invalid URL"),
            Ok(Err(Error::Connect { .. })) => return failed("connection failed"),
            Ok(Err(
                Error::RedirectElsewhere { status } | Error::RedirectRefused { status, .. },
            )) => return failed(&status.to_string()),
            Ok(Err(
                e
                @ (Error::CertificateNotTrusted { .. } | Error::NotTls { .. } | Error::Tls { .. }),
            )) => return failed(&e.to_string()),
            Ok(Err(_)) => return failed("request failed"),
            Ok(Ok(answer)) => answer,
        };
        if (200..300).contains(&answer.status) {
            CallOutcome::Passed {
                status: answer.status,
            }
        } else {
            CallOutcome::Failed {
                summary: answer.status.to_string(),
                body: excerpt(&answer.body, url),
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

//! The announcing end of a tick, after the status is saved: Events and notifications, in the
//! decision's order, best effort.

use serde_json::{json, Value};
use tracing::warn;

use super::front::FrontEnd;
use crate::engine::{Action, Decision};
use crate::gates::webhook::Subject;

/// The `notification.webhook` payload, the same from the controller and from local mode:
/// `text` is `<Reason>: <message>`.
pub fn notification_body(subject: &Subject, text: &str) -> Value {
    json!({
        "rollout": subject.name,
        "namespace": subject.namespace,
        "key": subject.rollout_key,
        "text": text,
    })
}

/// The notification webhook's client: https trusting the host's CA certificates
/// (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set), 5 seconds per call, no proxy.
pub fn notification_client() -> Result<crate::http::Client, crate::http::Error> {
    crate::http::Client::new(&crate::http::ClientConfig {
        timeout: std::time::Duration::from_secs(5),
        ..crate::http::ClientConfig::default()
    })
}

/// Raises the decision's Events and posts its notifications, in order.
pub async fn announce<F: FrontEnd>(front: &F, decision: &Decision) {
    for action in &decision.actions {
        match action {
            Action::Event {
                reason,
                message,
                warning,
            } => front.event(reason, message, *warning).await,
            Action::Notify(text) => notify(front, text).await,
            _ => {}
        }
    }
}

async fn notify<F: FrontEnd>(front: &F, text: &str) {
    let spec = front.spec();
    let (Some(client), Some(notification)) = (front.notification_client(), &spec.notification)
    else {
        return;
    };
    let body = notification_body(front.subject(), text);
    // The error never holds the URL: for chat services it is the credential.
    let sent = client.post_json(&notification.webhook, &body).await;
    if let Err(e) = sent.and_then(crate::http::Response::error_for_status) {
        warn!(error = %e, "notification webhook failed");
    }
}

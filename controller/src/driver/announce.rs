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
    if let Err(e) = client.post(&notification.webhook).json(&body).send().await {
        warn!(error = %e.without_url(), "notification webhook failed");
    }
}

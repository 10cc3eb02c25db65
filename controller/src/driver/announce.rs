//! The announcing end of a tick, after the status is saved: Events, notifications and alerts,
//! in the decision's order, best effort. Alerts are handed to spawned tasks
//! ([`crate::alerts::Alerting::send`]): a slow or failing provider never delays the tick.

use serde_json::{json, Value};
use tracing::warn;

use super::front::FrontEnd;
use crate::alerts::message::abort_command;
use crate::alerts::AlertMessage;
use crate::crd::CanaryRolloutStatus;
use crate::engine::approve::{ApproveTarget, Place};
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

/// Raises the decision's Events and posts its notifications, in order; each Event also goes,
/// as an alert, to the `spec.alerts` providers that want its severity (in the background).
pub async fn announce<F: FrontEnd>(front: &F, decision: &Decision) {
    let spec = front.spec();
    let alerting = match spec.alerts.is_empty() {
        true => None,
        false => front.alerting(),
    };
    let target = front.approve_target();
    for action in &decision.actions {
        match action {
            Action::Event {
                reason,
                message,
                warning,
            } => {
                front.event(reason, message, *warning).await;
                if let Some(alerting) = &alerting {
                    let alert =
                        alert_message(front.subject(), &target, &decision.status, reason, message);
                    // Dropped handles: the deliveries go on without the tick.
                    drop(alerting.send(&spec.alerts, &alert));
                }
            }
            Action::Notify(text) => notify(front, text).await,
            _ => {}
        }
    }
}

/// The alert for one Event, with the command that acts on it as this front end's user runs
/// it (`-n <namespace>` in the cluster, `--status-file <path>` in local mode).
pub fn alert_message(
    subject: &Subject,
    target: &ApproveTarget,
    status: &CanaryRolloutStatus,
    reason: &str,
    text: &str,
) -> AlertMessage {
    let approve = target.hint(status);
    let mut alert = AlertMessage::from_event(
        &subject.name,
        &subject.namespace,
        status,
        reason,
        text,
        approve.as_deref(),
    );
    if let Place::StatusFile(path) = &target.place {
        let in_cluster = abort_command(&subject.name, &subject.namespace);
        if alert.command.as_deref() == Some(in_cluster.as_str()) {
            alert.command = Some(format!(
                "stickycanary abort {} --status-file {}",
                subject.name,
                path.display()
            ));
        }
    }
    alert
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

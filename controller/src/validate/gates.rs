//! `spec.webhooks` and `spec.schedule` checks the schema cannot express (run by
//! `stickycanary validate`, local mode and the controller through `validate_spec`).
//! A webhook URL is never echoed: it may carry a token.

use std::collections::BTreeSet;

use stickycanary_filter::config::validate_label;

use super::ValidationError;
use crate::crd::{Schedule, Webhook, WebhookType, MAX_WEBHOOK_TIMEOUT};
use crate::engine::schedule;

/// The most metadata a webhook may carry (it goes into every payload).
pub const MAX_METADATA_BYTES: usize = 4096;

fn error(field: String, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        message: message.into(),
    }
}

pub fn webhook_errors(webhooks: &[Webhook], errors: &mut Vec<ValidationError>) {
    let mut names = BTreeSet::new();
    for (index, webhook) in webhooks.iter().enumerate() {
        let field = |name: &str| format!("spec.webhooks[{index}].{name}");
        if let Err(message) = validate_label(&webhook.name) {
            errors.push(error(field("name"), message));
        }
        if !names.insert(webhook.name.as_str()) {
            errors.push(error(
                field("name"),
                format!("{:?} is used twice", webhook.name),
            ));
        }
        match (&webhook.url, webhook.approval) {
            (Some(_), Some(_)) => errors.push(error(
                field("approval"),
                "set either url or approval: manual, not both",
            )),
            (None, None) => errors.push(error(field("url"), "required (or approval: manual on a confirm-* gate)")),
            (None, Some(_)) if !webhook.kind.is_gate() => errors.push(error(
                field("approval"),
                format!(
                    "manual approval is for confirm-rollout, confirm-traffic-increase and confirm-promotion, not {}",
                    webhook.kind
                ),
            )),
            (Some(url), None) => {
                if let Err(why) = check_url(url) {
                    errors.push(error(
                        field("url"),
                        format!("{why} (the value is not shown: it may be a secret)"),
                    ));
                }
            }
            _ => {}
        }
        if webhook.timeout.is_zero() || webhook.timeout > MAX_WEBHOOK_TIMEOUT {
            errors.push(error(
                field("timeout"),
                format!(
                    "must be more than 0s and at most {MAX_WEBHOOK_TIMEOUT} (got {})",
                    webhook.timeout
                ),
            ));
        }
        if webhook.for_duration.is_some()
            && !matches!(webhook.kind, WebhookType::Rollout | WebhookType::PreRollout)
        {
            errors.push(error(
                field("for"),
                format!(
                    "only rollout and pre-rollout webhooks are checks with a `for`, not {}",
                    webhook.kind
                ),
            ));
        }
        let size: usize = webhook
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if size > MAX_METADATA_BYTES {
            errors.push(error(
                field("metadata"),
                format!("{size} bytes; at most {MAX_METADATA_BYTES}"),
            ));
        }
    }
}

/// An http(s) URL with a host. The reason never quotes the URL.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry user:password@ (put a token in the path or query)");
    }
    Ok(())
}

pub fn schedule_errors(schedule: Option<&Schedule>, errors: &mut Vec<ValidationError>) {
    let Some(schedule) = schedule else {
        return;
    };
    for (index, window) in schedule.windows.iter().enumerate() {
        if let Err(e) = schedule::parse(window) {
            errors.push(error(
                format!("spec.schedule.windows[{index}]"),
                e.to_string(),
            ));
        }
    }
}

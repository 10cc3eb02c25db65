//! Each provider type's request body, following the service's documented incoming-webhook
//! format:
//!
//! - **slack**: Block Kit (`header`, `section` text and fields, an `actions` button for the
//!   dashboard) with `text` as the notification fallback; `channel` and `username` only when
//!   set (Slack honours them for legacy webhooks; an app's webhook posts where it was made).
//!   `&`, `<` and `>` are escaped: Slack reads `<!channel>` as a mention.
//! - **msteams**: an **Adaptive Card** (1.4) in a `message` attachment, the format of a
//!   Teams **Workflows** webhook ("When a Teams webhook request is received"). Not the
//!   classic connector's MessageCard: Microsoft 365 connectors are retired, and Workflows
//!   accept Adaptive Cards only.
//! - **discord**: one embed (title, description, colour by severity, inline fields, the
//!   dashboard as the title's link), `allowed_mentions` empty so no text pings anyone.
//! - **googlechat**: a `cardsV2` card (header, a text paragraph, decorated-text facts, a
//!   dashboard button); its text is HTML-escaped.
//!
//! Texts are cut to each service's documented limits (Slack: a header 150 characters, a
//! section 3000, a field 2000; Discord: a title 256, a description 4096, a field 1024), so a
//! long name or message never gets the whole alert refused.
//! - **webhook**: today's notification JSON, unchanged: `{"rollout", "namespace", "text"}`
//!   with `text` = `<Reason>: <message>`.

use serde_json::{json, Value};

use super::message::AlertMessage;
use crate::crd::alerts::{AlertProviderSpec, ProviderType, Severity};

/// The JSON body `provider` gets for `message`.
pub fn render(provider: &AlertProviderSpec, message: &AlertMessage) -> Value {
    match provider.kind {
        ProviderType::Slack => slack(provider, message),
        ProviderType::Msteams => teams(message),
        ProviderType::Discord => discord(provider, message),
        ProviderType::Googlechat => google_chat(message),
        ProviderType::Webhook => json!({
            "rollout": message.rollout,
            "namespace": message.namespace,
            "text": message.line(),
        }),
    }
}

fn slack(provider: &AlertProviderSpec, message: &AlertMessage) -> Value {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let fields: Vec<Value> = message
        .facts()
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": cut(&format!("*{name}*\n{}", escape(&value)), 2000)})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&message.title(), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&escape(&message.text), 3000)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(command) = &message.command {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("`{}`", escape(command))}}));
    }
    if let Some(link) = &message.dashboard {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Dashboard"}, "url": link}
        ]}));
    }
    let mut body = json!({
        "text": format!("{} {}", message.title(), escape(&message.text)),
        "blocks": blocks,
    });
    for (key, value) in [
        ("channel", &provider.channel),
        ("username", &provider.username),
    ] {
        if let (Some(value), Some(map)) = (value, body.as_object_mut()) {
            map.insert(key.to_string(), Value::String(value.clone()));
        }
    }
    body
}

fn teams(message: &AlertMessage) -> Value {
    let colour = match message.severity {
        Severity::Error => "Attention",
        Severity::Warn => "Warning",
        Severity::Info => "Accent",
    };
    let facts: Vec<Value> = message
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": message.title(), "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true}),
        json!({"type": "TextBlock", "text": message.text, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(command) = &message.command {
        body.push(
            json!({"type": "TextBlock", "text": command, "fontType": "Monospace", "wrap": true}),
        );
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let (Some(link), Some(map)) = (&message.dashboard, card.as_object_mut()) {
        map.insert(
            "actions".to_string(),
            json!([{"type": "Action.OpenUrl", "title": "Dashboard", "url": link}]),
        );
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

fn discord(provider: &AlertProviderSpec, message: &AlertMessage) -> Value {
    let colour = match message.severity {
        Severity::Error => 0xE7_4C_3C,
        Severity::Warn => 0xE6_7E_22,
        Severity::Info => 0x34_98_DB,
    };
    let mut fields: Vec<Value> = message
        .facts()
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": cut(&value, 1024), "inline": true}))
        .collect();
    if let Some(command) = &message.command {
        fields.push(json!({"name": "Command", "value": format!("`{command}`"), "inline": false}));
    }
    let mut embed = json!({
        "title": cut(&message.title(), 256),
        "description": cut(&message.text, 4096),
        "color": colour,
        "fields": fields,
    });
    if let (Some(link), Some(map)) = (&message.dashboard, embed.as_object_mut()) {
        map.insert("url".to_string(), Value::String(link.clone()));
    }
    let mut body = json!({"embeds": [embed], "allowed_mentions": {"parse": []}});
    if let (Some(username), Some(map)) = (&provider.username, body.as_object_mut()) {
        map.insert("username".to_string(), Value::String(username.clone()));
    }
    body
}

fn google_chat(message: &AlertMessage) -> Value {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut widgets = vec![json!({"textParagraph": {"text": escape(&message.text)}})];
    widgets.extend(message.facts().into_iter().map(
        |(label, value)| json!({"decoratedText": {"topLabel": label, "text": escape(&value)}}),
    ));
    if let Some(command) = &message.command {
        widgets.push(json!({"decoratedText": {"topLabel": "Command", "text": format!("<code>{}</code>", escape(command))}}));
    }
    if let Some(link) = &message.dashboard {
        widgets.push(json!({"buttonList": {"buttons": [
            {"text": "Dashboard", "onClick": {"openLink": {"url": link}}}
        ]}}));
    }
    json!({
        "cardsV2": [{
            "cardId": "stickycanary",
            "card": {
                "header": {"title": message.title(), "subtitle": format!("{}% on the canary, phase {}", message.weight, message.phase)},
                "sections": [{"widgets": widgets}],
            },
        }],
    })
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_to_the_services_limits() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        let message = AlertMessage {
            reason: "RollingBack".into(),
            severity: Severity::Error,
            // Object names may be up to 253 characters.
            rollout: "r".repeat(200),
            namespace: "n".repeat(63),
            revision: None,
            phase: "RolledBack".into(),
            weight: 0.0,
            text: "x".repeat(5000),
            breach: None,
            command: None,
            dashboard: None,
        };
        let spec: AlertProviderSpec =
            serde_json::from_value(json!({"type": "slack", "secretRef": {"name": "s"}})).unwrap();
        let slack = render(&spec, &message);
        let header = slack["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
        let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), 3000);
        let discord = render(
            &AlertProviderSpec {
                kind: ProviderType::Discord,
                ..spec
            },
            &message,
        );
        assert_eq!(
            discord["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            4096
        );
    }
}

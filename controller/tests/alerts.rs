//! Alert providers against loopback servers: each provider type's request, as its
//! service's incoming webhook receives it (the exact JSON), delivery retries and their
//! bounds, the caller never waiting, and the address (a secret) never in an outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loopback::{ok, serve, Received};
use serde_json::{json, Value};
use stickycanary::alerts::deliver::{self, Outcome, OutcomeSink, Provider, RetryPolicy};
use stickycanary::alerts::dispatch::{Alerting, Resolve, Resolving};
use stickycanary::alerts::message::{abort_command, dashboard_link};
use stickycanary::alerts::resolve::ResolveError;
use stickycanary::alerts::{AlertMessage, AlertProviderSpec, Breach, Severity};
use stickycanary::alerts::{ProviderRef, Unresolved};
use stickycanary::http::Error;

/// The secret part of every provider address here (as in a Slack webhook URL).
const ADDRESS_SECRET: &str = "T0001/B0002/XXXXsecretXXXX";

fn provider_spec(kind: &str) -> AlertProviderSpec {
    let mut spec = json!({"type": kind, "secretRef": {"name": "alerts-webhook"}, "timeout": "2s"});
    if kind == "slack" {
        spec["channel"] = json!("#deploys");
    }
    if kind == "slack" || kind == "discord" {
        spec["username"] = json!("stickycanary");
    }
    serde_json::from_value(spec).unwrap()
}

fn provider(kind: &str, base: &str) -> Arc<Provider> {
    let address = format!("{base}/hooks/{ADDRESS_SECRET}");
    Arc::new(Provider::new("platform", "team-chat", provider_spec(kind), address, None).unwrap())
}

/// A rollback after a breach, with a dashboard link.
fn rollback() -> AlertMessage {
    AlertMessage {
        reason: "RollingBack".into(),
        severity: Severity::Error,
        rollout: "checkout".into(),
        namespace: "shop".into(),
        revision: Some("v2".into()),
        phase: "RolledBack".into(),
        weight: 0.0,
        text: "rolling back to 0% (error-rate): canary <5xx> 7% & rising".into(),
        breach: Some(Breach {
            check: "error-rate".into(),
            value: 0.07,
            threshold: 0.05,
        }),
        command: None,
        dashboard: Some(dashboard_link(
            "https://grafana.example/d/sc?var-namespace={namespace}&var-rollout={rollout}",
            "shop",
            "checkout",
            Some("v2"),
        )),
    }
}

const DASHBOARD: &str = "https://grafana.example/d/sc?var-namespace=shop&var-rollout=checkout";

/// What each service's webhook must receive for [`rollback`].
fn expected_rollback(kind: &str) -> Value {
    let facts = [
        ("Rollout", "checkout"),
        ("Namespace", "shop"),
        ("Revision", "v2"),
        ("Phase", "RolledBack"),
        ("Weight", "0%"),
        ("Check", "error-rate: 0.07 (threshold 0.05)"),
    ];
    let title = "[ERROR] shop/checkout: RollingBack";
    match kind {
        "slack" => json!({
            "text": "[ERROR] shop/checkout: RollingBack rolling back to 0% (error-rate): canary &lt;5xx&gt; 7% &amp; rising",
            "channel": "#deploys",
            "username": "stickycanary",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "rolling back to 0% (error-rate): canary &lt;5xx&gt; 7% &amp; rising"}},
                {"type": "section", "fields": facts.iter().map(|(n, v)| json!({"type": "mrkdwn", "text": format!("*{n}*\n{v}")})).collect::<Vec<_>>()},
                {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Dashboard"}, "url": DASHBOARD}]},
            ],
        }),
        "msteams" => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "color": "Attention", "wrap": true},
                        {"type": "TextBlock", "text": "rolling back to 0% (error-rate): canary <5xx> 7% & rising", "wrap": true},
                        {"type": "FactSet", "facts": facts.iter().map(|(n, v)| json!({"title": n, "value": v})).collect::<Vec<_>>()},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Dashboard", "url": DASHBOARD}],
                },
            }],
        }),
        "discord" => json!({
            "username": "stickycanary",
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": title,
                "description": "rolling back to 0% (error-rate): canary <5xx> 7% & rising",
                "color": 0xE74C3C,
                "url": DASHBOARD,
                "fields": facts.iter().map(|(n, v)| json!({"name": n, "value": v, "inline": true})).collect::<Vec<_>>(),
            }],
        }),
        "googlechat" => {
            let mut widgets = vec![
                json!({"textParagraph": {"text": "rolling back to 0% (error-rate): canary &lt;5xx&gt; 7% &amp; rising"}}),
            ];
            widgets.extend(
                facts
                    .iter()
                    .map(|(n, v)| json!({"decoratedText": {"topLabel": n, "text": v}})),
            );
            widgets.push(json!({"buttonList": {"buttons": [{"text": "Dashboard", "onClick": {"openLink": {"url": DASHBOARD}}}]}}));
            json!({"cardsV2": [{
                "cardId": "stickycanary",
                "card": {
                    "header": {"title": title, "subtitle": "0% on the canary, phase RolledBack"},
                    "sections": [{"widgets": widgets}],
                },
            }]})
        }
        // Today's notification webhook JSON, unchanged.
        "webhook" => json!({
            "rollout": "checkout",
            "namespace": "shop",
            "text": "RollingBack: rolling back to 0% (error-rate): canary <5xx> 7% & rising",
        }),
        other => panic!("no expectation for {other}"),
    }
}

/// Outcomes (and unresolved providers), as the controller's metric and Event hook would get
/// them.
#[derive(Default)]
struct Recorded(Mutex<Vec<Outcome>>, Mutex<Vec<Unresolved>>);

impl OutcomeSink for Recorded {
    fn record(&self, outcome: Outcome) {
        self.0.lock().unwrap().push(outcome);
    }

    fn unresolved(&self, unresolved: Unresolved) {
        self.1.lock().unwrap().push(unresolved);
    }
}

/// Providers by `namespace/name`, recording every lookup.
struct Lookup {
    providers: Vec<(String, Arc<Provider>)>,
    lookups: Mutex<Vec<String>>,
}

impl Resolve for Lookup {
    fn resolve<'a>(
        &'a self,
        rollout_namespace: &'a str,
        reference: &'a ProviderRef,
    ) -> Resolving<'a> {
        let key = format!(
            "{}/{}",
            reference.namespace.as_deref().unwrap_or(rollout_namespace),
            reference.name
        );
        self.lookups.lock().unwrap().push(key.clone());
        let found = self
            .providers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.clone());
        let (namespace, name) = key.split_once('/').unwrap();
        let missing = ResolveError::ProviderNotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        Box::pin(async move { found.ok_or(missing) })
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        total: Duration::from_secs(5),
    }
}

const TYPES: [&str; 5] = ["slack", "msteams", "discord", "googlechat", "webhook"];

#[tokio::test]
async fn each_provider_type_posts_its_services_documented_json() {
    for kind in TYPES {
        let server = serve(None, ok).await;
        let outcome =
            deliver::deliver(&provider(kind, &server.base), &rollback(), fast_retries()).await;
        assert_eq!(outcome.result, Ok(()), "{kind}");
        assert_eq!(outcome.attempts, 1);
        let received: Vec<Received> = server.received();
        assert_eq!(received.len(), 1, "{kind}");
        assert_eq!(received[0].method, "POST");
        assert_eq!(received[0].target, format!("/hooks/{ADDRESS_SECRET}"));
        assert_eq!(received[0].header("content-type"), Some("application/json"));
        assert_eq!(received[0].json(), expected_rollback(kind), "{kind}");
    }
}

#[tokio::test]
async fn the_command_to_run_is_in_every_chat_format() {
    let command = abort_command("checkout", "shop");
    let paused = AlertMessage {
        reason: "Paused".into(),
        severity: Severity::Warn,
        phase: "Paused".into(),
        weight: 25.0,
        text: "holding at 25%".into(),
        breach: None,
        dashboard: None,
        command: Some(command.clone()),
        ..rollback()
    };
    let expected_fragment = |kind: &str| match kind {
        "slack" => {
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("`{command}`")}})
        }
        "msteams" => {
            json!({"type": "TextBlock", "text": command, "fontType": "Monospace", "wrap": true})
        }
        "discord" => json!({"name": "Command", "value": format!("`{command}`"), "inline": false}),
        "googlechat" => {
            json!({"decoratedText": {"topLabel": "Command", "text": format!("<code>{command}</code>")}})
        }
        _ => Value::Null,
    };
    for kind in ["slack", "msteams", "discord", "googlechat"] {
        let body = stickycanary::alerts::payload::render(&provider_spec(kind), &paused);
        let last = match kind {
            "slack" => body["blocks"].as_array().unwrap().last().cloned(),
            "msteams" => body["attachments"][0]["content"]["body"]
                .as_array()
                .unwrap()
                .last()
                .cloned(),
            "discord" => body["embeds"][0]["fields"]
                .as_array()
                .unwrap()
                .last()
                .cloned(),
            _ => body["cardsV2"][0]["card"]["sections"][0]["widgets"]
                .as_array()
                .unwrap()
                .last()
                .cloned(),
        };
        assert_eq!(last.unwrap(), expected_fragment(kind), "{kind}");
        assert!(
            !body.to_string().contains("Dashboard"),
            "{kind}: no link without a template"
        );
    }
}

#[tokio::test]
async fn a_failing_provider_is_retried_then_given_up() {
    // (That a delivery never holds up the tick is `alerts_api.rs`'s
    // a_failing_provider_raises_alert_failed_and_is_counted_without_holding_up_the_tick.)
    let server = serve(None, |_: &Received| (500, vec![], "down".into())).await;
    let slack = provider("slack", &server.base);
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        deliver::deliver(&slack, &rollback(), fast_retries()),
    )
    .await
    .unwrap();
    // 4 attempts, 50 + 100 + 200 ms apart: given up well inside the policy's total.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(server.received().len(), 4);
    assert_eq!(outcome.result, Err(Error::Status(500)));
    assert_eq!(outcome.attempts, 4);
    assert_eq!(outcome.label(), "status");
    assert_eq!(
        (outcome.provider.as_str(), outcome.rollout.as_str()),
        ("team-chat", "checkout")
    );
    // The address is a secret: not in the outcome, however it is printed.
    assert!(!format!("{outcome:?}").contains("secret"), "{outcome:?}");
    assert!(!format!("{:?}", provider("slack", &server.base)).contains("secret"));
}

#[tokio::test]
async fn retries_stop_at_the_total_time_and_on_failures_that_will_not_heal() {
    // The total bound: backoffs of 200 ms and more, 300 ms in all, allow 2 attempts.
    let server = serve(None, |_: &Received| (503, vec![], String::new())).await;
    let slow = RetryPolicy {
        max_attempts: 10,
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        total: Duration::from_millis(300),
    };
    let outcome = deliver::deliver(&provider("discord", &server.base), &rollback(), slow).await;
    assert_eq!(
        (outcome.attempts, outcome.result),
        (2, Err(Error::Status(503)))
    );

    // A 404 (a deleted webhook) is not retried.
    let gone = serve(None, |_: &Received| (404, vec![], String::new())).await;
    let outcome = deliver::deliver(
        &provider("discord", &gone.base),
        &rollback(),
        fast_retries(),
    )
    .await;
    assert_eq!(
        (outcome.attempts, outcome.result),
        (1, Err(Error::Status(404)))
    );
}

#[tokio::test]
async fn a_provider_that_recovers_gets_the_alert_on_a_later_attempt() {
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let server = serve(None, move |_: &Received| {
        let mut calls = counter.lock().unwrap();
        *calls += 1;
        if *calls < 3 {
            (429, vec![], String::new())
        } else {
            (200, vec![], String::new())
        }
    })
    .await;
    let outcome = deliver::deliver(
        &provider("googlechat", &server.base),
        &rollback(),
        fast_retries(),
    )
    .await;
    assert_eq!((outcome.attempts, outcome.result.clone()), (3, Ok(())));
    assert_eq!(outcome.label(), "delivered");
    // Every attempt carried the same body.
    let bodies: Vec<Value> = server.received().iter().map(Received::json).collect();
    assert!(bodies.iter().all(|b| *b == expected_rollback("googlechat")));
}

#[tokio::test]
async fn dispatch_sends_to_the_providers_that_want_the_severity() {
    let everything = serve(None, ok).await;
    let errors_only = serve(None, ok).await;
    let alerts: Vec<stickycanary::alerts::RolloutAlert> = serde_json::from_value(json!([
        {"providerRef": {"name": "everything"}, "severity": "info"},
        {"providerRef": {"name": "errors-only", "namespace": "platform"}, "severity": "error"},
        {"providerRef": {"name": "missing"}, "severity": "warn"},
    ]))
    .unwrap();
    // The "everything" provider links its own dashboard.
    let mut spec = provider_spec("webhook");
    spec.dashboard_url = Some("https://grafana.example/d/x?ns={namespace}&r={rollout}".into());
    let everything_provider = Arc::new(
        Provider::new(
            "shop",
            "everything",
            spec,
            format!("{}/hook", everything.base),
            None,
        )
        .unwrap(),
    );
    let errors_provider = provider("webhook", &errors_only.base);
    let resolver = Arc::new(Lookup {
        providers: vec![
            ("shop/everything".to_string(), everything_provider.clone()),
            ("platform/errors-only".to_string(), errors_provider.clone()),
        ],
        lookups: Mutex::new(Vec::new()),
    });
    let sink = Arc::new(Recorded::default());
    let paused = AlertMessage {
        reason: "Paused".into(),
        severity: Severity::Warn,
        dashboard: None,
        ..rollback()
    };
    let alerting = Alerting {
        policy: fast_retries(),
        ..Alerting::new(resolver.clone(), sink.clone())
    };
    let started = Instant::now();
    let handles = alerting.send(&alerts, &paused);
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "send returns at once"
    );
    assert_eq!(handles.len(), 2, "the error-only provider is not asked");
    for handle in handles {
        handle.await.unwrap();
    }
    let mut lookups = resolver.lookups.lock().unwrap().clone();
    lookups.sort();
    assert_eq!(lookups, vec!["shop/everything", "shop/missing"]);
    assert_eq!(
        *sink.1.lock().unwrap(),
        vec![Unresolved {
            provider_namespace: "shop".into(),
            provider: "missing".into(),
            rollout_namespace: "shop".into(),
            rollout: "checkout".into(),
            reason: "Paused".into(),
            error: "AlertProvider shop/missing not found".into(),
        }]
    );

    // The one resolved provider that wants a warning got it.
    assert_eq!(sink.0.lock().unwrap().len(), 1);
    assert!(
        errors_only.received().is_empty(),
        "a warning is not an error"
    );
    let received = everything.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].json(),
        json!({"rollout": "checkout", "namespace": "shop", "text": "Paused: rolling back to 0% (error-rate): canary <5xx> 7% & rising"})
    );
    // The webhook JSON has no link; the chat formats get the provider's own.
    let slack_spec = AlertProviderSpec {
        dashboard_url: Some("https://grafana.example/d/x?ns={namespace}&r={rollout}".into()),
        ..provider_spec("slack")
    };
    let slack = serve(None, ok).await;
    let slack_provider = Provider::new(
        "shop",
        "s",
        slack_spec,
        format!("{}/hook", slack.base),
        None,
    )
    .unwrap();
    deliver::deliver(&slack_provider, &paused, fast_retries()).await;
    let body = slack.received()[0].json();
    let actions = body["blocks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        actions["elements"][0]["url"],
        "https://grafana.example/d/x?ns=shop&r=checkout"
    );
}

/// The worked example of `docs/contracts.md` ("Alerts"): the breach timeline's rollback, as
/// the ADR's Slack provider receives it. Keep the two in step.
#[test]
fn the_contracts_worked_example_is_what_slack_receives() {
    let status: stickycanary::crd::CanaryRolloutStatus = serde_json::from_value(json!({
        "phase": "RolledBack", "stageIndex": 1, "weight": 0.0, "canaryRevision": "7f9c2d1",
        "lastAnalysis": {
            "at": "2026-11-26T09:14:00Z",
            "canary": {"requests": 1000.0, "errorRatePercent": 7.0, "p99Ms": 182.5},
            "stable": {"requests": 3000.0, "errorRatePercent": 0.2, "p99Ms": 175.0},
            "checks": [
                {"name": "error-rate", "verdict": "Fail", "value": 7.0, "threshold": 5.0,
                 "message": "canary error rate 7% above max 5%"},
                {"name": "latency", "verdict": "Pass", "value": 182.5, "threshold": 500.0,
                 "message": "canary p99 182.5ms within max 500ms"}
            ]
        }
    }))
    .unwrap();
    let message = AlertMessage::from_event(
        "checkout",
        "shop",
        &status,
        "RollingBack",
        "rolling back to 0% (error-rate): canary error rate 7% above max 5% for 2m (limit 2m)",
        None,
    );
    let spec: AlertProviderSpec = serde_yaml::from_str(
        "type: slack
secretRef: {name: slack-webhook, key: address}
channel: \"#deploys\"
username: stickycanary
dashboardUrl: https://grafana.example/d/stickycanary?var-namespace={namespace}&var-rollout={rollout}&var-revision={revision}",
    )
    .unwrap();
    let message = AlertMessage {
        dashboard: Some(dashboard_link(
            spec.dashboard_url.as_deref().unwrap(),
            "shop",
            "checkout",
            Some("7f9c2d1"),
        )),
        ..message
    };
    let body = stickycanary::alerts::payload::render(&spec, &message);
    let text =
        "rolling back to 0% (error-rate): canary error rate 7% above max 5% for 2m (limit 2m)";
    assert_eq!(
        body,
        json!({
          "text": format!("[ERROR] shop/checkout: RollingBack {text}"),
          "channel": "#deploys",
          "username": "stickycanary",
          "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[ERROR] shop/checkout: RollingBack"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": [
              {"type": "mrkdwn", "text": "*Rollout*\ncheckout"},
              {"type": "mrkdwn", "text": "*Namespace*\nshop"},
              {"type": "mrkdwn", "text": "*Revision*\n7f9c2d1"},
              {"type": "mrkdwn", "text": "*Phase*\nRolledBack"},
              {"type": "mrkdwn", "text": "*Weight*\n0%"},
              {"type": "mrkdwn", "text": "*Check*\nerror-rate: 7 (threshold 5)"}
            ]},
            {"type": "actions", "elements": [
              {"type": "button", "text": {"type": "plain_text", "text": "Dashboard"},
               "url": "https://grafana.example/d/stickycanary?var-namespace=shop&var-rollout=checkout&var-revision=7f9c2d1"}
            ]}
          ]
        })
    );
}

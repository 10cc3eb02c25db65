//! `spec.alerts` wired into the controller's tick, against the stateful fake API server (RBAC
//! checked in both install modes) and loopback chat servers: which Events reach which
//! provider, the exact payload, and a failing provider that never holds the tick up.

// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::Method;
use serde_json::{json, Value};
use stickycanary::alerts::RetryPolicy;
use stickycanary::crd::{CanaryRollout, Phase};
use stickycanary::k8s::reconcile::{self, Context};
use support::api::{Authorizer, FakeApi, Seen};

const ROLLOUT_PATH: &str =
    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout";
const PLUGIN_PATH: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins/stickycanary";
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-canary";

/// The secret part of every webhook address (as in a Slack incoming-webhook URL).
const ADDRESS_SECRET: &str = "T0001/B0002/XXXXsecretXXXX";

/// The fake cluster: the rollout with `alerts` (Progressing at 25%, or new when `fresh`, and
/// asking for `request`), its WasmPlugin and the canary Deployment.
fn seed(api: &FakeApi, alerts: Value, request: Option<&str>, fresh: bool) {
    let mut rollout = json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 3, "uid": "u-1",
                     "finalizers": ["stickycanary.dev/cleanup"]},
        "spec": {
            "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
            "canary": {"deployment": "checkout-canary"},
            "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
            "analysis": {"interval": "10s"},
            // Nothing listens on port 9: metrics are unavailable, which never rolls back at once.
            "prometheus": {"address": "http://127.0.0.1:9"},
            "alerts": alerts,
        }
    });
    if let Some(request) = request {
        rollout["metadata"]["annotations"] = json!({"stickycanary.dev/request": request});
    }
    let weight = if fresh { 0.0 } else { 25.0 };
    if !fresh {
        rollout["status"] = json!({"phase": "Progressing", "weight": 25.0, "stageIndex": 0,
            "canaryRevision": "v2",
            "stageStartedAt": k8s_openapi::jiff::Timestamp::now().to_string(), "observedGeneration": 3});
    }
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(
        PLUGIN_PATH,
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "stickycanary", "namespace": "istio-system"},
            "spec": {"url": "oci://example/stickycanary:1", "pluginConfig": {
                "routeHeader": "x-canary-version",
                "rollouts": {"checkout": {"hosts": ["checkout"], "weight": weight}}}},
        }),
    );
    api.insert(
        DEPLOYMENT_PATH,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "checkout-canary", "namespace": "shop", "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "checkout", "version": "canary"}},
                        "template": {"metadata": {"labels": {"app": "checkout", "version": "canary"}}}},
               "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}}),
    );
}

/// An AlertProvider `name` in `namespace` of `kind`, its address (`base` plus the secret
/// path) in the Secret `<name>-webhook`, key `address`.
fn provider(api: &FakeApi, namespace: &str, name: &str, kind: &str, base: &str, extra: Value) {
    let mut spec = json!({"type": kind, "secretRef": {"name": format!("{name}-webhook")}});
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    api.insert(
        &format!("/apis/stickycanary.dev/v1alpha1/namespaces/{namespace}/alertproviders/{name}"),
        json!({"apiVersion": "stickycanary.dev/v1alpha1", "kind": "AlertProvider",
               "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
    );
    let address = format!("{base}/services/{ADDRESS_SECRET}");
    api.insert(
        &format!("/api/v1/namespaces/{namespace}/secrets/{name}-webhook"),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": format!("{name}-webhook"), "namespace": namespace},
               "data": {"address": base64::engine::general_purpose::STANDARD.encode(address)}}),
    );
}

fn stored_rollout(api: &FakeApi) -> Arc<CanaryRollout> {
    Arc::new(serde_json::from_value(api.get(ROLLOUT_PATH).unwrap()).unwrap())
}

/// The controller's context with quick retries (50 ms apart, 3 attempts).
fn context(client: kube::Client) -> Arc<Context> {
    let mut ctx = support::context(client, Duration::from_secs(2));
    let alerting = &mut Arc::get_mut(&mut ctx).unwrap().alerting;
    alerting.policy = RetryPolicy {
        max_attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        total: Duration::from_secs(5),
    };
    ctx
}

/// Waits (at most 5 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Events the fake API received, as (reason, note).
fn events(api: &FakeApi) -> Vec<(String, String)> {
    api.seen()
        .iter()
        .filter(|s: &&Seen| s.method == Method::POST && s.attributes.resource == "events")
        .map(|s| {
            (
                s.body["reason"].as_str().unwrap_or_default().to_string(),
                s.body["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rollback_sends_exactly_one_slack_payload_to_an_error_provider() {
    let slack = loopback::serve(None, loopback::ok).await;
    let authorizer = Authorizer::both_modes();
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(
        &api,
        json!([{"providerRef": {"name": "team-slack"}, "severity": "error"}]),
        Some("abort@1"),
        false,
    );
    provider(
        &api,
        "shop",
        "team-slack",
        "slack",
        &slack.base,
        json!({"channel": "#deploys",
               "dashboardUrl": "https://grafana.example/d/sc?var-namespace={namespace}&var-rollout={rollout}&var-revision={revision}"}),
    );
    let ctx = context(client);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_rollout(&api).status.as_ref().unwrap().phase,
        Phase::RolledBack
    );
    eventually("the Slack payload", || !slack.received().is_empty()).await;
    // Nothing else arrives: one Event of error severity, one payload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = slack.received();
    assert_eq!(received.len(), 1, "exactly one payload");
    assert_eq!(received[0].target, format!("/services/{ADDRESS_SECRET}"));
    let rolling_back = events(&api)
        .into_iter()
        .find(|(reason, _)| reason == "RollingBack")
        .expect("the RollingBack Event");
    let text = rolling_back.1;
    assert_eq!(
        received[0].json(),
        json!({
            "text": format!("[ERROR] shop/checkout: RollingBack {text}"),
            "channel": "#deploys",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "[ERROR] shop/checkout: RollingBack"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Rollout*\ncheckout"},
                    {"type": "mrkdwn", "text": "*Namespace*\nshop"},
                    {"type": "mrkdwn", "text": "*Revision*\nv2"},
                    {"type": "mrkdwn", "text": "*Phase*\nRolledBack"},
                    {"type": "mrkdwn", "text": "*Weight*\n0%"},
                ]},
                {"type": "actions", "elements": [{"type": "button",
                    "text": {"type": "plain_text", "text": "Dashboard"},
                    "url": "https://grafana.example/d/sc?var-namespace=shop&var-rollout=checkout&var-revision=v2"}]},
            ],
        })
    );
    assert_eq!(
        text, "rolling back to 0% (aborted): aborted by an operator",
        "the abort's Event text"
    );
    // The chart's roles allowed the reads, and they were needed.
    authorizer.assert_nothing_denied();
    let used = authorizer.used();
    for (group, resource) in [("stickycanary.dev", "alertproviders"), ("", "secrets")] {
        let triple = (group.to_string(), resource.to_string(), "get".to_string());
        assert!(used.contains(&triple), "{triple:?} unused in {used:?}");
    }
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "stickycanary_alerts_total{provider=\"shop/team-slack\",type=\"slack\",outcome=\"delivered\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn info_events_reach_an_info_provider_and_not_an_error_provider() {
    let errors_only = loopback::serve(None, loopback::ok).await;
    let everything = loopback::serve(None, loopback::ok).await;
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!([
            {"providerRef": {"name": "oncall"}, "severity": "error"},
            {"providerRef": {"name": "audit", "namespace": "shop"}},
        ]),
        None,
        true,
    );
    provider(
        &api,
        "shop",
        "oncall",
        "slack",
        &errors_only.base,
        json!({}),
    );
    provider(
        &api,
        "shop",
        "audit",
        "webhook",
        &everything.base,
        json!({}),
    );
    let ctx = context(client);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let reasons: Vec<String> = events(&api).into_iter().map(|(r, _)| r).collect();
    assert!(!reasons.is_empty(), "the first tick raises Events");
    eventually("every Event at the info provider", || {
        everything.received().len() == reasons.len()
    })
    .await;
    let texts: Vec<String> = everything
        .received()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    for reason in &reasons {
        assert!(
            texts.iter().any(|t| t.starts_with(&format!("{reason}: "))),
            "{reason} not in {texts:?}"
        );
        assert_eq!(
            stickycanary::alerts::severity_of(reason),
            stickycanary::alerts::Severity::Info,
            "{reason}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        errors_only.received().is_empty(),
        "info Events never reach an error provider: {:?}",
        errors_only.received()
    );
}

#[tokio::test]
async fn a_failing_provider_raises_alert_failed_and_is_counted_without_holding_up_the_tick() {
    let failing = loopback::serve(None, |_| (500, vec![], "boom".to_string())).await;
    let hanging = loopback::silent().await;
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!([
            {"providerRef": {"name": "broken"}, "severity": "error"},
            {"providerRef": {"name": "refused"}, "severity": "error"},
            {"providerRef": {"name": "hanging"}, "severity": "error"},
            {"providerRef": {"name": "missing"}, "severity": "error"},
        ]),
        Some("abort@1"),
        false,
    );
    provider(&api, "shop", "broken", "slack", &failing.base, json!({}));
    // Nothing listens on port 9: the connection is refused.
    provider(
        &api,
        "shop",
        "refused",
        "discord",
        "http://127.0.0.1:9",
        json!({}),
    );
    provider(
        &api,
        "shop",
        "hanging",
        "msteams",
        &hanging.base,
        json!({"timeout": "30s"}),
    );
    let ctx = context(client);
    let started = Instant::now();
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let tick = started.elapsed();
    assert!(
        tick < Duration::from_secs(2),
        "the tick waited for the providers: {tick:?}"
    );
    // The tick's own writes happened, before any alert could have been delivered.
    let rollout = stored_rollout(&api);
    assert_eq!(rollout.status.as_ref().unwrap().phase, Phase::RolledBack);
    assert_eq!(
        api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        json!(0)
    );

    eventually("three AlertFailed Events", || {
        events(&api)
            .iter()
            .filter(|(r, _)| r == "AlertFailed")
            .count()
            == 3
    })
    .await;
    let mut failed: Vec<String> = events(&api)
        .into_iter()
        .filter(|(r, _)| r == "AlertFailed")
        .map(|(_, note)| note)
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![
            "alert RollingBack to shop/broken (slack) failed after 3 attempts: HTTP 500",
            "alert RollingBack to shop/missing not sent: AlertProvider shop/missing not found",
            "alert RollingBack to shop/refused (discord) failed after 3 attempts: connection failed: connection refused",
        ]
    );
    for note in &failed {
        assert!(!note.contains("secret"), "{note}");
    }
    let metrics = ctx.metrics.encode();
    for line in [
        "stickycanary_alerts_total{provider=\"shop/broken\",type=\"slack\",outcome=\"status\"} 1",
        "stickycanary_alerts_total{provider=\"shop/refused\",type=\"discord\",outcome=\"connect\"} 1",
        "stickycanary_alerts_total{provider=\"shop/missing\",type=\"unknown\",outcome=\"unresolved\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    assert_eq!(
        failing.received().len(),
        3,
        "retried up to the policy's 3 attempts"
    );
}

//! The AlertProvider and `alerts` API: validation names the field in one line, severities
//! route events, and the AlertProvider CRD is generated from the Rust types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::CustomResourceExt;
use serde_json::json;
use stickycanary::alerts::validate::{provider_spec, rollout_alerts};
use stickycanary::alerts::{severity_of, AlertProvider, ProviderType, RolloutAlert, Severity};

/// Every problem is one line starting with the field it is about.
fn problems(result: Result<impl std::fmt::Debug, Vec<String>>) -> Vec<String> {
    let problems = result.unwrap_err();
    for problem in &problems {
        assert!(!problem.contains('\n'), "{problem:?}");
        assert!(problem.starts_with("spec."), "{problem:?}");
    }
    problems
}

#[test]
fn a_full_provider_is_accepted() {
    let spec = provider_spec(&json!({
        "type": "slack",
        "secretRef": {"name": "slack-webhook", "key": "address"},
        "channel": "#deploys",
        "username": "stickycanary",
        "caSecretRef": {"name": "corp-ca", "key": "ca.crt"},
        "dashboardUrl": "https://grafana.example/d/sc?var-namespace={namespace}&var-rollout={rollout}&rev={revision}",
        "timeout": "5s",
    }))
    .unwrap();
    assert_eq!(spec.kind, ProviderType::Slack);
    assert_eq!(spec.secret_ref.key_or("address"), "address");
}

#[test]
fn an_unknown_provider_type_is_refused_naming_the_field_and_the_choices() {
    assert_eq!(
        problems(provider_spec(&json!({"type": "teams", "secretRef": {"name": "x"}}))),
        vec!["spec.type: unknown provider type \"teams\" (one of slack, msteams, discord, googlechat, webhook)"]
    );
    assert_eq!(
        problems(provider_spec(&json!({"secretRef": {"name": "x"}}))),
        vec!["spec.type: required (one of slack, msteams, discord, googlechat, webhook)"]
    );
    assert_eq!(
        problems(provider_spec(&json!({"type": 3, "secretRef": {"name": "x"}}))),
        vec!["spec.type: must be a string, one of slack, msteams, discord, googlechat, webhook (got 3)"]
    );
}

#[test]
fn fields_a_service_does_not_have_are_refused() {
    let found = problems(provider_spec(&json!({
        "type": "msteams",
        "secretRef": {"name": "Teams_Hook", "key": "a/b"},
        "channel": "#x",
        "username": "bot",
        "dashboardUrl": "grafana/{cluster}",
        "timeout": "0s",
    })));
    assert_eq!(
        found,
        vec![
            "spec.secretRef.name: \"Teams_Hook\" is not a Secret name (a DNS-1123 subdomain)",
            "spec.secretRef.key: \"a/b\" is not a Secret key (letters, digits, '-', '_', '.')",
            "spec.channel: a msteams webhook posts to the channel it was made for (only slack takes a channel)",
            "spec.username: msteams takes no username (only slack and discord do)",
            "spec.dashboardUrl: must start with https:// or http://",
            "spec.dashboardUrl: unknown placeholder {cluster} (use {namespace}, {rollout}, {revision})",
            "spec.timeout: must be more than 0",
        ]
    );
    // Discord has a username but no channel.
    assert!(provider_spec(
        &json!({"type": "discord", "secretRef": {"name": "d"}, "username": "bot"})
    )
    .is_ok());
}

#[test]
fn rollout_alerts_name_the_entry_and_field() {
    let alerts = rollout_alerts(&json!([
        {"providerRef": {"name": "team-slack"}, "severity": "warn"},
        {"providerRef": {"name": "oncall", "namespace": "platform"}, "severity": "error"},
        {"providerRef": {"name": "audit"}},
    ]))
    .unwrap();
    assert_eq!(alerts[2].severity, Severity::Info, "info by default");
    assert_eq!(alerts[1].provider_namespace("shop"), "platform");
    assert_eq!(alerts[0].provider_namespace("shop"), "shop");

    assert_eq!(
        problems(rollout_alerts(&json!([
            {"providerRef": {"name": "team-slack"}, "severity": "critical"},
            {"providerRef": {"name": "Team"}},
            {"providerRef": {"name": "oncall"}},
            {"providerRef": {"name": "oncall"}},
            {"severity": "info"},
        ]))),
        vec![
            "spec.alerts[0].severity: unknown severity \"critical\" (one of info, warn, error)",
            "spec.alerts[1].providerRef.name: \"Team\" is not an AlertProvider name (a DNS-1123 label)",
            "spec.alerts[3].providerRef: provider \"oncall\" is listed twice",
            "spec.alerts[4]: missing field `providerRef`",
        ]
    );
}

#[test]
fn an_alert_receives_events_at_its_severity_and_above() {
    let alert = |severity: &str| -> RolloutAlert {
        serde_json::from_value(json!({"providerRef": {"name": "p"}, "severity": severity})).unwrap()
    };
    let routed = |severity: &str| -> Vec<&str> {
        ["StageAdvanced", "Paused", "RollingBack"]
            .into_iter()
            .filter(|reason| alert(severity).wants(severity_of(reason)))
            .collect()
    };
    assert_eq!(
        routed("info"),
        vec!["StageAdvanced", "Paused", "RollingBack"]
    );
    assert_eq!(routed("warn"), vec!["Paused", "RollingBack"]);
    assert_eq!(routed("error"), vec!["RollingBack"]);
}

#[test]
fn the_alert_provider_crd_is_generated_with_the_type_enum() {
    let crd = serde_json::to_value(AlertProvider::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "alertproviders.stickycanary.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        schema["properties"]["type"]["enum"],
        json!(["slack", "msteams", "discord", "googlechat", "webhook"])
    );
    assert_eq!(schema["required"], json!(["secretRef", "type"]));
}

// --- `stickycanary validate` on files with alerts -------------------------------------

use stickycanary::validate::documents::validate_yaml;

const ROLLOUT_WITH_ALERTS: &str = "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {name: checkout, namespace: shop}
spec:
  wasmPlugin: {name: stickycanary}
  canary: {deployment: checkout-canary}
  alerts:
    - providerRef: {name: slack}
      severity: error
";

const PROVIDER_AND_SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: slack-webhook, namespace: shop}
stringData:
  address: https://hooks.slack.com/services/T000/B000/XXXX
---
apiVersion: stickycanary.dev/v1alpha1
kind: AlertProvider
metadata: {name: slack, namespace: shop}
spec:
  type: slack
  secretRef: {name: slack-webhook}
";

#[test]
fn validate_refuses_an_unknown_severity_naming_the_field() {
    let error = validate_yaml(
        "r.yaml",
        &ROLLOUT_WITH_ALERTS.replace("severity: error", "severity: critical"),
    )
    .unwrap_err();
    assert_eq!(
        error,
        "r.yaml: spec.alerts[0].severity: unknown severity \"critical\" (one of info, warn, error)"
    );
    let valid = validate_yaml("r.yaml", ROLLOUT_WITH_ALERTS).unwrap();
    assert!(
        valid.starts_with(
            "r.yaml: valid CanaryRollout checkout (4 stages, rollout key checkout, 1 alert)"
        ),
        "{valid}"
    );
}

#[test]
fn validate_follows_a_rollouts_provider_and_the_providers_secret_in_one_file() {
    let file = format!("{PROVIDER_AND_SECRET}---\n{ROLLOUT_WITH_ALERTS}");
    let report = validate_yaml("all.yaml", &file).unwrap();
    assert_eq!(
        report,
        "all.yaml: Secret shop/slack-webhook (keys: address)\n\
         all.yaml: AlertProvider shop/slack: valid AlertProvider (slack, address from Secret slack-webhook key address)\n\
         all.yaml: CanaryRollout shop/checkout: valid CanaryRollout checkout (4 stages, rollout key checkout, 1 alert)"
    );
    assert!(!report.contains("hooks.slack.com"), "never the address");

    // The rollout alone: the provider cannot be followed offline, and says so.
    let file = format!(
        "{}---\n{ROLLOUT_WITH_ALERTS}",
        &PROVIDER_AND_SECRET[..PROVIDER_AND_SECRET.find("---").unwrap()]
    );
    let report = validate_yaml("r.yaml", &file).unwrap();
    assert!(
        report.contains("r.yaml: CanaryRollout shop/checkout: note: spec.alerts[0].providerRef: AlertProvider shop/slack is not in this file, not checked"),
        "{report}"
    );
}

#[test]
fn validate_refuses_a_missing_secret_key_an_address_that_is_no_url_and_an_unknown_type() {
    let wrong_key = PROVIDER_AND_SECRET.replace(
        "secretRef: {name: slack-webhook}",
        "secretRef: {name: slack-webhook, key: url}",
    );
    assert_eq!(
        validate_yaml("p.yaml", &wrong_key).unwrap_err(),
        "p.yaml: AlertProvider shop/slack: spec.secretRef.key: Secret shop/slack-webhook has no key \"url\" (it has: address)"
    );
    let not_a_url = PROVIDER_AND_SECRET.replace(
        "address: https://hooks.slack.com/services/T000/B000/XXXX",
        "address: hooks.slack.com/services/T000/B000/XXXX",
    );
    let error = validate_yaml("p.yaml", &not_a_url).unwrap_err();
    assert_eq!(
        error,
        "p.yaml: AlertProvider shop/slack: spec.secretRef: Secret shop/slack-webhook key \"address\" does not hold an http(s) URL"
    );
    assert!(!error.contains("T000"), "never the address");
    let teams = PROVIDER_AND_SECRET.replace("type: slack", "type: teams");
    assert_eq!(
        validate_yaml("p.yaml", &teams).unwrap_err(),
        "p.yaml: AlertProvider shop/slack: spec.type: unknown provider type \"teams\" (one of slack, msteams, discord, googlechat, webhook)"
    );
    let misspelt = PROVIDER_AND_SECRET.replace("  type: slack", "  type: slack\n  chanel: \"#x\"");
    let error = validate_yaml("p.yaml", &misspelt).unwrap_err();
    assert!(
        error.starts_with("p.yaml: AlertProvider shop/slack: spec.chanel: unknown field"),
        "{error}"
    );
}

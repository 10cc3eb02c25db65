//! `spec.alerts` in local mode: providers from `--alert-providers` (AlertProvider documents),
//! the address from a Secret document or `--alert-secrets-dir`, sent from the shared tick's
//! announce step; the command in the message is local mode's (`--status-file`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;

use std::fs;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use stickycanary::alerts::report::AlertCounter;
use stickycanary::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use stickycanary::local::alerts::{alerting, FileObjects};
use stickycanary::local::hooks::Hooks;
use stickycanary::local::state::LocalState;
use stickycanary::local::LocalRunner;
use stickycanary::observation::ManualAction;

fn ecds(weight: f64) -> Value {
    let config = json!({"rollouts": {"checkout": {"hosts": ["checkout"], "weight": weight}}});
    json!({"resources": [{"name": "stickycanary", "typed_config": {"config": {
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": config.to_string()}}}}]})
}

#[tokio::test]
async fn local_mode_sends_a_warning_to_a_provider_from_files_with_the_status_file_command() {
    let slack = loopback::serve(None, loopback::ok).await;
    let audit = loopback::serve(None, loopback::ok).await;
    let dir = tempfile::tempdir().unwrap();
    let ecds_path = dir.path().join("filter.ecds.json");
    let status_path = dir.path().join("checkout.status.json");
    fs::write(&ecds_path, ecds(10.0).to_string()).unwrap();
    // slack: its address in a Secret document of the same file; audit (error only): in the
    // secrets directory, as a mounted Secret volume lays it out.
    let providers = dir.path().join("providers.yaml");
    fs::write(
        &providers,
        format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: slack-webhook, namespace: shop}}
stringData: {{address: '{}/services/T0/B0/secret'}}
---
apiVersion: stickycanary.dev/v1alpha1
kind: AlertProvider
metadata: {{name: slack, namespace: shop}}
spec: {{type: slack, secretRef: {{name: slack-webhook}}}}
---
apiVersion: stickycanary.dev/v1alpha1
kind: AlertProvider
metadata: {{name: audit, namespace: shop}}
spec: {{type: webhook, secretRef: {{name: audit-webhook, key: url}}}}
",
            slack.base
        ),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    fs::create_dir_all(secrets.join("audit-webhook")).unwrap();
    fs::write(
        secrets.join("audit-webhook/url"),
        format!("{}/audit\n", audit.base),
    )
    .unwrap();

    let rollout: CanaryRollout = serde_json::from_value(json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "wasmPlugin": {"name": "stickycanary"},
            "canary": {"deployment": "checkout-canary"},
            "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
            "analysis": {"interval": "10s"},
            "alerts": [
                {"providerRef": {"name": "slack"}, "severity": "warn"},
                {"providerRef": {"name": "audit"}, "severity": "error"},
            ],
        }
    }))
    .unwrap();
    let status = CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 10.0,
        stage_started_at: Some(Time(Timestamp::now())),
        ..Default::default()
    };
    let state = LocalState {
        rollout: "checkout".into(),
        rollout_file: None,
        envoy_ecds: None,
        prometheus: None,
        status: status.clone(),
    };
    let counter = AlertCounter::default();
    let runner = LocalRunner::new(
        rollout,
        &ecds_path,
        &"http://127.0.0.1:9".into(),
        None,
        Hooks::default(),
        &status_path,
        state,
    )
    .unwrap()
    .with_alerting(alerting(
        FileObjects {
            providers_file: providers,
            secrets_dir: Some(secrets),
        },
        counter.clone(),
    ));
    let report = runner
        .tick(&status, Some(ManualAction::Pause), Timestamp::now())
        .await
        .unwrap();
    let reasons: Vec<&str> = report.events.iter().map(|(r, _)| r.as_str()).collect();
    assert!(reasons.contains(&"Paused"), "{reasons:?}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while slack.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert reached the slack provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One payload per Event of warn severity or above (Paused; Prometheus on port 9 is
    // unreachable, so also PrometheusUnavailable when this tick reports it).
    let warnings: Vec<&str> = reasons
        .iter()
        .copied()
        .filter(|r| stickycanary::alerts::severity_of(r) >= stickycanary::alerts::Severity::Warn)
        .collect();
    let received = slack.received();
    assert_eq!(received.len(), warnings.len(), "{warnings:?}");
    assert!(received
        .iter()
        .all(|r| r.target == "/services/T0/B0/secret"));
    let body = received
        .iter()
        .map(|r| r.json())
        .find(|b| b["blocks"][0]["text"]["text"] == "[WARN] shop/checkout: Paused")
        .expect("the Paused alert");
    let command = format!(
        "`stickycanary abort checkout --status-file {}`",
        status_path.display()
    );
    assert_eq!(
        body["blocks"][3],
        json!({"type": "section", "text": {"type": "mrkdwn", "text": command}}),
        "{body}"
    );
    assert!(
        audit.received().is_empty(),
        "a warning never reaches an error provider"
    );

    // An abort is an error: the audit provider gets it, its address read from the directory.
    let paused = report.status.clone();
    runner
        .tick(&paused, Some(ManualAction::Abort), Timestamp::now())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while audit.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert reached the audit provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(audit.received()[0].target, "/audit");
    assert_eq!(audit.received()[0].json()["rollout"], "checkout");
}

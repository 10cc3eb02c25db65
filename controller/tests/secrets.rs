//! Secrets stay out of what the controller says (issue 7, "no secret tokens in logs or
//! Events"): the filter's override token (`rollouts.<r>.override.token`, part of the plugin
//! config the controller reads and rewrites) and the notification webhook URL (which for most
//! chat services is itself a credential).
//!
//! Each test first shows that the secret really was in the controller's input (so the check
//! cannot pass by accident), then greps everything the controller produced: stdout, stderr at
//! `RUST_LOG=trace` in both log formats, the status file, the Degraded-condition text built from
//! a rejected plugin config, and the engine's Event messages and notifications.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use stickycanary::crd::{CanaryRolloutSpec, CanaryRolloutStatus};
use stickycanary::engine::{decide, Action};
use stickycanary::observation::{ManualAction, MetricsObservation};
use stickycanary::target::{apply_weight, parse_plugin_config};
use support::engine::{observe, window};

const TOKEN: &str = "s3cr3t-0verride-T0KEN-9f1c";
const WEBHOOK_SECRET: &str = "hook-S3CRET-4d7e";

fn plugin_config(weight: Value) -> Value {
    json!({"rollouts": {
        "checkout": {"hosts": ["checkout"], "weight": weight,
                     "override": {"header": "x-canary-override", "token": TOKEN}},
        "search": {"hosts": ["search"], "weight": 30, "override": {"token": TOKEN}}
    }})
}

fn ecds_document(config: &Value) -> Value {
    json!({"resources": [{"name": "stickycanary", "typed_config": {"config": {
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": config.to_string()}}}}]})
}

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stickycanary(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stickycanary"));
    cmd.args(args)
        .env("RUST_LOG", "trace")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [TOKEN, WEBHOOK_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} contains a secret ({secret}):\n{text}"
        );
    }
}

#[test]
fn validate_never_prints_the_override_token() {
    let dir = tempfile::tempdir().unwrap();
    let good = plugin_config(json!(10));
    let mut unknown_field = good.clone();
    unknown_field["rollouts"]["checkout"]["override"]["colour"] = json!("blue");
    let mut bad_cookie = good.clone();
    bad_cookie["rollouts"]["checkout"]["override"]["cookie"] = json!("bad cookie;");
    let mut bad_header = good.clone();
    bad_header["rollouts"]["checkout"]["override"]["header"] = json!("x bad");
    let cases = [
        ("valid", good.to_string(), true),
        ("weight 150", plugin_config(json!(150)).to_string(), false),
        ("unknown override field", unknown_field.to_string(), false),
        ("bad override cookie", bad_cookie.to_string(), false),
        ("bad override header", bad_header.to_string(), false),
        // Cut right after the token: a syntax error next to the secret.
        (
            "truncated JSON",
            {
                let text = good.to_string();
                let end = text.find(TOKEN).unwrap() + TOKEN.len() + 1;
                text[..end].to_string()
            },
            false,
        ),
    ];
    for (what, text, valid) in cases {
        assert!(text.contains(TOKEN), "{what}: the input lacks the token");
        let path = dir.path().join(format!("{}.json", what.replace(' ', "-")));
        fs::write(&path, &text).unwrap();
        for format in ["text", "json"] {
            let out = stickycanary(
                &["validate", path.to_str().unwrap()],
                &[("STICKYCANARY_LOG_FORMAT", format)],
            );
            assert_eq!(out.status.success(), valid, "{what}: {}", all_output(&out));
            assert_no_secret(&all_output(&out), &format!("validate {what} ({format})"));
        }
    }
}

#[test]
fn rejected_plugin_configs_never_carry_the_token_into_conditions() {
    // The k8s reconciler turns these errors into the Degraded condition's message.
    let mut bad_weight = plugin_config(json!(10));
    bad_weight["rollouts"]["search"]["weight"] = json!(-1);
    let mut bad_token = plugin_config(json!(10));
    bad_token["rollouts"]["search"]["override"]["tokn"] = json!(TOKEN);
    let mut empty_hosts = plugin_config(json!(10));
    empty_hosts["rollouts"]["checkout"]["hosts"] = json!([]);
    for (what, config) in [
        ("other rollout's weight", bad_weight),
        ("misspelt token field", bad_token),
        ("empty hosts", empty_hosts),
    ] {
        assert!(config.to_string().contains(TOKEN));
        let parsed = parse_plugin_config(&config, "istio-system/stickycanary");
        let error = parsed.expect_err(what).to_string();
        assert_no_secret(&error, what);
        let patched = apply_weight(&config, "checkout", 25.0, None, "istio-system/stickycanary");
        assert_no_secret(&patched.expect_err(what).to_string(), what);
    }
    // The weight patch keeps the token (it touches nothing but the weight) and says nothing.
    let patched = apply_weight(
        &plugin_config(json!(10)),
        "checkout",
        25.0,
        None,
        "istio-system/stickycanary",
    )
    .unwrap();
    assert_eq!(patched["rollouts"]["checkout"]["override"]["token"], TOKEN);
    assert_eq!(patched["rollouts"]["checkout"]["weight"], 25);
}

fn rollout_yaml(prometheus_port: u16) -> String {
    format!(
        "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {{name: checkout}}
spec:
  wasmPlugin: {{name: stickycanary}}
  canary: {{deployment: checkout-canary}}
  stages:
    - {{weight: 10, duration: 30s}}
    - {{weight: 100}}
  analysis:
    interval: 300ms
    window: 10s
    minRequests: 50
    unavailableGrace: 1h
  prometheus: {{address: \"http://127.0.0.1:{prometheus_port}\"}}
"
    )
}

fn ecds_weight(path: &Path) -> (f64, Value) {
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let config: Value = serde_json::from_str(
        doc.pointer("/resources/0/typed_config/config/configuration/value")
            .and_then(Value::as_str)
            .unwrap(),
    )
    .unwrap();
    (
        config["rollouts"]["checkout"]["weight"].as_f64().unwrap(),
        config,
    )
}

#[test]
fn local_mode_logs_and_status_never_carry_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let ecds: PathBuf = dir.path().join("filter.ecds.json");
    fs::write(&ecds, ecds_document(&plugin_config(json!(0))).to_string()).unwrap();
    let rollout = dir.path().join("rollout.yaml");
    fs::write(&rollout, rollout_yaml(closed_port())).unwrap();
    let status = dir.path().join("status.json");
    let local_args = [
        "local",
        "--rollout",
        rollout.to_str().unwrap(),
        "--envoy-ecds",
        ecds.to_str().unwrap(),
        "--status-file",
        status.to_str().unwrap(),
        "--once",
    ];
    let mut outputs = Vec::new();
    for format in ["text", "json"] {
        let out = stickycanary(&local_args, &[("STICKYCANARY_LOG_FORMAT", format)]);
        assert!(out.status.success(), "{}", all_output(&out));
        outputs.push((format!("local --once ({format})"), all_output(&out)));
    }
    // The controller read the config with the token and applied the first stage around it.
    let (weight, config) = ecds_weight(&ecds);
    assert_eq!(weight, 10.0);
    assert_eq!(config["rollouts"]["checkout"]["override"]["token"], TOKEN);
    assert_eq!(config["rollouts"]["search"]["override"]["token"], TOKEN);

    let status_out = stickycanary(&["status", "--status-file", status.to_str().unwrap()], &[]);
    assert!(status_out.status.success(), "{}", all_output(&status_out));
    outputs.push(("status".into(), all_output(&status_out)));
    let abort = stickycanary(
        &[
            "abort",
            "checkout",
            "--status-file",
            status.to_str().unwrap(),
        ],
        &[],
    );
    assert!(abort.status.success(), "{}", all_output(&abort));
    outputs.push(("abort".into(), all_output(&abort)));
    let (weight, config) = ecds_weight(&ecds);
    assert_eq!(weight, 0.0, "the abort was applied");
    assert_eq!(config["rollouts"]["checkout"]["override"]["token"], TOKEN);

    for (what, text) in &outputs {
        assert!(!text.is_empty(), "{what} printed nothing");
        assert_no_secret(text, what);
    }
    let status_text = fs::read_to_string(&status).unwrap();
    assert!(status_text.contains("RolledBack"), "{status_text}");
    assert_no_secret(&status_text, "the status file");
}

fn spec_with_webhook() -> CanaryRolloutSpec {
    serde_yaml::from_str(&format!(
        r#"
wasmPlugin: {{name: stickycanary, namespace: istio-system}}
canary: {{deployment: checkout-canary}}
prometheus: {{address: "http://127.0.0.1:9090"}}
notification: {{webhook: "http://127.0.0.1:9/hooks/{WEBHOOK_SECRET}"}}
stages:
  - {{weight: 10, duration: 1m}}
  - {{weight: 50, duration: 1m}}
  - {{weight: 100}}
"#
    ))
    .unwrap()
}

#[test]
fn engine_events_notifications_and_status_never_carry_the_webhook_url() {
    let spec = spec_with_webhook();
    assert!(serde_json::to_string(&spec)
        .unwrap()
        .contains(WEBHOOK_SECRET));
    let healthy = || MetricsObservation::Window {
        canary: window(2000.0, 0.5),
        stable: window(9000.0, 0.5),
    };
    let failing = || MetricsObservation::Window {
        canary: window(2000.0, 30.0),
        stable: window(9000.0, 0.5),
    };
    let unavailable = || MetricsObservation::Unavailable {
        reason: "connection refused".into(),
    };
    let t0: Timestamp = "2026-11-26T06:00:00Z".parse().unwrap();
    // A run through every kind of transition: start, advance, outage, pause/resume, breach
    // and rollback; then a second rollout aborted by hand.
    let script: Vec<(i64, MetricsObservation, Option<ManualAction>)> = vec![
        (0, healthy(), None),
        (30, healthy(), None),
        (90, healthy(), None),
        (120, unavailable(), None),
        (150, healthy(), Some(ManualAction::Pause)),
        (180, healthy(), Some(ManualAction::Resume)),
        (210, failing(), None),
        (400, failing(), None),
        (600, failing(), None),
    ];
    let mut texts = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for run in [
        script,
        vec![
            (0, healthy(), None),
            (30, healthy(), Some(ManualAction::Abort)),
        ],
    ] {
        let mut status = CanaryRolloutStatus::default();
        for (seconds, metrics, manual) in run {
            let now = t0 + SignedDuration::from_secs(seconds);
            let decision = decide(&spec, &status, now, &observe(metrics, manual));
            for action in &decision.actions {
                match action {
                    Action::Event {
                        reason, message, ..
                    } => {
                        kinds.insert(*reason);
                        texts.push(format!("Event {reason}: {message}"));
                    }
                    Action::Notify(text) => texts.push(format!("Notify: {text}")),
                    _ => {}
                }
            }
            status = decision.status;
            texts.push(serde_json::to_string(&status).unwrap());
        }
    }
    assert!(
        kinds.len() >= 3,
        "the script raised too few kinds of events to mean anything: {kinds:?}"
    );
    for text in &texts {
        assert_no_secret(text, "engine output");
    }
}

/// A failed webhook call is logged with reqwest's error without its URL (the URL is a secret:
/// webhook URLs usually carry their token in the path).
#[test]
fn a_failing_webhook_is_logged_without_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let ecds = dir.path().join("filter.ecds.json");
    fs::write(&ecds, ecds_document(&plugin_config(json!(0))).to_string()).unwrap();
    let rollout = dir.path().join("rollout.yaml");
    let yaml = rollout_yaml(closed_port()).replace(
        "  stages:",
        &format!(
            "  notification: {{webhook: \"http://127.0.0.1:{}/hooks/{WEBHOOK_SECRET}\"}}\n  stages:",
            closed_port()
        ),
    );
    assert!(yaml.contains(WEBHOOK_SECRET));
    fs::write(&rollout, yaml).unwrap();
    let status = dir.path().join("status.json");
    let out = stickycanary(
        &[
            "local",
            "--rollout",
            rollout.to_str().unwrap(),
            "--envoy-ecds",
            ecds.to_str().unwrap(),
            "--status-file",
            status.to_str().unwrap(),
            "--once",
        ],
        &[("RUST_LOG", "info")],
    );
    let text = all_output(&out);
    assert!(
        text.contains("webhook"),
        "no webhook attempt logged:\n{text}"
    );
    assert_no_secret(&text, "local mode with a failing webhook");
}

/// Credentials in `spec.prometheus.address` (`http://user:password@host`) are used but never
/// printed: not in the start line, not in the "metrics unavailable" reason, not in the local
/// status file (SECURITY.md §7; this was an open finding until `redact::redacted`).
#[test]
fn prometheus_credentials_in_the_url_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let ecds = dir.path().join("filter.ecds.json");
    fs::write(&ecds, ecds_document(&plugin_config(json!(0))).to_string()).unwrap();
    let rollout = dir.path().join("rollout.yaml");
    let yaml = rollout_yaml(closed_port()).replace(
        "http://127.0.0.1:",
        &format!("http://scuser:{WEBHOOK_SECRET}@127.0.0.1:"),
    );
    assert!(yaml.contains(WEBHOOK_SECRET));
    fs::write(&rollout, yaml).unwrap();
    let status = dir.path().join("status.json");
    let out = stickycanary(
        &[
            "local",
            "--rollout",
            rollout.to_str().unwrap(),
            "--envoy-ecds",
            ecds.to_str().unwrap(),
            "--status-file",
            status.to_str().unwrap(),
            "--once",
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", all_output(&out));
    assert_no_secret(&all_output(&out), "local mode output");
    assert_no_secret(&fs::read_to_string(&status).unwrap(), "the status file");
}

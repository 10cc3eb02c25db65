//! One tick, two front ends: each row runs the same tick through the cluster's adapter (the
//! reconciler over the shared fake API server) and local mode's (a `LocalRunner` over an
//! ECDS file and a status file), and both must give the same result, in the contract's
//! order: the world, then the saved status, then the announcements (`docs/contracts.md`,
//! "Decision rules").
//!
//! The notification receiver reads the saved status (the API server's copy, or the status
//! file) when a notification arrives, so a front end that announced before saving is caught.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action as Requeue;
use serde_json::{json, Value};
use stickycanary::crd::{CanaryRollout, CanaryRolloutStatus};
use stickycanary::local::hooks::Hooks;
use stickycanary::local::state::LocalState;
use stickycanary::local::LocalRunner;
use stickycanary::observation::ManualAction;
use support::api::FakeApi;
use support::shop::{self, PLUGIN_PATH, ROLLOUT_PATH};
use support::webhook::{receiver, Received};

/// What a notification receiver got, and the status saved at that moment.
#[derive(Debug, Clone, PartialEq)]
struct Notified {
    body: Value,
    saved_phase: Value,
}

/// What one tick left behind, whichever front end ran it.
#[derive(Debug, PartialEq)]
struct Outcome {
    weight: f64,
    saved_phase: Value,
    notified: Vec<Notified>,
}

enum Fault {
    None,
    /// Every weight write fails.
    WeightWrite,
}

struct Row {
    name: &'static str,
    /// The rollout is at stage 1 (weight 10) and a manual abort is asked for; otherwise it
    /// has not started.
    abort_at_stage_one: bool,
    fault: Fault,
    expected: Outcome,
}

/// A tick that left `weight` and saved `phase`, then announced `text` once, the status
/// already saved when the notification arrived.
fn announced(weight: f64, phase: &str, text: &str) -> Outcome {
    Outcome {
        weight,
        saved_phase: json!(phase),
        notified: vec![Notified {
            body: json!({"rollout": "checkout", "namespace": "shop", "key": "checkout",
                         "text": text}),
            saved_phase: json!(phase),
        }],
    }
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "the first stage is saved before it is announced",
            abort_at_stage_one: false,
            fault: Fault::None,
            expected: announced(
                10.0,
                "Progressing",
                "StageAdvanced: stage 1/2 (10%): weight set to 10% for 1m",
            ),
        },
        Row {
            name: "a failed weight write saves nothing and announces nothing",
            abort_at_stage_one: false,
            fault: Fault::WeightWrite,
            expected: Outcome {
                weight: 0.0,
                saved_phase: Value::Null,
                notified: Vec::new(),
            },
        },
        Row {
            name: "a manual abort rolls back to 0, saved before it is announced",
            abort_at_stage_one: true,
            fault: Fault::None,
            expected: announced(
                0.0,
                "RolledBack",
                "RollingBack: rolling back to 0% (aborted): aborted by an operator",
            ),
        },
    ]
}

fn spec(url: &str) -> Value {
    json!({
        "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
        "canary": {"deployment": "checkout-canary"},
        "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
        "analysis": {"interval": "300ms"},
        // Nothing listens on port 9: metrics are unavailable (no analysis on the first tick).
        "prometheus": {"address": "http://127.0.0.1:9"},
        "notification": {"webhook": url}
    })
}

/// At stage 1 (weight 10) since a minute ago.
fn at_stage_one() -> CanaryRolloutStatus {
    let started = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    serde_json::from_value(json!({
        "phase": "Progressing", "stageIndex": 0, "weight": 10.0,
        "stageStartedAt": started.to_string(), "observedGeneration": 1
    }))
    .unwrap()
}

fn rollout(url: &str) -> Value {
    json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 1, "uid": "u-1",
                     "finalizers": ["stickycanary.dev/cleanup"]},
        "spec": spec(url)
    })
}

type SavedPhase = Arc<dyn Fn() -> Value + Send + Sync>;

/// A notification receiver that records each body with the status saved when it arrived.
async fn notifications(
    saved_phase: SavedPhase,
) -> (String, Received<Notified>, tokio::task::JoinHandle<()>) {
    receiver(move |body| Notified {
        body,
        saved_phase: saved_phase(),
    })
    .await
}

/// The tick through the reconciler; also returns its requeue.
async fn in_the_cluster(row: &Row) -> (Outcome, Requeue) {
    let (client, api) = FakeApi::start();
    let api = Arc::new(api);
    shop::seed_plugin_and_deployments(&api);
    let reader = api.clone();
    let saved: SavedPhase =
        Arc::new(move || reader.get(ROLLOUT_PATH).unwrap()["status"]["phase"].clone());
    let (url, notified, server) = notifications(saved.clone()).await;
    let mut object = rollout(&url);
    if row.abort_at_stage_one {
        object["status"] = serde_json::to_value(at_stage_one()).unwrap();
        object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "abort@1"});
        let mut plugin = api.get(PLUGIN_PATH).unwrap();
        plugin["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"] = json!(10);
        api.insert(PLUGIN_PATH, plugin);
    }
    api.insert(ROLLOUT_PATH, object);
    if let Fault::WeightWrite = row.fault {
        api.fail("patch", "wasmplugins", 500, 100);
    }
    let ctx = support::context(client, Duration::from_secs(2));
    let read: CanaryRollout = serde_json::from_value(api.get(ROLLOUT_PATH).unwrap()).unwrap();
    let requeue = stickycanary::k8s::reconcile::reconcile(Arc::new(read), ctx).await;
    let weight = api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]
        ["weight"]
        .as_f64()
        .unwrap();
    let outcome = Outcome {
        weight,
        saved_phase: saved(),
        notified: notified.lock().unwrap().clone(),
    };
    server.abort();
    let requeue = requeue.unwrap_or_else(|_| Requeue::requeue(Duration::ZERO));
    (outcome, requeue)
}

fn ecds(weight: Option<f64>) -> Value {
    let rollouts = match weight {
        Some(weight) => json!({"checkout": {"hosts": ["checkout"], "weight": weight}}),
        None => json!({}),
    };
    let config = json!({"rollouts": rollouts});
    json!({"resources": [{"name": "stickycanary", "typed_config": {"config": {
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": config.to_string()}}}}]})
}

fn ecds_weight(path: &std::path::Path) -> f64 {
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let config: Value = serde_json::from_str(
        doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    config["rollouts"]["checkout"]["weight"]
        .as_f64()
        .unwrap_or(0.0)
}

/// The tick through local mode's runner.
async fn in_local_mode(row: &Row) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let ecds_path = dir.path().join("filter.ecds.json");
    let status_path = dir.path().join("checkout.status.json");
    let (status, manual, weight) = match row.abort_at_stage_one {
        true => (at_stage_one(), Some(ManualAction::Abort), 10.0),
        false => (CanaryRolloutStatus::default(), None, 0.0),
    };
    fs::write(&ecds_path, ecds(Some(weight)).to_string()).unwrap();
    let file = status_path.clone();
    let saved: SavedPhase = Arc::new(move || match fs::read(&file) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).unwrap()["status"]["phase"].clone(),
        Err(_) => Value::Null,
    });
    let (url, notified, server) = notifications(saved.clone()).await;
    let rollout: CanaryRollout = serde_json::from_value(rollout(&url)).unwrap();
    let state = LocalState {
        rollout: "checkout".into(),
        rollout_file: None,
        envoy_ecds: None,
        prometheus: None,
        status: status.clone(),
    };
    let runner = LocalRunner::new(
        rollout,
        &ecds_path,
        &"http://127.0.0.1:9".into(),
        None,
        Hooks::default(),
        &status_path,
        state,
    )
    .unwrap();
    if let Fault::WeightWrite = row.fault {
        // The rollout key is gone from the plugin config: the weight write fails.
        fs::write(&ecds_path, ecds(None).to_string()).unwrap();
    }
    let report = runner
        .tick(&status, manual, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        report.weight_error.is_some(),
        matches!(row.fault, Fault::WeightWrite)
    );
    let outcome = Outcome {
        weight: ecds_weight(&ecds_path),
        saved_phase: saved(),
        notified: notified.lock().unwrap().clone(),
    };
    server.abort();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tick_gives_the_same_result_in_the_cluster_and_in_local_mode() {
    for row in rows() {
        let (cluster, requeue) = in_the_cluster(&row).await;
        let local = in_local_mode(&row).await;
        assert_eq!(cluster, row.expected, "cluster: {}", row.name);
        assert_eq!(local, row.expected, "local mode: {}", row.name);
        if let (Fault::None, false) = (&row.fault, row.abort_at_stage_one) {
            // A 300ms interval: one tick a second at most, in both front ends (the local
            // loop waits `driver::interval` too; `tests/local.rs` counts its ticks).
            assert_eq!(
                requeue,
                Requeue::requeue(Duration::from_secs(1)),
                "{}",
                row.name
            );
        }
    }
}

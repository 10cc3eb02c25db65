//! Gates in a reconcile, against the shared fake API server (resourceVersion 409s, the
//! status subresource, merge patches, server-side apply, and the chart's RBAC on every request): a manual
//! `confirm-rollout` gate holds the canary's scale-up until an approval for the run's
//! revision appears in the status, and the controller's writes stay within the chart's RBAC
//! (gates add no Kubernetes request of their own).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use stickycanary::k8s::reconcile::{self, Context};
use support::api::FakeApi;
use support::shop::{self, CANARY_PATH, ROLLOUT_PATH};

fn seed(api: &FakeApi) {
    api.insert(
        ROLLOUT_PATH,
        json!({
            "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
            "metadata": {"name": "checkout", "namespace": "shop", "generation": 1, "uid": "u-1"},
            "spec": {
                "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
                "canary": {"deployment": "checkout-canary"},
                "stable": {"name": "checkout-stable"},
                "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
                "analysis": {"interval": "10s"},
                "prometheus": {"address": "http://127.0.0.1:9"},
                "webhooks": [{"name": "release-manager", "type": "confirm-rollout", "approval": "manual"}]
            }
        }),
    );
    shop::seed_plugin_and_deployments(api);
}

fn context(client: Client) -> Arc<Context> {
    support::context(client, Duration::from_secs(2))
}

async fn reconcile_once(api: &FakeApi, ctx: &Arc<Context>) {
    ctx.last_tick.lock().unwrap().clear();
    let stored: CanaryRollout = serde_json::from_value(api.get(ROLLOUT_PATH).unwrap()).unwrap();
    reconcile::reconcile(Arc::new(stored), ctx.clone())
        .await
        .unwrap();
}

/// The writes sent, without Events.
fn writes(api: &FakeApi) -> Vec<(Method, String, Value)> {
    api.seen()
        .into_iter()
        .filter(|s| s.method != Method::GET && !s.path.contains("/events"))
        .filter(|s| s.attributes.verb != "list" && s.attributes.verb != "watch")
        .map(|s| (s.method, s.path, s.body))
        .collect()
}

#[tokio::test]
async fn a_manual_confirm_rollout_gate_holds_the_scale_up_until_the_runs_revision_is_approved() {
    let (client, api) = FakeApi::start();
    seed(&api);
    let ctx = context(client);

    // A new revision: the run starts, but the canary is not scaled up.
    reconcile_once(&api, &ctx).await;
    let sent = writes(&api);
    let paths: Vec<&str> = sent.iter().map(|(_, path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [ROLLOUT_PATH.to_string(), format!("{ROLLOUT_PATH}/status")]
    );
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert_eq!(status["phase"], "ScalingUp");
    assert_eq!(status["gate"]["gate"], "confirm-rollout");
    assert_eq!(status["gate"]["manual"], true);
    let revision = status["canaryRevision"].as_str().unwrap().to_string();
    assert_eq!(status["gate"]["revision"], json!(revision));
    // One GateWaiting Event, whose command names this rollout, its namespace and revision.
    let waiting: Vec<Value> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::POST && s.path.ends_with("/events"))
        .map(|s| s.body)
        .filter(|event| event["reason"] == "GateWaiting")
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let note = waiting[0]["note"].as_str().unwrap();
    assert!(
        note.ends_with(&format!(
            "; approve with: stickycanary approve checkout --gate confirm-rollout --revision {revision} -n shop"
        )),
        "{note}"
    );
    assert!(!note.contains("<rollout>"), "{note}");

    // Still waiting: only the status is written (and no second GateWaiting Event).
    api.clear_seen();
    reconcile_once(&api, &ctx).await;
    let paths: Vec<String> = writes(&api).into_iter().map(|(_, path, _)| path).collect();
    assert_eq!(paths, [format!("{ROLLOUT_PATH}/status")]);

    // An approval of another revision changes nothing.
    let mut stored = api.get(ROLLOUT_PATH).unwrap();
    stored["status"]["approvals"] = json!({"confirmRollout": {"revision": "some-other"}});
    api.insert(ROLLOUT_PATH, stored);
    api.clear_seen();
    reconcile_once(&api, &ctx).await;
    assert!(!writes(&api)
        .iter()
        .any(|(_, path, _)| path.ends_with("/scale")));

    // `stickycanary approve` wrote the run's revision: the canary is scaled up, and the
    // controller's status apply does not write the approvals back.
    let mut stored = api.get(ROLLOUT_PATH).unwrap();
    stored["status"]["approvals"] = json!({"confirmRollout": {"revision": revision}});
    api.insert(ROLLOUT_PATH, stored);
    api.clear_seen();
    reconcile_once(&api, &ctx).await;
    let sent = writes(&api);
    assert_eq!(sent[0].1, format!("{CANARY_PATH}/scale"));
    assert_eq!(sent[0].2, json!({"spec": {"replicas": 1}}));
    let status_apply = &sent.last().unwrap().2;
    assert!(
        status_apply["status"].get("approvals").is_none(),
        "{status_apply}"
    );
    assert_eq!(
        status_apply["status"]["gate"],
        Value::Null,
        "the wait is cleared"
    );
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert_eq!(
        status["approvals"]["confirmRollout"]["revision"],
        json!(revision)
    );
    assert!(status.get("gate").is_none());
    // Every request above passed the chart's RBAC in both install modes.
    api.finish().await;
}

#[test]
fn the_approve_command_names_the_rollout_and_where_it_lives() {
    use stickycanary::engine::approve::ApproveTarget;
    assert_eq!(
        ApproveTarget::in_cluster("checkout", "shop").command("confirm-promotion", "7f3a9c"),
        "stickycanary approve checkout --gate confirm-promotion --revision 7f3a9c -n shop"
    );
    assert_eq!(
        ApproveTarget::local("checkout", std::path::Path::new("/tmp/checkout.status.json"))
            .command("confirm-rollout", "v2"),
        "stickycanary approve checkout --gate confirm-rollout --revision v2 --status-file /tmp/checkout.status.json"
    );
}

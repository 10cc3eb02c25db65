//! The release lifecycle against a mocked Kubernetes API server (the shared fake in
//! `support/`: resourceVersion preconditions and 409s, the status and scale subresources,
//! merge patches, finalizers and deletionTimestamp, and the chart's RBAC on every request).
//! Each test asserts the exact writes (method, path, body) a reconcile sends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use stickycanary::k8s::deployments::{revision_of, workload_state};
use stickycanary::k8s::reconcile::{self, Context};
use stickycanary::observation::WorkloadState;
use support::api::{Authorizer, FakeApi, Seen};
use support::rbac::Mode;
use support::shop::{CANARY_PATH, PLUGIN_PATH, ROLLOUT_PATH, STABLE_PATH};

const SCALED_OBJECT_PATH: &str =
    "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/checkout-canary";

fn plugin(weight: f64) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "stickycanary", "namespace": "istio-system"},
        "spec": {"url": "oci://example/stickycanary:1", "pluginConfig": {
            "rollouts": {"checkout": {"hosts": ["checkout"], "weight": weight}}}}
    })
}

fn rollout(extra_spec: Value) -> Value {
    let mut spec = json!({
        "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
        "canary": {"deployment": "checkout-canary"},
        "stable": {},
        "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
        "analysis": {"interval": "10s"},
        "scaleDownDelay": "30s",
        // Nothing listens on port 9: metrics are unavailable, which never rolls back at once.
        "prometheus": {"address": "http://127.0.0.1:9"}
    });
    support::api::merge_patch(&mut spec, &extra_spec);
    json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 1, "uid": "u-1"},
        "spec": spec
    })
}

/// A Deployment named `name` selecting `version: <track>`, running `image`.
fn deployment(name: &str, track: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "generation": 4},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout", "version": track}},
            "template": {
                "metadata": {
                    "labels": {"app": "checkout", "version": track, "team": format!("team-{track}")},
                    "annotations": {"prometheus.io/scrape": "true"}
                },
                "spec": {"containers": [{"name": "app", "image": image,
                    "env": [{"name": "FLAVOUR", "value": image}]}]}
            }
        },
        "status": rolled_out(4, replicas)
    })
}

/// A Deployment status of a finished rollout of `generation` at `replicas`.
fn rolled_out(generation: i64, replicas: i64) -> Value {
    json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
           "readyReplicas": replicas, "availableReplicas": replicas})
}

fn context(client: Client) -> Arc<Context> {
    support::context(client, Duration::from_secs(2))
}

fn typed<T: serde::de::DeserializeOwned>(api: &FakeApi, path: &str) -> T {
    serde_json::from_value(api.get(path).unwrap_or_else(|| panic!("{path} is gone"))).unwrap()
}

/// One reconcile of the stored rollout (the analysis-interval throttle reset first).
async fn reconcile_once(api: &FakeApi, ctx: &Arc<Context>) -> Result<(), String> {
    ctx.last_tick.lock().unwrap().clear();
    let stored: CanaryRollout = typed(api, ROLLOUT_PATH);
    reconcile::reconcile(Arc::new(stored), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The writes a reconcile sent, in order, without Events (best effort, tested elsewhere).
fn writes(api: &FakeApi) -> Vec<Seen> {
    api.seen()
        .into_iter()
        .filter(|s| s.method != Method::GET && !s.path.contains("/events"))
        .filter(|s| s.attributes.verb != "list" && s.attributes.verb != "watch")
        .collect()
}

fn paths(writes: &[Seen]) -> Vec<(Method, String)> {
    writes
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect()
}

fn status_of(api: &FakeApi) -> Value {
    api.get(ROLLOUT_PATH).unwrap()["status"].clone()
}

fn rv(api: &FakeApi, path: &str) -> Value {
    api.get(path).unwrap()["metadata"]["resourceVersion"].clone()
}

/// A fake cluster with the rollout, its plugin at `weight`, and the two Deployments: stable
/// runs `v1`, the canary runs `canary_image` at `canary_replicas`.
fn seed(
    api: &FakeApi,
    spec: Value,
    status: Option<Value>,
    canary_image: &str,
    canary_replicas: i64,
    weight: f64,
) {
    let mut object = rollout(spec);
    if let Some(status) = status {
        object["status"] = status;
    }
    api.insert(ROLLOUT_PATH, object);
    api.insert(PLUGIN_PATH, plugin(weight));
    api.insert(
        STABLE_PATH,
        deployment("checkout-stable", "stable", "shop/checkout:v1", 2),
    );
    api.insert(
        CANARY_PATH,
        deployment("checkout-canary", "canary", canary_image, canary_replicas),
    );
}

fn revision(api: &FakeApi, path: &str) -> String {
    revision_of(&typed::<Deployment>(api, path))
}

#[test]
fn the_revision_ignores_replicas_selector_labels_and_our_annotations_but_not_the_image() {
    let canary: Deployment =
        serde_json::from_value(deployment("checkout-canary", "canary", "img:v1", 1)).unwrap();
    let stable: Deployment =
        serde_json::from_value(deployment("checkout-stable", "stable", "img:v1", 5)).unwrap();
    let mut stable_json = serde_json::to_value(&stable).unwrap();
    // Same template apart from the selector labels; the team label is not a selector label.
    stable_json["spec"]["template"]["metadata"]["labels"]["team"] = json!("team-canary");
    stable_json["spec"]["template"]["metadata"]["annotations"]["stickycanary.dev/anything"] =
        json!("ours");
    let stable: Deployment = serde_json::from_value(stable_json).unwrap();
    assert_eq!(revision_of(&canary), revision_of(&stable));
    assert_eq!(revision_of(&canary).len(), 16);
    let other: Deployment =
        serde_json::from_value(deployment("checkout-canary", "canary", "img:v2", 1)).unwrap();
    assert_ne!(revision_of(&canary), revision_of(&other));
}

#[test]
fn deployment_state_follows_kubectl_rollout_status() {
    let mut d = deployment("checkout-canary", "canary", "img:v2", 2);
    let rev = revision_of(&serde_json::from_value(d.clone()).unwrap());
    let state = |d: &Value| workload_state(&serde_json::from_value(d.clone()).unwrap(), &rev);
    assert_eq!(state(&d), WorkloadState::Ready);
    d["metadata"]["generation"] = json!(5); // spec changed, controller has not seen it yet
    assert_eq!(state(&d), WorkloadState::Starting);
    d["status"] = rolled_out(5, 2);
    d["status"]["updatedReplicas"] = json!(1);
    assert_eq!(
        state(&d),
        WorkloadState::Starting,
        "not every replica updated"
    );
    d["status"] = rolled_out(5, 2);
    d["status"]["replicas"] = json!(3);
    assert_eq!(
        state(&d),
        WorkloadState::Starting,
        "an old replica still running"
    );
    d["status"] = rolled_out(5, 2);
    d["status"]["availableReplicas"] = json!(1);
    assert_eq!(
        state(&d),
        WorkloadState::Starting,
        "not every replica available"
    );
    d["status"] = rolled_out(5, 2);
    d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"x\" has timed out progressing."}]);
    assert!(matches!(state(&d), WorkloadState::Failed(m) if m.contains("timed out")));
    d["spec"]["replicas"] = json!(0);
    d["status"] = rolled_out(5, 0);
    assert_eq!(state(&d), WorkloadState::Stopped);
    let other =
        revision_of(&serde_json::from_value(deployment("x", "canary", "img:v3", 2)).unwrap());
    let d = deployment("checkout-canary", "canary", "img:v2", 2);
    assert_eq!(
        workload_state(&serde_json::from_value(d).unwrap(), &other),
        WorkloadState::Stopped,
        "another revision is not this one"
    );
}

#[tokio::test]
async fn a_new_revision_adds_the_finalizer_scales_the_canary_up_and_holds_the_weight_until_it_is_ready(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    let ctx = context(client);
    let rollout_rv = rv(&api, ROLLOUT_PATH);
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, format!("{CANARY_PATH}/scale")),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ]
    );
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"finalizers": ["stickycanary.dev/cleanup"], "resourceVersion": rollout_rv}}),
        "the finalizer, conditional on the resourceVersion read"
    );
    assert_eq!(sent[1].body, json!({"spec": {"replicas": 1}}));
    assert_eq!(sent[1].content_type, "application/merge-patch+json");
    let canary_rev = revision(&api, CANARY_PATH);
    let stable_rev = revision(&api, STABLE_PATH);
    assert_ne!(canary_rev, stable_rev);
    let status = status_of(&api);
    assert_eq!(status["phase"], "ScalingUp");
    assert_eq!(status["canaryRevision"], json!(canary_rev));
    assert_eq!(status["stableRevision"], json!(stable_rev));
    assert_eq!(status["salt"], json!(format!("checkout-{canary_rev}")));
    assert_eq!(status["weight"], json!(0.0));
    let stored = api.get(CANARY_PATH).unwrap();
    assert_eq!(
        stored["spec"]["replicas"], 1,
        "the scale subresource set replicas"
    );
    assert_eq!(stored["metadata"]["generation"], 5);

    // The Deployment controller has not caught up: the weight stays at 0, nothing is written
    // but the status.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))]
    );
    // Caught up, one pod updated and available: the first weight leaves 0 with the salt, in
    // one merge patch conditional on the plugin's resourceVersion.
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["status"] = rolled_out(5, 1);
    api.insert(CANARY_PATH, canary);
    let plugin_rv = rv(&api, PLUGIN_PATH);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ]
    );
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"resourceVersion": plugin_rv},
               "spec": {"pluginConfig": {"rollouts": {"checkout": {
                   "weight": 10, "salt": format!("checkout-{canary_rev}")}}}}})
    );
    let config = &api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"];
    assert_eq!(config["salt"], json!(format!("checkout-{canary_rev}")));
    assert_eq!(status_of(&api)["phase"], "Progressing");
    api.finish().await;
}

#[tokio::test]
async fn first_sight_of_equal_revisions_writes_only_the_status() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v1", 0, 0.0);
    // The same template but for the selector label `version` (and replicas).
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["spec"]["template"]["metadata"]["labels"]["team"] = json!("team-stable");
    api.insert(CANARY_PATH, canary);
    assert_eq!(revision(&api, CANARY_PATH), revision(&api, STABLE_PATH));
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "the finalizer and the status; no scale, no weight"
    );
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");
    api.finish().await;
}

/// A status in the middle of the last stage of `revision`'s run, at 10%.
fn progressing(revision: &str, stable: &str) -> Value {
    json!({"phase": "Progressing", "stageIndex": 0, "weight": 10.0,
           "stageStartedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
           "canaryRevision": revision, "stableRevision": stable, "salt": "checkout-x",
           "observedGeneration": 1})
}

#[tokio::test]
async fn promotion_copies_the_canary_template_onto_stable_keeping_stables_selector_labels() {
    let (client, api) = FakeApi::start();
    // Seed, then read the revisions the Deployments have, then put the run's status in.
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    let canary_rev = revision(&api, CANARY_PATH);
    let stable_rev = revision(&api, STABLE_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "promote@1"});
    object["status"] = progressing(&canary_rev, &stable_rev);
    api.insert(ROLLOUT_PATH, object);
    let stable_rv = rv(&api, STABLE_PATH);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "weight 100, the stable template, the status, then the handled request"
    );
    assert_eq!(
        sent[0].body["spec"]["pluginConfig"]["rollouts"]["checkout"],
        json!({"weight": 100}),
        "no salt once the weight is not 0"
    );
    assert_eq!(
        sent[1].body,
        json!({
            "metadata": {"resourceVersion": stable_rv,
                         "annotations": {"stickycanary.dev/revision": canary_rev}},
            "spec": {"template": {
                "metadata": {
                    // The canary's labels, but stable's value for every selector key.
                    "labels": {"app": "checkout", "version": "stable", "team": "team-canary"},
                    "annotations": {"prometheus.io/scrape": "true"}
                },
                "spec": {"containers": [{"name": "app", "image": "shop/checkout:v2",
                    "env": [{"name": "FLAVOUR", "value": "shop/checkout:v2"}]}]}
            }}
        })
    );
    let stable: Deployment = typed(&api, STABLE_PATH);
    assert_eq!(
        revision_of(&stable),
        canary_rev,
        "stable now runs the run's revision"
    );
    assert_eq!(
        stable.spec.selector.match_labels.unwrap()["version"],
        "stable",
        "the selector is untouched"
    );
    assert_eq!(status_of(&api)["phase"], "Promoting");

    // The stable rollout is under way (generation 5 not observed yet): wait, write nothing.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))]
    );
    assert_eq!(status_of(&api)["phase"], "Promoting");
    // Rolled out: weight back to 0 (users on the new stable), Finalising.
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"] = rolled_out(5, 2);
    api.insert(STABLE_PATH, stable);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ]
    );
    assert_eq!(
        sent[0].body["spec"]["pluginConfig"]["rollouts"]["checkout"],
        json!({"weight": 0})
    );
    assert_eq!(status_of(&api)["phase"], "Finalising");
    api.finish().await;
}

#[tokio::test]
async fn a_stable_edited_since_it_was_read_gets_a_409_and_no_status_claims_the_copy() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    let canary_rev = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "promote@1"});
    object["status"] = progressing(&canary_rev, "old");
    api.insert(ROLLOUT_PATH, object);
    // Someone patches stable between our read and our write: the server answers 409.
    api.fail("patch", "deployments", 409, 1);
    let ctx = context(client);
    let error = reconcile_once(&api, &ctx).await.unwrap_err();
    assert!(error.contains("checkout-stable"), "{error}");
    assert_eq!(
        status_of(&api)["phase"],
        "Progressing",
        "the status is not advanced"
    );
    let stable: Deployment = typed(&api, STABLE_PATH);
    assert_ne!(revision_of(&stable), canary_rev);
    api.finish().await;
}

/// Stable as a finished promotion leaves it: the canary's template (image `image`, the
/// canary's non-selector labels, stable's selector labels), our revision annotation, rolled
/// out.
fn promoted_stable(api: &FakeApi, image: &str) {
    let mut stable = deployment("checkout-stable", "stable", image, 2);
    stable["spec"]["template"]["metadata"]["labels"]["team"] = json!("team-canary");
    let rev = revision_of(&serde_json::from_value::<Deployment>(stable.clone()).unwrap());
    stable["metadata"]["annotations"] = json!({"stickycanary.dev/revision": rev});
    api.insert(STABLE_PATH, stable);
}

fn finalising(revision: &str, since: &str) -> Value {
    json!({"phase": "Finalising", "stageIndex": 1, "weight": 0.0, "canaryRevision": revision,
           "stableRevision": "old", "phaseStartedAt": since, "observedGeneration": 1})
}

#[tokio::test]
async fn finalising_scales_the_canary_down_after_the_delay_through_the_scale_subresource() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 0.0);
    promoted_stable(&api, "shop/checkout:v2");
    let canary_rev = revision(&api, CANARY_PATH);
    assert_eq!(revision(&api, STABLE_PATH), canary_rev);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    let just_now = k8s_openapi::jiff::Timestamp::now().to_string();
    object["status"] = finalising(&canary_rev, &just_now);
    api.insert(ROLLOUT_PATH, object.clone());
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))],
        "within scaleDownDelay: nothing scaled"
    );
    let long_ago = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(31))
    .to_string();
    object["status"] = finalising(&canary_rev, &long_ago);
    api.insert(ROLLOUT_PATH, object);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, format!("{CANARY_PATH}/scale")),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ]
    );
    assert_eq!(sent[0].body, json!({"spec": {"replicas": 0}}));
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 0);
    let status = status_of(&api);
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["stableRevision"], json!(canary_rev));
    assert_eq!(status["lastPromotedRevision"], json!(canary_rev));
    api.finish().await;
}

fn scaled_object() -> Value {
    json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
           "metadata": {"name": "checkout-canary", "namespace": "shop",
                        "annotations": {"autoscaling.keda.sh/paused-replicas": "0"}},
           "spec": {"scaleTargetRef": {"name": "checkout-canary"}, "minReplicaCount": 1}})
}

#[tokio::test]
async fn with_keda_the_canary_is_scaled_through_the_paused_replicas_annotation() {
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({"canary": {"scaledObject": "checkout-canary"}}),
        None,
        "shop/checkout:v2",
        0,
        0.0,
    );
    api.insert(SCALED_OBJECT_PATH, scaled_object());
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, SCALED_OBJECT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "scale-up lifts KEDA's pause; replicas are KEDA's"
    );
    assert_eq!(
        sent[1].body,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}})
    );
    let stored = api.get(SCALED_OBJECT_PATH).unwrap();
    assert!(stored["metadata"]
        .get("annotations")
        .is_none_or(|a| a.get("autoscaling.keda.sh/paused-replicas").is_none()));
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 0);

    // Scale-down after a promotion: paused at 0.
    promoted_stable(&api, "shop/checkout:v2");
    let canary_rev = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    let long_ago = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(60))
    .to_string();
    object["status"] = finalising(&canary_rev, &long_ago);
    api.insert(ROLLOUT_PATH, object);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(sent[0].path, SCALED_OBJECT_PATH);
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}})
    );
    assert_eq!(
        api.get(SCALED_OBJECT_PATH).unwrap()["metadata"]["annotations"]
            ["autoscaling.keda.sh/paused-replicas"],
        "0"
    );
    api.finish().await;
}

/// A deleted rollout (deletionTimestamp set, finalizers `finalizers`).
fn deleted(api: &FakeApi, revert: bool, finalizers: Value) {
    seed(
        api,
        json!({"revertOnDeletion": revert}),
        Some(json!({"phase": "Progressing", "weight": 25.0})),
        "shop/checkout:v2",
        1,
        25.0,
    );
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = finalizers;
    object["metadata"]["deletionTimestamp"] = json!("2026-11-30T06:00:00Z");
    api.insert(ROLLOUT_PATH, object);
}

#[tokio::test]
async fn revert_on_deletion_sets_the_weight_to_zero_before_the_finalizer_is_removed() {
    let (client, api) = FakeApi::start();
    deleted(
        &api,
        true,
        json!(["example.com/keep", "stickycanary.dev/cleanup"]),
    );
    let ctx = context(client);
    ctx.metrics.set_rollout(
        "shop",
        "checkout",
        25.0,
        stickycanary::crd::Phase::Progressing,
    );
    let rollout_rv = rv(&api, ROLLOUT_PATH);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ]
    );
    assert_eq!(
        sent[0].body["spec"]["pluginConfig"]["rollouts"]["checkout"],
        json!({"weight": 0})
    );
    assert_eq!(
        sent[1].body,
        json!({"metadata": {"finalizers": ["example.com/keep"], "resourceVersion": rollout_rv}}),
        "only our finalizer goes, conditional on the resourceVersion read"
    );
    assert!(
        !ctx.metrics.encode().contains("rollout=\"checkout\""),
        "the rollout's series are dropped"
    );
    // Another finalizer remains: the object stays until its owner removes it.
    assert!(api.get(ROLLOUT_PATH).is_some());
    api.finish().await;
}

#[tokio::test]
async fn without_revert_on_deletion_the_weight_is_left_and_the_last_finalizer_lets_the_object_go() {
    let (client, api) = FakeApi::start();
    deleted(&api, false, json!(["stickycanary.dev/cleanup"]));
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())]
    );
    assert_eq!(sent[0].body["metadata"]["finalizers"], json!([]));
    assert!(api.get(ROLLOUT_PATH).is_none(), "the API server deleted it");
    assert_eq!(
        api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        25.0
    );
    api.finish().await;
}

#[tokio::test]
async fn a_finalizer_removal_on_a_stale_read_gets_a_409_and_is_retried_by_the_next_reconcile() {
    let (client, api) = FakeApi::start();
    deleted(&api, false, json!(["stickycanary.dev/cleanup"]));
    let stale: CanaryRollout = typed(&api, ROLLOUT_PATH);
    // Someone adds a finalizer after our read.
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup", "example.com/late"]);
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client);
    let result = reconcile::reconcile(Arc::new(stale), ctx.clone()).await;
    assert!(result.is_err(), "409 on the stale resourceVersion");
    assert_eq!(
        api.get(ROLLOUT_PATH).unwrap()["metadata"]["finalizers"],
        json!(["stickycanary.dev/cleanup", "example.com/late"]),
        "the late finalizer was not dropped"
    );
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        api.get(ROLLOUT_PATH).unwrap()["metadata"]["finalizers"],
        json!(["example.com/late"])
    );
    api.finish().await;
}

#[tokio::test]
async fn every_lifecycle_request_is_allowed_by_the_chart_and_every_lifecycle_rule_is_used() {
    let authorizer = Authorizer::modes(vec![Mode::ClusterWide, Mode::namespaced(&["shop"])]);
    // Scale up, promote (template copy), scale down, KEDA both ways, delete.
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    let canary_rev = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "promote@1"});
    object["status"] = progressing(&canary_rev, "old");
    api.insert(ROLLOUT_PATH, object);
    reconcile_once(&api, &ctx).await.unwrap();
    api.finish().await;
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(
        &api,
        json!({"canary": {"scaledObject": "checkout-canary"}}),
        None,
        "shop/checkout:v2",
        0,
        0.0,
    );
    api.insert(SCALED_OBJECT_PATH, scaled_object());
    reconcile_once(&api, &context(client)).await.unwrap();
    api.finish().await;
    authorizer.assert_nothing_denied();
    let used = authorizer.used();
    for (group, resource, verb) in [
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "patch"),
        ("keda.sh", "scaledobjects", "patch"),
        ("stickycanary.dev", "canaryrollouts", "patch"),
    ] {
        let triple = (group.to_string(), resource.to_string(), verb.to_string());
        assert!(used.contains(&triple), "{triple:?} unused in {used:?}");
    }
}

#[tokio::test]
async fn a_failed_scale_up_writes_no_status_and_the_next_reconcile_asks_again() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    api.fail("patch", "deployments/scale", 500, 1);
    let ctx = context(client);
    let error = reconcile_once(&api, &ctx).await.unwrap_err();
    assert!(error.contains("checkout-canary"), "{error}");
    // The world first, then the record of it: nothing claims a run that did not start. The
    // rollout had no status yet, and the failure writes only the Degraded condition that
    // says why (under its own field manager), no phase or weight from the read.
    let status = status_of(&api);
    assert!(status.get("phase").is_none(), "{status}");
    assert!(status.get("weight").is_none(), "{status}");
    assert!(status.get("canaryRevision").is_none(), "{status}");
    assert_eq!(status["conditions"][0]["reason"], "DeploymentUnavailable");
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![
            (Method::PATCH, format!("{CANARY_PATH}/scale")),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ]
    );
    assert_eq!(status_of(&api)["phase"], "ScalingUp");
    api.finish().await;
}

#[tokio::test]
async fn an_abort_while_promoting_is_refused_with_a_warning_event_and_the_request_is_answered() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 100.0);
    let canary_rev = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "abort@1"});
    object["status"] = json!({"phase": "Promoting", "stageIndex": 1, "weight": 100.0,
        "canaryRevision": canary_rev, "stableRevision": "old", "observedGeneration": 1,
        "phaseStartedAt": k8s_openapi::jiff::Timestamp::now().to_string()});
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    // The hand-over goes on (stable gets the template); users stay where they are.
    assert!(
        !sent
            .iter()
            .any(|s| s.path == PLUGIN_PATH || s.path == format!("{CANARY_PATH}/scale")),
        "no weight change, no scale-down: {:?}",
        paths(&sent)
    );
    let events: Vec<Value> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::POST && s.path.ends_with("/events"))
        .map(|s| s.body)
        .collect();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|event| event["reason"] == "ActionRefused")
        .collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(refused[0]["type"], "Warning");
    let note = refused[0]["note"].as_str().unwrap();
    assert!(
        note.starts_with("abort refused: the rollout is Promoting: stable is taking over"),
        "{note}"
    );
    let stored = api.get(ROLLOUT_PATH).unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["stickycanary.dev/request-handled"], "abort@1",
        "answered once, not repeated every reconcile"
    );
    assert_eq!(stored["status"]["phase"], "Promoting");
    assert_eq!(stored["status"]["weight"], 100.0);
    api.finish().await;
}

/// Events the reconciles raised, by reason.
fn event_reasons(api: &FakeApi) -> Vec<String> {
    api.seen()
        .into_iter()
        .filter(|s| s.method == Method::POST && s.path.contains("/events"))
        .map(|s| s.body["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_revert_during_promoting_copies_the_reverted_template_back_onto_stable_and_ends_waiting_on_it(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 100.0);
    // Stable ran v1 (an earlier promotion), then the copy of v2 started rolling out.
    promoted_stable(&api, "shop/checkout:v1");
    let r1 = revision(&api, STABLE_PATH);
    promoted_stable(&api, "shop/checkout:v2");
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"]["generation"] = json!(5);
    api.insert(STABLE_PATH, stable);
    let r2 = revision(&api, CANARY_PATH);
    assert_eq!(revision(&api, STABLE_PATH), r2);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["status"] = json!({"phase": "Promoting", "stageIndex": 1, "weight": 100.0,
        "canaryRevision": r2, "stableRevision": r1, "promotedFrom": r1, "salt": "checkout-x",
        "phaseStartedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
        "observedGeneration": 1});
    api.insert(ROLLOUT_PATH, object);
    // Git reverts the canary Deployment to v1.
    let mut canary = deployment("checkout-canary", "canary", "shop/checkout:v1", 1);
    canary["spec"]["template"]["metadata"]["labels"]["team"] = json!("team-canary");
    api.insert(CANARY_PATH, canary);
    assert_eq!(revision(&api, CANARY_PATH), r1);
    let stable_rv = rv(&api, STABLE_PATH);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "stable gets v1 back; no weight write: users stay on the serving canary"
    );
    assert_eq!(sent[0].body["metadata"]["resourceVersion"], stable_rv);
    assert_eq!(
        sent[0].body["metadata"]["annotations"]["stickycanary.dev/revision"],
        json!(r1)
    );
    assert_eq!(
        revision(&api, STABLE_PATH),
        r1,
        "stable's template is v1 again"
    );
    assert_eq!(event_reasons(&api), vec!["Reverted".to_string()]);
    let status = status_of(&api);
    assert_eq!(status["phase"], "Promoting");
    assert_eq!(status["canaryRevision"], json!(r1));
    assert_eq!(status["revertedFrom"], json!(r2));
    assert_eq!(
        api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        100.0
    );
    // Stable rolled back: weight 0, Finalising.
    let mut stable = api.get(STABLE_PATH).unwrap();
    let generation = stable["metadata"]["generation"].clone();
    stable["status"] = rolled_out(generation.as_i64().unwrap(), 2);
    api.insert(STABLE_PATH, stable);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        0.0
    );
    assert_eq!(status_of(&api)["phase"], "Finalising");
    // After the drain: the canary is scaled down and the rollout waits on v1, Ready.
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["status"]["phaseStartedAt"] = json!((k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(31))
    .to_string());
    api.insert(ROLLOUT_PATH, object);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 0);
    let status = status_of(&api);
    assert_eq!(status["phase"], "WaitingForRelease");
    assert_eq!(status["stableRevision"], json!(r1));
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    api.finish().await;
}

#[tokio::test]
async fn a_wiped_status_reads_stables_revision_and_the_failed_revision_from_the_deployments() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 0.0);
    let r2 = revision(&api, CANARY_PATH);
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["metadata"]["annotations"] = json!({"stickycanary.dev/failed-revision": r2});
    api.insert(CANARY_PATH, canary);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert!(
        !paths(&sent).contains(&(Method::PATCH, PLUGIN_PATH.to_string())),
        "no weight for a revision that failed before: {sent:?}"
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "RolledBack");
    assert_eq!(status["failedRevision"], json!(r2));
    assert_eq!(status["stableRevision"], json!(revision(&api, STABLE_PATH)));
    api.finish().await;
}

#[tokio::test]
async fn a_rollback_records_the_failed_revision_on_the_canary_deployment() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    let r2 = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "abort@1"});
    object["status"] = progressing(&r2, &revision(&api, STABLE_PATH));
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    let record = sent
        .iter()
        .find(|s| s.path == CANARY_PATH)
        .expect("a write of the canary Deployment");
    assert_eq!(
        record.body,
        json!({"metadata": {"annotations": {"stickycanary.dev/failed-revision": r2}}})
    );
    assert_eq!(revision(&api, CANARY_PATH), r2, "the revision is unchanged");
    assert_eq!(status_of(&api)["phase"], "RolledBack");
    api.finish().await;
}

#[tokio::test]
async fn a_canary_deployment_on_a_new_revision_wakes_its_rollout_before_the_interval() {
    use futures::StreamExt;
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({"analysis": {"interval": "1h"}}),
        None,
        "shop/checkout:v1",
        0,
        0.0,
    );
    // The canary runs stable's revision; the rollout waits for a release and was ticked just
    // now: without the Deployment watch, nothing would happen for an hour.
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["spec"]["template"]["metadata"]["labels"]["team"] = json!("team-stable");
    api.insert(CANARY_PATH, canary.clone());
    let v1 = revision(&api, CANARY_PATH);
    assert_eq!(v1, revision(&api, STABLE_PATH));
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["status"] = json!({"phase": "WaitingForRelease", "weight": 0.0,
        "canaryRevision": v1, "stableRevision": v1, "observedGeneration": 1});
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client.clone());
    ctx.last_tick
        .lock()
        .unwrap()
        .insert("shop/checkout".to_string(), std::time::Instant::now());
    let controller = stickycanary::k8s::controller(
        kube::Api::namespaced(client.clone(), "shop"),
        stickycanary::k8s::deployments_api(client.clone(), Some("shop")),
        ctx.clone(),
    )
    .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
    .for_each(|_| std::future::ready(()));
    let deployments = "/apis/apps/v1/namespaces/shop/deployments";
    let rollouts = "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts";
    let started = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::pin!(controller);
        let mut released = false;
        loop {
            tokio::select! {
                () = &mut controller => return false,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if !released && api.watching(deployments) && api.watching(rollouts) {
                // Git changes the canary's image.
                canary["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("shop/checkout:v2");
                canary["metadata"]["generation"] = json!(5);
                api.modify(CANARY_PATH, canary.clone());
                released = true;
            }
            if status_of(&api)["phase"] == "ScalingUp" {
                return true;
            }
        }
    })
    .await;
    assert_eq!(started, Ok(true), "the run started within seconds");
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 1);
    api.finish().await;
}

/// A rollout being deleted (`revertOnDeletion`: `revert`, our finalizer only) whose run is
/// in `phase` at `weight`.
fn deleting(api: &FakeApi, extra_spec: Value, phase: &str, weight: f64) {
    seed(api, extra_spec, None, "shop/checkout:v2", 1, weight);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["deletionTimestamp"] =
        json!(k8s_openapi::jiff::Timestamp::now().to_string());
    object["status"] = json!({"phase": phase, "weight": weight});
    api.insert(ROLLOUT_PATH, object);
}

fn plugin_weight(api: &FakeApi) -> Value {
    api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"].clone()
}

#[tokio::test]
async fn deleting_a_rolled_back_rollout_hands_the_canary_back_to_keda() {
    let (client, api) = FakeApi::start();
    deleting(
        &api,
        json!({"canary": {"scaledObject": "checkout-canary"}}),
        "RolledBack",
        0.0,
    );
    api.insert(SCALED_OBJECT_PATH, scaled_object());
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, SCALED_OBJECT_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "KEDA's pause lifted, then the finalizer removed"
    );
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}})
    );
    assert!(api.get(SCALED_OBJECT_PATH).unwrap()["metadata"]
        .get("annotations")
        .is_none_or(|a| a.get("autoscaling.keda.sh/paused-replicas").is_none()));
    assert!(api.get(ROLLOUT_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn deleting_during_promoting_with_revert_on_deletion_finishes_the_promotion_before_users_move_to_stable(
) {
    let (client, api) = FakeApi::start();
    deleting(&api, json!({"revertOnDeletion": true}), "Promoting", 100.0);
    // The promotion's copy is on stable, which is still rolling it out.
    promoted_stable(&api, "shop/checkout:v2");
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"]["generation"] = json!(5);
    api.insert(STABLE_PATH, stable);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![],
        "no weight write, the finalizer stays"
    );
    assert_eq!(plugin_weight(&api), 100.0, "users stay on the canary");
    assert!(api.get(ROLLOUT_PATH).is_some());
    // Stable rolled out: now users go to it, then the finalizer goes.
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"] = rolled_out(5, 2);
    api.insert(STABLE_PATH, stable);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ]
    );
    assert_eq!(plugin_weight(&api), 0.0);
    assert!(api.get(ROLLOUT_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn deleting_with_revert_on_deletion_keeps_users_on_the_canary_when_stable_failed() {
    let (client, api) = FakeApi::start();
    deleting(
        &api,
        json!({"revertOnDeletion": true}),
        "PromotionFailed",
        100.0,
    );
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet timed out"}]);
    api.insert(STABLE_PATH, stable);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())],
        "no weight write: stable does not serve"
    );
    assert_eq!(plugin_weight(&api), 100.0);
    assert_eq!(event_reasons(&api), vec!["DeletionKeptWeight".to_string()]);
    assert!(api.get(ROLLOUT_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn deleting_during_promoting_without_revert_on_deletion_leaves_the_weight_and_both_deployments(
) {
    let (client, api) = FakeApi::start();
    deleting(&api, json!({}), "Promoting", 100.0);
    promoted_stable(&api, "shop/checkout:v2");
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())],
        "only the finalizer goes: stable's Deployment controller finishes the copy's rollout"
    );
    assert_eq!(plugin_weight(&api), 100.0);
    assert_eq!(
        api.get(CANARY_PATH).unwrap()["spec"]["replicas"],
        1,
        "the canary serving users stays up"
    );
    api.finish().await;
}

#[tokio::test]
async fn deployments_selecting_on_different_keys_hold_the_rollout_in_invalid_spec_naming_the_field()
{
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    // The canary selects on `app` only: a template copied onto stable would never match.
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["spec"]["selector"]["matchLabels"] = json!({"app": "checkout"});
    api.insert(CANARY_PATH, canary);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "the finalizer and the status: no scale-up"
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "InvalidSpec");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    let message = degraded["message"].as_str().unwrap();
    assert!(message.starts_with("spec.stable.deployment: checkout-stable selects on {app=checkout, version=stable} but the canary checkout-canary on {app=checkout}"), "{message}");
    assert!(!message.contains('\n'));
    api.finish().await;
}

#[tokio::test]
async fn a_status_wiped_after_a_promotion_drains_and_scales_down_the_canary_left_up() {
    let (client, api) = FakeApi::start();
    // Wiped while Finalising: both Deployments on v2, the canary still up, weight 0.
    seed(
        &api,
        json!({"scaleDownDelay": "1s"}),
        None,
        "shop/checkout:v2",
        1,
        0.0,
    );
    promoted_stable(&api, "shop/checkout:v2");
    let v2 = revision(&api, CANARY_PATH);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    let status = status_of(&api);
    assert_eq!(status["phase"], "WaitingForRelease");
    assert_eq!(
        status["lastPromotedRevision"],
        json!(v2),
        "read back from stable"
    );
    assert_eq!(
        api.get(CANARY_PATH).unwrap()["spec"]["replicas"],
        1,
        "the drain first"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 0);
    api.finish().await;
}

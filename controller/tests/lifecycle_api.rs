//! The release lifecycle against a mocked Kubernetes API server (the shared fake in
//! `support/`: resourceVersion preconditions and 409s, the status and scale subresources,
//! merge patches, server-side apply with managedFields (and the apply that creates),
//! finalizers and deletionTimestamp, garbage collection by ownerReferences, and the chart's
//! RBAC on every request). Each test asserts the exact writes (method, path, content type,
//! body) a reconcile sends.
//!
//! The world: the workload Deployment `checkout-canary` (Git's; `version: canary`) and the
//! stable Deployment the controller generates from it, `checkout-stable`
//! (`spec.stable.name`), owned by the rollout `u-1` (see `support::shop::generated_stable`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use stickycanary::k8s::deployments::{revision_of, workload_state};
use stickycanary::k8s::reconcile::{self, Context};
use stickycanary::observation::WorkloadState;
use support::api::{Authorizer, FakeApi, Seen};
use support::rbac::Mode;
use support::shop::{
    generated_stable, owner_reference, stable_apply_body, template_annotation, CANARY_PATH,
    PLUGIN_PATH, ROLLOUT_PATH, ROLLOUT_UID, STABLE_PATH,
};
use support::ssa::owned;

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
        "stable": {"name": "checkout-stable"},
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

/// The workload Deployment running `image` at `replicas`.
fn workload(image: &str, replicas: i64) -> Value {
    deployment("checkout-canary", "canary", image, replicas)
}

/// The generated stable as a bootstrap or a promotion of the workload at `image` leaves it,
/// rolled out at `replicas`.
fn stable_of(image: &str, replicas: i64) -> Value {
    generated_stable(&workload(image, 0), ROLLOUT_UID, replicas)
}

/// A fake cluster with the rollout, its plugin at `weight`, the generated stable of `v1` at 2
/// replicas, and the workload running `canary_image` at `canary_replicas`.
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
    api.insert(STABLE_PATH, stable_of("shop/checkout:v1", 2));
    api.insert(CANARY_PATH, workload(canary_image, canary_replicas));
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
async fn first_sight_of_a_workload_on_the_converged_stables_revision_writes_only_the_status() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v1", 0, 0.0);
    // The generated stable holds the workload's template but for `version` (and replicas).
    assert_eq!(revision(&api, CANARY_PATH), revision(&api, STABLE_PATH));
    let stable_before = api.get(STABLE_PATH).unwrap();
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "the finalizer and the status; no apply of a converged stable, no scale, no weight"
    );
    assert_eq!(api.get(STABLE_PATH).unwrap(), stable_before);
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

/// The controller's apply of the generated stable: a forced server-side apply under the
/// `stickycanary` field manager.
fn assert_stable_apply(seen: &Seen) {
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(seen.path, STABLE_PATH);
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(seen.param("fieldManager").as_deref(), Some("stickycanary"));
    assert_eq!(seen.param("force").as_deref(), Some("true"));
}

/// A rollout at its last stage of the workload's revision with a `promote` request pending.
fn promote_requested(api: &FakeApi) -> (String, String) {
    let canary_rev = revision(api, CANARY_PATH);
    let stable_rev = revision(api, STABLE_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "promote@1"});
    object["status"] = progressing(&canary_rev, &stable_rev);
    api.insert(ROLLOUT_PATH, object);
    (canary_rev, stable_rev)
}

#[tokio::test]
async fn promotion_applies_the_workloads_template_to_the_generated_stable_with_its_annotations_and_owner(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    // Someone (an autoscaler, `kubectl scale`) runs stable at 3: the apply keeps that.
    api.insert(STABLE_PATH, stable_of("shop/checkout:v1", 3));
    let (canary_rev, stable_rev) = promote_requested(&api);
    assert_ne!(canary_rev, stable_rev);
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
        "weight 100, the stable apply, the status, then the handled request"
    );
    assert_eq!(
        sent[0].body["spec"]["pluginConfig"]["rollouts"]["checkout"],
        json!({"weight": 100}),
        "no salt once the weight is not 0"
    );
    assert_stable_apply(&sent[1]);
    let workload_now = api.get(CANARY_PATH).unwrap();
    assert_eq!(
        sent[1].body,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "checkout-stable", "namespace": "shop",
                "labels": {"stickycanary.dev/rollout": "checkout"},
                "annotations": {
                    "stickycanary.dev/revision": canary_rev,
                    "stickycanary.dev/template": template_annotation(&workload_now),
                },
                "ownerReferences": [{"apiVersion": "stickycanary.dev/v1alpha1",
                    "kind": "CanaryRollout", "name": "checkout", "uid": "u-1",
                    "controller": true}],
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "checkout", "version": "stable"}},
                "template": {
                    "metadata": {
                        // The workload's labels, with the stable subset's value of `version`.
                        "labels": {"app": "checkout", "version": "stable", "team": "team-canary"},
                        "annotations": {"prometheus.io/scrape": "true"}
                    },
                    "spec": {"containers": [{"name": "app", "image": "shop/checkout:v2",
                        "env": [{"name": "FLAVOUR", "value": "shop/checkout:v2"}]}]}
                }
            }
        })
    );
    // The recorded template is the workload's own, as Git wrote it (`version: canary`).
    let recorded: Value = serde_json::from_str(
        sent[1].body["metadata"]["annotations"]["stickycanary.dev/template"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded, workload_now["spec"]["template"]);
    assert_eq!(
        sent[1].body,
        stable_apply_body(&workload_now, ROLLOUT_UID, 3)
    );
    let stable: Deployment = typed(&api, STABLE_PATH);
    assert_eq!(
        revision_of(&stable),
        canary_rev,
        "stable now runs the run's revision"
    );
    assert_eq!(
        stable.metadata.generation,
        Some(5),
        "a new rollout of stable"
    );
    let fields = owned(&api.get(STABLE_PATH).unwrap(), "stickycanary", "Apply", "");
    assert!(
        fields.contains("spec.template.spec.containers")
            && fields.contains("metadata.annotations.stickycanary.dev/template"),
        "{fields:?}"
    );
    assert_eq!(status_of(&api)["phase"], "Promoting");

    // The stable rollout is under way (generation 5 not observed yet): wait, write nothing.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))],
        "the stable just applied is converged: no second apply"
    );
    assert_eq!(status_of(&api)["phase"], "Promoting");
    // Rolled out: weight back to 0 (users on the new stable), Finalising.
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"] = rolled_out(5, 3);
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

/// Deployments, as a cluster admin sees them (not the controller's RBAC).
fn deployments_as_admin(api: &FakeApi) -> kube::Api<Deployment> {
    let admin = Authorizer::user_with(vec![support::rbac::Rule {
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        verbs: vec!["*".into()],
    }]);
    kube::Api::namespaced(api.client_as(admin), "shop")
}

/// The rollout was held in InvalidSpec with a message starting with `prefix`, and only its
/// finalizer and its status were written (`why` says what was not).
fn assert_refused(api: &FakeApi, prefix: &str, why: &str) {
    assert_eq!(
        paths(&writes(api)),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "{why}"
    );
    let message = invalid_spec_message(api);
    assert!(message.starts_with(prefix), "{message}");
}

/// A rollout at rest on v1 (the workload scaled down, the generated stable serving v1, the
/// finalizer set), reconciled once; and v1's revision.
async fn at_rest_on_v1() -> (FakeApi, Arc<Context>, String) {
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({}),
        Some(json!({"phase": "WaitingForRelease", "weight": 0.0, "observedGeneration": 1})),
        "shop/checkout:v1",
        0,
        0.0,
    );
    applied_stable(&api, "shop/checkout:v1", 2).await;
    let v1 = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["status"]["canaryRevision"] = json!(v1);
    object["status"]["stableRevision"] = json!(v1);
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    (api, ctx, v1)
}

/// Replaces the seeded stable (which has no managedFields) with one a previous controller
/// apply of the workload at `image` created, so field ownership is as on a cluster: the
/// `stickycanary` Apply entry owns the fields the controller sets. Rolled out.
async fn applied_stable(api: &FakeApi, image: &str, replicas: i64) {
    api.store.lock().unwrap().objects.remove(STABLE_PATH);
    let body = stable_apply_body(&workload(image, 0), ROLLOUT_UID, replicas);
    let params = kube::api::PatchParams::apply("stickycanary").force();
    deployments_as_admin(api)
        .patch("checkout-stable", &params, &kube::api::Patch::Apply(&body))
        .await
        .unwrap();
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"] = rolled_out(1, replicas);
    api.insert(STABLE_PATH, stable);
}

/// Another writer changes the generated stable's image under its own field manager, as
/// `kubectl edit` does (a merge patch with `fieldManager=kubectl-edit`).
async fn edit_stable_image(api: &FakeApi, image: &str) {
    let deployments = deployments_as_admin(api);
    let params = kube::api::PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": image, "env": [{"name": "FLAVOUR", "value": image}]}]}}}});
    deployments
        .patch("checkout-stable", &params, &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Events the reconciles raised: (reason, type, note).
fn events(api: &FakeApi) -> Vec<(String, String, String)> {
    api.seen()
        .into_iter()
        .filter(|s| s.method == Method::POST && s.path.contains("/events"))
        .map(|s| {
            let text = |key: &str| s.body[key].as_str().unwrap_or_default().to_string();
            (text("reason"), text("type"), text("note"))
        })
        .collect()
}

#[tokio::test]
async fn a_promotion_takes_over_a_stable_field_another_manager_changed_and_reports_it() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    applied_stable(&api, "shop/checkout:v1", 2).await;
    let (canary_rev, stable_rev) = promote_requested(&api);
    let ctx = context(client);
    edit_stable_image(&api, "shop/checkout:hotfix").await;
    let edited = api.get(STABLE_PATH).unwrap();
    assert!(
        owned(&edited, "kubectl-edit", "Update", "")
            .iter()
            .any(|f| f.starts_with("spec.template.spec.containers")),
        "kubectl-edit owns the containers it wrote"
    );
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "the edit taken back on read, then weight 100 and the promotion's apply"
    );
    // Both forced: without force the API server answers 409 on kubectl-edit's fields.
    assert_stable_apply(&sent[0]);
    assert_stable_apply(&sent[2]);
    assert_eq!(
        sent[0].body,
        stable_apply_body(&workload("shop/checkout:v1", 0), ROLLOUT_UID, 2),
        "the recorded release (v1) first"
    );
    assert_eq!(
        sent[2].body,
        stable_apply_body(&api.get(CANARY_PATH).unwrap(), ROLLOUT_UID, 2)
    );
    let drifted: Vec<_> = events(&api)
        .into_iter()
        .filter(|(reason, _, _)| reason == "StableDrifted")
        .collect();
    assert_eq!(drifted.len(), 1, "{drifted:?}");
    assert_eq!(drifted[0].1, "Warning");
    assert!(
        drifted[0].2.starts_with(
            "stable checkout-stable: its pod template was changed outside the controller (revision "
        ),
        "{}",
        drifted[0].2
    );
    assert!(
        drifted[0].2.contains(&format!("expected {stable_rev})")),
        "{}",
        drifted[0].2
    );
    let stable = api.get(STABLE_PATH).unwrap();
    assert_eq!(revision(&api, STABLE_PATH), canary_rev);
    assert!(
        !owned(&stable, "kubectl-edit", "Update", "")
            .iter()
            .any(|f| f.starts_with("spec.template.spec.containers")),
        "the forced apply took the containers from kubectl-edit"
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "Promoting");
    api.finish().await;
}

/// The generated stable as a finished promotion of the workload at `image` leaves it: that
/// template with `version: stable`, the release recorded, owned by the rollout, rolled out
/// at 2 replicas.
fn promoted_stable(api: &FakeApi, image: &str) {
    api.insert(STABLE_PATH, stable_of(image, 2));
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

const HPA_PATH: &str =
    "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/checkout-canary";

fn hpa() -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "checkout-canary", "namespace": "shop"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout-canary"},
                    "minReplicas": 2, "maxReplicas": 8,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60}}}]}})
}

#[tokio::test]
async fn the_generated_stable_gets_its_own_copy_of_the_workloads_hpa_applied_once() {
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({"canary": {"horizontalPodAutoscaler": "checkout-canary"}}),
        None,
        "shop/checkout:v1",
        0,
        0.0,
    );
    api.insert(HPA_PATH, hpa());
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let copy_path = format!("{HPA_PATH}-primary");
    let applies: Vec<Seen> = writes(&api)
        .into_iter()
        .filter(|s| s.path == copy_path)
        .collect();
    assert_eq!(applies.len(), 1, "{:?}", paths(&writes(&api)));
    assert_eq!(applies[0].content_type, "application/apply-patch+yaml");
    assert_eq!(applies[0].param("force").as_deref(), Some("true"));
    let copy = api.get(&copy_path).unwrap();
    let mut expected = hpa()["spec"].clone();
    expected["scaleTargetRef"]["name"] = json!("checkout-stable");
    assert_eq!(copy["spec"], expected);
    assert_eq!(
        copy["metadata"]["ownerReferences"][0]["kind"],
        "CanaryRollout"
    );
    assert_eq!(copy["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        copy["metadata"]["labels"]["stickycanary.dev/rollout"],
        "checkout"
    );
    // The Git-owned HPA is not written.
    assert_eq!(api.get(HPA_PATH).unwrap()["spec"], hpa()["spec"]);
    // Converged: the next tick does not write it again; a change in Git does.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(!writes(&api).iter().any(|s| s.path == copy_path));
    let mut changed = api.get(HPA_PATH).unwrap();
    changed["spec"]["maxReplicas"] = json!(12);
    api.insert(HPA_PATH, changed);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(api.get(&copy_path).unwrap()["spec"]["maxReplicas"], 12);
    api.finish().await;
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
            (Method::PATCH, format!("{SCALED_OBJECT_PATH}-primary")),
            (Method::PATCH, SCALED_OBJECT_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "the stable's copy of the ScaledObject is generated; scale-up lifts KEDA's pause; replicas are KEDA's"
    );
    // The copy aims at the generated stable and carries no pause of the workload's.
    assert_eq!(sent[1].content_type, "application/apply-patch+yaml");
    assert_eq!(
        sent[1].body["spec"],
        json!({"scaleTargetRef": {"name": "checkout-stable"}, "minReplicaCount": 1})
    );
    assert!(sent[1].body["metadata"].get("annotations").is_none());
    assert_eq!(
        sent[2].body,
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

/// A deleted rollout (deletionTimestamp set, finalizers `finalizers`) with `extra_spec`, in
/// the middle of a run at 25%.
fn deleted(api: &FakeApi, extra_spec: Value, finalizers: Value) {
    seed(
        api,
        extra_spec,
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

/// The controller's orphaning of the generated stable: a merge patch of its ownerReferences
/// to null, under the `stickycanary` field manager.
fn assert_orphan_patch(seen: &Seen) {
    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(seen.path, STABLE_PATH);
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert_eq!(seen.param("fieldManager").as_deref(), Some("stickycanary"));
    assert_eq!(seen.body, json!({"metadata": {"ownerReferences": null}}));
}

#[tokio::test]
async fn without_a_lifecycle_revert_on_deletion_sets_the_weight_to_zero_before_the_finalizer_is_removed(
) {
    let (client, api) = FakeApi::start();
    deleted(
        &api,
        json!({"revertOnDeletion": true, "stable": null}),
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
        ],
        "no Deployment is touched: stable is the user's own"
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
async fn without_revert_on_deletion_the_stable_is_orphaned_and_outlives_the_rollout_with_the_weight_left(
) {
    let (client, api) = FakeApi::start();
    deleted(
        &api,
        json!({"revertOnDeletion": false}),
        json!(["stickycanary.dev/cleanup"]),
    );
    let workload_before = api.get(CANARY_PATH).unwrap();
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "the stable orphaned first, then the finalizer"
    );
    assert_orphan_patch(&sent[0]);
    assert_eq!(sent[1].body["metadata"]["finalizers"], json!([]));
    assert!(api.get(ROLLOUT_PATH).is_none(), "the API server deleted it");
    let stable = api
        .get(STABLE_PATH)
        .expect("the garbage collector left the orphaned stable");
    assert!(
        stable["metadata"].get("ownerReferences").is_none(),
        "{stable}"
    );
    assert_eq!(stable["spec"]["replicas"], 2, "it keeps serving");
    assert_eq!(plugin_weight(&api), 25.0);
    assert_eq!(
        api.get(CANARY_PATH).unwrap(),
        workload_before,
        "the workload is left"
    );
    api.finish().await;
}

#[tokio::test]
async fn a_finalizer_removal_on_a_stale_read_gets_a_409_and_is_retried_by_the_next_reconcile() {
    let (client, api) = FakeApi::start();
    deleted(
        &api,
        json!({"revertOnDeletion": false}),
        json!(["stickycanary.dev/cleanup"]),
    );
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
    assert!(api.get(STABLE_PATH).is_some());
    api.finish().await;
}

#[tokio::test]
async fn every_lifecycle_request_is_allowed_by_the_chart_and_every_lifecycle_rule_is_used() {
    let authorizer = Authorizer::modes(vec![Mode::ClusterWide, Mode::namespaced(&["shop"])]);
    // Bootstrap (the apply that creates the stable), scale up, promote (the stable's apply),
    // scale down, KEDA both ways, delete with and without revertOnDeletion (orphan).
    let (client, api) = FakeApi::start_with(authorizer.clone());
    bootstrap_world(&api);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(api.get(STABLE_PATH).is_some(), "created by the apply");
    api.finish().await;
    let (client, api) = FakeApi::start_with(authorizer.clone());
    deleting(&api, json!({}), "RolledBack", 0.0);
    reconcile_once(&api, &context(client)).await.unwrap();
    api.finish().await;
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
    assert!(api.get(&format!("{SCALED_OBJECT_PATH}-primary")).is_some());
    api.finish().await;
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(
        &api,
        json!({"canary": {"horizontalPodAutoscaler": "checkout-canary"}}),
        None,
        "shop/checkout:v2",
        0,
        0.0,
    );
    api.insert(HPA_PATH, hpa());
    reconcile_once(&api, &context(client)).await.unwrap();
    assert!(api.get(&format!("{HPA_PATH}-primary")).is_some());
    api.finish().await;
    // A workload whose template references a ConfigMap and a Secret: both copied.
    let (client, api) = FakeApi::start_with(authorizer.clone());
    api.insert(ROLLOUT_PATH, rollout(json!({})));
    api.insert(PLUGIN_PATH, plugin(0.0));
    let mut referencing = workload_with_config("shop/checkout:v1", 2);
    referencing["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        .as_array_mut()
        .unwrap()
        .push(json!({"secretRef": {"name": "checkout-db"}}));
    api.insert(CANARY_PATH, referencing);
    api.insert(CONFIG_PATH, config_map("sweet"));
    api.insert(
        "/api/v1/namespaces/shop/secrets/checkout-db",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "checkout-db", "namespace": "shop"},
               "data": {"PASSWORD": "c2VjcmV0"}}),
    );
    reconcile_once(&api, &context(client)).await.unwrap();
    assert!(api.get(CONFIG_COPY_PATH).is_some());
    assert!(api
        .get("/api/v1/namespaces/shop/secrets/checkout-stable-checkout-db")
        .is_some());
    api.finish().await;
    authorizer.assert_nothing_denied();
    let used = authorizer.used();
    for (group, resource, verb) in [
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments/scale", "patch"),
        ("keda.sh", "scaledobjects", "patch"),
        ("keda.sh", "scaledobjects", "get"),
        ("keda.sh", "scaledobjects", "create"),
        ("autoscaling", "horizontalpodautoscalers", "get"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("", "configmaps", "get"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
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
async fn a_revert_during_promoting_applies_the_reverted_template_back_to_stable_and_ends_waiting_on_it(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 100.0);
    // Stable ran v1 (an earlier promotion), then the apply of v2 started rolling out.
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
    // Git reverts the workload to v1.
    api.insert(CANARY_PATH, workload("shop/checkout:v1", 1));
    assert_eq!(revision(&api, CANARY_PATH), r1);
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
        "stable gets v1 back; no weight write: users stay on the serving workload"
    );
    assert_stable_apply(&sent[0]);
    assert_eq!(
        sent[0].body,
        stable_apply_body(&workload("shop/checkout:v1", 1), ROLLOUT_UID, 2),
        "the reverted template, recorded as the release"
    );
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
    // The record is on the generated stable (nothing but replicas is written to the workload).
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"]["annotations"]["stickycanary.dev/failed-revision"] = json!(r2);
    api.insert(STABLE_PATH, stable);
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
async fn a_rollback_records_the_failed_revision_on_the_generated_stable_and_its_applies_keep_it() {
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
    assert!(
        !sent.iter().any(|s| s.path == CANARY_PATH),
        "the workload Git owns is not annotated: {:?}",
        paths(&sent)
    );
    let record = sent
        .iter()
        .find(|s| s.path == STABLE_PATH)
        .expect("a write of the generated stable");
    assert_eq!(record.content_type, "application/merge-patch+json");
    assert_eq!(
        record.body,
        json!({"metadata": {"annotations": {"stickycanary.dev/failed-revision": r2}}})
    );
    assert_eq!(status_of(&api)["phase"], "RolledBack");
    // A later forced apply of the stable (here the repair of a drifted image) does not send
    // the annotation, and keeps it: the merge patch's Update entry owns it, not the apply.
    let mut drifted = api.get(STABLE_PATH).unwrap();
    drifted["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop/checkout:edited");
    api.insert(STABLE_PATH, drifted);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(writes(&api)
        .iter()
        .any(|s| s.path == STABLE_PATH && s.content_type == "application/apply-patch+yaml"));
    let stored = api.get(STABLE_PATH).unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["stickycanary.dev/failed-revision"],
        json!(r2)
    );
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/checkout:v1"
    );
    api.finish().await;
}

#[tokio::test]
async fn a_canary_deployment_on_a_new_revision_wakes_its_rollout_before_the_interval() {
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({"analysis": {"interval": "1h"}}),
        None,
        "shop/checkout:v1",
        0,
        0.0,
    );
    // The workload runs stable's revision; the rollout waits for a release and was ticked
    // just now: without the Deployment watch, nothing would happen for an hour.
    let mut canary = api.get(CANARY_PATH).unwrap();
    let v1 = revision(&api, CANARY_PATH);
    assert_eq!(v1, revision(&api, STABLE_PATH));
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["status"] = json!({"phase": "WaitingForRelease", "weight": 0.0,
        "canaryRevision": v1, "stableRevision": v1, "observedGeneration": 1});
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client.clone());
    let deployments = "/apis/apps/v1/namespaces/shop/deployments";
    let started = run_controller_until_scaling_up(&api, &client, &ctx, deployments, |api| {
        // Git changes the canary's image.
        canary["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop/checkout:v2");
        canary["metadata"]["generation"] = json!(5);
        api.modify(CANARY_PATH, canary.clone());
    })
    .await;
    assert_eq!(started, Ok(true), "the run started within seconds");
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 1);
    api.finish().await;
}

/// What the controller watches besides rollouts, in namespace `shop`.
fn watched(client: &Client) -> stickycanary::k8s::Watched {
    use stickycanary::k8s::watched_api;
    stickycanary::k8s::Watched {
        deployments: watched_api(client.clone(), Some("shop")),
        config_maps: watched_api(client.clone(), Some("shop")),
        secrets: watched_api(client.clone(), Some("shop")),
    }
}

/// A rollout being deleted just now (our finalizer only) with `extra_spec`, whose run is in
/// `phase` at `weight`, the workload on v2 with one ready replica.
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

/// One reconcile of the stored rollout, returning its requeue.
async fn reconcile_for_requeue(api: &FakeApi, ctx: &Arc<Context>) -> Action {
    ctx.last_tick.lock().unwrap().clear();
    let stored: CanaryRollout = typed(api, ROLLOUT_PATH);
    reconcile::reconcile(Arc::new(stored), ctx.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_a_rolled_back_rollout_hands_the_canary_back_to_keda_and_orphans_the_stable() {
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
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, format!("{SCALED_OBJECT_PATH}-primary")),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "KEDA's pause lifted, the stable (and its ScaledObject copy, none here) orphaned, then the finalizer removed"
    );
    assert_eq!(
        sent[0].body,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}})
    );
    assert_orphan_patch(&sent[1]);
    assert!(api.get(SCALED_OBJECT_PATH).unwrap()["metadata"]
        .get("annotations")
        .is_none_or(|a| a.get("autoscaling.keda.sh/paused-replicas").is_none()));
    assert!(api.get(ROLLOUT_PATH).is_none());
    assert!(api.get(STABLE_PATH).is_some(), "orphaned: not collected");
    api.finish().await;
}

#[tokio::test]
async fn revert_on_deletion_scales_the_workload_up_waits_for_it_hands_users_over_drains_then_the_stable_is_collected(
) {
    let (client, api) = FakeApi::start();
    // At rest: stable (v1, 2 replicas) takes every user, the workload (v1) is scaled down.
    deleting(
        &api,
        json!({"revertOnDeletion": true}),
        "WaitingForRelease",
        0.0,
    );
    api.insert(CANARY_PATH, workload("shop/checkout:v1", 0));
    let ctx = context(client);

    // 1. The workload back up to the stable's replicas, through the scale subresource.
    api.clear_seen();
    let requeue = reconcile_for_requeue(&api, &ctx).await;
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![(Method::PATCH, format!("{CANARY_PATH}/scale"))]
    );
    assert_eq!(sent[0].body, json!({"spec": {"replicas": 2}}));
    assert_eq!(requeue, Action::requeue(Duration::from_secs(5)));
    assert_eq!(plugin_weight(&api), 0.0, "users stay on stable meanwhile");

    // 2. Not rolled out yet (generation 5 not observed): wait, write nothing.
    api.clear_seen();
    let requeue = reconcile_for_requeue(&api, &ctx).await;
    assert_eq!(paths(&writes(&api)), vec![]);
    assert_eq!(requeue, Action::requeue(Duration::from_secs(5)));

    // 3. Rolled out: every user to the workload, then the drain (scaleDownDelay 30s).
    let mut workload_now = api.get(CANARY_PATH).unwrap();
    workload_now["status"] = rolled_out(5, 2);
    api.insert(CANARY_PATH, workload_now);
    api.clear_seen();
    let requeue = reconcile_for_requeue(&api, &ctx).await;
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
        json!({"weight": 100})
    );
    assert!(
        sent[1].body["metadata"]["annotations"]["stickycanary.dev/deletion-drain-since"]
            .is_string(),
        "the drain's start is kept on the rollout: {}",
        sent[1].body
    );
    assert_eq!(requeue, Action::requeue(Duration::from_secs(30)));
    assert!(api.get(ROLLOUT_PATH).is_some(), "the finalizer stays");
    assert!(api.get(STABLE_PATH).is_some(), "stable serves the drain");

    // 4. After the drain (its start moved 31s back): the finalizer goes, and the garbage collector takes the generated
    // stable with its owner; the workload serves on.
    drain_started_ago(&api, 31);
    api.clear_seen();
    let requeue = reconcile_for_requeue(&api, &ctx).await;
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())]
    );
    assert_eq!(requeue, Action::await_change());
    assert!(api.get(ROLLOUT_PATH).is_none());
    assert!(
        api.get(STABLE_PATH).is_none(),
        "collected by its ownerReference"
    );
    assert_eq!(api.get(CANARY_PATH).unwrap()["spec"]["replicas"], 2);
    assert_eq!(plugin_weight(&api), 100.0);
    api.finish().await;
}

#[tokio::test]
async fn deleting_during_promoting_with_revert_on_deletion_leaves_users_on_the_workload_and_the_stable_is_collected(
) {
    let (client, api) = FakeApi::start();
    deleting(&api, json!({"revertOnDeletion": true}), "Promoting", 100.0);
    // The promotion's apply is on stable, which is still rolling it out.
    promoted_stable(&api, "shop/checkout:v2");
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"]["generation"] = json!(5);
    api.insert(STABLE_PATH, stable);
    let stable_replicas = api.get(STABLE_PATH).unwrap()["spec"]["replicas"].clone();
    let ctx = context(client);
    // 1. Every user is on the workload already, but at the run's size: stable's size first.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![(Method::PATCH, format!("{CANARY_PATH}/scale"))]
    );
    assert_eq!(sent[0].body, json!({"spec": {"replicas": stable_replicas}}));
    // 2. Rolled out at that size: the weight is 100 already, the drain starts.
    let mut workload_now = api.get(CANARY_PATH).unwrap();
    let generation = workload_now["metadata"]["generation"].as_i64().unwrap();
    workload_now["status"] = rolled_out(generation, stable_replicas.as_i64().unwrap());
    api.insert(CANARY_PATH, workload_now);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())],
        "no weight write (100 already): only the drain's start"
    );
    // 3. After the drain: the finalizer goes, the stable with it.
    drain_started_ago(&api, 31);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, ROLLOUT_PATH.to_string())]
    );
    assert_eq!(plugin_weight(&api), 100.0);
    assert!(api.get(ROLLOUT_PATH).is_none());
    assert!(api.get(STABLE_PATH).is_none(), "collected with its owner");
    api.finish().await;
}

/// Moves the deletion drain's recorded start `seconds` into the past.
fn drain_started_ago(api: &FakeApi, seconds: i64) {
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(seconds);
    object["metadata"]["annotations"]["stickycanary.dev/deletion-drain-since"] =
        json!(since.to_string());
    api.insert(ROLLOUT_PATH, object);
}

#[tokio::test]
async fn revert_on_deletion_keeps_the_weight_and_orphans_the_stable_when_the_workload_fails_to_roll_out(
) {
    let (client, api) = FakeApi::start();
    deleting(&api, json!({"revertOnDeletion": true}), "RolledBack", 0.0);
    let mut failing = api.get(CANARY_PATH).unwrap();
    failing["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet timed out"}]);
    api.insert(CANARY_PATH, failing);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "no weight write: the workload does not serve"
    );
    assert_orphan_patch(&sent[0]);
    assert_eq!(plugin_weight(&api), 0.0, "users stay on stable");
    let kept: Vec<_> = events(&api)
        .into_iter()
        .filter(|(reason, _, _)| reason == "DeletionKeptWeight")
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1, "Warning");
    assert!(
        kept[0]
            .2
            .contains("the workload's rollout failed: ProgressDeadlineExceeded")
            && kept[0]
                .2
                .contains("generated stable checkout-stable is kept"),
        "{}",
        kept[0].2
    );
    assert!(api.get(ROLLOUT_PATH).is_none());
    let stable = api.get(STABLE_PATH).expect("kept to serve");
    assert!(stable["metadata"].get("ownerReferences").is_none());
    api.finish().await;
}

#[tokio::test]
async fn revert_on_deletion_gives_up_on_a_workload_not_rolled_out_within_the_progress_deadline() {
    let (client, api) = FakeApi::start();
    deleting(
        &api,
        json!({"revertOnDeletion": true, "progressDeadline": "1m"}),
        "WaitingForRelease",
        0.0,
    );
    // The workload was scaled up but its pods never became ready; deleted 2 minutes ago.
    let mut stuck = workload("shop/checkout:v1", 2);
    stuck["metadata"]["generation"] = json!(5);
    api.insert(CANARY_PATH, stuck);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["deletionTimestamp"] = json!((k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(120))
    .to_string());
    api.insert(ROLLOUT_PATH, object);
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ]
    );
    assert_orphan_patch(&sent[0]);
    assert_eq!(plugin_weight(&api), 0.0);
    assert_eq!(event_reasons(&api), vec!["DeletionKeptWeight".to_string()]);
    assert!(api.get(STABLE_PATH).is_some());
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
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, ROLLOUT_PATH.to_string()),
        ],
        "the stable orphaned, the finalizer removed: stable's Deployment controller finishes the rollout"
    );
    assert_orphan_patch(&sent[0]);
    assert_eq!(plugin_weight(&api), 100.0);
    assert_eq!(
        api.get(CANARY_PATH).unwrap()["spec"]["replicas"],
        1,
        "the workload serving users stays up"
    );
    assert!(api.get(STABLE_PATH).is_some());
    api.finish().await;
}

/// The Degraded condition's message of the stored status, which must be `InvalidSpec`.
fn invalid_spec_message(api: &FakeApi) -> String {
    let status = status_of(api);
    assert_eq!(status["phase"], "InvalidSpec", "{status}");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap_or_else(|| panic!("no Degraded condition in {status}"))
        .clone();
    assert_eq!(degraded["status"], "True");
    let message = degraded["message"].as_str().unwrap().to_string();
    assert!(!message.contains('\n'));
    message
}

#[tokio::test]
async fn pod_labels_the_workload_does_not_select_on_hold_the_rollout_in_invalid_spec_naming_the_field(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    // The workload selects on `app` only: a generated stable with `version: stable` would
    // have a revision that never matches the workload's.
    let mut canary = api.get(CANARY_PATH).unwrap();
    canary["spec"]["selector"]["matchLabels"] = json!({"app": "checkout"});
    api.insert(CANARY_PATH, canary);
    let stable_before = api.get(STABLE_PATH).unwrap();
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_refused(
        &api,
        "spec.stable.podLabels: version is not a key of checkout-canary's spec.selector.matchLabels {app=checkout}",
        "the finalizer and the status: no apply, no scale-up",
    );
    assert_eq!(api.get(STABLE_PATH).unwrap(), stable_before);
    api.finish().await;
}

#[tokio::test]
async fn a_deployment_at_the_stables_name_not_generated_by_this_rollout_is_refused_and_never_written(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v2", 0, 0.0);
    // A hand-written Deployment already has the name (the old two-Deployment layout).
    let hand_written = deployment("checkout-stable", "stable", "shop/checkout:v1", 2);
    api.insert(STABLE_PATH, hand_written);
    let before = api.get(STABLE_PATH).unwrap();
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_refused(
        &api,
        "spec.stable.name: Deployment checkout-stable exists and was not generated by this rollout (no label stickycanary.dev/rollout=checkout, no ownerReference to it)",
        "no write to the Deployment someone else owns, no scale-up",
    );
    assert_eq!(api.get(STABLE_PATH).unwrap(), before);
    assert_eq!(plugin_weight(&api), 0.0);
    api.finish().await;
}

#[tokio::test]
async fn a_rollout_still_naming_spec_stable_deployment_is_refused_naming_the_field() {
    let (client, api) = FakeApi::start();
    seed(
        &api,
        json!({"stable": {"deployment": "checkout-stable"}}),
        None,
        "shop/checkout:v2",
        0,
        0.0,
    );
    let before = api.get(STABLE_PATH).unwrap();
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(
        !writes(&api).iter().any(|s| s.path.starts_with(STABLE_PATH)
            || s.path.starts_with(CANARY_PATH)
            || s.path == PLUGIN_PATH),
        "{:?}",
        paths(&writes(&api))
    );
    let message = invalid_spec_message(&api);
    assert!(message.starts_with("spec.stable.deployment: "), "{message}");
    assert!(message.contains("checkout-stable"), "{message}");
    assert_eq!(api.get(STABLE_PATH).unwrap(), before);
    api.finish().await;
}

/// A first install: the rollout and the workload (v1, 2 replicas, rolled out, serving every
/// user: weight 100 is not set yet), no generated stable.
fn bootstrap_world(api: &FakeApi) {
    api.insert(ROLLOUT_PATH, rollout(json!({})));
    api.insert(PLUGIN_PATH, plugin(0.0));
    api.insert(CANARY_PATH, workload("shop/checkout:v1", 2));
}

#[tokio::test]
async fn the_bootstrap_creates_the_owned_stable_keeps_users_on_the_workload_until_it_is_ready_then_scales_the_workload_down(
) {
    let (client, api) = FakeApi::start();
    bootstrap_world(&api);
    let ctx = context(client);

    // 1. No stable: the apply creates it from the workload; users stay on the workload.
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, ROLLOUT_PATH.to_string()),
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, PLUGIN_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "the finalizer, the stable's creation, weight 100, the status"
    );
    assert_stable_apply(&sent[1]);
    let v1 = api.get(CANARY_PATH).unwrap();
    assert_eq!(sent[1].body, stable_apply_body(&v1, ROLLOUT_UID, 2));
    assert_eq!(
        sent[2].body["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        100
    );
    let created = api.get(STABLE_PATH).expect("the apply created it");
    assert_eq!(
        created["metadata"]["ownerReferences"],
        json!([owner_reference(ROLLOUT_UID)])
    );
    assert_eq!(created["metadata"]["generation"], 1);
    let generated: Vec<_> = events(&api)
        .into_iter()
        .filter(|(reason, _, _)| reason == "StableGenerated")
        .collect();
    assert_eq!(generated.len(), 1, "{generated:?}");
    assert_eq!(generated[0].1, "Normal");
    assert!(
        generated[0]
            .2
            .starts_with("stable checkout-stable generated from checkout-canary (revision "),
        "{}",
        generated[0].2
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "Initializing");
    assert_eq!(status["weight"], 100.0);

    // 2. Not rolled out yet: nothing moves, nothing is applied again.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))]
    );
    assert_eq!(status_of(&api)["phase"], "Initializing");

    // 3. The Deployment controller rolled it out: every user to stable, no run.
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["status"] = rolled_out(1, 2);
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
        sent[0].body["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
        0
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "Initialized");
    assert_eq!(status["weight"], 0.0);
    assert_eq!(status["stableRevision"], json!(revision(&api, CANARY_PATH)));
    assert_eq!(
        api.get(CANARY_PATH).unwrap()["spec"]["replicas"],
        2,
        "the drain first"
    );

    // 4. After scaleDownDelay: the workload is scaled down; Initialized waits for a release.
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["status"]["scaleDownAt"] = json!((k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(1))
    .to_string());
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
    assert_eq!(status_of(&api)["phase"], "Initialized");
    assert!(api.get(STABLE_PATH).is_some());
    api.finish().await;
}

#[tokio::test]
async fn a_stable_changed_by_another_writer_is_applied_back_with_a_warning_and_the_rollout_stays_healthy(
) {
    let (api, ctx, v1) = at_rest_on_v1().await;
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");

    // `kubectl edit` puts a debug image on stable.
    edit_stable_image(&api, "shop/checkout:debug").await;
    assert_ne!(revision(&api, STABLE_PATH), v1);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![
            (Method::PATCH, STABLE_PATH.to_string()),
            (Method::PATCH, format!("{ROLLOUT_PATH}/status")),
        ],
        "one apply of the recorded release, then the status"
    );
    assert_stable_apply(&sent[0]);
    assert_eq!(
        sent[0].body,
        stable_apply_body(&workload("shop/checkout:v1", 0), ROLLOUT_UID, 2)
    );
    let drifted: Vec<_> = events(&api)
        .into_iter()
        .filter(|(reason, _, _)| reason == "StableDrifted")
        .collect();
    assert_eq!(drifted.len(), 1, "{drifted:?}");
    assert_eq!(drifted[0].1, "Warning");
    assert!(
        drifted[0].2.contains(&format!("expected {v1})"))
            && drifted[0].2.contains("change the workload instead"),
        "{}",
        drifted[0].2
    );
    assert_eq!(revision(&api, STABLE_PATH), v1, "the debug image is gone");
    let stable = api.get(STABLE_PATH).unwrap();
    assert_eq!(
        stable["spec"]["template"]["spec"]["containers"][0]["image"],
        "shop/checkout:v1"
    );
    assert!(
        !owned(&stable, "kubectl-edit", "Update", "")
            .iter()
            .any(|f| f.starts_with("spec.template")),
        "the forced apply took the template back from kubectl-edit"
    );
    let status = status_of(&api);
    assert_eq!(status["phase"], "WaitingForRelease");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded");
    assert!(
        degraded.is_none_or(|c| c["status"] == "False"),
        "not Degraded: {status}"
    );

    // Repaired: the next reconcile finds it converged and applies nothing.
    let mut stable = api.get(STABLE_PATH).unwrap();
    let generation = stable["metadata"]["generation"].as_i64().unwrap();
    stable["status"] = rolled_out(generation, 2);
    api.insert(STABLE_PATH, stable);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        paths(&writes(&api)),
        vec![(Method::PATCH, format!("{ROLLOUT_PATH}/status"))]
    );
    assert!(events(&api).is_empty(), "{:?}", events(&api));
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

#[tokio::test]
async fn revert_on_deletion_keeps_the_stable_for_the_whole_drain_even_when_reconciled_early() {
    let (client, api) = FakeApi::start();
    deleting(
        &api,
        json!({"revertOnDeletion": true}),
        "WaitingForRelease",
        0.0,
    );
    // The workload is up and rolled out: users move to it at once.
    api.insert(CANARY_PATH, workload("shop/checkout:v1", 2));
    let ctx = context(client);
    let requeue = reconcile_for_requeue(&api, &ctx).await;
    assert_eq!(plugin_weight(&api), 100.0);
    assert_eq!(
        requeue,
        Action::requeue(Duration::from_secs(30)),
        "the drain: scaleDownDelay"
    );
    // A reconcile well within the drain (a watch event, or a new leader after a restart,
    // whose requeue timers start empty).
    let restarted = context(api.client_as(Authorizer::both_modes()));
    api.clear_seen();
    reconcile_for_requeue(&api, &restarted).await;
    assert!(
        api.get(STABLE_PATH).is_some(),
        "the stable still serves connections draining from it; writes: {:?}",
        paths(&writes(&api))
    );
    assert!(api.get(ROLLOUT_PATH).is_some(), "the finalizer stays");
    api.finish().await;
}

#[tokio::test]
async fn a_stable_that_lost_its_recorded_release_never_gets_an_unpromoted_workload_template() {
    let (client, api) = FakeApi::start();
    // A run of v2 at 10%; stable serves v1.
    seed(&api, json!({}), None, "shop/checkout:v2", 1, 10.0);
    let v1 = revision(&api, STABLE_PATH);
    let v2 = revision(&api, CANARY_PATH);
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    object["status"] = progressing(&v2, &v1);
    api.insert(ROLLOUT_PATH, object);
    // Someone strips the recorded release from stable.
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    api.insert(STABLE_PATH, stable);
    let ctx = context(client);
    api.clear_seen();
    let _ = reconcile_once(&api, &ctx).await;
    let applied_v2 = writes(&api).into_iter().any(|s| {
        s.path == STABLE_PATH
            && s.body["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/checkout:v2"
    });
    assert!(!applied_v2, "v2 applied to stable without a promotion");
    assert_eq!(revision(&api, STABLE_PATH), v1, "stable still serves v1");
    api.finish().await;
}

#[tokio::test]
async fn deleting_never_strips_the_owner_references_of_a_deployment_this_rollout_did_not_generate()
{
    let (client, api) = FakeApi::start();
    deleting(&api, json!({}), "InvalidSpec", 0.0);
    // The name is held by a Deployment another operator owns (the rollout sat in InvalidSpec).
    let mut foreign = deployment("checkout-stable", "stable", "shop/checkout:v1", 2);
    foreign["metadata"]["ownerReferences"] = json!([{"apiVersion": "shop.example.com/v1",
        "kind": "Storefront", "name": "checkout", "uid": "other-owner", "controller": true}]);
    api.insert(STABLE_PATH, foreign);
    let before = api.get(STABLE_PATH).unwrap();
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(
        !writes(&api).iter().any(|s| s.path == STABLE_PATH),
        "{:?}",
        paths(&writes(&api))
    );
    assert_eq!(api.get(STABLE_PATH).unwrap(), before);
    assert!(api.get(ROLLOUT_PATH).is_none(), "the finalizer still goes");
    api.finish().await;
}

#[tokio::test]
async fn a_stable_generated_outside_the_rollouts_namespace_never_names_the_rollout_as_its_owner() {
    // "A namespaced owner must exist in the same namespace as the dependent. If it does not,
    // the owner reference is treated as absent, and the dependent is subject to deletion once
    // all owners are verified absent" (kubernetes.io, "Owners and Dependents"; the garbage
    // collector raises OwnerRefInvalidNamespace). The fake's collector does not model it, so
    // the request itself is checked.
    const WEB_WORKLOAD: &str = "/apis/apps/v1/namespaces/web/deployments/checkout-canary";
    let (client, api) = FakeApi::start_with(Authorizer::modes(vec![Mode::ClusterWide]));
    api.insert(
        ROLLOUT_PATH,
        rollout(json!({"canary": {"namespace": "web"}})),
    );
    api.insert(PLUGIN_PATH, plugin(0.0));
    let mut web = workload("shop/checkout:v1", 2);
    web["metadata"]["namespace"] = json!("web");
    api.insert(WEB_WORKLOAD, web);
    let ctx = context(client);
    let _ = reconcile_once(&api, &ctx).await;
    let cross_namespace_owner: Vec<(Method, String)> = writes(&api)
        .into_iter()
        .filter(|s| s.path.starts_with("/apis/apps/v1/namespaces/web/"))
        .filter(|s| {
            s.body
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["kind"] == "CanaryRollout"))
        })
        .map(|s| (s.method, s.path))
        .collect();
    assert_eq!(cross_namespace_owner, vec![]);
    api.finish().await;
}

#[tokio::test]
async fn renaming_the_stable_never_leaves_two_generated_stables_serving_the_stable_subset() {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v1", 0, 0.0);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");
    // The stable renamed in Git.
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["spec"]["stable"]["name"] = json!("checkout-primary");
    object["metadata"]["generation"] = json!(2);
    api.insert(ROLLOUT_PATH, object);
    let _ = reconcile_once(&api, &ctx).await;
    let serving: Vec<String> = api
        .store
        .lock()
        .unwrap()
        .objects
        .iter()
        .filter(|(path, _)| path.starts_with("/apis/apps/v1/namespaces/shop/deployments/"))
        .filter(|(_, d)| d["metadata"]["labels"]["stickycanary.dev/rollout"] == "checkout")
        .filter(|(_, d)| d["spec"]["replicas"].as_i64().unwrap_or(1) > 0)
        .map(|(path, _)| path.clone())
        .collect();
    assert!(serving.len() <= 1, "{serving:?}");
    api.finish().await;
}

#[tokio::test]
async fn a_rollout_setting_changed_on_the_workload_reaches_the_generated_stable_without_waiting_for_a_release(
) {
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v1", 0, 0.0);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");
    // Git sets minReadySeconds on the workload; its template (the revision) is unchanged.
    let mut changed = api.get(CANARY_PATH).unwrap();
    changed["spec"]["minReadySeconds"] = json!(20);
    api.insert(CANARY_PATH, changed);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        api.get(STABLE_PATH).unwrap()["spec"]["minReadySeconds"],
        20,
        "writes: {:?}",
        paths(&writes(&api))
    );
    api.finish().await;
}

#[tokio::test]
async fn a_generated_stable_that_lost_its_rollout_label_but_is_still_owned_is_repaired_not_refused()
{
    let (client, api) = FakeApi::start();
    seed(&api, json!({}), None, "shop/checkout:v1", 0, 0.0);
    let mut stable = api.get(STABLE_PATH).unwrap();
    stable["metadata"].as_object_mut().unwrap().remove("labels");
    api.insert(STABLE_PATH, stable);
    let ctx = context(client);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");
    assert_eq!(
        api.get(STABLE_PATH).unwrap()["metadata"]["labels"]["stickycanary.dev/rollout"],
        "checkout"
    );
    api.finish().await;
}

#[tokio::test]
async fn revert_on_deletion_mid_run_scales_the_workload_to_the_stables_replicas_before_users_move()
{
    let (client, api) = FakeApi::start();
    // Mid-run at 25%: the workload runs v2 at the run's size (1), stable serves at 4.
    deleting(&api, json!({"revertOnDeletion": true}), "Progressing", 25.0);
    api.insert(STABLE_PATH, stable_of("shop/checkout:v1", 4));
    let ctx = context(client);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    assert_eq!(
        paths(&sent),
        vec![(Method::PATCH, format!("{CANARY_PATH}/scale"))],
        "scaled up first; users stay at 25% meanwhile"
    );
    assert_eq!(sent[0].body, json!({"spec": {"replicas": 4}}));
    assert_eq!(plugin_weight(&api), 25.0);
    api.finish().await;
}

const CONFIG_PATH: &str = "/api/v1/namespaces/shop/configmaps/checkout-config";
const CONFIG_COPY_PATH: &str = "/api/v1/namespaces/shop/configmaps/checkout-stable-checkout-config";

/// The workload at `image`, its env from the ConfigMap `checkout-config`.
fn workload_with_config(image: &str, replicas: i64) -> Value {
    let mut workload = workload(image, replicas);
    workload["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "checkout-config"}}]);
    workload
}

fn config_map(flavour: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "checkout-config", "namespace": "shop"},
           "data": {"FLAVOUR": flavour}})
}

/// Marks the Deployment at `path` rolled out at the generation and replicas it has.
fn mark_rolled_out(api: &FakeApi, path: &str) {
    let mut object = api.get(path).unwrap();
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    object["status"] = rolled_out(generation, replicas);
    api.insert(path, object);
}

#[tokio::test]
async fn a_config_map_change_is_a_release_and_stable_keeps_its_own_copy_of_the_data() {
    let (client, api) = FakeApi::start();
    api.insert(ROLLOUT_PATH, rollout(json!({})));
    api.insert(PLUGIN_PATH, plugin(0.0));
    api.insert(CANARY_PATH, workload_with_config("shop/checkout:v1", 2));
    api.insert(CONFIG_PATH, config_map("sweet"));
    let ctx = context(client);

    // Bootstrap: the copy first (owned, the workload's data), then the stable pointing at it.
    reconcile_once(&api, &ctx).await.unwrap();
    let sent = writes(&api);
    let order: Vec<&str> = sent.iter().map(|s| s.path.as_str()).collect();
    let copy_at = order
        .iter()
        .position(|p| *p == CONFIG_COPY_PATH)
        .expect("the copy is applied");
    let stable_at = order
        .iter()
        .position(|p| *p == STABLE_PATH)
        .expect("the stable is applied");
    assert!(copy_at < stable_at, "{order:?}");
    let copy = api.get(CONFIG_COPY_PATH).unwrap();
    assert_eq!(copy["data"], json!({"FLAVOUR": "sweet"}));
    assert_eq!(
        copy["metadata"]["ownerReferences"],
        json!([owner_reference(ROLLOUT_UID)])
    );
    let stable = api.get(STABLE_PATH).unwrap();
    let container = &stable["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["envFrom"],
        json!([{"configMapRef": {"name": "checkout-stable-checkout-config"}}])
    );
    let first = status_of(&api)["canaryRevision"].clone();
    assert_eq!(status_of(&api)["stableRevision"], first);
    assert_eq!(
        stable["spec"]["template"]["metadata"]["annotations"]["stickycanary.dev/release"],
        first
    );
    mark_rolled_out(&api, STABLE_PATH);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "Initialized");

    // Git changes only the ConfigMap: a new revision, a run; stable and its copy keep v1's.
    api.insert(CONFIG_PATH, config_map("sour"));
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    let status = status_of(&api);
    assert_eq!(status["phase"], "ScalingUp", "{status}");
    assert_ne!(status["canaryRevision"], first);
    assert_eq!(status["stableRevision"], first);
    assert_eq!(
        api.get(CONFIG_COPY_PATH).unwrap()["data"],
        json!({"FLAVOUR": "sweet"})
    );
    assert!(!writes(&api)
        .iter()
        .any(|s| s.path == STABLE_PATH || s.path == CONFIG_COPY_PATH));

    // The run passed: the promotion takes the new data to the copy, and the stable's pod
    // template changes (its release annotation) so that its pods restart on it.
    let second = status["canaryRevision"].as_str().unwrap().to_string();
    let mut object = api.get(ROLLOUT_PATH).unwrap();
    object["metadata"]["annotations"] = json!({"stickycanary.dev/request": "promote@1"});
    object["status"] = progressing(&second, first.as_str().unwrap());
    api.insert(ROLLOUT_PATH, object);
    mark_rolled_out(&api, CANARY_PATH);
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "Promoting");
    assert_eq!(
        api.get(CONFIG_COPY_PATH).unwrap()["data"],
        json!({"FLAVOUR": "sour"})
    );
    let stable = api.get(STABLE_PATH).unwrap();
    assert_eq!(
        stable["spec"]["template"]["metadata"]["annotations"]["stickycanary.dev/release"],
        json!(second)
    );
    mark_rolled_out(&api, STABLE_PATH);
    reconcile_once(&api, &ctx).await.unwrap();
    let status = status_of(&api);
    assert_eq!(status["phase"], "Finalising", "{status}");
    assert_eq!(status["stableRevision"], json!(second));
    // The ConfigMap Git owns is never written.
    assert_eq!(
        api.get(CONFIG_PATH).unwrap()["data"],
        json!({"FLAVOUR": "sour"})
    );
    api.finish().await;
}

#[tokio::test]
async fn a_referenced_config_map_change_wakes_its_rollout_before_the_interval() {
    let (client, api) = FakeApi::start();
    let mut object = rollout(json!({"analysis": {"interval": "1h"}}));
    object["metadata"]["finalizers"] = json!(["stickycanary.dev/cleanup"]);
    api.insert(ROLLOUT_PATH, object);
    api.insert(PLUGIN_PATH, plugin(0.0));
    api.insert(CANARY_PATH, workload_with_config("shop/checkout:v1", 0));
    api.insert(CONFIG_PATH, config_map("sweet"));
    let ctx = context(client.clone());
    // The bootstrap (the stable and its copy), then Initialized: waiting for a release, ticked
    // just now: without the ConfigMap watch nothing would happen for an hour.
    reconcile_once(&api, &ctx).await.unwrap();
    mark_rolled_out(&api, STABLE_PATH);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(status_of(&api)["phase"], "Initialized");
    let config_maps = "/api/v1/namespaces/shop/configmaps";
    let started = run_controller_until_scaling_up(&api, &client, &ctx, config_maps, |api| {
        // Git changes the ConfigMap only; the workload's template is the same.
        api.modify(CONFIG_PATH, config_map("sour"));
    })
    .await;
    assert_eq!(started, Ok(true), "the run started within seconds");
    // The watch asked for metadata only: no ConfigMap data reaches the controller through it.
    let watch = api
        .seen()
        .into_iter()
        .find(|s| s.path == config_maps && s.attributes.verb == "watch")
        .expect("a ConfigMap watch");
    assert!(
        watch.accept.contains("as=PartialObjectMetadata"),
        "{}",
        watch.accept
    );
    api.finish().await;
}

/// Runs the whole controller (its watches included) for rollout `shop/checkout`, ticked just
/// now with an interval of an hour; once `watched` (a collection path) and the rollouts are
/// watched, `change` writes through a watch event. Whether the rollout reached `ScalingUp`
/// within 5 seconds.
async fn run_controller_until_scaling_up(
    api: &FakeApi,
    client: &Client,
    ctx: &Arc<Context>,
    watched_path: &str,
    mut change: impl FnMut(&FakeApi),
) -> Result<bool, tokio::time::error::Elapsed> {
    use futures::StreamExt;
    ctx.last_tick
        .lock()
        .unwrap()
        .insert("shop/checkout".to_string(), std::time::Instant::now());
    let controller = stickycanary::k8s::controller(
        kube::Api::namespaced(client.clone(), "shop"),
        watched(client),
        ctx.clone(),
    )
    .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
    .for_each(|_| std::future::ready(()));
    let rollouts = "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts";
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::pin!(controller);
        let mut changed = false;
        loop {
            tokio::select! {
                () = &mut controller => return false,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if !changed && api.watching(watched_path) && api.watching(rollouts) {
                change(api);
                changed = true;
            }
            if status_of(api)["phase"] == "ScalingUp" {
                return true;
            }
        }
    })
    .await
}

/// A field another manager added to the generated stable is not the controller's, so a
/// forced server-side apply that does not send it keeps it (Kubernetes docs, "Server-Side
/// Apply": an applier removes only fields it owned). `kubectl rollout restart` adds such a
/// field, a pod-template annotation owned by `kubectl-rollout`: the repair must remove it, and
/// the next tick must find the stable converged, not drifted again.
#[tokio::test]
async fn a_field_another_manager_added_to_stable_is_removed_once_and_the_drift_does_not_repeat() {
    let (api, ctx, v1) = at_rest_on_v1().await;
    // `kubectl rollout restart deployment/checkout-stable`.
    let params = kube::api::PatchParams {
        field_manager: Some("kubectl-rollout".into()),
        ..Default::default()
    };
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-06T13:00:00Z"}}}}});
    deployments_as_admin(&api)
        .patch(
            "checkout-stable",
            &params,
            &kube::api::Patch::Merge(&restart),
        )
        .await
        .unwrap();
    assert_ne!(revision(&api, STABLE_PATH), v1);
    reconcile_once(&api, &ctx).await.unwrap();
    assert_eq!(
        revision(&api, STABLE_PATH),
        v1,
        "the added annotation is gone"
    );
    // Converged: the next tick writes nothing to stable and raises no second Warning.
    api.clear_seen();
    reconcile_once(&api, &ctx).await.unwrap();
    assert!(
        !writes(&api).iter().any(|s| s.path == STABLE_PATH),
        "{:?}",
        paths(&writes(&api))
    );
    let drifted = events(&api)
        .into_iter()
        .filter(|(reason, _, _)| reason == "StableDrifted")
        .count();
    assert_eq!(drifted, 0);
    assert_eq!(status_of(&api)["phase"], "WaitingForRelease");
    api.finish().await;
}

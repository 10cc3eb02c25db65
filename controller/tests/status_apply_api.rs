//! The CanaryRollout status written by server-side apply, against the shared fake API
//! server, which keeps managedFields and merges, prunes and refuses applies as the API
//! server does (`support::ssa`), and checks every request against the chart's RBAC.
//!
//! - The reconciler applies the status (forced, `stickycanary` manager, no approvals); a
//!   gate that passed disappears; an approval recorded by `stickycanary approve` between the
//!   controller's read and its apply survives.
//! - Upgrade: status fields written by the merge-patch controller (Update entry) are moved
//!   into the Apply entry once, so a stale `gate` goes; without the move it would stay.
//! - Ownership rules of the fake itself: forced apply over another manager's field, 409
//!   without force, 422 without a field manager, resourceVersion precondition, the status
//!   subresource touching only status, merge patches taking fields from others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::WebhookType;
use stickycanary::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use stickycanary::k8s::approve::approve_in_cluster;
use stickycanary::k8s::reconcile::{self, Context};
use stickycanary::k8s::status;
use support::api::{Authorizer, FakeApi, Seen};
use support::rbac::Rule;
use support::shop::{self, assert_status_apply, CANARY_PATH, ROLLOUT_PATH};
use support::ssa::owned;

fn rule(group: &str, resource: &str, verbs: &[&str]) -> Rule {
    Rule {
        api_groups: vec![group.into()],
        resources: vec![resource.into()],
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

/// Whoever installs rollouts (`kubectl create`): everything.
fn admin() -> Arc<Authorizer> {
    Authorizer::user_with(vec![rule("*", "*", &["*"])])
}

/// What an approver's Role grants (SECURITY.md).
fn approver() -> Arc<Authorizer> {
    Authorizer::user_with(vec![
        rule("stickycanary.dev", "canaryrollouts", &["get"]),
        rule("stickycanary.dev", "canaryrollouts/status", &["patch"]),
    ])
}

fn rollout_spec() -> Value {
    json!({
        "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
        "canary": {"deployment": "checkout-canary"},
        "stable": {"name": "checkout-stable"},
        "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
        "analysis": {"interval": "10s"},
        "prometheus": {"address": "http://127.0.0.1:9"},
        "webhooks": [{"name": "release-manager", "type": "confirm-rollout", "approval": "manual"}]
    })
}

/// Creates the rollout as a user would (so it has managedFields from its creation, as every
/// object on a real cluster does), carrying the finalizer already.
async fn create_rollout(api: &FakeApi) -> Api<CanaryRollout> {
    create_rollout_with(api, &["stickycanary.dev/cleanup"]).await
}

async fn create_rollout_with(api: &FakeApi, finalizers: &[&str]) -> Api<CanaryRollout> {
    let rollouts: Api<CanaryRollout> = Api::namespaced(api.client_as(admin()), "shop");
    let object: CanaryRollout = serde_json::from_value(json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "uid": "u-1",
                     "finalizers": finalizers},
        "spec": rollout_spec(),
    }))
    .unwrap();
    let params = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..PostParams::default()
    };
    rollouts.create(&params, &object).await.unwrap();
    rollouts
}

fn seed_world(api: &FakeApi) {
    shop::seed_plugin_and_deployments(api);
}

fn context(client: Client) -> Arc<Context> {
    support::context(client, Duration::from_secs(2))
}

fn stored(api: &FakeApi) -> Value {
    api.get(ROLLOUT_PATH).unwrap()
}

fn typed(object: Value) -> CanaryRollout {
    serde_json::from_value(object).unwrap()
}

async fn reconcile_with(ctx: &Arc<Context>, read: CanaryRollout) {
    ctx.last_tick.lock().unwrap().clear();
    reconcile::reconcile(Arc::new(read), ctx.clone())
        .await
        .unwrap();
}

/// The writes sent, without Events.
fn writes(api: &FakeApi) -> Vec<Seen> {
    api.seen()
        .into_iter()
        .filter(|s| s.method == Method::PATCH || s.method == Method::PUT)
        .filter(|s| !s.path.contains("/events"))
        .collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

fn gate_fields(fields: &BTreeSet<String>) -> Vec<&String> {
    fields
        .iter()
        .filter(|p| p.starts_with("status.gate"))
        .collect()
}

#[tokio::test]
async fn the_status_is_applied_a_passed_gate_disappears_and_an_approval_made_meanwhile_survives() {
    let (client, api) = FakeApi::start();
    create_rollout(&api).await;
    seed_world(&api);
    let ctx = context(client);

    // 1. A new revision at a manual confirm-rollout gate: the status (with the wait) is applied.
    api.clear_seen();
    reconcile_with(&ctx, typed(stored(&api))).await;
    let sent = writes(&api);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_status_apply(&sent[0]);
    let object = stored(&api);
    let revision = object["status"]["canaryRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(object["status"]["gate"]["gate"], "confirm-rollout");
    let applied = owned(&object, "stickycanary", "Apply", "status");
    assert_eq!(
        gate_fields(&applied),
        [
            "status.gate.attempt",
            "status.gate.gate",
            "status.gate.manual",
            "status.gate.reason",
            "status.gate.revision",
            "status.gate.since"
        ]
    );
    assert!(applied.contains("status.phase") && applied.contains("status.canaryRevision"));
    assert!(!applied.iter().any(|p| p.starts_with("status.approvals")));

    // 2. An approval of another revision is there when the controller reads the rollout;
    // then `stickycanary approve` records the run's revision (merge patch, its own field
    // manager); then the controller applies what it decided from its older read (still
    // waiting, the other revision's approval in hand).
    let cli: Api<CanaryRollout> = Api::namespaced(api.client_as(approver()), "shop");
    approve_in_cluster(
        &cli,
        "checkout",
        WebhookType::ConfirmRollout,
        Some("some-other"),
    )
    .await
    .unwrap();
    let read_before_approval = typed(stored(&api));
    approve_in_cluster(&cli, "checkout", WebhookType::ConfirmRollout, None)
        .await
        .unwrap();
    api.clear_seen();
    reconcile_with(&ctx, read_before_approval).await;
    let sent = writes(&api);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_status_apply(&sent[0]);
    assert!(
        sent[0].body["status"].get("gate").is_some(),
        "decided from the old read"
    );
    let object = stored(&api);
    assert_eq!(
        object["status"]["approvals"]["confirmRollout"]["revision"],
        json!(revision),
        "the approval survives the apply built from a read taken before it"
    );
    assert_eq!(
        owned(&object, "stickycanary-cli", "Update", "status"),
        set(&[
            "status.approvals.confirmRollout.attempt",
            "status.approvals.confirmRollout.revision"
        ])
    );

    // 3. The next reconcile sees the approval: the canary is scaled up, and the gate the
    // controller no longer sets is gone from the object, not left behind.
    api.clear_seen();
    reconcile_with(&ctx, typed(stored(&api))).await;
    let sent = writes(&api);
    assert_eq!(sent[0].path, format!("{CANARY_PATH}/scale"));
    assert_status_apply(sent.last().unwrap());
    assert!(sent.last().unwrap().body["status"].get("gate").is_none());
    let object = stored(&api);
    assert!(
        object["status"].get("gate").is_none(),
        "{}",
        object["status"]
    );
    assert_eq!(object["status"]["phase"], "ScalingUp");
    assert!(gate_fields(&owned(&object, "stickycanary", "Apply", "status")).is_empty());
    assert_eq!(
        object["status"]["approvals"]["confirmRollout"]["revision"],
        json!(revision)
    );
    api.finish().await;
}

#[tokio::test]
async fn a_failed_reconcile_from_a_stale_read_records_degraded_without_writing_the_old_status_back()
{
    let (client, api) = FakeApi::start();
    create_rollout(&api).await;
    seed_world(&api);
    let ctx = context(client);
    // Read before the controller's first status apply (a watch cache lagging behind it).
    let stale = typed(stored(&api));
    reconcile_with(&ctx, typed(stored(&api))).await;
    let applied = stored(&api)["status"].clone();
    assert_eq!(applied["gate"]["gate"], "confirm-rollout", "{applied}");

    // The next reconcile works from the stale read and cannot reach the WasmPlugin.
    api.fail("get", "wasmplugins", 500, 1);
    api.clear_seen();
    ctx.last_tick.lock().unwrap().clear();
    let error = reconcile::reconcile(Arc::new(stale), ctx.clone()).await;
    assert!(error.is_err());
    let sent = writes(&api);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(
        sent[0].param("fieldManager").as_deref(),
        Some("stickycanary-degraded")
    );
    let status = stored(&api)["status"].clone();
    // Everything the controller applied is still there; only the conditions changed.
    for field in ["phase", "canaryRevision", "gate", "salt"] {
        assert_eq!(status[field], applied[field], "{field}: {status}");
    }
    let degraded = shop::condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True", "{status}");
    assert_eq!(degraded["reason"], "WasmPluginUnavailable", "{status}");

    // The next full apply takes the conditions back: Degraded is False again, and the
    // second manager owns nothing.
    reconcile_with(&ctx, typed(stored(&api))).await;
    let object = stored(&api);
    let degraded = shop::condition(&object["status"], "Degraded").clone();
    assert_eq!(degraded["status"], "False", "{object}");
    assert!(
        owned(&object, "stickycanary-degraded", "Apply", "status").is_empty(),
        "{object}"
    );
}

/// The rollout as the merge-patch controller left it: its status written by merge patches
/// under `stickycanary` (an Update entry on /status), waiting at a gate, and an approval
/// recorded by the CLI.
async fn rollout_written_by_merge_patches(api: &FakeApi) {
    rollout_written_by_merge_patches_with(api, &["stickycanary.dev/cleanup"]).await
}

async fn rollout_written_by_merge_patches_with(api: &FakeApi, finalizers: &[&str]) {
    let rollouts = create_rollout_with(api, finalizers).await;
    let old_controller = PatchParams {
        field_manager: Some("stickycanary".into()),
        ..PatchParams::default()
    };
    let status = json!({"status": {
        "phase": "ScalingUp", "stageIndex": 0, "weight": 0.0, "canaryRevision": "v2",
        "gate": {"gate": "confirm-rollout", "reason": "manual approval", "manual": true,
                 "since": "2026-11-30T06:00:00Z", "revision": "v2"},
    }});
    rollouts
        .patch_status("checkout", &old_controller, &Patch::Merge(&status))
        .await
        .unwrap();
    let cli: Api<CanaryRollout> = Api::namespaced(api.client_as(approver()), "shop");
    approve_in_cluster(&cli, "checkout", WebhookType::ConfirmRollout, None)
        .await
        .unwrap();
    let object = stored(api);
    assert_eq!(
        owned(&object, "stickycanary", "Update", "status").len(),
        9,
        "{object}"
    );
    assert!(owned(&object, "stickycanary", "Apply", "status").is_empty());
}

/// The status the new controller writes once the gate passed: no `gate`.
fn status_after_the_gate() -> CanaryRolloutStatus {
    CanaryRolloutStatus {
        phase: Phase::ScalingUp,
        canary_revision: Some("v2".into()),
        ..CanaryRolloutStatus::default()
    }
}

#[tokio::test]
async fn the_first_apply_takes_over_the_merge_patch_ownership_so_a_stale_gate_goes() {
    let (client, api) = FakeApi::start();
    rollout_written_by_merge_patches(&api).await;
    let read = typed(stored(&api));
    let rollouts: Api<CanaryRollout> = Api::namespaced(client, "shop");
    api.clear_seen();

    status::write(&rollouts, &read, &status_after_the_gate())
        .await
        .unwrap();

    // Exactly: the managedFields move (main resource, conditional on the read version),
    // then the apply.
    let sent = writes(&api);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].path, ROLLOUT_PATH);
    assert_eq!(sent[0].content_type, "application/merge-patch+json");
    assert_eq!(
        sent[0].body["metadata"]["resourceVersion"],
        json!(read.metadata.resource_version)
    );
    let moved: Vec<&Value> = sent[0].body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["manager"] == "stickycanary")
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["operation"], "Apply");
    assert_eq!(moved[0]["subresource"], "status");
    assert!(moved[0]["fieldsV1"]["f:status"]
        .get("f:approvals")
        .is_none());
    assert!(moved[0]["fieldsV1"]["f:status"].get("f:gate").is_some());
    assert_status_apply(&sent[1]);

    let object = stored(&api);
    assert!(
        object["status"].get("gate").is_none(),
        "{}",
        object["status"]
    );
    assert_eq!(object["status"]["phase"], "ScalingUp");
    assert_eq!(
        object["status"]["approvals"]["confirmRollout"]["revision"], "v2",
        "the approval is not the controller's and stays"
    );
    assert!(owned(&object, "stickycanary", "Update", "status").is_empty());
    assert_eq!(
        owned(&object, "stickycanary-cli", "Update", "status"),
        set(&[
            "status.approvals.confirmRollout.attempt",
            "status.approvals.confirmRollout.revision"
        ])
    );

    // Once moved, a later write needs no move: only the apply is sent.
    api.clear_seen();
    status::write(&rollouts, &typed(stored(&api)), &status_after_the_gate())
        .await
        .unwrap();
    let sent = writes(&api);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_status_apply(&sent[0]);
    api.finish().await;
}

#[tokio::test]
async fn the_ownership_move_in_a_reconcile_that_adds_the_finalizer_is_conditional_on_that_writes_version(
) {
    // A rollout without the finalizer: the reconcile's first write (the finalizer) moves
    // the resourceVersion on, so the move must name the version that write returned, not
    // the one read (that would be a 409 and a failed reconcile after the weight was set).
    let (client, api) = FakeApi::start();
    rollout_written_by_merge_patches_with(&api, &[]).await;
    seed_world(&api);
    let ctx = context(client);
    api.clear_seen();
    reconcile_with(&ctx, typed(stored(&api))).await;
    let sent = writes(&api);
    let paths: Vec<&str> = sent.iter().map(|s| s.path.as_str()).collect();
    let status_path = format!("{ROLLOUT_PATH}/status");
    assert_eq!(
        paths,
        [ROLLOUT_PATH, ROLLOUT_PATH, status_path.as_str()],
        "finalizer, ownership move, apply"
    );
    assert!(sent[0].body["metadata"].get("finalizers").is_some());
    assert!(sent[1].body["metadata"].get("managedFields").is_some());
    assert_ne!(
        sent[1].body["metadata"]["resourceVersion"], sent[0].body["metadata"]["resourceVersion"],
        "the version the finalizer write returned, not the one read"
    );
    let object = stored(&api);
    assert!(owned(&object, "stickycanary", "Update", "status").is_empty());
    assert_eq!(
        object["status"]["approvals"]["confirmRollout"]["revision"],
        "v2"
    );
    api.finish().await;
}

#[tokio::test]
async fn without_the_ownership_move_an_apply_would_leave_the_stale_gate() {
    // The fault the move fixes, shown on the same fake server: an apply omits only what
    // its own Apply entry owned, and the Update entry still owns the gate.
    let (client, api) = FakeApi::start();
    rollout_written_by_merge_patches(&api).await;
    let rollouts: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let body = status::apply_body("checkout", &status_after_the_gate()).unwrap();
    apply_status(&rollouts, &body, true).await.unwrap();
    let object = stored(&api);
    assert_eq!(object["status"]["gate"]["gate"], "confirm-rollout");
    api.finish().await;
}

/// A rollout whose status the controller applied (phase Progressing), then someone edited
/// `status.phase` to Paused by merge patch under `kubectl-edit`.
async fn phase_edited_by_hand(api: &FakeApi, client: Client) -> Api<CanaryRollout> {
    create_rollout(api).await;
    let rollouts: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let progressing = CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 10.0,
        ..CanaryRolloutStatus::default()
    };
    status::write(&rollouts, &typed(stored(api)), &progressing)
        .await
        .unwrap();
    let admin: Api<CanaryRollout> = Api::namespaced(api.client_as(admin()), "shop");
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    admin
        .patch_status(
            "checkout",
            &edit,
            &Patch::Merge(json!({"status": {"phase": "Paused"}})),
        )
        .await
        .unwrap();
    let object = stored(api);
    // A merge patch takes the field it changed from the applier.
    assert_eq!(
        owned(&object, "kubectl-edit", "Update", "status"),
        set(&["status.phase"])
    );
    assert!(!owned(&object, "stickycanary", "Apply", "status").contains("status.phase"));
    rollouts
}

/// `PATCH .../canaryrollouts/checkout/status` as the controller's field manager applies it.
async fn apply_status(
    rollouts: &Api<CanaryRollout>,
    body: &Value,
    force: bool,
) -> kube::Result<CanaryRollout> {
    let params = PatchParams::apply("stickycanary");
    let params = if force { params.force() } else { params };
    rollouts
        .patch_status("checkout", &params, &Patch::Apply(body))
        .await
}

fn progressing_body() -> Value {
    let status = CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 10.0,
        ..CanaryRolloutStatus::default()
    };
    status::apply_body("checkout", &status).unwrap()
}

#[tokio::test]
async fn the_comparative_state_survives_the_crds_pruning_and_an_undeclared_field_does_not() {
    // A real API server prunes every field of a custom resource that its CRD's structural
    // schema does not declare, silently. What the engine writes for the analysis, the
    // record of stable's hour before the run included, must be declared, or a restarted
    // controller would read it back empty and read stable's hour again.
    let (_client, api) = FakeApi::start();
    let rollouts = create_rollout(&api).await;
    let mut state = stickycanary::analysis::ComparativeState {
        segment_weight: 10.0,
        first_weight: Some(10.0),
        stable_before_run: Some(stickycanary::analysis::comparative::StableBeforeRun {
            requests: 57_600.0,
            errors: 150.0,
            outlying_error_shards: vec![4, 9],
        }),
        ..Default::default()
    };
    state.errors.add_stable_outlying([4, 9]);
    let status = CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 10.0,
        comparative: Some(state),
        ..CanaryRolloutStatus::default()
    };
    let mut body = status::apply_body("checkout", &status).unwrap();
    body["status"]["comparative"]["notInTheSchema"] = json!(1);
    apply_status(&rollouts, &body, true).await.unwrap();
    let object = stored(&api);
    let comparative = &object["status"]["comparative"];
    assert_eq!(
        comparative["stableBeforeRun"],
        json!({"requests": 57600.0, "errors": 150.0, "outlyingErrorShards": [4, 9]})
    );
    assert_eq!(comparative["errors"]["stableOutlyingShards"], json!([4, 9]));
    assert!(
        comparative.get("notInTheSchema").is_none(),
        "pruned as the API server would: {comparative}"
    );
    let read: CanaryRollout = serde_json::from_value(object).unwrap();
    assert_eq!(read.status.and_then(|s| s.comparative), status.comparative);
    api.finish().await;
}

#[tokio::test]
async fn a_forced_apply_takes_a_field_another_manager_set() {
    let (client, api) = FakeApi::start();
    let rollouts = phase_edited_by_hand(&api, client).await;
    apply_status(&rollouts, &progressing_body(), true)
        .await
        .unwrap();
    let object = stored(&api);
    assert_eq!(object["status"]["phase"], "Progressing");
    assert!(owned(&object, "stickycanary", "Apply", "status").contains("status.phase"));
    assert!(
        owned(&object, "kubectl-edit", "Update", "status").is_empty(),
        "the entry that owned nothing else is gone"
    );
    api.finish().await;
}

#[tokio::test]
async fn an_apply_without_force_over_another_managers_value_gets_409_and_changes_nothing() {
    let (client, api) = FakeApi::start();
    let rollouts = phase_edited_by_hand(&api, client).await;
    let before = stored(&api);
    let error = apply_status(&rollouts, &progressing_body(), false)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("not an API error: {error}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using stickycanary.dev/v1alpha1: .status.phase"
    );
    assert_eq!(stored(&api), before);
    // The same value another manager set is no conflict: both own it.
    let mut paused = progressing_body();
    paused["status"]["phase"] = json!("Paused");
    apply_status(&rollouts, &paused, false).await.unwrap();
    let object = stored(&api);
    assert!(owned(&object, "stickycanary", "Apply", "status").contains("status.phase"));
    assert!(owned(&object, "kubectl-edit", "Update", "status").contains("status.phase"));
    api.finish().await;
}

#[tokio::test]
async fn the_fake_server_refuses_applies_a_real_one_refuses() {
    let (client, api) = FakeApi::start();
    create_rollout(&api).await;
    let rollouts: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let api_code = |result: Result<CanaryRollout, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("not refused: {other:?}"),
    };

    // No field manager: 422 (ValidatePatchOptions).
    assert_eq!(
        api_code(
            rollouts
                .patch_status(
                    "checkout",
                    &PatchParams::default(),
                    &Patch::Apply(&progressing_body())
                )
                .await
        ),
        (422, "Invalid".to_string())
    );
    // A resourceVersion in the body is a precondition: stale, 409; current, applied.
    let read_version = |api: &FakeApi| {
        stored(api)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before_write = read_version(&api);
    apply_status(&rollouts, &progressing_body(), false)
        .await
        .unwrap();
    let current = read_version(&api);
    assert_ne!(current, before_write);
    let pending = CanaryRolloutStatus::default();
    // An apply may carry a resourceVersion precondition (the controller's never does).
    let with_version = |version: &str| {
        let mut body = status::apply_body("checkout", &pending).unwrap();
        body["metadata"]["resourceVersion"] = json!(version);
        body
    };
    let stale = with_version(&before_write);
    assert_eq!(
        api_code(apply_status(&rollouts, &stale, false).await),
        (409, "Conflict".to_string())
    );
    assert_eq!(stored(&api)["status"]["phase"], "Progressing");
    let fresh = with_version(&current);
    apply_status(&rollouts, &fresh, false).await.unwrap();
    assert_eq!(stored(&api)["status"]["phase"], "Pending");
    // An apply that names another object: 400.
    let mut other = progressing_body();
    other["metadata"]["name"] = json!("search");
    assert_eq!(
        api_code(apply_status(&rollouts, &other, false).await),
        (400, "BadRequest".to_string())
    );
    // An apply to /status changes the status only: spec, labels and generation stay.
    let before = stored(&api);
    let mut wider = progressing_body();
    wider["spec"] = json!({"paused": true});
    wider["metadata"]["labels"] = json!({"team": "checkout"});
    apply_status(&rollouts, &wider, false).await.unwrap();
    let after = stored(&api);
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"].get("labels"), None);
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_eq!(after["status"]["phase"], "Progressing");
    assert!(!owned(&after, "stickycanary", "Apply", "status")
        .iter()
        .any(|p| p.starts_with("spec.")));
    // The same apply again is a no-op: no new resourceVersion.
    apply_status(&rollouts, &wider, false).await.unwrap();
    assert_eq!(
        stored(&api)["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    api.finish().await;
}

#[test]
fn the_ownership_move_touches_only_the_controllers_status_update_entry_and_never_approvals() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use stickycanary::k8s::status::upgraded_managed_fields;
    let entry = |manager: &str, operation: &str, subresource: Option<&str>, fields: Value| {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(Into::into),
            api_version: Some("stickycanary.dev/v1alpha1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            time: None,
        }
    };
    let applied = entry(
        "stickycanary",
        "Apply",
        Some("status"),
        json!({"f:status": {"f:phase": {}}}),
    );
    let finalizer = entry(
        "stickycanary",
        "Update",
        None,
        json!({"f:metadata": {"f:finalizers": {}}}),
    );
    let cli = entry(
        "stickycanary-cli",
        "Update",
        Some("status"),
        json!({"f:status": {"f:approvals": {"f:confirmRollout": {"f:revision": {}}}}}),
    );
    // Nothing to move: no request.
    assert_eq!(
        upgraded_managed_fields(&[applied.clone(), finalizer.clone(), cli.clone()]),
        None
    );
    // An Update entry that owned only an approval (written by an old controller's merge
    // patch): dropped, and the approval is not taken into the Apply entry.
    let old = entry(
        "stickycanary",
        "Update",
        Some("status"),
        json!({"f:status": {"f:gate": {"f:reason": {}}, "f:approvals": {"f:confirmRollout": {"f:revision": {}}}}}),
    );
    let moved =
        upgraded_managed_fields(&[old.clone(), applied.clone(), finalizer.clone(), cli.clone()])
            .unwrap();
    assert_eq!(moved.len(), 3, "{moved:#?}");
    assert_eq!(
        moved[1], finalizer,
        "the main resource's entry is not the status's"
    );
    assert_eq!(moved[2], cli);
    assert_eq!(moved[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        moved[0].fields_v1,
        Some(FieldsV1(
            json!({"f:status": {"f:phase": {}, "f:gate": {"f:reason": {}}}})
        ))
    );
    let only_approvals = entry(
        "stickycanary",
        "Update",
        Some("status"),
        json!({"f:status": {"f:approvals": {"f:confirmRollout": {"f:revision": {}}}}}),
    );
    assert_eq!(
        upgraded_managed_fields(&[only_approvals, cli.clone()]).unwrap(),
        [cli]
    );
}

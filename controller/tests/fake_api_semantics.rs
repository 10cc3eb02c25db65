//! The fake API server (`support::api::FakeApi`) behaves as a kube-apiserver does for what
//! the controller's generated `<workload>-primary` Deployment needs, each rule proved
//! through a real `kube::Client`:
//!
//! - Server-side apply to a missing object creates it (uid, creationTimestamp,
//!   resourceVersion, generation 1, an `Apply` managedFields entry; 201), and needs RBAC
//!   `create` as well as `patch`; a merge patch or a status apply to a missing object is 404.
//! - Garbage collection by ownerReferences (background propagation): removing an owner
//!   deletes its dependents, marks those with finalizers, cascades, spares orphans and
//!   dependents with another living owner.
//! - The Deployment `scale` subresource reads and writes `spec.replicas`, bumps generation
//!   and records the writer's ownership of `spec.replicas`.
//! - `metadata.generation` moves with `.spec` only.
//! - A forced apply takes over another manager's Deployment field; an unforced one gets 409
//!   with FieldManagerConflict causes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use http::{Request, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use support::api::{Authorizer, FakeApi, CREATION_TIME};
use support::gc::DELETION_TIME;
use support::rbac::Rule;
use support::shop::{self, ROLLOUT_PATH, STABLE_PATH};
use support::ssa::owned;

const PRIMARY: &str = "checkout-primary";
const PRIMARY_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-primary";
const REPLICA_SET_PATH: &str = "/apis/apps/v1/namespaces/shop/replicasets/checkout-primary-5d4f";

fn rule(group: &str, resource: &str, verbs: &[&str]) -> Rule {
    Rule {
        api_groups: vec![group.into()],
        resources: vec![resource.into()],
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

/// A user allowed everything.
fn admin() -> Arc<Authorizer> {
    Authorizer::user_with(vec![rule("*", "*", &["*"])])
}

/// A user allowed only `verbs` on Deployments.
fn deployments_user(verbs: &[&str]) -> Arc<Authorizer> {
    Authorizer::user_with(vec![rule("apps", "deployments", verbs)])
}

fn start() -> (Client, FakeApi) {
    FakeApi::start_with(admin())
}

fn deployments(client: Client) -> Api<Deployment> {
    Api::namespaced(client, "shop")
}

/// The rollouts, untyped: these tests are about the API server, not the CRD's schema.
fn rollouts(client: Client) -> Api<DynamicObject> {
    Api::namespaced_with(client, "shop", &ApiResource::erase::<CanaryRollout>(&()))
}

/// Creates rollout `shop/checkout` with `finalizers`; returns the uid the server gave it.
async fn create_rollout(client: Client, finalizers: &[&str]) -> String {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "finalizers": finalizers},
        "spec": {"canary": {"deployment": "checkout-canary"}}
    }))
    .unwrap();
    let created = rollouts(client)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    created.metadata.uid.expect("a created object has a uid")
}

/// An ownerReference to the rollout with `uid`, as a controller sets it.
fn owned_by_rollout(uid: &str) -> Value {
    json!({"apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
           "name": "checkout", "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

/// The primary Deployment's apply body: `replicas`, owned by `owners`.
fn primary(replicas: i64, owners: &[Value]) -> Value {
    let mut body = shop::deployment(PRIMARY, "primary", "shop/checkout:v1", replicas);
    body.as_object_mut().unwrap().remove("status");
    let metadata = body["metadata"].as_object_mut().unwrap();
    metadata.remove("generation");
    metadata.remove("namespace");
    if !owners.is_empty() {
        metadata.insert("ownerReferences".into(), json!(owners));
    }
    body
}

/// A server-side apply of `body` to the primary by `manager`.
async fn apply(
    deployments: &Api<Deployment>,
    body: &Value,
    manager: &str,
    force: bool,
) -> Result<Deployment, kube::Error> {
    let mut params = PatchParams::apply(manager);
    params.force = force;
    deployments
        .patch(PRIMARY, &params, &Patch::Apply(body))
        .await
}

/// A JSON merge patch of the primary by `manager`.
async fn merge(deployments: &Api<Deployment>, patch: Value, manager: &str) -> Deployment {
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    deployments
        .patch(PRIMARY, &params, &Patch::Merge(patch))
        .await
        .unwrap()
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn generation(api: &FakeApi, path: &str) -> i64 {
    api.get(path).unwrap()["metadata"]["generation"]
        .as_i64()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Apply creates
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_apply_to_a_missing_deployment_creates_it_with_the_fields_of_a_create() {
    let (client, api) = start();
    let uid = create_rollout(client.clone(), &[]).await;
    let mut body = primary(2, &[owned_by_rollout(&uid)]);
    body["status"] = json!({"replicas": 7});
    apply(&deployments(client), &body, "stickycanary", true)
        .await
        .unwrap();

    let stored = api
        .get(PRIMARY_PATH)
        .expect("the apply created the Deployment");
    let metadata = &stored["metadata"];
    assert!(!metadata["uid"].as_str().unwrap().is_empty());
    assert_ne!(metadata["uid"], json!(uid), "its own uid, not its owner's");
    assert_eq!(metadata["creationTimestamp"], CREATION_TIME);
    assert!(!metadata["resourceVersion"].as_str().unwrap().is_empty());
    assert_eq!(metadata["generation"], 1);
    assert_eq!(metadata["namespace"], "shop", "from the request's path");
    assert_eq!(metadata["ownerReferences"], json!([owned_by_rollout(&uid)]));
    assert_eq!(stored["spec"]["replicas"], 2);
    assert!(stored.get("status").is_none(), "a create resets status");
    let entries = metadata["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["manager"], "stickycanary");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["apiVersion"], "apps/v1");
    let fields = owned(&stored, "stickycanary", "Apply", "");
    assert!(fields.contains("spec.replicas"), "{fields:?}");
    assert!(fields.contains("metadata.ownerReferences"), "{fields:?}");
    api.finish().await;
}

/// A raw apply of the primary (to see the HTTP status kube-rs hides).
fn raw_apply(body: &Value) -> Request<Body> {
    Request::patch(format!(
        "{PRIMARY_PATH}?fieldManager=stickycanary&force=true"
    ))
    .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
    .body(Body::from(serde_json::to_vec(body).unwrap()))
    .unwrap()
}

#[tokio::test]
async fn an_apply_answers_201_when_it_creates_and_200_when_it_updates() {
    let (client, api) = start();
    let created = client.send(raw_apply(&primary(2, &[]))).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let updated = client.send(raw_apply(&primary(3, &[]))).await.unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(api.get(PRIMARY_PATH).unwrap()["spec"]["replicas"], 3);
    api.finish().await;
}

#[tokio::test]
async fn a_merge_patch_to_a_missing_deployment_is_not_found_and_creates_nothing() {
    let (client, api) = start();
    let params = PatchParams::default();
    let result = deployments(client)
        .patch(PRIMARY, &params, &Patch::Merge(primary(2, &[])))
        .await;
    assert_eq!(api_error(result).code, 404);
    assert!(api.get(PRIMARY_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn a_status_apply_to_a_missing_deployment_is_not_found() {
    let (client, api) = start();
    let mut body = primary(2, &[]);
    body["status"] = json!({"replicas": 2});
    let result = deployments(client)
        .patch_status(
            PRIMARY,
            &PatchParams::apply("stickycanary"),
            &Patch::Apply(&body),
        )
        .await;
    assert_eq!(api_error(result).code, 404);
    assert!(api.get(PRIMARY_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn an_apply_naming_a_uid_for_a_missing_object_is_a_conflict() {
    let (client, api) = start();
    let mut body = primary(2, &[]);
    body["metadata"]["uid"] = json!("u-made-up");
    let result = apply(&deployments(client), &body, "stickycanary", true).await;
    assert_eq!(api_error(result).code, 409);
    assert!(api.get(PRIMARY_PATH).is_none());
    api.finish().await;
}

#[tokio::test]
async fn an_apply_that_creates_needs_create_as_well_as_patch() {
    let (client, api) = FakeApi::start_with(deployments_user(&["get", "patch"]));
    let refused =
        api_error(apply(&deployments(client), &primary(2, &[]), "stickycanary", true).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert!(
        refused
            .message
            .contains("cannot create resource \"deployments\""),
        "{}",
        refused.message
    );
    assert!(api.get(PRIMARY_PATH).is_none(), "nothing stored");
    assert_eq!(api.authorizer.denied.lock().unwrap().len(), 1);

    let allowed = api.client_as(deployments_user(&["patch", "create"]));
    apply(
        &deployments(allowed),
        &primary(2, &[]),
        "stickycanary",
        true,
    )
    .await
    .unwrap();
    assert!(api.get(PRIMARY_PATH).is_some());
}

#[tokio::test]
async fn an_apply_that_creates_is_refused_without_patch_even_with_create() {
    let (_, api) = start();
    let create_only = api.client_as(deployments_user(&["create"]));
    let refused = api_error(
        apply(
            &deployments(create_only),
            &primary(2, &[]),
            "stickycanary",
            true,
        )
        .await,
    );
    assert_eq!(refused.code, 403);
    assert!(
        refused
            .message
            .contains("cannot patch resource \"deployments\""),
        "{}",
        refused.message
    );
    assert!(api.get(PRIMARY_PATH).is_none());
}

#[tokio::test]
async fn an_apply_to_an_existing_deployment_needs_only_patch() {
    let (client, api) = start();
    apply(&deployments(client), &primary(2, &[]), "stickycanary", true)
        .await
        .unwrap();
    let patch_only = deployments_user(&["patch"]);
    let client = api.client_as(patch_only.clone());
    apply(&deployments(client), &primary(3, &[]), "stickycanary", true)
        .await
        .unwrap();
    assert_eq!(api.get(PRIMARY_PATH).unwrap()["spec"]["replicas"], 3);
    let verbs: Vec<String> = patch_only.used().into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(verbs, ["patch"]);
    api.finish().await;
}

// ---------------------------------------------------------------------------------------
// 2. Garbage collection
// ---------------------------------------------------------------------------------------

/// The rollout (with `finalizers`) and its primary Deployment owned by it, plus the stable
/// Deployment owned by no one; returns the rollout's uid.
async fn rollout_with_primary(client: &Client, api: &FakeApi, finalizers: &[&str]) -> String {
    let uid = create_rollout(client.clone(), finalizers).await;
    apply(
        &deployments(client.clone()),
        &primary(2, &[owned_by_rollout(&uid)]),
        "stickycanary",
        true,
    )
    .await
    .unwrap();
    api.insert(
        STABLE_PATH,
        shop::deployment("checkout-stable", "stable", "shop/checkout:v1", 2),
    );
    uid
}

async fn delete_rollout(client: &Client) {
    rollouts(client.clone())
        .delete("checkout", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_rollout_deletes_the_deployment_it_owns_and_nothing_else() {
    let (client, api) = start();
    rollout_with_primary(&client, &api, &[]).await;
    delete_rollout(&client).await;
    assert!(api.get(ROLLOUT_PATH).is_none());
    assert!(api.get(PRIMARY_PATH).is_none(), "collected with its owner");
    assert!(api.get(STABLE_PATH).is_some(), "not owned: kept");
    api.finish().await;
}

#[tokio::test]
async fn a_rollout_with_a_finalizer_takes_its_deployment_along_only_when_the_finalizer_goes() {
    let (client, api) = start();
    rollout_with_primary(&client, &api, &["stickycanary.dev/cleanup"]).await;
    delete_rollout(&client).await;
    let rollout = api.get(ROLLOUT_PATH).expect("held by its finalizer");
    assert_eq!(rollout["metadata"]["deletionTimestamp"], DELETION_TIME);
    assert!(api.get(PRIMARY_PATH).is_some(), "its owner still exists");

    rollouts(client)
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(api.get(ROLLOUT_PATH).is_none());
    assert!(
        api.get(PRIMARY_PATH).is_none(),
        "collected once its owner is gone"
    );
    api.finish().await;
}

#[tokio::test]
async fn a_deployment_whose_owner_reference_was_dropped_by_apply_outlives_its_owner() {
    let (client, api) = start();
    rollout_with_primary(&client, &api, &[]).await;
    apply(
        &deployments(client.clone()),
        &primary(2, &[]),
        "stickycanary",
        true,
    )
    .await
    .unwrap();
    let stored = api.get(PRIMARY_PATH).unwrap();
    assert!(
        stored.pointer("/metadata/ownerReferences").is_none(),
        "the apply pruned the reference it no longer sets: {stored}"
    );
    delete_rollout(&client).await;
    assert!(api.get(PRIMARY_PATH).is_some(), "orphaned, not collected");
    api.finish().await;
}

#[tokio::test]
async fn a_deployment_whose_owner_reference_was_dropped_by_merge_patch_outlives_its_owner() {
    let (client, api) = start();
    rollout_with_primary(&client, &api, &[]).await;
    merge(
        &deployments(client.clone()),
        json!({"metadata": {"ownerReferences": null}}),
        "kubectl-edit",
    )
    .await;
    delete_rollout(&client).await;
    assert!(api.get(PRIMARY_PATH).is_some(), "orphaned, not collected");
    api.finish().await;
}

#[tokio::test]
async fn a_dependent_with_a_finalizer_is_marked_and_its_own_dependents_go_when_it_does() {
    let (client, api) = start();
    rollout_with_primary(&client, &api, &[]).await;
    merge(
        &deployments(client.clone()),
        json!({"metadata": {"finalizers": ["example.com/keep"]}}),
        "kubectl-edit",
    )
    .await;
    let primary_uid = api.get(PRIMARY_PATH).unwrap()["metadata"]["uid"].clone();
    api.insert(
        REPLICA_SET_PATH,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "checkout-primary-5d4f", "namespace": "shop",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": PRIMARY, "uid": primary_uid}]}}),
    );

    delete_rollout(&client).await;
    let primary = api.get(PRIMARY_PATH).expect("held by its finalizer");
    assert_eq!(primary["metadata"]["deletionTimestamp"], DELETION_TIME);
    assert!(
        api.get(REPLICA_SET_PATH).is_some(),
        "its owner still exists"
    );

    merge(
        &deployments(client),
        json!({"metadata": {"finalizers": null}}),
        "kubectl-edit",
    )
    .await;
    assert!(api.get(PRIMARY_PATH).is_none());
    assert!(
        api.get(REPLICA_SET_PATH).is_none(),
        "collected after its owner"
    );
    api.finish().await;
}

#[tokio::test]
async fn a_dependent_with_another_living_owner_loses_only_the_dangling_reference() {
    let (client, api) = start();
    let rollout_uid = create_rollout(client.clone(), &[]).await;
    let stable_uid = "u-stable";
    let mut stable = shop::deployment("checkout-stable", "stable", "shop/checkout:v1", 2);
    stable["metadata"]["uid"] = json!(stable_uid);
    api.insert(STABLE_PATH, stable);
    let other_owner = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "name": "checkout-stable", "uid": stable_uid});
    apply(
        &deployments(client.clone()),
        &primary(2, &[owned_by_rollout(&rollout_uid), other_owner.clone()]),
        "stickycanary",
        true,
    )
    .await
    .unwrap();

    delete_rollout(&client).await;
    let kept = api.get(PRIMARY_PATH).expect("another owner still exists");
    assert_eq!(kept["metadata"]["ownerReferences"], json!([other_owner]));
    api.finish().await;
}

// ---------------------------------------------------------------------------------------
// 3. The scale subresource
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_scale_subresource_reads_and_writes_spec_replicas_and_bumps_generation() {
    let (client, api) = start();
    let deployments = deployments(client);
    apply(&deployments, &primary(2, &[]), "stickycanary", true)
        .await
        .unwrap();
    let scale = deployments.get_scale(PRIMARY).await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));

    let params = PatchParams {
        field_manager: Some("hpa".into()),
        ..PatchParams::default()
    };
    let scaled = deployments
        .patch_scale(
            PRIMARY,
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));
    let stored = api.get(PRIMARY_PATH).unwrap();
    assert_eq!(stored["spec"]["replicas"], 5);
    assert_eq!(stored["metadata"]["generation"], 2);
    assert!(owned(&stored, "hpa", "Update", "scale").contains("spec.replicas"));
    assert!(!owned(&stored, "stickycanary", "Apply", "").contains("spec.replicas"));

    // The applier lost spec.replicas: applying its old value again, unforced, conflicts.
    let refused = api_error(apply(&deployments, &primary(2, &[]), "stickycanary", false).await);
    assert_eq!(refused.code, 409);
    assert!(
        refused.message.contains("conflict with \"hpa\""),
        "{}",
        refused.message
    );
    api.finish().await;
}

// ---------------------------------------------------------------------------------------
// 4. Generation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deployment_spec_change_bumps_generation_and_metadata_or_status_writes_do_not() {
    let (client, api) = start();
    let deployments = deployments(client);
    apply(&deployments, &primary(2, &[]), "stickycanary", true)
        .await
        .unwrap();
    assert_eq!(generation(&api, PRIMARY_PATH), 1);

    merge(
        &deployments,
        json!({"metadata": {"labels": {"team": "shop"}}}),
        "kubectl-edit",
    )
    .await;
    assert_eq!(generation(&api, PRIMARY_PATH), 1, "metadata only");
    deployments
        .patch_status(
            PRIMARY,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&api, PRIMARY_PATH), 1, "status only");
    apply(&deployments, &primary(2, &[]), "stickycanary", true)
        .await
        .unwrap();
    assert_eq!(
        generation(&api, PRIMARY_PATH),
        1,
        "an apply changing nothing"
    );

    merge(
        &deployments,
        json!({"spec": {"minReadySeconds": 5}}),
        "kubectl-edit",
    )
    .await;
    assert_eq!(generation(&api, PRIMARY_PATH), 2, "merge patch of spec");
    apply(&deployments, &primary(4, &[]), "stickycanary", true)
        .await
        .unwrap();
    assert_eq!(generation(&api, PRIMARY_PATH), 3, "apply of spec");

    let mut replaced = deployments.get(PRIMARY).await.unwrap();
    replaced.spec.paused = Some(true);
    deployments
        .replace(PRIMARY, &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(generation(&api, PRIMARY_PATH), 4, "PUT of spec");
    let mut relabelled = deployments.get(PRIMARY).await.unwrap();
    relabelled
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "web".into());
    deployments
        .replace(PRIMARY, &PostParams::default(), &relabelled)
        .await
        .unwrap();
    assert_eq!(generation(&api, PRIMARY_PATH), 4, "PUT of metadata only");
    api.finish().await;
}

#[tokio::test]
async fn a_rollout_spec_change_bumps_generation_and_a_status_write_does_not() {
    let (client, api) = start();
    create_rollout(client.clone(), &[]).await;
    let rollouts = rollouts(client);
    rollouts
        .patch_status(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Progressing"}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&api, ROLLOUT_PATH), 1);
    rollouts
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"canary": {"deployment": "checkout-next"}}})),
        )
        .await
        .unwrap();
    assert_eq!(generation(&api, ROLLOUT_PATH), 2);
    api.finish().await;
}

// ---------------------------------------------------------------------------------------
// 5. Apply conflicts on a Deployment
// ---------------------------------------------------------------------------------------

/// The primary applied by `stickycanary`, then scaled to 4 by hand (`kubectl-edit` owns
/// spec.replicas now).
async fn primary_edited_by_hand(client: Client, api: &FakeApi) -> Api<Deployment> {
    let deployments = deployments(client);
    apply(&deployments, &primary(2, &[]), "stickycanary", true)
        .await
        .unwrap();
    merge(
        &deployments,
        json!({"spec": {"replicas": 4}}),
        "kubectl-edit",
    )
    .await;
    let stored = api.get(PRIMARY_PATH).unwrap();
    assert!(owned(&stored, "kubectl-edit", "Update", "").contains("spec.replicas"));
    deployments
}

#[tokio::test]
async fn a_forced_apply_takes_over_a_deployment_field_another_manager_set() {
    let (client, api) = start();
    let deployments = primary_edited_by_hand(client, &api).await;
    apply(&deployments, &primary(3, &[]), "stickycanary", true)
        .await
        .unwrap();
    let stored = api.get(PRIMARY_PATH).unwrap();
    assert_eq!(stored["spec"]["replicas"], 3);
    assert!(owned(&stored, "stickycanary", "Apply", "").contains("spec.replicas"));
    assert!(!owned(&stored, "kubectl-edit", "Update", "").contains("spec.replicas"));
    api.finish().await;
}

#[tokio::test]
async fn an_unforced_apply_over_a_deployment_field_another_manager_set_is_a_409_with_its_causes() {
    let (client, api) = start();
    let deployments = primary_edited_by_hand(client, &api).await;
    let before = api.get(PRIMARY_PATH).unwrap();
    let refused = api_error(apply(&deployments, &primary(3, &[]), "stickycanary", false).await);
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        refused.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
    let causes = refused.details.expect("conflict details").causes;
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.replicas");
    assert_eq!(api.get(PRIMARY_PATH).unwrap(), before, "nothing changed");
    api.finish().await;
}

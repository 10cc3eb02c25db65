//! `stickycanary approve` against a mocked API server: the exact requests (a GET, then a
//! merge patch of the status subresource with the resourceVersion it read), a 409 when the
//! rollout moved meanwhile (re-read, re-checked), and the RBAC an approver needs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::{Method, Request, Response, StatusCode};
use kube::api::Api;
use kube::client::Body;
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use stickycanary::crd::{ApprovalRecord, WebhookType};
use stickycanary::k8s::approve::{approval_patch, approve_in_cluster};
use support::rbac::Attributes;

const PATH: &str = "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout";

fn rollout(resource_version: &str, revision: &str) -> Value {
    json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": resource_version},
        "spec": {"wasmPlugin": {"name": "sc"}, "canary": {"deployment": "checkout-canary"},
                 "webhooks": [{"name": "release-manager", "type": "confirm-promotion", "approval": "manual"}]},
        "status": {"phase": "Progressing", "weight": 50.0, "canaryRevision": revision,
                   "gate": {"gate": "confirm-promotion", "reason": "manual approval", "manual": true,
                            "since": "2026-11-30T06:00:00Z", "revision": revision}}
    })
}

struct Seen {
    method: Method,
    path: String,
    content_type: String,
    body: Value,
    rbac: String,
}

async fn next(handle: &mut support::api::Handle) -> (Seen, support::api::Responder) {
    let (request, send): (Request<Body>, _) =
        tokio::time::timeout(std::time::Duration::from_secs(5), handle.next_request())
            .await
            .expect("no request within 5s")
            .expect("client gone");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let path = parts.uri.path().to_string();
    let attributes =
        Attributes::from_request(&parts.method, &path, parts.uri.query().unwrap_or_default())
            .unwrap();
    let seen = Seen {
        rbac: format!("{} {}", attributes.verb, attributes.rbac_resource()),
        method: parts.method,
        path,
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body,
    };
    (seen, send)
}

fn answer(send: support::api::Responder, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

#[tokio::test]
async fn approve_reads_the_revision_and_patches_the_status_with_its_resource_version() {
    let (client, mut handle) = support::api::pair();
    let api: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let server = tokio::spawn(async move {
        let (get, send) = next(&mut handle).await;
        assert_eq!((get.method.clone(), get.path.as_str()), (Method::GET, PATH));
        answer(send, StatusCode::OK, &rollout("41", "7f3a9c"));
        let (patch, send) = next(&mut handle).await;
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path, format!("{PATH}/status"));
        assert_eq!(patch.content_type, "application/merge-patch+json");
        assert_eq!(
            patch.body,
            json!({"metadata": {"resourceVersion": "41"},
                   "status": {"approvals": {"confirmPromotion":
                       {"revision": "7f3a9c", "attempt": 1, "stage": null}}}})
        );
        let mut stored = rollout("42", "7f3a9c");
        stored["status"]["approvals"] =
            json!({"confirmPromotion": {"revision": "7f3a9c", "attempt": 1}});
        answer(send, StatusCode::OK, &stored);
        vec![get.rbac, patch.rbac]
    });
    let message = approve_in_cluster(&api, "checkout", WebhookType::ConfirmPromotion, None)
        .await
        .unwrap();
    assert_eq!(
        message,
        "approved confirm-promotion of checkout for revision 7f3a9c"
    );
    let rbac = server.await.unwrap();
    // What an approver's Role must grant (SECURITY.md): nothing else is asked.
    assert_eq!(rbac, ["get canaryrollouts", "patch canaryrollouts/status"]);
}

#[tokio::test]
async fn a_conflict_rereads_and_approves_the_revision_it_then_sees() {
    let (client, mut handle) = support::api::pair();
    let api: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        answer(send, StatusCode::OK, &rollout("41", "v2"));
        let (first, send) = next(&mut handle).await;
        assert_eq!(
            first.body["status"]["approvals"]["confirmPromotion"]["revision"],
            "v2"
        );
        // The controller moved to v3 meanwhile: the stale resourceVersion is refused.
        answer(
            send,
            StatusCode::CONFLICT,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                    "message": "the object has been modified", "code": 409}),
        );
        let (again, send) = next(&mut handle).await;
        assert_eq!(again.method, Method::GET);
        answer(send, StatusCode::OK, &rollout("43", "v3"));
        let (second, send) = next(&mut handle).await;
        assert_eq!(
            second.body,
            json!({"metadata": {"resourceVersion": "43"},
                   "status": {"approvals": {"confirmPromotion":
                       {"revision": "v3", "attempt": 1, "stage": null}}}})
        );
        answer(send, StatusCode::OK, &rollout("44", "v3"));
    });
    let message = approve_in_cluster(&api, "checkout", WebhookType::ConfirmPromotion, None)
        .await
        .unwrap();
    assert!(message.ends_with("for revision v3"), "{message}");
    server.await.unwrap();
}

#[tokio::test]
async fn an_explicit_revision_is_kept_across_a_conflict_and_an_invalid_one_is_refused() {
    assert_eq!(
        approval_patch(
            WebhookType::ConfirmRollout,
            &ApprovalRecord::for_revision("r9"),
            None
        ),
        json!({"status": {"approvals": {"confirmRollout":
            {"revision": "r9", "attempt": null, "stage": null}}}})
    );
    let (client, mut handle) = support::api::pair();
    let api: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        answer(send, StatusCode::OK, &rollout("41", "v2"));
        // Nothing is written for a revision the CRD schema would refuse.
    });
    let error = approve_in_cluster(
        &api,
        "checkout",
        WebhookType::ConfirmPromotion,
        Some("v2; rm -rf"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("is not a revision"), "{error}");
    server.await.unwrap();
}

#[test]
fn the_controllers_status_apply_never_carries_approvals() {
    use stickycanary::crd::CanaryRolloutStatus;
    use stickycanary::engine::decide;
    use stickycanary::k8s::status::apply_body;
    use stickycanary::observation::{CanaryHealth, MetricsObservation, Observations};

    // The status as read (an approval already there), then the engine's next status.
    let rollout: CanaryRollout = serde_json::from_value(rollout("41", "v2")).unwrap();
    let mut old: CanaryRolloutStatus = rollout.status.clone().unwrap();
    old.approvals.approve(WebhookType::ConfirmRollout, "v2");
    let observations = Observations {
        metrics: MetricsObservation::Unavailable {
            reason: "down".to_string(),
        },
        custom: Vec::new(),
        resources: Default::default(),
        canary_health: CanaryHealth::Healthy,
        manual: None,
        stable_before_run: None,
    };
    let new = decide(
        &rollout.spec,
        &old,
        "2026-11-30T06:01:00Z".parse().unwrap(),
        &observations,
    )
    .status;
    assert_eq!(new.approvals, old.approvals);
    let body = apply_body("checkout", &new).unwrap();
    // Never part of the controller's apply, so never its field: an approval written after
    // this read (status_apply_api.rs runs that race) is neither removed nor overwritten.
    assert!(body["status"].get("approvals").is_none(), "{body}");
    assert!(body["status"].get("conditions").is_some(), "{body}");
    assert_eq!(body["apiVersion"], "stickycanary.dev/v1alpha1");
    assert_eq!(body["kind"], "CanaryRollout");
    assert_eq!(body["metadata"], json!({"name": "checkout"}));
}

#[tokio::test]
async fn a_traffic_increase_approval_names_the_run_and_the_stage_the_rollout_waits_at() {
    let (client, mut handle) = support::api::pair();
    let api: Api<CanaryRollout> = Api::namespaced(client, "shop");
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        let mut waiting = rollout("41", "7f3a9c");
        waiting["status"]["attempt"] = json!(2);
        waiting["status"]["gate"] = json!({"gate": "confirm-traffic-increase",
            "reason": "manual approval", "manual": true, "since": "2026-11-30T06:00:00Z",
            "revision": "7f3a9c", "attempt": 2, "stage": 2});
        answer(send, StatusCode::OK, &waiting);
        let (patch, send) = next(&mut handle).await;
        assert_eq!(
            patch.body,
            json!({"metadata": {"resourceVersion": "41"},
                   "status": {"approvals": {"confirmTrafficIncrease":
                       {"revision": "7f3a9c", "attempt": 2, "stage": 2}}}})
        );
        answer(send, StatusCode::OK, &waiting);
    });
    let message = approve_in_cluster(&api, "checkout", WebhookType::ConfirmTrafficIncrease, None)
        .await
        .unwrap();
    assert_eq!(
        message,
        "approved confirm-traffic-increase of checkout for revision 7f3a9c, run 2, the raise into stage 3"
    );
    server.await.unwrap();
}

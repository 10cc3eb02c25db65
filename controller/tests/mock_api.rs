//! Kubernetes interactions against a mocked API server (controller-rs `fixtures.rs` style):
//! `tower_test::mock::pair()` backs a real `kube::Client`, and each `Scenario` spells out the
//! exact requests expected (method, path, query, content type, body) and the answers given.
//! No API server can run on these machines; this is how the cluster side is tested.
//!
//! Every request also passes the chart's RBAC (`support::rbac`), in both install modes, and
//! answers 403 (failing the test) when a rule is missing: the chart is proven against what
//! the code actually sends, not against a list written next to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;
mod support;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use stickycanary::k8s::lease::{LeaderElector, Round};
use stickycanary::k8s::reconcile::{self, Context};
use stickycanary::target::wasmplugin::WasmPluginTarget;
use stickycanary::target::{TargetError, WeightTarget};

use support::api::{api_status, finish, Authorizer, FakeApi, ScriptedServer, Seen};
use support::rbac::{ChartRules, Mode};
use support::shop::assert_status_apply;

const PLUGIN_PATH: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins/stickycanary";

fn plugin(weight: f64) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "stickycanary", "namespace": "istio-system", "resourceVersion": "7"},
        "spec": {
            "url": "oci://example/stickycanary:1",
            "pluginConfig": {
                "routeHeader": "x-canary-version",
                "rollouts": {
                    "checkout": {"hosts": ["checkout"], "weight": weight},
                    "search": {"hosts": ["search"], "weight": 40}
                }
            }
        },
        "status": {"istio": "owned"}
    })
}

/// The merge patch of exactly one weight field, under the stickycanary field manager.
fn assert_weight_patch(seen: &Seen, weight: Value) {
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert!(
        seen.query.contains("fieldManager=stickycanary"),
        "{}",
        seen.query
    );
    assert_eq!(
        seen.body,
        json!({"metadata": {"resourceVersion": "7"},
               "spec": {"pluginConfig": {"rollouts": {"checkout": {"weight": weight}}}}}),
        "the weight, conditional on the resourceVersion read"
    );
}

async fn run(mut server: ScriptedServer, scenario: Scenario) {
    match scenario {
        Scenario::WeightPatched => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            let seen = server
                .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                .await;
            assert_weight_patch(&seen, json!(25));
        }
        Scenario::SlowThresholdPatched => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            let seen = server
                .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            // The same shape as the weight patch: a JSON merge patch of the one field, under
            // the stickycanary field manager, conditional on the resourceVersion read (a real
            // API server answers 409 when it is stale, and applies the rest of pluginConfig
            // untouched: merge patch replaces only the keys it names).
            assert_eq!(seen.content_type, "application/merge-patch+json");
            assert!(
                seen.query.contains("fieldManager=stickycanary"),
                "{}",
                seen.query
            );
            assert_eq!(
                seen.body,
                json!({"metadata": {"resourceVersion": "7"},
                       "spec": {"pluginConfig": {"rollouts": {"checkout": {"slowThresholdMs": 300}}}}})
            );
        }
        Scenario::ConflictThenPatched => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            // Someone else writes the plugin (resourceVersion 7 -> 8) before our patch. The
            // API server refuses a patch only when it names an older resourceVersion.
            let mut edited = plugin(10.0);
            edited["metadata"]["resourceVersion"] = json!("8");
            let (seen, send) = server.next().await;
            assert_eq!(seen.method, Method::PATCH);
            assert!(
                support::api::stale(&edited, &seen.body),
                "the patch is not conditional on what was read: {}",
                seen.body
            );
            support::api::respond(send, StatusCode::CONFLICT, &api_status(409, "Conflict"));
            // The re-read sees version 8, and the retried patch is conditional on it.
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, edited.clone())
                .await;
            let seen = server
                .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                .await;
            assert_eq!(seen.body["metadata"]["resourceVersion"], "8");
            assert!(!support::api::stale(&edited, &seen.body));
            assert_eq!(
                seen.body["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"],
                25
            );
        }
        Scenario::ServerError => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            server
                .expect(
                    Method::PATCH,
                    PLUGIN_PATH,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    api_status(500, "InternalError"),
                )
                .await;
        }
        Scenario::PatchNeverAnswered => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            let (seen, send) = server.next().await;
            assert_eq!(seen.method, Method::PATCH);
            // Hold the answer past the client's timeout.
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(send);
        }
        Scenario::OnlyGet { answer, status } => {
            server
                .expect(Method::GET, PLUGIN_PATH, status, answer)
                .await;
        }
        Scenario::ReconcileStartsRollout => {
            // 1. The plugin is read to learn the rollout's version names and weight.
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                .await;
            // 2. Canary health: the Deployment is not there yet, so health is unknown.
            server
                .expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
            // 3. The engine starts stage 1: the weight is written first...
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                .await;
            let seen = server
                .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                .await;
            assert_weight_patch(&seen, json!(10));
            // 4. ...then the status subresource, by server-side apply.
            let seen = server
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
            assert_status_apply(&seen);
            let status = &seen.body["status"];
            assert_eq!(status["phase"], "Progressing");
            assert_eq!(status["weight"], 10.0);
            assert_eq!(status["stageIndex"], 0);
            assert_eq!(status["observedGeneration"], 3);
            assert!(status["stageStartedAt"].is_string());
            // 5. The Event on the CanaryRollout.
            let seen = server
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events",
                    StatusCode::CREATED,
                    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                               "metadata": {"name": "checkout.1", "namespace": "shop"},
                               "eventTime": "2026-11-26T06:00:00.000000Z"}),
                )
                .await;
            assert_eq!(seen.body["reason"], "StageAdvanced");
            assert_eq!(seen.body["type"], "Normal");
            assert_eq!(seen.body["reportingController"], "stickycanary");
            assert_eq!(seen.body["regarding"]["kind"], "CanaryRollout");
            assert_eq!(seen.body["regarding"]["name"], "checkout");
            assert_eq!(seen.body["regarding"]["namespace"], "shop");
        }
        Scenario::ReconcileAbortRequest => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                .await;
            server
                .expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                .await;
            let seen = server
                .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                .await;
            assert_weight_patch(&seen, json!(0));
            let seen = server
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
            assert_status_apply(&seen);
            assert_eq!(seen.body["status"]["phase"], "RolledBack");
            assert_eq!(seen.body["status"]["rollbackReason"], "aborted");
            // The request is recorded as handled, so it is not applied twice.
            let seen = server
                .expect(
                    Method::PATCH,
                    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout",
                    StatusCode::OK,
                    rollout_json(),
                )
                .await;
            assert_eq!(
                seen.body,
                json!({"metadata": {"annotations": {"stickycanary.dev/request-handled": "abort@42"}}})
            );
        }
        Scenario::ReconcileWeightPatchFails => {
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                .await;
            server
                .expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
            server
                .expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                .await;
            server
                .expect(
                    Method::PATCH,
                    PLUGIN_PATH,
                    StatusCode::SERVICE_UNAVAILABLE,
                    api_status(503, "ServiceUnavailable"),
                )
                .await;
            // Only a Degraded condition is recorded: the status never claims a weight
            // that was not set.
            let seen = server
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
            assert_degraded_only(&seen, "WasmPluginUnavailable");
        }
        Scenario::ReconcilePluginDeleted => {
            server
                .expect(
                    Method::GET,
                    PLUGIN_PATH,
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
            let seen = server
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
            assert_degraded_only(&seen, "WasmPluginNotFound");
        }
        Scenario::LeaseCreated => {
            server
                .expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
            let seen = server
                .expect(
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/stickycanary/leases",
                    StatusCode::CREATED,
                    lease("replica-a", "2026-11-26T06:00:00.000000Z", 0),
                )
                .await;
            assert_eq!(seen.body["metadata"]["name"], "stickycanary-leader");
            assert_eq!(seen.body["spec"]["holderIdentity"], "replica-a");
            assert_eq!(seen.body["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(seen.body["spec"]["leaseTransitions"], 0);
            assert!(seen.body["spec"]["renewTime"].is_string());
        }
        Scenario::LeaseRenewed => {
            server
                .expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-a", "2026-11-26T05:59:58.000000Z", 2),
                )
                .await;
            let seen = server
                .expect(
                    Method::PUT,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-a", "2026-11-26T06:00:00.000000Z", 2),
                )
                .await;
            assert_eq!(
                seen.body["metadata"]["resourceVersion"], "11",
                "optimistic concurrency"
            );
            assert_eq!(seen.body["spec"]["holderIdentity"], "replica-a");
            assert_eq!(
                seen.body["spec"]["leaseTransitions"], 2,
                "a renewal is not a transition"
            );
            assert_eq!(
                seen.body["spec"]["renewTime"],
                "2026-11-26T06:00:00.000000Z"
            );
        }
        Scenario::LeaseRenewedBySkewedClock => {
            // replica-b's clock is a minute behind ours: each renewTime it writes is long
            // past by our clock, but the record changes at every read, so it is alive.
            for renew in ["05:59:00", "05:59:05", "05:59:10"] {
                server
                    .expect(
                        Method::GET,
                        LEASE_PATH,
                        StatusCode::OK,
                        lease("replica-b", &format!("2026-11-26T{renew}.000000Z"), 1),
                    )
                    .await;
            }
            server.expect_silence(Duration::from_millis(200)).await;
        }
        Scenario::LeaseHeldByOther => {
            server
                .expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-b", "2026-11-26T05:59:58.000000Z", 1),
                )
                .await;
        }
        Scenario::LeaseTakenOverAfterExpiry => {
            // Seen once, then unchanged a lease duration later (by our clock).
            for _ in 0..2 {
                server
                    .expect(
                        Method::GET,
                        LEASE_PATH,
                        StatusCode::OK,
                        lease("replica-b", "2026-11-26T05:59:00.000000Z", 1),
                    )
                    .await;
            }
            let seen = server
                .expect(
                    Method::PUT,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-a", "2026-11-26T06:00:00.000000Z", 2),
                )
                .await;
            assert_eq!(seen.body["spec"]["holderIdentity"], "replica-a");
            assert_eq!(seen.body["spec"]["leaseTransitions"], 2);
        }
        Scenario::LeaseRaceLost => {
            for _ in 0..2 {
                server
                    .expect(
                        Method::GET,
                        LEASE_PATH,
                        StatusCode::OK,
                        lease("replica-b", "2026-11-26T05:59:00.000000Z", 1),
                    )
                    .await;
            }
            server
                .expect(
                    Method::PUT,
                    LEASE_PATH,
                    StatusCode::CONFLICT,
                    api_status(409, "Conflict"),
                )
                .await;
        }
    }
}

/// Only the conditions, with Degraded set, applied under their own field manager: the
/// status never claims a weight that was not set, and the rest of it is not written back
/// from a possibly stale read (the second manager's apply removes nothing the controller's
/// full applies own).
fn assert_degraded_only(seen: &Seen, reason: &str) {
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(
        seen.param("fieldManager").as_deref(),
        Some("stickycanary-degraded")
    );
    assert_eq!(seen.param("force").as_deref(), Some("true"));
    assert_eq!(seen.body["apiVersion"], "stickycanary.dev/v1alpha1");
    assert_eq!(seen.body["kind"], "CanaryRollout");
    assert_eq!(seen.body["metadata"], json!({"name": "checkout"}));
    let status = seen.body["status"].as_object().unwrap();
    assert_eq!(
        status.keys().collect::<Vec<_>>(),
        vec!["conditions"],
        "{}",
        seen.body
    );
    let degraded = support::shop::condition(&seen.body["status"], "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], reason);
}

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/stickycanary/leases/stickycanary-leader";

fn lease(holder: &str, renew: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "stickycanary-leader", "namespace": "stickycanary", "resourceVersion": "11"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": renew,
                 "renewTime": renew, "leaseTransitions": transitions}
    })
}

enum Scenario {
    WeightPatched,
    SlowThresholdPatched,
    ConflictThenPatched,
    ServerError,
    PatchNeverAnswered,
    OnlyGet { answer: Value, status: StatusCode },
    ReconcileStartsRollout,
    ReconcileAbortRequest,
    ReconcileWeightPatchFails,
    ReconcilePluginDeleted,
    LeaseCreated,
    LeaseRenewed,
    LeaseHeldByOther,
    LeaseRenewedBySkewedClock,
    LeaseTakenOverAfterExpiry,
    LeaseRaceLost,
}

fn mock() -> (Client, ScriptedServer) {
    ScriptedServer::new()
}

/// Spawns the server side and returns the client plus a join handle to await at the end.
fn start(scenario: Scenario) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, server) = mock();
    let handle = tokio::spawn(run(server, scenario));
    (client, handle)
}

#[derive(Default)]
struct Outcomes(Mutex<Vec<String>>);
impl stickycanary::target::wasmplugin::PatchOutcomes for Outcomes {
    fn record(&self, outcome: &str) {
        self.0.lock().unwrap().push(outcome.to_string());
    }
}

fn target(
    client: Client,
    outcomes: &Arc<Outcomes>,
    timeout: Duration,
) -> WasmPluginTarget<Arc<Outcomes>> {
    WasmPluginTarget::with_outcomes(
        client,
        "istio-system",
        "stickycanary",
        timeout,
        outcomes.clone(),
    )
}

#[tokio::test]
async fn weight_change_is_a_merge_patch_of_exactly_one_field() {
    let (client, server) = start(Scenario::WeightPatched);
    let outcomes = Arc::new(Outcomes::default());
    target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 25.0, None)
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["success"]);
}

#[tokio::test]
async fn the_latency_threshold_is_written_as_one_conditional_merge_patch_field() {
    let (client, server) = start(Scenario::SlowThresholdPatched);
    let outcomes = Arc::new(Outcomes::default());
    target(client, &outcomes, Duration::from_secs(5))
        .set_slow_threshold("checkout", 300.0)
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["success"]);
}

#[tokio::test]
async fn a_concurrent_plugin_edit_gives_409_and_the_patch_is_retried_on_the_new_version() {
    let (client, server) = start(Scenario::ConflictThenPatched);
    let outcomes = Arc::new(Outcomes::default());
    target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 25.0, None)
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["conflict", "success"]);
}

#[tokio::test]
async fn a_5xx_is_an_error_and_not_retried_as_success() {
    let (client, server) = start(Scenario::ServerError);
    let outcomes = Arc::new(Outcomes::default());
    let err = target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 25.0, None)
        .await
        .unwrap_err();
    finish(server).await;
    assert!(matches!(err, TargetError::Api { .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["api_error"]);
}

#[tokio::test]
async fn an_unanswered_patch_times_out_as_an_error() {
    let (client, server) = start(Scenario::PatchNeverAnswered);
    let outcomes = Arc::new(Outcomes::default());
    let err = target(client, &outcomes, Duration::from_millis(300))
        .set_weight("checkout", 25.0, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Timeout { .. }), "{err}");
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["timeout"]);
    finish(server).await;
}

#[tokio::test]
async fn a_weight_the_filter_would_reject_is_never_patched() {
    let (client, server) = start(Scenario::OnlyGet {
        answer: plugin(10.0),
        status: StatusCode::OK,
    });
    let outcomes = Arc::new(Outcomes::default());
    let err = target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 150.0, None)
        .await
        .unwrap_err();
    finish(server).await;
    assert!(matches!(err, TargetError::InvalidConfig { .. }), "{err}");
    assert!(
        err.to_string().contains("rollouts.checkout.weight"),
        "{err}"
    );
}

#[tokio::test]
async fn a_rollout_key_missing_from_the_plugin_is_refused() {
    let (client, server) = start(Scenario::OnlyGet {
        answer: plugin(10.0),
        status: StatusCode::OK,
    });
    let outcomes = Arc::new(Outcomes::default());
    let err = target(client, &outcomes, Duration::from_secs(5))
        .set_weight("payments", 25.0, None)
        .await
        .unwrap_err();
    finish(server).await;
    assert!(matches!(err, TargetError::MissingKey { .. }), "{err}");
}

#[tokio::test]
async fn a_deleted_wasmplugin_is_not_found() {
    let (client, server) = start(Scenario::OnlyGet {
        answer: api_status(404, "NotFound"),
        status: StatusCode::NOT_FOUND,
    });
    let outcomes = Arc::new(Outcomes::default());
    let err = target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 25.0, None)
        .await
        .unwrap_err();
    finish(server).await;
    assert!(matches!(err, TargetError::NotFound { .. }), "{err}");
}

fn rollout_json() -> Value {
    json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        // Already carrying the finalizer, as every rollout does after its first reconcile
        // (`every_rollout_gets_the_finalizer...` covers the first one).
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 3, "uid": "u-1",
                     "resourceVersion": "5", "finalizers": ["stickycanary.dev/cleanup"]},
        "spec": {
            "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
            "canary": {"deployment": "checkout-canary"},
            "stages": [{"weight": 10, "duration": "1m"}, {"weight": 100}],
            "analysis": {"interval": "10s"},
            // Nothing listens on port 9: metrics are unavailable, which never rolls back at once.
            "prometheus": {"address": "http://127.0.0.1:9"}
        }
    })
}

fn context(client: Client) -> Arc<Context> {
    support::context(client, Duration::from_secs(2))
}

#[tokio::test]
async fn reconcile_writes_weight_then_status_then_event() {
    let (client, server) = start(Scenario::ReconcileStartsRollout);
    let rollout: CanaryRollout = serde_json::from_value(rollout_json()).unwrap();
    let ctx = context(client);
    let requeue = reconcile::reconcile(Arc::new(rollout), ctx.clone())
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(10))
    );
    let text = ctx.metrics.encode();
    assert!(
        text.contains("stickycanary_rollout_weight{namespace=\"shop\",rollout=\"checkout\"} 10.0"),
        "{text}"
    );
    assert!(
        text.contains("stickycanary_weight_patch_total{outcome=\"success\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn an_abort_annotation_rolls_back_and_is_recorded_as_handled() {
    let (client, server) = start(Scenario::ReconcileAbortRequest);
    let mut value = rollout_json();
    value["metadata"]["annotations"] = json!({"stickycanary.dev/request": "abort@42"});
    let mut rollout: CanaryRollout = serde_json::from_value(value).unwrap();
    rollout.status = Some(CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 25.0,
        stage_index: 0,
        stage_started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        observed_generation: Some(3),
        ..Default::default()
    });
    let ctx = context(client);
    reconcile::reconcile(Arc::new(rollout), ctx.clone())
        .await
        .unwrap();
    finish(server).await;
    let text = ctx.metrics.encode();
    assert!(
        text.contains(
            "stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"checkout\",reason=\"aborted\"} 1"
        ),
        "{text}"
    );
    // The other reasons exist at 0, so Prometheus' increase() sees a later rollback.
    assert!(
        text.contains(
            "stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"checkout\",reason=\"error-rate\"} 0"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_weight_patch_fails_the_reconcile_without_a_status_write() {
    let (client, server) = start(Scenario::ReconcileWeightPatchFails);
    let rollout: CanaryRollout = serde_json::from_value(rollout_json()).unwrap();
    let rollout = Arc::new(rollout);
    let ctx = context(client);
    let err = reconcile::reconcile(rollout.clone(), ctx.clone())
        .await
        .unwrap_err();
    finish(server).await;
    assert!(err.to_string().contains("503"), "{err}");
    let requeue = reconcile::error_policy(rollout, &err, ctx.clone());
    let delay = requeue_after(&requeue);
    assert!((4.0..=5.0).contains(&delay), "{requeue:?}");
    assert!(ctx
        .metrics
        .encode()
        .contains("stickycanary_reconcile_errors_total{error=\"api_error\"} 1"));
}

#[tokio::test]
async fn a_wasmplugin_deleted_mid_rollout_is_degraded_and_retried_with_backoff() {
    let (client, server) = start(Scenario::ReconcilePluginDeleted);
    let mut rollout: CanaryRollout = serde_json::from_value(rollout_json()).unwrap();
    rollout.status = Some(CanaryRolloutStatus {
        phase: Phase::Progressing,
        weight: 25.0,
        observed_generation: Some(3),
        ..Default::default()
    });
    let rollout = Arc::new(rollout);
    let ctx = context(client);
    let err = reconcile::reconcile(rollout.clone(), ctx.clone())
        .await
        .unwrap_err();
    finish(server).await;
    assert!(err.to_string().contains("not found"), "{err}");
    let requeue = reconcile::error_policy(rollout, &err, ctx.clone());
    let delay = requeue_after(&requeue);
    assert!((24.0..=30.0).contains(&delay), "{requeue:?}");
    assert!(ctx
        .metrics
        .encode()
        .contains("stickycanary_reconcile_errors_total{error=\"not_found\"} 1"));
}

#[tokio::test]
async fn a_follower_does_not_touch_the_api() {
    let (client, server) = mock();
    let rollout: CanaryRollout = serde_json::from_value(rollout_json()).unwrap();
    let ctx = context(client);
    ctx.leader.store(false, std::sync::atomic::Ordering::SeqCst);
    let requeue = reconcile::reconcile(Arc::new(rollout), ctx).await.unwrap();
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
    let mut server = server;
    server.expect_silence(Duration::from_millis(200)).await;
}

fn elector(client: Client) -> LeaderElector {
    LeaderElector::new(
        client,
        "stickycanary",
        "stickycanary-leader",
        "replica-a",
        Duration::from_secs(15),
    )
}

fn at(text: &str) -> k8s_openapi::jiff::Timestamp {
    text.parse().unwrap()
}

#[tokio::test]
async fn an_absent_lease_is_created_and_held() {
    let (client, server) = start(Scenario::LeaseCreated);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"), Instant::now())
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(round, Round::Leading);
}

#[tokio::test]
async fn the_holder_renews_its_lease_with_the_read_resource_version() {
    let (client, server) = start(Scenario::LeaseRenewed);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"), Instant::now())
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(round, Round::Leading);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_followed_without_writing() {
    let (client, server) = start(Scenario::LeaseHeldByOther);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"), Instant::now())
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(
        round,
        Round::Following {
            holder: Some("replica-b".into())
        }
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let (client, server) = start(Scenario::LeaseTakenOverAfterExpiry);
    let elector = elector(client);
    let t0 = Instant::now();
    let first = elector.round(at("2026-11-26T06:00:00Z"), t0).await.unwrap();
    let later = elector
        .round(at("2026-11-26T06:00:16Z"), t0 + Duration::from_secs(16))
        .await
        .unwrap();
    finish(server).await;
    // The first sight of a record starts its clock, however old its renewTime looks.
    assert!(matches!(first, Round::Following { .. }), "{first:?}");
    assert_eq!(later, Round::Leading);
}

#[tokio::test]
async fn a_lease_renewed_by_a_skewed_clock_is_never_taken_over() {
    let (client, server) = start(Scenario::LeaseRenewedBySkewedClock);
    let elector = elector(client);
    let t0 = Instant::now();
    for (i, wall) in [
        "2026-11-26T06:00:00Z",
        "2026-11-26T06:00:10Z",
        "2026-11-26T06:00:20Z",
    ]
    .into_iter()
    .enumerate()
    {
        let round = tokio::time::timeout(
            Duration::from_secs(2),
            elector.round(at(wall), t0 + Duration::from_secs(10 * i as u64)),
        )
        .await
        .expect("round hung: it wrote to the Lease of a live holder")
        .unwrap();
        assert_eq!(
            round,
            Round::Following {
                holder: Some("replica-b".into())
            }
        );
    }
    finish(server).await;
}

/// A leader whose API server stops answering steps down before its Lease could pass to
/// another replica (`duration` after the last renewal it sent).
#[tokio::test]
async fn a_leader_facing_a_hung_api_server_steps_down_before_its_lease_expires() {
    let (client, api) = FakeApi::start();
    let duration = Duration::from_secs(3);
    let elector = LeaderElector::new(
        client,
        "stickycanary",
        "stickycanary-leader",
        "replica-a",
        duration,
    );
    let leader = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(Mutex::new(Vec::<(bool, Instant)>::new()));
    let recorded = changes.clone();
    let task = tokio::spawn(elector.run(
        leader.clone(),
        move |leading| recorded.lock().unwrap().push((leading, Instant::now())),
        stop.clone(),
    ));
    // Lead, renew once, then the API server hangs on every call.
    let began = Instant::now();
    while api
        .seen()
        .iter()
        .filter(|s| s.attributes.resource == "leases" && s.method != Method::GET)
        .count()
        < 2
    {
        assert!(began.elapsed() < Duration::from_secs(5), "never renewed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(leader.load(std::sync::atomic::Ordering::SeqCst));
    for verb in ["get", "update", "create"] {
        api.fail(verb, "leases", 0, u32::MAX);
    }
    let last_renewal_sent = api
        .seen()
        .iter()
        .filter(|s| s.attributes.resource == "leases" && s.method != Method::GET)
        .map(|s| s.at)
        .max()
        .unwrap();
    while leader.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            last_renewal_sent.elapsed() < duration + Duration::from_secs(1),
            "still leading {:?} after the last renewal; the lease is {duration:?}",
            last_renewal_sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stepped_down = changes.lock().unwrap().last().copied().unwrap();
    assert!(!stepped_down.0);
    let after = stepped_down.1.duration_since(last_renewal_sent);
    assert!(
        after < duration,
        "stepped down {after:?} after the last renewal: too late"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    api.finish().await;
}

#[tokio::test]
async fn losing_a_takeover_race_with_409_means_following() {
    let (client, server) = start(Scenario::LeaseRaceLost);
    let elector = elector(client);
    let t0 = Instant::now();
    elector.round(at("2026-11-26T06:00:00Z"), t0).await.unwrap();
    let round = elector
        .round(at("2026-11-26T06:00:16Z"), t0 + Duration::from_secs(16))
        .await
        .unwrap();
    finish(server).await;
    assert!(matches!(round, Round::Following { .. }), "{round:?}");
}

// ---------------------------------------------------------------------------------------
// RBAC proof and manual requests, against the stateful fake API server
// ---------------------------------------------------------------------------------------

const ROLLOUT_PATH: &str =
    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout";
const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-canary";

/// The fake cluster of these tests: the rollout (asking for `request`, if any), its
/// WasmPlugin at weight 25, and the canary Deployment.
fn seed(api: &FakeApi, request: Option<&str>) {
    let mut rollout = rollout_json();
    if let Some(request) = request {
        rollout["metadata"]["annotations"] = json!({"stickycanary.dev/request": request});
    }
    rollout["status"] = json!({"phase": "Progressing", "weight": 25.0, "stageIndex": 0,
        "stageStartedAt": k8s_openapi::jiff::Timestamp::now().to_string(), "observedGeneration": 3});
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(PLUGIN_PATH, plugin(25.0));
    api.insert(
        DEPLOYMENT_PATH,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "checkout-canary", "namespace": "shop", "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "checkout", "version": "canary"}},
                        "template": {"metadata": {"labels": {"app": "checkout", "version": "canary"}}}},
               "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}}),
    );
}

/// The rollout as the fake API server holds it now.
fn stored_rollout(api: &FakeApi) -> Arc<CanaryRollout> {
    Arc::new(serde_json::from_value(api.get(ROLLOUT_PATH).unwrap()).unwrap())
}

fn plugin_weight(api: &FakeApi) -> Value {
    api.get(PLUGIN_PATH).unwrap()["spec"]["pluginConfig"]["rollouts"]["checkout"]["weight"].clone()
}

/// Writes (anything but GET) the fake saw, as "VERB resource".
fn writes(api: &FakeApi) -> Vec<String> {
    api.seen()
        .iter()
        .filter(|s| s.method != Method::GET)
        .map(|s| format!("{} {}", s.attributes.verb, s.attributes.rbac_resource()))
        .collect()
}

#[tokio::test]
async fn a_handled_promote_is_recorded_and_not_acted_on_again() {
    let (client, api) = FakeApi::start();
    seed(&api, Some("promote@7"));
    let ctx = context(client);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let rollout = stored_rollout(&api);
    assert_eq!(rollout.status.as_ref().unwrap().phase, Phase::Promoted);
    assert_eq!(plugin_weight(&api), json!(100));
    assert_eq!(
        rollout.metadata.annotations.as_ref().unwrap()["stickycanary.dev/request-handled"],
        "promote@7"
    );
    // The next reconcile (a watch event, a requeue or a restart) sees the request handled.
    api.clear_seen();
    reconcile::reconcile(rollout, ctx.clone()).await.unwrap();
    assert_eq!(
        writes(&api),
        Vec::<String>::new(),
        "acted on a handled promote again"
    );
    api.finish().await;
}

#[tokio::test]
async fn a_promote_whose_handled_mark_fails_is_retried_not_dropped() {
    let (client, api) = FakeApi::start();
    seed(&api, Some("promote@7"));
    // The annotation write fails once (a real API server's 500, or a 403 before the fix).
    api.fail("patch", "canaryrollouts", 500, 1);
    let ctx = context(client);
    let rollout = stored_rollout(&api);
    let err = reconcile::reconcile(rollout.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    // The failure is retried by the controller's error policy, not dropped.
    let requeue = reconcile::error_policy(rollout, &err, ctx.clone());
    assert!(format!("{requeue:?}").contains("Some("), "{requeue:?}");
    let rollout = stored_rollout(&api);
    assert_eq!(rollout.status.as_ref().unwrap().phase, Phase::Promoted);
    assert!(
        !rollout
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("stickycanary.dev/request-handled"),
        "the failed write left a handled mark"
    );
    // The retry records the request as handled without moving the weight again.
    api.clear_seen();
    reconcile::reconcile(rollout, ctx.clone()).await.unwrap();
    let rollout = stored_rollout(&api);
    assert_eq!(
        rollout.metadata.annotations.as_ref().unwrap()["stickycanary.dev/request-handled"],
        "promote@7"
    );
    assert!(
        !writes(&api).contains(&"patch wasmplugins".to_string()),
        "the weight was written twice: {:?}",
        writes(&api)
    );
    assert_eq!(plugin_weight(&api), json!(100));
    // And then nothing more happens.
    api.clear_seen();
    reconcile::reconcile(rollout, ctx).await.unwrap();
    assert_eq!(writes(&api), Vec::<String>::new());
    api.finish().await;
}

/// What the controller does in one life, every request through one RBAC check per install
/// mode: start (list and watch CanaryRollouts and Deployments), win the Lease and renew it, start a rollout
/// (plugin, Deployment, pods, status, Event), repeat an Event (kube-runtime patches its
/// series), and handle an abort request (the handled annotation).
async fn a_controller_lifetime(authorizer: Arc<Authorizer>, all_namespaces: bool) {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let (client, api) = FakeApi::start_with(authorizer);
    seed(&api, None);
    // Start-up, as `k8s::run` does it: one list to fail fast, then the Controller's watcher.
    let rollouts: kube::Api<CanaryRollout> = if all_namespaces {
        kube::Api::all(client.clone())
    } else {
        kube::Api::namespaced(client.clone(), "shop")
    };
    rollouts
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .unwrap();
    let mut watch = watcher(rollouts, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while watch.next().await.is_some() {}
    })
    .await;
    assert!(
        api.seen().iter().any(|s| s.attributes.verb == "watch"),
        "the watcher never watched"
    );
    // The Controller's Deployment watch (a canary's new revision wakes its rollout), and its
    // metadata-only ConfigMap and Secret watches (a referenced one's change wakes it too).
    let namespace = (!all_namespaces).then_some("shop");
    let watched = stickycanary::k8s::Watched {
        deployments: stickycanary::k8s::watched_api(client.clone(), namespace),
        config_maps: stickycanary::k8s::watched_api(client.clone(), namespace),
        secrets: stickycanary::k8s::watched_api(client.clone(), namespace),
    };
    let streams = [
        watcher(
            watched.deployments,
            watcher::Config::default().any_semantic(),
        )
        .map(|e| e.map(|_| ()))
        .boxed(),
        watcher(
            watched.config_maps,
            watcher::Config::default().any_semantic(),
        )
        .map(|e| e.map(|_| ()))
        .boxed(),
        watcher(watched.secrets, watcher::Config::default().any_semantic())
            .map(|e| e.map(|_| ()))
            .boxed(),
    ];
    for mut watch in streams {
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while watch.next().await.is_some() {}
        })
        .await;
    }
    for collection in ["/deployments", "/configmaps", "/secrets"] {
        assert!(
            api.seen()
                .iter()
                .any(|s| s.attributes.verb == "watch" && s.path.ends_with(collection)),
            "the {collection} watcher never watched"
        );
    }
    assert!(
        api.seen()
            .iter()
            .filter(|s| s.path.ends_with("/secrets"))
            .all(|s| s.metadata_only()),
        "Secrets are listed and watched by their metadata only"
    );
    // Leader election: create, then renew.
    let elector = elector(client.clone());
    let start = std::time::Instant::now();
    assert_eq!(
        elector
            .round(k8s_openapi::jiff::Timestamp::now(), start)
            .await
            .unwrap(),
        Round::Leading
    );
    assert_eq!(
        elector
            .round(k8s_openapi::jiff::Timestamp::now(), start)
            .await
            .unwrap(),
        Round::Leading
    );
    // A rollout created before the finalizer existed starting (finalizer added, weight
    // 0 -> 10), then an abort request.
    let mut rollout = rollout_json();
    rollout["status"] = json!({});
    rollout["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(PLUGIN_PATH, plugin(0.0));
    let ctx = context(client.clone());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let mut rollout = (*stored_rollout(&api)).clone();
    rollout.metadata.annotations = Some(
        [(
            "stickycanary.dev/request".to_string(),
            "abort@1".to_string(),
        )]
        .into(),
    );
    api.insert(ROLLOUT_PATH, serde_json::to_value(&rollout).unwrap());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    // The same Event twice within kube-runtime's cache window: created, then patched.
    use kube::runtime::events::{Event, EventType};
    use kube::Resource;
    let event = Event {
        type_: EventType::Normal,
        reason: "Repeated".into(),
        note: None,
        action: "Repeated".into(),
        secondary: None,
    };
    let reference = stored_rollout(&api).object_ref(&());
    ctx.recorder.publish(&event, &reference).await.unwrap();
    ctx.recorder.publish(&event, &reference).await.unwrap();
    // Deleted (by a user: the controller never deletes): the finalizer goes.
    let mut deleting = api.get(ROLLOUT_PATH).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-26T06:00:00Z");
    api.insert(ROLLOUT_PATH, deleting);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    assert!(
        api.get(ROLLOUT_PATH).is_none(),
        "the finalizer was not removed"
    );
    api.finish().await;
}

#[tokio::test]
async fn every_request_of_a_controller_lifetime_is_allowed_by_the_chart_and_every_rule_is_used() {
    // Namespaced watch: must pass both install modes. All-namespace watch: the ClusterRole.
    let both = Authorizer::both_modes();
    a_controller_lifetime(both.clone(), false).await;
    let cluster = Authorizer::modes(vec![Mode::ClusterWide]);
    a_controller_lifetime(cluster.clone(), true).await;
    both.assert_nothing_denied();
    cluster.assert_nothing_denied();
    // Least privilege: every permission the chart grants was needed by some request.
    let used: std::collections::BTreeSet<_> =
        both.used().into_iter().chain(cluster.used()).collect();
    let granted = ChartRules::load().all_triples();
    // The release lifecycle's writes (Deployments, the apply that creates the generated
    // stable, their scale, KEDA's ScaledObjects) are proven used, and allowed, by
    // lifecycle_api.rs's own lifetime test.
    // Reading spec.prometheus's Secret and ConfigMap is proven used, and allowed, by
    // prometheus_token_and_ca_are_read_from_the_rollouts_namespace below. Reading an
    // AlertProvider (and its Secret) by alerts_api.rs's
    // a_rollback_sends_exactly_one_slack_payload_to_an_error_provider.
    let lifecycle_only = [
        ("stickycanary.dev", "alertproviders", "get"),
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "get"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("keda.sh", "scaledobjects", "get"),
        ("keda.sh", "scaledobjects", "create"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments/scale", "patch"),
        ("keda.sh", "scaledobjects", "patch"),
    ];
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|t| {
            !lifecycle_only
                .iter()
                .any(|(g, r, v)| t.0 == *g && t.1 == *r && t.2 == *v)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions no request needs: {unused:?}"
    );
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "requests the chart does not grant: {missing:?}"
    );
}

#[test]
fn rbac_attributes_follow_the_api_servers_mapping() {
    use support::rbac::Attributes;
    let attrs = |m: Method, path: &str, q: &str| {
        let a = Attributes::from_request(&m, path, q).unwrap();
        (
            a.verb.clone(),
            a.group.clone(),
            a.rbac_resource(),
            a.namespace,
        )
    };
    let shop = Some("shop".to_string());
    assert_eq!(
        attrs(Method::GET, ROLLOUT_PATH, ""),
        (
            "get".into(),
            "stickycanary.dev".into(),
            "canaryrollouts".into(),
            shop.clone()
        )
    );
    assert_eq!(
        attrs(
            Method::GET,
            "/apis/stickycanary.dev/v1alpha1/canaryrollouts",
            "watch=true&resourceVersion=1"
        ),
        (
            "watch".into(),
            "stickycanary.dev".into(),
            "canaryrollouts".into(),
            None
        )
    );
    assert_eq!(
        attrs(
            Method::GET,
            "/api/v1/namespaces/shop/pods",
            "labelSelector=a%3Db"
        ),
        ("list".into(), "".into(), "pods".into(), shop.clone())
    );
    assert_eq!(
        attrs(Method::PATCH, &format!("{ROLLOUT_PATH}/status"), ""),
        (
            "patch".into(),
            "stickycanary.dev".into(),
            "canaryrollouts/status".into(),
            shop.clone()
        )
    );
    assert_eq!(
        attrs(
            Method::PUT,
            "/apis/apps/v1/namespaces/shop/deployments/x/scale",
            ""
        ),
        (
            "update".into(),
            "apps".into(),
            "deployments/scale".into(),
            shop.clone()
        )
    );
    assert_eq!(
        attrs(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/shop/events",
            ""
        ),
        (
            "create".into(),
            "events.k8s.io".into(),
            "events".into(),
            shop.clone()
        )
    );
    assert_eq!(
        attrs(Method::DELETE, ROLLOUT_PATH, ""),
        (
            "delete".into(),
            "stickycanary.dev".into(),
            "canaryrollouts".into(),
            shop
        )
    );
    assert_eq!(
        attrs(Method::GET, "/api/v1/namespaces/shop", ""),
        ("get".into(), "".into(), "namespaces".into(), None)
    );
}

#[test]
fn the_rbac_check_refuses_what_a_role_lacks() {
    use support::rbac::{Attributes, Grants};
    let rules = ChartRules::load();
    let delete = Attributes::from_request(&Method::DELETE, ROLLOUT_PATH, "").unwrap();
    let patch_other_ns = Attributes::from_request(
        &Method::PATCH,
        "/apis/extensions.istio.io/v1alpha1/namespaces/elsewhere/wasmplugins/p",
        "",
    )
    .unwrap();
    let lease_in_shop = Attributes::from_request(
        &Method::GET,
        "/apis/coordination.k8s.io/v1/namespaces/shop/leases/l",
        "",
    )
    .unwrap();
    let cluster = Grants::new(&rules, Mode::ClusterWide);
    let namespaced = Grants::new(&rules, Mode::namespaced(&["shop"]));
    assert!(!cluster.allows(&delete) && !namespaced.allows(&delete));
    assert!(
        cluster.allows(&patch_other_ns),
        "the ClusterRole covers every namespace"
    );
    assert!(
        !namespaced.allows(&patch_other_ns),
        "Roles only cover their namespaces"
    );
    assert!(
        !cluster.allows(&lease_in_shop),
        "the Lease Role is only in the release namespace"
    );
}

/// The requeue delay of an Action, in seconds (kube-runtime does not expose it but prints it).
fn requeue_after(action: &kube::runtime::controller::Action) -> f64 {
    let text = format!("{action:?}");
    let inner = text
        .split("Some(")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap_or_else(|| panic!("no requeue in {text}"));
    let (number, unit) = inner.split_at(inner.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let n: f64 = number.parse().unwrap();
    match unit {
        "s" => n,
        "ms" => n / 1000.0,
        "µs" => n / 1e6,
        other => panic!("unit {other} in {text}"),
    }
}

#[tokio::test]
async fn repeated_failures_back_off_longer_each_time_up_to_a_cap_and_success_resets() {
    let (client, api) = FakeApi::start();
    seed(&api, Some("abort@9"));
    // The WasmPlugin write keeps failing with 503.
    api.fail("patch", "wasmplugins", 503, 100);
    let ctx = context(client);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let rollout = stored_rollout(&api);
        let err = reconcile::reconcile(rollout.clone(), ctx.clone())
            .await
            .unwrap_err();
        delays.push(requeue_after(&reconcile::error_policy(
            rollout,
            &err,
            ctx.clone(),
        )));
    }
    for pair in delays.windows(2).take(5) {
        assert!(pair[1] > pair[0], "the delay does not grow: {delays:?}");
    }
    assert!(delays[0] <= 5.0 && delays[0] >= 4.0, "{delays:?}");
    assert!(delays.iter().all(|d| *d <= 300.0), "no cap: {delays:?}");
    assert!(
        delays[7] >= 240.0,
        "capped at 300 s less jitter: {delays:?}"
    );
    // Once the write succeeds, the next failure starts from the base again.
    api.store.lock().unwrap().faults.clear();
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    api.fail("get", "wasmplugins", 500, 1);
    let mut rollout = (*stored_rollout(&api)).clone();
    rollout.metadata.generation = Some(4);
    let rollout = Arc::new(rollout);
    let err = reconcile::reconcile(rollout.clone(), ctx.clone())
        .await
        .unwrap_err();
    let delay = requeue_after(&reconcile::error_policy(rollout, &err, ctx.clone()));
    assert!(delay <= 5.0, "not reset after a success: {delay}");
    api.finish().await;
}

#[tokio::test]
async fn the_fake_api_server_keeps_resource_versions_status_scale_and_finalizers_like_a_real_one() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    // A namespaced-only authorizer would refuse these (the controller has no such rights);
    // this test is about the fake's semantics, so allow everything it is asked.
    let all = support::rbac::Mode::ClusterWide;
    let (client, api) = FakeApi::start_with(Authorizer::modes(vec![all]));
    api.authorizer.allow_everything();
    seed(&api, None);
    let rollouts: Api<CanaryRollout> = Api::namespaced(client.clone(), "shop");
    let before = rollouts.get("checkout").await.unwrap();
    let rv = before.metadata.resource_version.clone().unwrap();
    // A merge patch naming an old resourceVersion is refused; one without is applied.
    let stale = json!({"metadata": {"resourceVersion": "0", "labels": {"a": "b"}}});
    let err = rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );
    let fresh = json!({"metadata": {"resourceVersion": rv, "labels": {"a": "b"}}});
    let after = rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();
    assert_ne!(after.metadata.resource_version, Some(rv));
    // .status through the main resource is ignored; through /status it is applied.
    let status = json!({"status": {"phase": "Paused"}});
    rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        rollouts
            .get("checkout")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase,
        Phase::Progressing
    );
    rollouts
        .patch_status("checkout", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        rollouts
            .get("checkout")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase,
        Phase::Paused
    );
    // Scale.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let scale = json!({"spec": {"replicas": 3}});
    deployments
        .patch_scale(
            "checkout-canary",
            &PatchParams::default(),
            &Patch::Merge(&scale),
        )
        .await
        .unwrap();
    assert_eq!(
        deployments
            .get_scale("checkout-canary")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );
    // Finalizers hold a deletion until they are removed.
    let fin = json!({"metadata": {"finalizers": ["stickycanary.dev/cleanup"]}});
    rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&fin))
        .await
        .unwrap();
    rollouts
        .delete("checkout", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = rollouts.get("checkout").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    // No new finalizer on an object being deleted (a 422, as ValidateObjectMetaUpdate says).
    let late =
        json!({"metadata": {"finalizers": ["stickycanary.dev/cleanup", "example.com/late"]}});
    let refused = rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&late))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 422),
        "{refused}"
    );
    let clear = json!({"metadata": {"finalizers": null}});
    rollouts
        .patch("checkout", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    let gone = rollouts.get("checkout").await.unwrap_err();
    assert!(
        matches!(&gone, kube::Error::Api(s) if s.code == 404),
        "{gone}"
    );
    let _ = PostParams::default();
    api.finish().await;
}

/// The rollout of these tests as first created: no finalizer, no `spec.stable`, no
/// `revertOnDeletion` (a plain weight rollout).
fn seed_unfinalized(api: &FakeApi) {
    seed(api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    api.insert(ROLLOUT_PATH, rollout);
}

fn series_of_checkout(ctx: &Context) -> Vec<String> {
    ctx.metrics
        .encode()
        .lines()
        .filter(|l| l.contains("rollout=\"checkout\""))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_rollout_gets_the_finalizer_and_its_deletion_drops_its_series_and_state() {
    let (client, api) = FakeApi::start();
    seed_unfinalized(&api);
    let read_rv = api.get(ROLLOUT_PATH).unwrap()["metadata"]["resourceVersion"].clone();
    let ctx = context(client);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let added: Vec<Seen> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::PATCH && s.path == ROLLOUT_PATH)
        .collect();
    assert_eq!(added.len(), 1, "{:?}", writes(&api));
    assert_eq!(
        added[0].body,
        json!({"metadata": {"finalizers": ["stickycanary.dev/cleanup"], "resourceVersion": read_rv}}),
        "the finalizer, conditional on the resourceVersion read"
    );
    assert_eq!(
        api.get(ROLLOUT_PATH).unwrap()["metadata"]["finalizers"],
        json!(["stickycanary.dev/cleanup"])
    );
    assert!(!series_of_checkout(&ctx).is_empty(), "no series to drop");
    assert!(ctx.last_tick.lock().unwrap().contains_key("shop/checkout"));
    // A user deletes it: with a finalizer, the API server only sets deletionTimestamp and
    // the object stays (the fake's DELETE does this; see the fake-semantics test). The
    // controller has no delete right, so the user's request is played on the store.
    let mut deleted = api.get(ROLLOUT_PATH).unwrap();
    deleted["metadata"]["deletionTimestamp"] = json!("2026-11-26T06:00:00Z");
    api.insert(ROLLOUT_PATH, deleted);
    let deleting = stored_rollout(&api);
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let weight_before = plugin_weight(&api);
    api.clear_seen();
    reconcile::reconcile(deleting, ctx.clone()).await.unwrap();
    assert!(
        api.get(ROLLOUT_PATH).is_none(),
        "the object was not released"
    );
    assert_eq!(series_of_checkout(&ctx), Vec::<String>::new());
    assert!(!ctx.last_tick.lock().unwrap().contains_key("shop/checkout"));
    // Without revertOnDeletion the weight is left as it was: one write, the finalizer's.
    assert_eq!(writes(&api), vec!["patch canaryrollouts".to_string()]);
    assert_eq!(plugin_weight(&api), weight_before);
    api.finish().await;
}

#[tokio::test]
async fn a_rollout_deleted_without_ever_getting_the_finalizer_is_forgotten() {
    // Deleted while no finalizer of ours was on it, but another one holds it: reconciled
    // with a deletionTimestamp, it is forgotten and no finalizer is added or removed.
    let (client, api) = FakeApi::start();
    seed_unfinalized(&api);
    let ctx = context(client);
    ctx.metrics
        .set_rollout("shop", "checkout", 25.0, Phase::Progressing);
    ctx.last_tick
        .lock()
        .unwrap()
        .insert("shop/checkout".into(), Instant::now());
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["metadata"]["finalizers"] = json!(["example.com/keep"]);
    rollout["metadata"]["deletionTimestamp"] = json!("2026-11-26T06:00:00Z");
    api.insert(ROLLOUT_PATH, rollout);
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    assert_eq!(writes(&api), Vec::<String>::new());
    assert_eq!(
        api.get(ROLLOUT_PATH).unwrap()["metadata"]["finalizers"],
        json!(["example.com/keep"])
    );
    assert_eq!(series_of_checkout(&ctx), Vec::<String>::new());
    assert!(ctx.last_tick.lock().unwrap().is_empty());
    // Deleted with no finalizer at all, it is gone before any reconcile: kube-runtime's
    // requeue finds it missing from its cache and reports ObjectNotFound.
    ctx.metrics
        .set_rollout("shop", "checkout", 25.0, Phase::Progressing);
    ctx.last_tick
        .lock()
        .unwrap()
        .insert("shop/checkout".into(), Instant::now());
    let vanished = kube::runtime::reflector::ObjectRef::<CanaryRollout>::new("checkout")
        .within("shop")
        .erase();
    let error: kube::runtime::controller::Error<
        stickycanary::error::Error,
        kube::runtime::watcher::Error,
    > = kube::runtime::controller::Error::ObjectNotFound(Box::new(vanished));
    stickycanary::k8s::forget_vanished(&ctx, &error);
    assert_eq!(series_of_checkout(&ctx), Vec::<String>::new());
    assert!(ctx.last_tick.lock().unwrap().is_empty());
    api.finish().await;
}

fn assign_args(rollout: &str, weight: Option<f64>) -> stickycanary::cli::AssignArgs {
    stickycanary::cli::AssignArgs {
        salt: None,
        status_file: None,
        rollout: Some(rollout.to_string()),
        namespace: Some("shop".to_string()),
        weight,
        user: "u42".to_string(),
        json: true,
    }
}

#[tokio::test]
async fn assign_reads_the_salt_and_weight_from_the_rollouts_status_with_only_get_rights() {
    use stickycanary::commands::assign_from;
    // The user running `assign` needs `get` on canaryrollouts, nothing else.
    let user = Authorizer::user_with(vec![support::rbac::Rule {
        api_groups: vec!["stickycanary.dev".into()],
        resources: vec!["canaryrollouts".into()],
        verbs: vec!["get".into()],
    }]);
    let (client, api) = FakeApi::start_with(user.clone());
    seed(&api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["status"]["salt"] = json!("checkout-4f2a9c");
    api.insert(ROLLOUT_PATH, rollout);
    let rollouts: kube::Api<CanaryRollout> = kube::Api::namespaced(client, "shop");

    let out: Value = serde_json::from_str(
        &assign_from(&assign_args("checkout", None), &rollouts)
            .await
            .unwrap(),
    )
    .unwrap();
    let bucket = stickycanary_filter::assign::bucket("checkout-4f2a9c", "u42");
    assert_eq!(out["salt"], "checkout-4f2a9c");
    assert_eq!(out["weight"], json!(25.0), "the status's weight");
    assert_eq!(out["bucket"], json!(bucket));
    assert_eq!(
        out["version"],
        if stickycanary_filter::assign::is_canary(bucket, 25.0) {
            "canary"
        } else {
            "stable"
        }
    );
    // --weight overrides the status's weight; the salt still comes from the status.
    let out: Value = serde_json::from_str(
        &assign_from(&assign_args("checkout", Some(100.0)), &rollouts)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (out["salt"].as_str(), out["version"].as_str()),
        (Some("checkout-4f2a9c"), Some("canary"))
    );

    // A missing CanaryRollout is one clear line.
    let err = assign_from(&assign_args("search", None), &rollouts)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "--rollout: CanaryRollout search not found in namespace shop"
    );
    // A status with no salt yet (no run, or cohort.rotate: false) says to pass --salt.
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["status"].as_object_mut().unwrap().remove("salt");
    api.insert(ROLLOUT_PATH, rollout);
    let err = assign_from(&assign_args("checkout", None), &rollouts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("--rollout: the status records no salt") && err.contains("--salt"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");

    user.assert_nothing_denied();
    let asked = user.used();
    assert_eq!(
        asked,
        [(
            "stickycanary.dev".to_string(),
            "canaryrollouts".to_string(),
            "get".to_string()
        )]
        .into()
    );
    api.finish().await;
}

/// `spec.prometheus`'s references are read in the rollout's namespace (one `get` on the
/// Secret, one on the ConfigMap, allowed by the chart in both install modes) and used: the
/// token as a bearer header, the CA bundle to trust an https Prometheus. A missing Secret
/// makes the metrics unavailable with one line naming the field, and nothing is queried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_token_and_ca_are_read_from_the_rollouts_namespace() {
    let ca = loopback::TestCa::new("prometheus CA in a ConfigMap");
    let prometheus = loopback::serve(Some(ca.server_identity()), |_| {
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        )
    })
    .await;
    let authorizer = Authorizer::both_modes();
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(&api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["spec"]["prometheus"] = json!({
        "address": prometheus.base,
        "bearerTokenSecretRef": {"name": "prom-reader", "key": "token"},
        "ca": {"configMapKeyRef": {"name": "corp-ca", "key": "ca.crt"}},
    });
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(
        "/api/v1/namespaces/shop/secrets/prom-reader",
        // "t0k\n", base64: the token is trimmed.
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "prom-reader", "namespace": "shop"},
               "data": {"token": "dDBrCg=="}}),
    );
    api.insert(
        "/api/v1/namespaces/shop/configmaps/corp-ca",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "corp-ca", "namespace": "shop"},
               "data": {"ca.crt": ca.pem()}}),
    );
    let ctx = context(client.clone());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let queries = prometheus.received();
    assert!(!queries.is_empty(), "Prometheus was never asked");
    for query in &queries {
        assert_eq!(query.header("authorization"), Some("Bearer t0k"));
        assert_eq!(query.target, "/api/v1/query");
    }
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert!(status["prometheusUnavailableSince"].is_null(), "{status}");
    authorizer.assert_nothing_denied();
    let used = authorizer.used();
    for resource in ["secrets", "configmaps"] {
        let triple = (String::new(), resource.to_string(), "get".to_string());
        assert!(used.contains(&triple), "{triple:?} unused in {used:?}");
    }
    api.finish().await;

    // The Secret is gone: unavailable, one line naming the field and the object, no query.
    let (client, api) = FakeApi::start_with(Authorizer::both_modes());
    seed(&api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["spec"]["prometheus"] = json!({
        "address": prometheus.base,
        "bearerTokenSecretRef": {"name": "prom-reader", "key": "token"},
    });
    api.insert(ROLLOUT_PATH, rollout);
    let before = prometheus.received().len();
    let ctx = context(client.clone());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        prometheus.received().len(),
        before,
        "queried without its token"
    );
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert!(status["prometheusUnavailableSince"].is_string(), "{status}");
    // The PrometheusUnavailable Event says why.
    let notes: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.method == Method::POST && s.attributes.rbac_resource() == "events")
        .map(|s| s.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    let why =
        "spec.prometheus.bearerTokenSecretRef: Secret shop/prom-reader key token: no such Secret";
    assert!(notes.iter().any(|note| note.contains(why)), "{notes:?}");
    assert!(notes.iter().all(|note| !note.contains("t0k")), "{notes:?}");
    api.finish().await;
}

/// `spec.prometheus.basicAuth` and a header from a Secret (Grafana Cloud / Mimir style) are
/// read with `get` in the rollout's namespace and sent exactly: `Authorization: Basic
/// base64(user:password)` (each trimmed) and `X-Scope-OrgID`, beside a literal header. A
/// missing header key makes the metrics unavailable, with one line naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_basic_auth_and_tenant_header_come_from_secrets() {
    let prometheus = loopback::serve(None, |_| {
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        )
    })
    .await;
    let spec_prometheus = json!({
        "address": format!("{}/prometheus", prometheus.base),
        "basicAuth": {"username": {"name": "grafana-cloud", "key": "user"},
                      "password": {"name": "grafana-cloud", "key": "token"}},
        "headers": [
            {"name": "X-Scope-OrgID", "valueFrom": {"secretKeyRef": {"name": "tenant", "key": "id"}}},
            {"name": "X-Team", "value": "checkout"},
        ],
    });
    let authorizer = Authorizer::both_modes();
    let (client, api) = FakeApi::start_with(authorizer.clone());
    seed(&api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["spec"]["prometheus"] = spec_prometheus.clone();
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(
        "/api/v1/namespaces/shop/secrets/grafana-cloud",
        // "alice\n" and "s3cret", base64.
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "grafana-cloud", "namespace": "shop"},
               "data": {"user": "YWxpY2UK", "token": "czNjcmV0"}}),
    );
    api.insert(
        "/api/v1/namespaces/shop/secrets/tenant",
        // "tenant-1\n", base64.
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "tenant", "namespace": "shop"},
               "data": {"id": "dGVuYW50LTEK"}}),
    );
    let ctx = context(client.clone());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    let queries = prometheus.received();
    assert!(!queries.is_empty(), "Prometheus was never asked");
    for query in &queries {
        // base64("alice:s3cret")
        assert_eq!(
            query.header("authorization"),
            Some("Basic YWxpY2U6czNjcmV0")
        );
        assert_eq!(query.header("x-scope-orgid"), Some("tenant-1"));
        assert_eq!(query.header("x-team"), Some("checkout"));
        assert_eq!(query.target, "/prometheus/api/v1/query");
    }
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert!(status["prometheusUnavailableSince"].is_null(), "{status}");
    authorizer.assert_nothing_denied();
    let triple = (String::new(), "secrets".to_string(), "get".to_string());
    assert!(authorizer.used().contains(&triple));
    api.finish().await;

    // The tenant Secret lacks its key: unavailable, the field named, no query, no value.
    let (client, api) = FakeApi::start_with(Authorizer::both_modes());
    seed(&api, None);
    let mut rollout = api.get(ROLLOUT_PATH).unwrap();
    rollout["spec"]["prometheus"] = spec_prometheus;
    api.insert(ROLLOUT_PATH, rollout);
    api.insert(
        "/api/v1/namespaces/shop/secrets/grafana-cloud",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "grafana-cloud", "namespace": "shop"},
               "data": {"user": "YWxpY2UK", "token": "czNjcmV0"}}),
    );
    api.insert(
        "/api/v1/namespaces/shop/secrets/tenant",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "tenant", "namespace": "shop"},
               "data": {"other": "eA=="}}),
    );
    let before = prometheus.received().len();
    let ctx = context(client.clone());
    reconcile::reconcile(stored_rollout(&api), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        prometheus.received().len(),
        before,
        "queried without its tenant"
    );
    let status = &api.get(ROLLOUT_PATH).unwrap()["status"];
    assert!(status["prometheusUnavailableSince"].is_string(), "{status}");
    let notes: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.method == Method::POST && s.attributes.rbac_resource() == "events")
        .map(|s| s.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    let why =
        "spec.prometheus.headers[0].valueFrom.secretKeyRef: Secret shop/tenant key id: no such key";
    assert!(notes.iter().any(|note| note.contains(why)), "{notes:?}");
    for secret in ["alice", "s3cret", "YWxpY2U6czNjcmV0"] {
        assert!(notes.iter().all(|note| !note.contains(secret)), "{notes:?}");
    }
    api.finish().await;
}

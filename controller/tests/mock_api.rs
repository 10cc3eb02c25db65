//! Kubernetes interactions against a mocked API server (controller-rs `fixtures.rs` style):
//! `tower_test::mock::pair()` backs a real `kube::Client`, and each `Scenario` spells out the
//! exact requests expected (method, path, query, content type, body) and the answers given.
//! No API server can run on these machines; this is how the cluster side is tested.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use stickycanary::crd::{CanaryRollout, CanaryRolloutStatus, Phase};
use stickycanary::k8s::batch::MetricsBatcher;
use stickycanary::k8s::lease::{LeaderElector, Round};
use stickycanary::k8s::reconcile::{self, Context};
use stickycanary::metrics::Metrics;
use stickycanary::target::wasmplugin::WasmPluginTarget;
use stickycanary::target::{TargetError, WeightTarget};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

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

fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("mock {reason}"),
           "reason": reason, "code": code})
}

/// A request as the mock server saw it.
struct Seen {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// The server side of the mock: receives requests, checks them, answers.
struct ApiServer(Handle);

impl ApiServer {
    async fn next(&mut self) -> (Seen, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("timed out waiting for a request")
            .expect("the client went away");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let seen = Seen {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body,
        };
        (seen, send)
    }

    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        answer: Value,
    ) -> Seen {
        let (seen, send) = self.next().await;
        assert_eq!(seen.method, method, "method of request to {}", seen.path);
        assert_eq!(seen.path, path);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        seen
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
            json!({"spec": {"pluginConfig": {"rollouts": {"checkout": {"weight": weight}}}}})
        );
    }

    async fn run(mut self, scenario: Scenario) {
        match scenario {
            Scenario::WeightPatched => {
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                let seen = self
                    .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                    .await;
                Self::assert_weight_patch(&seen, json!(25));
            }
            Scenario::ConflictThenPatched => {
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                let seen = self
                    .expect(
                        Method::PATCH,
                        PLUGIN_PATH,
                        StatusCode::CONFLICT,
                        api_status(409, "Conflict"),
                    )
                    .await;
                Self::assert_weight_patch(&seen, json!(25));
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                let seen = self
                    .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                    .await;
                Self::assert_weight_patch(&seen, json!(25));
            }
            Scenario::ServerError => {
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                self.expect(
                    Method::PATCH,
                    PLUGIN_PATH,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    api_status(500, "InternalError"),
                )
                .await;
            }
            Scenario::PatchNeverAnswered => {
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                let (seen, send) = self.next().await;
                assert_eq!(seen.method, Method::PATCH);
                // Hold the answer past the client's timeout.
                tokio::time::sleep(Duration::from_secs(2)).await;
                drop(send);
            }
            Scenario::OnlyGet { answer, status } => {
                self.expect(Method::GET, PLUGIN_PATH, status, answer).await;
            }
            Scenario::ReconcileStartsRollout => {
                // 1. The plugin is read to learn the rollout's version names and weight.
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                    .await;
                // 2. Canary health: the Deployment is not there yet, so health is unknown.
                self.expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
                // 3. The engine starts stage 1: the weight is written first...
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                    .await;
                let seen = self
                    .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
                    .await;
                Self::assert_weight_patch(&seen, json!(10));
                // 4. ...then the status subresource, as a merge patch.
                let seen = self
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
                assert_eq!(seen.content_type, "application/merge-patch+json");
                assert!(seen.query.contains("fieldManager=stickycanary"));
                let status = &seen.body["status"];
                assert_eq!(status["phase"], "Progressing");
                assert_eq!(status["weight"], 10.0);
                assert_eq!(status["stageIndex"], 0);
                assert_eq!(status["observedGeneration"], 3);
                assert!(status["stageStartedAt"].is_string());
                // 5. The Event on the CanaryRollout.
                let seen = self
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
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                    .await;
                self.expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(25.0))
                    .await;
                let seen = self
                    .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                    .await;
                Self::assert_weight_patch(&seen, json!(0));
                let seen = self
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
                assert_eq!(seen.body["status"]["phase"], "RolledBack");
                assert_eq!(seen.body["status"]["rollbackReason"], "aborted");
                // The request is recorded as handled, so it is not applied twice.
                let seen = self
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
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                    .await;
                self.expect(
                    Method::GET,
                    "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
                self.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
                    .await;
                self.expect(
                    Method::PATCH,
                    PLUGIN_PATH,
                    StatusCode::SERVICE_UNAVAILABLE,
                    api_status(503, "ServiceUnavailable"),
                )
                .await;
                // Only a Degraded condition is recorded: the status never claims a weight
                // that was not set.
                let seen = self
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
                assert_degraded_only(&seen.body, "WasmPluginUnavailable");
            }
            Scenario::ReconcilePluginDeleted => {
                self.expect(
                    Method::GET,
                    PLUGIN_PATH,
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
                let seen = self
                    .expect(
                        Method::PATCH,
                        "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status",
                        StatusCode::OK,
                        rollout_json(),
                    )
                    .await;
                assert_degraded_only(&seen.body, "WasmPluginNotFound");
            }
            Scenario::LeaseCreated => {
                self.expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::NOT_FOUND,
                    api_status(404, "NotFound"),
                )
                .await;
                let seen = self
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
                self.expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-a", "2026-11-26T05:59:58.000000Z", 2),
                )
                .await;
                let seen = self
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
            Scenario::LeaseHeldByOther => {
                self.expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-b", "2026-11-26T05:59:58.000000Z", 1),
                )
                .await;
            }
            Scenario::LeaseTakenOverAfterExpiry => {
                self.expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-b", "2026-11-26T05:59:00.000000Z", 1),
                )
                .await;
                let seen = self
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
                self.expect(
                    Method::GET,
                    LEASE_PATH,
                    StatusCode::OK,
                    lease("replica-b", "2026-11-26T05:59:00.000000Z", 1),
                )
                .await;
                self.expect(
                    Method::PUT,
                    LEASE_PATH,
                    StatusCode::CONFLICT,
                    api_status(409, "Conflict"),
                )
                .await;
            }
        }
    }
}

fn assert_degraded_only(body: &Value, reason: &str) {
    let status = body["status"].as_object().unwrap();
    assert_eq!(
        status.keys().collect::<Vec<_>>(),
        vec!["conditions"],
        "{body}"
    );
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
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
    LeaseTakenOverAfterExpiry,
    LeaseRaceLost,
}

fn mock() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

/// Spawns the server side and returns the client plus a join handle to await at the end.
fn start(scenario: Scenario) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, server) = mock();
    let handle = tokio::spawn(server.run(scenario));
    (client, handle)
}

async fn finish(server: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("scenario did not finish: a request it expected never came")
        .expect("scenario failed");
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
        .set_weight("checkout", 25.0)
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(*outcomes.0.lock().unwrap(), vec!["success"]);
}

#[tokio::test]
async fn a_409_conflict_is_retried_after_reading_the_plugin_again() {
    let (client, server) = start(Scenario::ConflictThenPatched);
    let outcomes = Arc::new(Outcomes::default());
    target(client, &outcomes, Duration::from_secs(5))
        .set_weight("checkout", 25.0)
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
        .set_weight("checkout", 25.0)
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
        .set_weight("checkout", 25.0)
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
        .set_weight("checkout", 150.0)
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
        .set_weight("payments", 25.0)
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
        .set_weight("checkout", 25.0)
        .await
        .unwrap_err();
    finish(server).await;
    assert!(matches!(err, TargetError::NotFound { .. }), "{err}");
}

fn rollout_json() -> Value {
    json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 3, "uid": "u-1",
                     "resourceVersion": "5"},
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
    let metrics = Metrics::new();
    Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "stickycanary".into(),
                instance: Some("replica-a".into()),
            },
        ),
        batcher: MetricsBatcher::new(Duration::from_secs(2), metrics.prometheus_queries.clone()),
        metrics,
        leader: Arc::new(AtomicBool::new(true)),
        patch_timeout: Duration::from_secs(5),
        webhook: reqwest::Client::new(),
        last_tick: Mutex::new(HashMap::new()),
    })
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
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
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
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(30))
    );
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
    let mut handle = server.0;
    let pending = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(
        pending.is_err() || matches!(pending, Ok(None)),
        "a follower sent a request"
    );
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
        .round(at("2026-11-26T06:00:00Z"))
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(round, Round::Leading);
}

#[tokio::test]
async fn the_holder_renews_its_lease_with_the_read_resource_version() {
    let (client, server) = start(Scenario::LeaseRenewed);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"))
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(round, Round::Leading);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_followed_without_writing() {
    let (client, server) = start(Scenario::LeaseHeldByOther);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"))
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
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"))
        .await
        .unwrap();
    finish(server).await;
    assert_eq!(round, Round::Leading);
}

#[tokio::test]
async fn losing_a_takeover_race_with_409_means_following() {
    let (client, server) = start(Scenario::LeaseRaceLost);
    let round = elector(client)
        .round(at("2026-11-26T06:00:00Z"))
        .await
        .unwrap();
    finish(server).await;
    assert!(matches!(round, Round::Following { .. }), "{round:?}");
}

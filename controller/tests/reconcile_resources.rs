//! The cluster path of the resource checks, end to end inside the controller: a reconcile
//! against a mocked API server (as in `mock_api.rs`) and a stub Prometheus on 127.0.0.1
//! whose cAdvisor answers show the canary throttled in 60% of its periods. The reconcile
//! must read the batch for the pods of the Deployments in the spec, let the engine judge it
//! and roll back with `resources:cpu-throttling`, weight first, then status, then Event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use stickycanary::crd::CanaryRollout;
use stickycanary::k8s::reconcile;

const PLUGIN_PATH: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins/stickycanary";
const STATUS_PATH: &str =
    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout/status";

fn plugin(weight: f64) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "stickycanary", "namespace": "istio-system", "resourceVersion": "7"},
        "spec": {"pluginConfig": {"rollouts": {"checkout": {"hosts": ["checkout"], "weight": weight}}}}
    })
}

/// The Prometheus answer to one query: what a cluster's Prometheus holds for the sample
/// shop, with the canary pod throttled in 60 of 100 CFS periods and plenty of healthy
/// traffic (so the traffic checks pass and only the resource check can fail).
fn answer(query: &str) -> Value {
    let canary_pod = json!({"namespace": "shop", "pod": "checkout-canary-6c9f8d7b5f-k8p2m"});
    let sample =
        |metric: Value, value: f64| json!({"metric": metric, "value": [1.7e9, value.to_string()]});
    let result = if query.contains("container_cpu_cfs_throttled_periods_total") {
        vec![sample(canary_pod, 60.0)]
    } else if query.contains("container_cpu_cfs_periods_total") {
        vec![sample(canary_pod, 100.0)]
    } else if query.contains("container_") {
        Vec::new()
    } else if query.contains("histogram_quantile") {
        ["canary", "stable"]
            .iter()
            .map(|v| sample(json!({"rollout": "checkout", "version": v}), 50.0))
            .collect()
    } else if query.contains("stickycanary_requests_total") {
        ["canary", "stable"]
            .iter()
            .map(|v| {
                sample(
                    json!({"rollout": "checkout", "version": v, "code_class": "2xx"}),
                    1000.0,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

/// A one-request-per-connection HTTP stub of the Prometheus query API on 127.0.0.1; records
/// the (percent-encoded) request targets it was asked, with a POSTed form as their query. Stopped on drop.
struct StubPrometheus {
    address: String,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubPrometheus {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stop_flag) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                // The query is in the URL (GET) or a form body (POST, as the controller sends it).
                let head_end = request
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(request.len(), |at| at + 4);
                let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let mut target = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                if length > 0 {
                    target.push('?');
                    target.push_str(&String::from_utf8_lossy(&request[head_end..]));
                }
                record.lock().unwrap().push(target.clone());
                let body = answer(&target).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        StubPrometheus {
            address: format!("http://{addr}"),
            asked,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StubPrometheus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let address = self.address.trim_start_matches("http://").to_string();
        let _ = std::net::TcpStream::connect(address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rollout(prometheus: &str) -> CanaryRollout {
    let started = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(30))
    .to_string();
    serde_json::from_value(json!({
        "apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
        // Already carrying the finalizer, as every rollout does after its first reconcile.
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 3, "uid": "u-1",
                     "resourceVersion": "5", "finalizers": ["stickycanary.dev/cleanup"]},
        "spec": {
            "wasmPlugin": {"name": "stickycanary", "namespace": "istio-system"},
            "canary": {"deployment": "checkout-canary"},
            "stages": [{"weight": 10, "duration": "10m"}, {"weight": 100}],
            "analysis": {"interval": "10s", "resources": {"for": "0s", "cpuThrottling": {"maxPercent": 25}}},
            "prometheus": {"address": prometheus}
        },
        "status": {"phase": "Progressing", "stageIndex": 0, "weight": 10.0,
                   "stageStartedAt": started, "observedGeneration": 3}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_throttled_canary_is_rolled_back_by_the_reconcile_with_resources_cpu_throttling() {
    let prometheus = StubPrometheus::start();
    // Every request is also checked against the chart's RBAC, as an API server would.
    let (client, mut api) = support::api::ScriptedServer::new();
    let stored = serde_json::to_value(rollout(&prometheus.address)).unwrap();
    let server = tokio::spawn(async move {
        api.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
            .await;
        api.expect(
            Method::GET,
            "/apis/apps/v1/namespaces/shop/deployments/checkout-canary",
            StatusCode::NOT_FOUND,
            support::api::api_status(404, "NotFound"),
        )
        .await;
        // The weight first...
        api.expect(Method::GET, PLUGIN_PATH, StatusCode::OK, plugin(10.0))
            .await;
        let patch = api
            .expect(Method::PATCH, PLUGIN_PATH, StatusCode::OK, plugin(0.0))
            .await;
        assert_eq!(
            patch.body,
            json!({"metadata": {"resourceVersion": "7"},
                   "spec": {"pluginConfig": {"rollouts": {"checkout": {"weight": 0}}}}})
        );
        // ...then the status that records why...
        let status = api
            .expect(Method::PATCH, STATUS_PATH, StatusCode::OK, stored)
            .await;
        let status = &status.body["status"];
        assert_eq!(status["phase"], "RolledBack");
        assert_eq!(status["rollbackReason"], "resources:cpu-throttling");
        let checks = status["lastAnalysis"]["checks"].as_array().unwrap();
        let throttling = checks
            .iter()
            .find(|c| c["name"] == "resources:cpu-throttling")
            .unwrap();
        assert_eq!(throttling["verdict"], "Fail");
        assert_eq!(throttling["value"], 60.0);
        // ...then the Event.
        let event = api
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                StatusCode::CREATED,
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                   "metadata": {"name": "checkout.1", "namespace": "shop"},
                   "eventTime": "2026-11-26T06:00:00.000000Z"}),
            )
            .await;
        assert_eq!(event.body["reason"], "RollingBack");
        assert_eq!(event.body["type"], "Warning");
    });

    let ctx = support::context(client, Duration::from_secs(5));
    reconcile::reconcile(Arc::new(rollout(&prometheus.address)), ctx.clone())
        .await
        .unwrap();
    support::api::finish(server).await;

    // The cAdvisor queries named the canary Deployment's pods in the rollout's namespace.
    let asked = prometheus.asked.lock().unwrap().clone();
    let cadvisor: Vec<&String> = asked.iter().filter(|q| q.contains("container_")).collect();
    assert_eq!(cadvisor.len(), 4, "{asked:#?}");
    for query in cadvisor {
        assert!(
            query.contains("checkout-canary") && query.contains("shop"),
            "{query}"
        );
    }
    assert!(ctx.metrics.encode().contains(
        "stickycanary_rollbacks_total{namespace=\"shop\",rollout=\"checkout\",reason=\"resources:cpu-throttling\"} 1"
    ));
}

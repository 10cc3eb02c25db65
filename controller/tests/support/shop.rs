//! The one world the mocked-API tests share: rollout `shop/checkout`, its Deployments
//! `checkout-stable` and `checkout-canary`, and the WasmPlugin `istio-system/stickycanary`;
//! plus the shape every controller status write must have.

use serde_json::{json, Value};

use super::api::{FakeApi, Seen};

pub const ROLLOUT_PATH: &str =
    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout";
pub const PLUGIN_PATH: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins/stickycanary";
pub const CANARY_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-canary";
pub const STABLE_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-stable";

/// The condition of type `kind` in a stored status; fails the test when there is none.
pub fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status}"))
}

/// The WasmPlugin (rollout `checkout` at weight 0) and the two Deployments a reconcile reads:
/// stable at v1 with 2 replicas, canary at v2 scaled to 0.
pub fn seed_plugin_and_deployments(api: &FakeApi) {
    api.insert(
        PLUGIN_PATH,
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "stickycanary", "namespace": "istio-system"},
            "spec": {"url": "oci://example/stickycanary:1", "pluginConfig": {
                "rollouts": {"checkout": {"hosts": ["checkout"], "weight": 0}}}}
        }),
    );
    api.insert(
        STABLE_PATH,
        deployment("checkout-stable", "stable", "shop/checkout:v1", 2),
    );
    api.insert(
        CANARY_PATH,
        deployment("checkout-canary", "canary", "shop/checkout:v2", 0),
    );
}

/// A Deployment named `name` selecting `version: <track>`, running `image`, fully rolled out
/// at generation 4.
pub fn deployment(name: &str, track: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "generation": 4},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout", "version": track}},
            "template": {
                "metadata": {"labels": {"app": "checkout", "version": track}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        },
        "status": {"observedGeneration": 4, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": replicas, "availableReplicas": replicas}
    })
}

/// The controller's status write: a forced server-side apply to `/status` under the
/// `stickycanary` field manager, naming the object, without approvals (they belong to
/// `stickycanary approve`).
pub fn assert_status_apply(seen: &Seen) {
    assert_eq!(seen.method, http::Method::PATCH);
    assert_eq!(seen.path, format!("{ROLLOUT_PATH}/status"));
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
    assert_eq!(seen.param("fieldManager").as_deref(), Some("stickycanary"));
    assert_eq!(seen.param("force").as_deref(), Some("true"));
    assert_eq!(seen.body["apiVersion"], "stickycanary.dev/v1alpha1");
    assert_eq!(seen.body["kind"], "CanaryRollout");
    assert_eq!(seen.body["metadata"], json!({"name": "checkout"}));
    assert!(
        seen.body["status"].get("approvals").is_none(),
        "{}",
        seen.body
    );
}

//! The one world the mocked-API tests share: rollout `shop/checkout` (uid `u-1`), its
//! workload Deployment `checkout-canary` (Git's), the stable Deployment `checkout-stable` the
//! controller generates from it (`spec.stable.name: checkout-stable`), and the WasmPlugin
//! `istio-system/stickycanary`; plus the shape every controller status write must have.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{json, Value};
use stickycanary::k8s::deployments::revision_of;

use super::api::{FakeApi, Seen};

pub const ROLLOUT_PATH: &str =
    "/apis/stickycanary.dev/v1alpha1/namespaces/shop/canaryrollouts/checkout";
pub const PLUGIN_PATH: &str =
    "/apis/extensions.istio.io/v1alpha1/namespaces/istio-system/wasmplugins/stickycanary";
pub const CANARY_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-canary";
pub const STABLE_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout-stable";
/// The rollout's `spec.stable`: the generated stable is named `checkout-stable` (not the
/// default `checkout-canary-primary`), so `STABLE_PATH` is where it lives.
pub const STABLE_NAME: &str = "checkout-stable";
/// The uid every seeded rollout has; the generated stable's ownerReference names it.
pub const ROLLOUT_UID: &str = "u-1";

/// The condition of type `kind` in a stored status; fails the test when there is none.
pub fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status}"))
}

/// The WasmPlugin (rollout `checkout` at weight 0) and the two Deployments a reconcile reads:
/// the generated stable of v1 with 2 replicas, owned by the stored rollout (its uid, as the
/// API server gave it on create; `u-1` when none is stored yet), the workload at v2 scaled
/// to 0.
pub fn seed_plugin_and_deployments(api: &FakeApi) {
    let owner = api
        .get(ROLLOUT_PATH)
        .and_then(|rollout| rollout["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_else(|| ROLLOUT_UID.to_string());
    api.insert(
        PLUGIN_PATH,
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "stickycanary", "namespace": "istio-system"},
            "spec": {"url": "oci://example/stickycanary:1", "pluginConfig": {
                "rollouts": {"checkout": {"hosts": ["checkout"], "weight": 0}}}}
        }),
    );
    let v1 = deployment("checkout-canary", "canary", "shop/checkout:v1", 0);
    api.insert(STABLE_PATH, generated_stable(&v1, &owner, 2));
    api.insert(
        CANARY_PATH,
        deployment("checkout-canary", "canary", "shop/checkout:v2", 0),
    );
}

/// The ownerReference the generated stable carries: to the CanaryRollout `checkout` with
/// `uid`, as its controller (kube's `Resource::controller_owner_ref`, which leaves
/// `blockOwnerDeletion` unset: setting it needs `delete` on the owner, else 422 (API
/// reference, OwnerReference), which the chart does not grant; only a foreground deletion
/// waits on it).
pub fn owner_reference(uid: &str) -> Value {
    json!({"apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
           "name": "checkout", "uid": uid, "controller": true})
}

/// The `stickycanary.dev/template` annotation for `workload`: its pod template as JSON text,
/// as the typed Deployment serialises it (what the controller reads back and compares).
pub fn template_annotation(workload: &Value) -> String {
    let typed: Deployment = serde_json::from_value(workload.clone()).unwrap();
    serde_json::to_value(&typed.spec.template)
        .unwrap()
        .to_string()
}

/// The revision of a Deployment given as JSON.
pub fn revision(deployment: &Value) -> String {
    revision_of(&serde_json::from_value::<Deployment>(deployment.clone()).unwrap())
}

/// The body of the controller's apply of the generated stable for `workload`'s pod template,
/// at `replicas`, owned by the rollout with `uid`: the workload's selector and pod template
/// with `version: stable` over the workload's value, the pod template's own
/// `stickycanary.dev/` annotations dropped, the release recorded in two annotations, the
/// rollout label, the ownerReference.
pub fn stable_apply_body(workload: &Value, uid: &str, replicas: i64) -> Value {
    let mut selector = workload["spec"]["selector"]["matchLabels"].clone();
    selector["version"] = json!("stable");
    let mut template: Value = serde_json::from_str(&template_annotation(workload)).unwrap();
    template["metadata"]["labels"]["version"] = json!("stable");
    if let Some(annotations) = template
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.retain(|key, _| !key.starts_with("stickycanary.dev/"));
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": STABLE_NAME, "namespace": "shop",
            "labels": {"stickycanary.dev/rollout": "checkout"},
            "annotations": {
                "stickycanary.dev/revision": revision(workload),
                "stickycanary.dev/template": template_annotation(workload),
            },
            "ownerReferences": [owner_reference(uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        }
    })
}

/// The generated stable as the controller leaves it once it is rolled out: the apply body of
/// [`stable_apply_body`], at generation 4, observed and fully rolled out at `replicas`.
pub fn generated_stable(workload: &Value, uid: &str, replicas: i64) -> Value {
    let mut stable = stable_apply_body(workload, uid, replicas);
    stable["metadata"]["generation"] = json!(4);
    stable["status"] = json!({"observedGeneration": 4, "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
    stable
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

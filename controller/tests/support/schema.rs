//! Structural-schema pruning of the project's custom resources, as the API server does it
//! (apiextensions-apiserver `pkg/apiserver/schema/pruning`, `Prune`, on every decoded create,
//! update and patch result): a field the CRD's schema does not declare is dropped before the
//! object is stored, silently. `apiVersion`, `kind` and `metadata` at the root are left to
//! the object-meta rules. A status field the controller writes but the generated CRD lacks
//! therefore disappears here as it would in a cluster.

use kube::CustomResourceExt;
use serde_json::Value;
use stickycanary::crd::{AlertProvider, CanaryRollout};

/// Prunes `object` by its kind's CRD schema; objects of other kinds are left alone.
pub fn prune(object: &mut Value) {
    let crd = match object.get("kind").and_then(Value::as_str) {
        Some("CanaryRollout") => CanaryRollout::crd(),
        Some("AlertProvider") => AlertProvider::crd(),
        _ => return,
    };
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|validation| validation.open_api_v3_schema.as_ref())
        .map(|schema| serde_json::to_value(schema).unwrap())
        .expect("the CRD has a schema");
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    map.retain(|key, _| {
        matches!(key.as_str(), "apiVersion" | "kind" | "metadata") || properties.contains_key(key)
    });
    for (key, value) in map.iter_mut() {
        if let Some(field) = properties.get(key) {
            prune_value(value, field);
        }
    }
}

/// `pruning.Prune` below the root: an object keeps the declared `properties` (or every key
/// under `additionalProperties`), an array prunes its `items`, and
/// `x-kubernetes-preserve-unknown-fields` keeps everything.
fn prune_value(value: &mut Value, schema: &Value) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                map.retain(|key, _| properties.contains_key(key));
                for (key, child) in map.iter_mut() {
                    prune_value(child, &properties[key]);
                }
            } else if schema["additionalProperties"].is_object() {
                for child in map.values_mut() {
                    prune_value(child, &schema["additionalProperties"]);
                }
            } else if schema["additionalProperties"] != Value::Bool(true) {
                map.clear();
            }
        }
        Value::Array(items) => {
            for item in items {
                prune_value(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

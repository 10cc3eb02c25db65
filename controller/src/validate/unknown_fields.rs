//! Unknown fields in a CanaryRollout read from a file (`validate`, `local`).
//!
//! In a cluster the API server prunes (or, with strict field validation, rejects) fields the
//! CRD's schema does not name. A file read by `stickycanary` has no API server in front of
//! it, and serde would silently drop a typo such as `errorRates:`, leaving the default in
//! force. So the document is walked against the same generated OpenAPI schema and every
//! field the schema does not know is an error naming it. The CRD types' own serde stays
//! lenient, as the cluster path expects.

use kube::CustomResourceExt;
use serde_json::Value;

use super::ValidationError;
use crate::crd::{AlertProvider, CanaryRollout};

/// Top-level fields every Kubernetes object has (the CRD schema lists only spec and status;
/// `metadata` is the API server's own, left unchecked here).
const OBJECT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// A CRD's `openAPIV3Schema`, as JSON.
fn schema_of(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(schema: &Value, doc: &Value, path: &str, out: &mut Vec<ValidationError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match doc {
        Value::Object(fields) => {
            if let Some(known) = schema.get("properties").and_then(Value::as_object) {
                for (key, value) in fields {
                    match known.get(key) {
                        Some(sub) => walk(sub, value, &join(path, key), out),
                        None if path.is_empty() && OBJECT_FIELDS.contains(&key.as_str()) => {}
                        None => {
                            let expected: Vec<&str> = known.keys().map(String::as_str).collect();
                            out.push(ValidationError {
                                field: join(path, key),
                                message: format!(
                                    "unknown field (expected one of: {})",
                                    expected.join(", ")
                                ),
                            });
                        }
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (key, value) in fields {
                    walk(values, value, &join(path, key), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, value) in items.iter().enumerate() {
                    walk(item, value, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Every field of `document` (a whole CanaryRollout as JSON) the CRD schema does not know,
/// as `spec.analysis.errorRates: unknown field (expected one of: ...)`.
pub fn unknown_fields(document: &Value) -> Vec<ValidationError> {
    let mut out = Vec::new();
    walk(&schema_of(CanaryRollout::crd()), document, "", &mut out);
    out
}

/// The same for a whole AlertProvider, against its own CRD's schema.
pub fn unknown_alert_provider_fields(document: &Value) -> Vec<ValidationError> {
    let mut out = Vec::new();
    walk(&schema_of(AlertProvider::crd()), document, "", &mut out);
    out
}

/// The same for YAML (or JSON) text. Text that is not a YAML mapping with string keys
/// yields nothing here: the typed parse reports it.
pub fn unknown_fields_in_yaml(text: &str) -> Vec<ValidationError> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(document) => unknown_fields(&document),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLOUT: &str = "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {name: checkout, labels: {team: shop}}
spec:
  wasmPlugin: {name: stickycanary}
  canary: {deployment: checkout-canary}
  stages: [{weight: 10, duration: 1m}, {weight: 100}]
  analysis:
    errorRate: {maxPercent: 5, for: 2m}
    custom: [{name: conv, query: 'sum(x)', max: 1}]
";

    #[test]
    fn a_known_document_has_no_unknown_fields() {
        assert_eq!(unknown_fields_in_yaml(ROLLOUT), vec![]);
    }

    #[test]
    fn typos_are_named_by_path_at_every_depth() {
        let text = ROLLOUT
            .replace("errorRate:", "errorRates:")
            .replace("{weight: 100}", "{weight: 100, durration: 1m}")
            .replace("kind:", "kind: CanaryRollout\nextra: 1\nx:");
        let mut fields: Vec<String> = unknown_fields_in_yaml(&text)
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            vec![
                "extra",
                "spec.analysis.errorRates",
                "spec.stages[1].durration",
                "x"
            ]
        );
        let first = unknown_fields_in_yaml(&text.replace("extra: 1\n", ""))
            .into_iter()
            .find(|e| e.field == "spec.analysis.errorRates")
            .unwrap();
        assert!(
            first
                .to_string()
                .starts_with("spec.analysis.errorRates: unknown field (expected one of: ")
                && first.message.contains("errorRate,"),
            "{first}"
        );
    }
}

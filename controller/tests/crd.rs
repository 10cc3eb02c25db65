//! The CRD shipped in the Helm chart is generated from the Rust types; these tests keep the
//! committed copy honest and pin the parts of the schema users rely on.

// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::CustomResourceExt;
use stickycanary::crd::{
    alert_provider_crd_yaml, crd_yaml, CanaryRollout, CanaryRolloutStatus, Phase,
    ALERT_PROVIDER_CRD_YAML_HEADER, CRD_YAML_HEADER,
};

const CHART_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/helm/stickycanary/crds/canaryrollouts.yaml"
);

#[test]
fn crd_in_chart_matches_generator() {
    let committed = std::fs::read_to_string(CHART_CRD)
        .unwrap_or_else(|e| panic!("cannot read {CHART_CRD}: {e}"));
    let generated = crd_yaml();
    assert!(
        committed == generated,
        "manifests/helm/stickycanary/crds/canaryrollouts.yaml is stale; regenerate it with \
         `cargo run -p stickycanary -- crd > manifests/helm/stickycanary/crds/canaryrollouts.yaml`"
    );
}

const CHART_ALERT_PROVIDER_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/helm/stickycanary/crds/alertproviders.yaml"
);

#[test]
fn alert_provider_crd_in_chart_matches_generator() {
    let committed = std::fs::read_to_string(CHART_ALERT_PROVIDER_CRD)
        .unwrap_or_else(|e| panic!("cannot read {CHART_ALERT_PROVIDER_CRD}: {e}"));
    assert!(
        committed == alert_provider_crd_yaml(),
        "manifests/helm/stickycanary/crds/alertproviders.yaml is stale; regenerate it with \
         `cargo run -p stickycanary -- crd alertprovider > manifests/helm/stickycanary/crds/alertproviders.yaml` \
         (or `make crd`)"
    );
    assert!(committed.starts_with(ALERT_PROVIDER_CRD_YAML_HEADER));
    let parsed: serde_yaml::Value = serde_yaml::from_str(&committed).unwrap();
    assert_eq!(
        parsed["metadata"]["name"],
        "alertproviders.stickycanary.dev"
    );
}

#[test]
fn a_rollouts_alerts_take_a_provider_ref_and_a_severity_enum() {
    let schema = schema_json();
    let alert = &schema["properties"]["spec"]["properties"]["alerts"]["items"];
    assert_eq!(
        alert["properties"]["severity"]["enum"],
        serde_json::json!(["info", "warn", "error"])
    );
    assert_eq!(alert["properties"]["severity"]["default"], "info");
    assert_eq!(alert["required"], serde_json::json!(["providerRef"]));
    let reference = &alert["properties"]["providerRef"]["properties"];
    for field in ["name", "namespace"] {
        assert_eq!(
            reference[field]["pattern"],
            stickycanary::crd::DNS1123_LABEL_PATTERN,
            "{field}"
        );
    }
}

#[test]
fn crd_yaml_starts_with_generated_header_and_parses_back() {
    let yaml = crd_yaml();
    assert!(yaml.starts_with(CRD_YAML_HEADER));
    let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        parsed["metadata"]["name"],
        "canaryrollouts.stickycanary.dev"
    );
}

#[test]
fn crd_identity_scope_shortname_and_status_subresource() {
    let crd = CanaryRollout::crd();
    assert_eq!(crd.spec.group, "stickycanary.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "CanaryRollout");
    assert_eq!(crd.spec.names.short_names, Some(vec!["scr".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Phase", "Weight", "Stage", "Revision", "Stable", "Age"]
    );
}

fn schema_json() -> serde_json::Value {
    let crd = CanaryRollout::crd();
    let schema = crd.spec.versions[0].schema.as_ref().unwrap();
    serde_json::to_value(schema.open_api_v3_schema.as_ref().unwrap()).unwrap()
}

#[test]
fn schema_bounds_weights_to_0_through_100() {
    let schema = schema_json();
    let weight =
        &schema["properties"]["spec"]["properties"]["stages"]["items"]["properties"]["weight"];
    assert_eq!(weight["minimum"], 0.0);
    assert_eq!(weight["maximum"], 100.0);
}

#[test]
fn schema_requires_duration_pattern_and_dns_labels() {
    let schema = schema_json();
    let spec = &schema["properties"]["spec"]["properties"];
    let interval_pattern = spec["analysis"]["properties"]["interval"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(interval_pattern, stickycanary::duration::DURATION_PATTERN);
    for label in [
        &spec["wasmPlugin"]["properties"]["name"],
        &spec["canary"]["properties"]["deployment"],
        &spec["rolloutKey"],
        &spec["analysis"]["properties"]["custom"]["items"]["properties"]["name"],
    ] {
        assert_eq!(label["pattern"], stickycanary::crd::DNS1123_LABEL_PATTERN);
        assert_eq!(label["maxLength"], 63);
    }
}

const EXAMPLE: &str = r#"
apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata:
  name: checkout
  namespace: shop
spec:
  wasmPlugin: {name: stickycanary, namespace: istio-system}
  canary: {deployment: checkout-v2}
  analysis:
    custom:
      - name: conversion
        query: sum(rate(orders_total{version="canary"}[5m]))
        min: 0.5
        for: 5m
  prometheus: {address: "http://prometheus:9090"}
"#;

#[test]
fn minimal_example_gets_the_seed_defaults() {
    let rollout: CanaryRollout = serde_yaml::from_str(EXAMPLE).unwrap();
    assert_eq!(rollout.rollout_key(), "checkout");
    let weights: Vec<f64> = rollout.spec.stages.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [10.0, 25.0, 50.0, 100.0]);
    let durations: Vec<String> = rollout
        .spec
        .stages
        .iter()
        .map(|s| s.duration.map(|d| d.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(durations, ["10m", "15m", "20m", ""]);
    let analysis = &rollout.spec.analysis;
    assert_eq!(analysis.interval.to_string(), "30s");
    assert_eq!(analysis.effective_window().to_string(), "1m");
    assert_eq!(analysis.min_requests, 100);
    assert_eq!(analysis.error_rate.max_percent, 5.0);
    assert_eq!(analysis.error_rate.for_duration.to_string(), "2m");
    assert_eq!(analysis.latency_p99.max_ms, 500.0);
    assert_eq!(analysis.latency_p99.for_duration.to_string(), "3m");
    assert_eq!(analysis.unavailable_grace.to_string(), "5m");
    assert_eq!(analysis.custom[0].min, Some(0.5));
    assert!(!rollout.spec.paused);
}

#[test]
fn rollout_key_overrides_the_name() {
    let yaml = EXAMPLE.replace("  canary: {", "  rolloutKey: checkout-eu\n  canary: {");
    let rollout: CanaryRollout = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(rollout.rollout_key(), "checkout-eu");
}

#[test]
fn bad_duration_is_rejected_when_parsing_naming_the_value() {
    let yaml = EXAMPLE.replace("for: 5m", "for: 5 minutes");
    let error = serde_yaml::from_str::<CanaryRollout>(&yaml)
        .unwrap_err()
        .to_string();
    assert!(error.contains("5 minutes"), "{error}");
}

#[test]
fn status_round_trips_through_json_with_rfc3339_times() {
    let status = CanaryRolloutStatus {
        phase: Phase::Progressing,
        stage_index: 1,
        weight: 25.0,
        stage_started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-26T06:00:00Z".parse().unwrap(),
        )),
        ..Default::default()
    };
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["stageStartedAt"], "2026-11-26T06:00:00Z");
    assert_eq!(json["phase"], "Progressing");
    let back: CanaryRolloutStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

/// Every `format` in the schema, with the path where it appears.
fn formats(value: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                if key == "format" {
                    if let Some(f) = child.as_str() {
                        out.push((path.to_string(), f.to_string()));
                    }
                } else {
                    formats(child, &format!("{path}.{key}"), out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                formats(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Kubernetes knows `int32`, `int64`, `float`, `double`, `byte`, `date-time`, ... but not
/// `uint32`/`uint64`: since 1.34 it warns on every apply of a CRD using them and ignores them.
#[test]
fn schema_uses_only_integer_formats_kubernetes_knows_with_a_minimum_for_unsigned_fields() {
    let schema = schema_json();
    let mut found = Vec::new();
    formats(&schema, "", &mut found);
    let unknown: Vec<_> = found
        .iter()
        .filter(|(_, f)| {
            !["int32", "int64", "double", "float", "date-time", "byte"].contains(&f.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "formats Kubernetes does not know: {unknown:?}"
    );
    let props = &schema["properties"];
    for (field, format) in [
        (
            &props["spec"]["properties"]["analysis"]["properties"]["minRequests"],
            "int64",
        ),
        (&props["status"]["properties"]["stageIndex"], "int32"),
        (
            &props["status"]["properties"]["history"]["items"]["properties"]["stageIndex"],
            "int32",
        ),
    ] {
        assert_eq!(field["format"], format, "{field}");
        assert_eq!(field["minimum"], 0.0, "{field}");
        assert_eq!(field["type"], "integer", "{field}");
    }
}

#[test]
fn a_status_saved_with_the_old_name_of_invalid_spec_still_reads_and_validates() {
    let status: CanaryRolloutStatus =
        serde_json::from_value(serde_json::json!({"phase": "Failed"})).unwrap();
    assert_eq!(status.phase, Phase::InvalidSpec);
    assert_eq!(
        serde_json::to_value(status.phase).unwrap(),
        serde_json::json!("InvalidSpec")
    );
    let crd = crd_yaml();
    assert!(
        crd.contains("- InvalidSpec\n") && crd.contains("- Failed\n"),
        "the schema takes both names"
    );
}

//! `analysis.resources` and `fromStage` outside the engine: which pods a Deployment owns,
//! the batched PromQL, how a batch is split per rollout, validation, and local mode's
//! plain refusal (it has no cAdvisor).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use stickycanary::crd::{CanaryRollout, CanaryRolloutSpec};
use stickycanary::resources::query::{pod_matchers, queries, PerPod, ResourceBatch};
use stickycanary::resources::{PodSelector, PodUsage, ResourceObservation, ResourceSelectors};
use stickycanary::validate::validate_rollout;

fn selector(namespace: &str, deployment: &str) -> PodSelector {
    PodSelector {
        namespace: namespace.to_string(),
        deployment: deployment.to_string(),
    }
}

fn per_pod(entries: &[(&str, &str, f64)]) -> PerPod {
    entries
        .iter()
        .map(|(namespace, pod, value)| ((namespace.to_string(), pod.to_string()), *value))
        .collect()
}

#[test]
fn a_deployment_owns_exactly_its_replicasets_pods() {
    let checkout = selector("shop", "checkout");
    assert!(checkout.matches("shop", "checkout-7d9f8c6b5-x2x7q"));
    assert!(
        !checkout.matches("other", "checkout-7d9f8c6b5-x2x7q"),
        "namespace"
    );
    assert!(
        !checkout.matches("shop", "checkout-canary-7d9f8c6b5-x2x7q"),
        "another Deployment whose name starts the same"
    );
    assert!(!checkout.matches("shop", "checkout-x2x7q"), "a bare pod");
    assert!(
        !checkout.matches("shop", "checkout-7d9f8c6b5-"),
        "empty suffix"
    );
    assert!(!checkout.matches("shop", "checkoutx-7d9f8c6b5-x2x7q"));
    let canary = selector("shop", "checkout-canary");
    assert!(canary.matches("shop", "checkout-canary-6c9f8d7b5f-k8p2m"));
    assert!(!canary.matches("shop", "checkout-7d9f8c6b5-x2x7q"));
}

#[test]
fn one_batch_of_four_queries_names_every_rollouts_pods() {
    let selectors: BTreeSet<PodSelector> = [
        selector("shop", "checkout-canary"),
        selector("shop", "checkout-stable"),
        selector("search", "search-v2"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        pod_matchers(&selectors),
        r#"namespace=~"search|shop",pod=~"(checkout-canary|checkout-stable|search-v2)-[a-z0-9]+-[a-z0-9]+",container!="",container!="POD""#
    );
    let q = queries(&selectors, Duration::from_secs(60));
    let m = pod_matchers(&selectors);
    assert_eq!(
        q.cpu,
        format!("sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{m}}}[60s]))")
    );
    assert_eq!(
        q.memory,
        format!("sum by (namespace, pod) (avg_over_time(container_memory_working_set_bytes{{{m}}}[60s]))")
    );
    assert_eq!(
        q.throttled_periods,
        format!("sum by (namespace, pod) (increase(container_cpu_cfs_throttled_periods_total{{{m}}}[60s]))")
    );
    assert_eq!(
        q.periods,
        format!("sum by (namespace, pod) (increase(container_cpu_cfs_periods_total{{{m}}}[60s]))")
    );
    for query in [&q.cpu, &q.memory, &q.throttled_periods, &q.periods] {
        stickycanary::validate::check_promql(query).unwrap();
    }
}

#[test]
fn a_batch_gives_each_version_its_per_pod_figures() {
    let batch = ResourceBatch {
        cpu: per_pod(&[
            ("shop", "checkout-stable-aaaa1-00001", 0.2),
            ("shop", "checkout-stable-aaaa1-00002", 0.4),
            ("shop", "checkout-canary-bbbb2-00001", 0.5),
            // Same Deployment name in another namespace: not this rollout's.
            ("other", "checkout-canary-bbbb2-00009", 9.0),
        ]),
        memory: per_pod(&[
            ("shop", "checkout-stable-aaaa1-00001", 100.0),
            ("shop", "checkout-stable-aaaa1-00002", 300.0),
            ("shop", "checkout-canary-bbbb2-00001", 360.0),
        ]),
        throttled_periods: per_pod(&[
            ("shop", "checkout-stable-aaaa1-00001", 3.0),
            ("shop", "checkout-canary-bbbb2-00001", 180.0),
        ]),
        periods: per_pod(&[
            ("shop", "checkout-stable-aaaa1-00001", 300.0),
            ("shop", "checkout-stable-aaaa1-00002", 300.0),
            ("shop", "checkout-canary-bbbb2-00001", 600.0),
        ]),
    };
    let selectors = ResourceSelectors {
        canary: selector("shop", "checkout-canary"),
        stable: Some(selector("shop", "checkout-stable")),
    };
    assert_eq!(
        batch.observation(&selectors),
        ResourceObservation::Window {
            canary: PodUsage {
                pods: 1,
                cpu_cores_per_pod: Some(0.5),
                memory_bytes_per_pod: Some(360.0),
                throttled_percent: Some(30.0),
            },
            stable: PodUsage {
                pods: 2,
                cpu_cores_per_pod: Some(0.30000000000000004),
                memory_bytes_per_pod: Some(200.0),
                throttled_percent: Some(0.5),
            },
        }
    );
}

#[test]
fn missing_series_give_no_figure_never_zero() {
    let batch = ResourceBatch {
        cpu: per_pod(&[("shop", "checkout-canary-bbbb2-00001", 0.5)]),
        // A container without a CPU limit has no CFS periods: throttling is unknown.
        periods: per_pod(&[("shop", "checkout-canary-bbbb2-00001", 0.0)]),
        throttled_periods: per_pod(&[("shop", "checkout-canary-bbbb2-00001", 0.0)]),
        ..ResourceBatch::default()
    };
    let canary = batch.usage(&selector("shop", "checkout-canary"));
    assert_eq!(
        canary,
        PodUsage {
            pods: 1,
            cpu_cores_per_pod: Some(0.5),
            memory_bytes_per_pod: None,
            throttled_percent: None,
        }
    );
    assert_eq!(
        batch.usage(&selector("shop", "nobody")),
        PodUsage::default()
    );
    // Without a stable selector (throttling only), stable has no figures.
    let only_canary = ResourceSelectors {
        canary: selector("shop", "checkout-canary"),
        stable: None,
    };
    let ResourceObservation::Window { stable, .. } = batch.observation(&only_canary) else {
        panic!("a batch always gives a window");
    };
    assert_eq!(stable, PodUsage::default());
}

fn spec(analysis_yaml: &str) -> CanaryRolloutSpec {
    serde_yaml::from_str(&format!(
        "wasmPlugin: {{name: stickycanary}}\ncanary: {{deployment: checkout-canary}}\nanalysis:\n{analysis_yaml}"
    ))
    .unwrap()
}

#[test]
fn selectors_default_to_the_rollouts_then_the_canarys_namespace() {
    let with_stable = spec("  resources: {stable: {deployment: checkout-stable}, cpu: {}}");
    assert_eq!(
        ResourceSelectors::for_spec(&with_stable, "shop"),
        Some(ResourceSelectors {
            canary: selector("shop", "checkout-canary"),
            stable: Some(selector("shop", "checkout-stable")),
        })
    );
    let mut elsewhere = with_stable.clone();
    elsewhere.canary.namespace = Some("canaries".to_string());
    assert_eq!(
        ResourceSelectors::for_spec(&elsewhere, "shop")
            .unwrap()
            .stable,
        Some(selector("canaries", "checkout-stable"))
    );
    assert_eq!(ResourceSelectors::for_spec(&spec("  {}"), "shop"), None);
}

fn rollout_errors(analysis_yaml: &str) -> Vec<String> {
    let rollout = CanaryRollout::new("checkout", spec(analysis_yaml));
    match validate_rollout(&rollout) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn from_stage_must_name_one_of_the_stages() {
    assert_eq!(
        rollout_errors("  errorRate: {fromStage: 4}"),
        Vec::<String>::new()
    );
    assert_eq!(
        rollout_errors("  errorRate: {fromStage: 5}\n  latencyP99: {fromStage: 0}"),
        [
            "spec.analysis.errorRate.fromStage: must be a stage number from 1 to 4 (got 5)",
            "spec.analysis.latencyP99.fromStage: must be a stage number from 1 to 4 (got 0)",
        ]
    );
    assert_eq!(
        rollout_errors(
            "  custom: [{name: orders, query: \"vector(1)\", min: 1, for: 1m, fromStage: 9}]\n  resources: {cpuThrottling: {fromStage: 7}}"
        ),
        [
            "spec.analysis.custom[0].fromStage: must be a stage number from 1 to 4 (got 9)",
            "spec.analysis.resources.cpuThrottling.fromStage: must be a stage number from 1 to 4 (got 7)",
        ]
    );
}

#[test]
fn resource_checks_are_validated_one_line_per_problem() {
    assert_eq!(
        rollout_errors("  resources: {}"),
        ["spec.analysis.resources: needs cpuThrottling, memory or cpu (an empty block checks nothing)"]
    );
    assert_eq!(
        rollout_errors("  resources: {memory: {}}"),
        ["spec.analysis.resources.stable: is required by memory and cpu (they compare the canary's pods with stable's)"]
    );
    assert_eq!(
        rollout_errors(
            "  resources: {stable: {deployment: checkout-canary}, cpuThrottling: {maxPercent: 120}, cpu: {maxIncreasePercent: -1}}"
        ),
        [
            "spec.analysis.resources.cpuThrottling.maxPercent: must be a number from 0 to 100 (got 120)",
            "spec.analysis.resources.cpu.maxIncreasePercent: must be a non-negative number (got -1)",
            "spec.analysis.resources.stable.deployment: must differ from spec.canary.deployment (both are \"checkout-canary\")",
        ]
    );
    assert_eq!(
        rollout_errors("  resources: {cpuThrottling: {}}"),
        Vec::<String>::new(),
        "throttling alone needs no stable"
    );
}

fn stickycanary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

const ROLLOUT_WITH_RESOURCES: &str = "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  wasmPlugin: {name: stickycanary}
  canary: {deployment: checkout-canary}
  stages: [{weight: 10, duration: 1m}, {weight: 100}]
  analysis:
    resources: {cpuThrottling: {maxPercent: 25}}
";

#[test]
fn validate_says_local_mode_cannot_run_resource_checks_and_local_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = dir.path().join("rollout.yaml");
    std::fs::write(&rollout, ROLLOUT_WITH_RESOURCES).unwrap();

    // Valid for a cluster, with a plain note about local mode.
    let out = stickycanary(&["validate", rollout.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with("valid CanaryRollout checkout (2 stages, rollout key checkout)"));
    assert!(
        lines[1].contains(
            "note: spec.analysis.resources: resource checks read cAdvisor's container metrics"
        ) && lines[1].contains("local mode has none"),
        "{stdout}"
    );

    // local refuses it at once, in one line, before touching anything.
    let ecds = dir.path().join("envoy").join("filter.ecds.json");
    let out = stickycanary(&[
        "local",
        "--rollout",
        rollout.to_str().unwrap(),
        "--envoy-ecds",
        ecds.to_str().unwrap(),
        "--once",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains(
                "spec.analysis.resources: resource checks read cAdvisor's container metrics"
            )
            && stderr.contains("remove analysis.resources to run it with `stickycanary local`"),
        "{stderr}"
    );
    assert!(!dir.path().join("checkout.status.json").exists());

    // Without the block, validate prints no note.
    let plain = ROLLOUT_WITH_RESOURCES.replace(
        "    resources: {cpuThrottling: {maxPercent: 25}}\n",
        "    minRequests: 100\n",
    );
    std::fs::write(&rollout, plain).unwrap();
    let out = stickycanary(&["validate", rollout.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

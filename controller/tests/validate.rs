//! Semantic validation of a CanaryRollout: every error is one line naming the field.

// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stickycanary::crd::CanaryRollout;
use stickycanary::validate::{check_promql, validate_rollout, validate_rollout_key_in};
use stickycanary_filter::config::PluginConfig;

const EXAMPLE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/examples/canaryrollout-checkout.yaml"
);

fn example() -> CanaryRollout {
    let text = std::fs::read_to_string(EXAMPLE_PATH).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// The example with `edit` applied to its YAML, validated, as one line per error.
fn errors_after(edit: impl Fn(&mut serde_yaml::Value)) -> Vec<String> {
    let text = std::fs::read_to_string(EXAMPLE_PATH).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    edit(&mut value);
    let rollout: CanaryRollout = serde_yaml::from_value(value).unwrap();
    match validate_rollout(&rollout) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn set(value: &mut serde_yaml::Value, path: &[&str], new: &str) {
    let mut node = value;
    for key in path {
        node = match key.parse::<usize>() {
            Ok(index) => &mut node[index],
            Err(_) => &mut node[*key],
        };
    }
    *node = serde_yaml::from_str(new).unwrap();
}

#[test]
fn the_shipped_example_is_valid() {
    let rollout = example();
    assert_eq!(validate_rollout(&rollout), Ok(()));
    assert_eq!(rollout.rollout_key(), "checkout");
}

#[test]
fn each_semantic_error_is_one_line_naming_the_field() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["spec", "stages", "2", "weight"],
            "20",
            "spec.stages[2].weight: weights must not go down (20 after 25)",
        ),
        (
            &["spec", "stages", "3", "weight"],
            "90",
            "spec.stages[3].weight: the last stage must be at weight 100 (got 90)",
        ),
        (
            &["spec", "stages", "1", "weight"],
            "150",
            "spec.stages[1].weight: must be a number from 0 to 100 (got 150)",
        ),
        (
            &["spec", "stages", "1", "duration"],
            "0s",
            "spec.stages[1].duration: must be positive on every stage but the last (got 0s)",
        ),
        (
            &["spec", "stages", "0", "duration"],
            "null",
            "spec.stages[0].duration: is required on every stage but the last",
        ),
        (
            &["spec", "stages"],
            "[]",
            "spec.stages: needs at least one stage (the last at weight 100)",
        ),
        (
            &["spec", "analysis", "interval"],
            "0s",
            "spec.analysis.interval: must be positive (got 0s)",
        ),
        (
            &["spec", "analysis", "window"],
            "0s",
            "spec.analysis.window: must be positive (got 0s)",
        ),
        (
            &["spec", "analysis", "errorRate", "maxPercent"],
            "101",
            "spec.analysis.errorRate.maxPercent: must be a number from 0 to 100 (got 101)",
        ),
        (
            &["spec", "analysis", "custom", "0", "min"],
            "null",
            "spec.analysis.custom[0]: needs min or max (a check without a bound can never fail)",
        ),
        (
            &["spec", "analysis", "custom", "0", "max"],
            "0.5",
            "spec.analysis.custom[0].min: must not exceed max (0.95 > 0.5)",
        ),
        (
            &["spec", "analysis", "custom", "0", "name"],
            "Payment_Success",
            "spec.analysis.custom[0].name: must be a DNS-1123 label",
        ),
        (
            &["spec", "analysis", "custom", "0", "query"],
            "''",
            "spec.analysis.custom[0].query: must be a PromQL expression (got an empty string)",
        ),
        (
            &["spec", "analysis", "custom", "0", "query"],
            "'sum(rate(payments_total[5m])'",
            "spec.analysis.custom[0].query: invalid PromQL",
        ),
        (
            &["spec", "analysis", "comparative"],
            "{alpha: 0.9}",
            "spec.analysis.comparative.alpha: must be a number from 0.000001 to 0.5 (got 0.9)",
        ),
        (
            &["spec", "analysis", "comparative"],
            "{minimumDetectableIncrease: 0}",
            "spec.analysis.comparative.minimumDetectableIncrease: must be a number from 0.05 to 10 (got 0)",
        ),
        (
            &["spec", "rolloutKey"],
            "Checkout",
            "spec.rolloutKey: must be a DNS-1123 label",
        ),
        (
            &["spec", "wasmPlugin", "name"],
            "-plugin",
            "spec.wasmPlugin.name: must be a DNS-1123 label",
        ),
        (
            &["spec", "canary", "deployment"],
            "checkout.canary",
            "spec.canary.deployment: must be a DNS-1123 label",
        ),
        (
            &["spec", "prometheus", "address"],
            "prometheus:9090",
            "spec.prometheus.address: must be an http:// or https:// URL (got \"prometheus:9090\")",
        ),
        (
            &["spec", "notification", "webhook"],
            "ftp://x",
            "spec.notification.webhook: must be an http:// or https:// URL",
        ),
    ];
    for (path, new_value, expected) in cases {
        let errors = errors_after(|v| set(v, path, new_value));
        assert_eq!(errors.len(), 1, "{path:?} = {new_value}: {errors:?}");
        assert!(
            errors[0].starts_with(expected),
            "{path:?} = {new_value}: got {:?}, want {expected:?}",
            errors[0]
        );
        assert!(!errors[0].contains('\n'), "{:?}", errors[0]);
    }
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let errors = errors_after(|v| {
        set(v, &["spec", "stages", "2", "weight"], "20");
        set(v, &["spec", "analysis", "interval"], "0s");
        set(v, &["spec", "canary", "deployment"], "Bad");
    });
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn duplicate_custom_check_names_are_rejected() {
    let errors = errors_after(|v| {
        let check = v["spec"]["analysis"]["custom"][0].clone();
        if let serde_yaml::Value::Sequence(checks) = &mut v["spec"]["analysis"]["custom"] {
            checks.push(check);
        }
    });
    assert_eq!(
        errors,
        ["spec.analysis.custom[1].name: duplicate check name \"payment-success\""]
    );
}

#[test]
fn metadata_name_must_be_a_label_when_it_is_the_rollout_key() {
    let errors = errors_after(|v| {
        set(v, &["metadata", "name"], "checkout.v2");
        if let serde_yaml::Value::Mapping(spec) = &mut v["spec"] {
            spec.remove("rolloutKey");
        }
    });
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("metadata.name: must be a DNS-1123 label"),
        "{}",
        errors[0]
    );
    // With an explicit rolloutKey the resource name may be anything Kubernetes accepts.
    assert!(errors_after(|v| set(v, &["metadata", "name"], "checkout.v2")).is_empty());
}

#[test]
fn promql_is_parsed_not_just_bracket_counted() {
    assert_eq!(
        check_promql(
            "sum by (version) (rate(stickycanary_requests_total{code_class=\"5xx\"}[1m]))"
        ),
        Ok(())
    );
    assert_eq!(
        check_promql("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))"),
        Ok(())
    );
    for bad in [
        "sum(rate(x[5m])",
        "rate(x{a=\"b}[5m])",
        "x[5q]",
        "sum by version (x)",
        "   ",
    ] {
        assert!(check_promql(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn rollout_key_must_exist_in_the_plugin_config() {
    let config = PluginConfig::from_json(
        br#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":0},"cart":{"hosts":["cart"],"weight":5}}}"#,
    )
    .unwrap();
    assert_eq!(validate_rollout_key_in("checkout", &config), Ok(()));
    let error = validate_rollout_key_in("payments", &config)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "spec.rolloutKey: rollout \"payments\" is not in the plugin config (it has: cart, checkout)"
    );
}

const ALERT_EXAMPLE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/examples/alertprovider-slack.yaml"
);

/// The seed ADR's Slack rollback alert: the AlertProvider example and the rollout example that
/// lists it validate together, every reference followed within the files (the rollout's
/// providerRef to the provider, the provider's secretRef to the Secret's key).
#[test]
fn the_adrs_slack_rollback_alert_example_validates_with_the_rollout_example() {
    use stickycanary::validate::documents::validate_yaml;
    let provider = std::fs::read_to_string(ALERT_EXAMPLE_PATH).unwrap();
    let rollout_text = std::fs::read_to_string(EXAMPLE_PATH).unwrap();
    let both = format!("{provider}---\n{rollout_text}");
    let report = validate_yaml("examples", &both).unwrap();
    assert!(
        report.contains("examples: AlertProvider shop/slack: valid AlertProvider (slack, address from Secret slack-webhook key address)"),
        "{report}"
    );
    assert!(
        report.contains("examples: CanaryRollout shop/checkout: valid CanaryRollout checkout (4 stages, rollout key checkout, 1 alert)"),
        "{report}"
    );
    assert!(
        !report.contains("not in this file"),
        "every reference followed: {report}"
    );
    assert!(
        !report.contains("REPLACE_ME"),
        "never the address: {report}"
    );
    // The ADR's alert: the `slack` provider, error severity (rollbacks).
    let rollout = example();
    assert_eq!(rollout.spec.alerts.len(), 1);
    assert_eq!(rollout.spec.alerts[0].provider_ref.name, "slack");
    assert_eq!(
        rollout.spec.alerts[0].severity,
        stickycanary::alerts::Severity::Error
    );
    assert!(rollout.spec.alerts[0].wants(stickycanary::alerts::severity_of("RollingBack")));
    assert!(!rollout.spec.alerts[0].wants(stickycanary::alerts::severity_of("StageAdvanced")));
}

/// A Deployment document named `name` in `namespace`, selecting on `selector` (a flow map).
fn deployment_yaml(name: &str, namespace: &str, selector: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {selector}}}
  template:
    metadata: {{labels: {selector}}}
    spec: {{containers: [{{name: app, image: shop/checkout:v1}}]}}
"
    )
}

/// One input holding the provider example, the rollout example and its workload: the one
/// multi-document reader follows the alert references and checks the workload against the
/// stable subset's pod labels, and reports the problems of both in one run.
#[test]
fn one_input_checks_alert_references_and_the_rollouts_workload() {
    use stickycanary::validate::documents::validate_yaml;
    let provider = std::fs::read_to_string(ALERT_EXAMPLE_PATH).unwrap();
    let rollout = std::fs::read_to_string(EXAMPLE_PATH).unwrap();
    let input = |provider: &str, namespace: &str, workload: &str| {
        format!(
            "{provider}---\n{rollout}---\n{}",
            deployment_yaml("checkout", namespace, workload),
        )
    };
    let good = validate_yaml(
        "all",
        &input(&provider, "shop", "{app: checkout, version: canary}"),
    )
    .unwrap();
    assert!(
        good.contains("all: CanaryRollout shop/checkout: valid CanaryRollout checkout"),
        "{good}"
    );
    assert!(!good.contains("not in this file"), "{good}");

    let bad_key = provider.replace("key: address", "key: url");
    let both = validate_yaml("all", &input(&bad_key, "shop", "{app: checkout}")).unwrap_err();
    assert!(
        both.contains("all: AlertProvider shop/slack: spec.secretRef.key: Secret shop/slack-webhook has no key \"url\""),
        "{both}"
    );
    assert!(
        both.contains("all: CanaryRollout shop/checkout: spec.stable.podLabels: version is not a key of checkout's spec.selector.matchLabels {app=checkout}"),
        "{both}"
    );
    assert_eq!(both.lines().count(), 2, "{both}");

    // A Deployment of another namespace is not the rollout's: not checked against it.
    let elsewhere = validate_yaml("all", &input(&provider, "other", "{app: checkout}"));
    assert!(elsewhere.is_ok(), "{elsewhere:?}");
}

#[test]
fn the_generated_stables_settings_are_checked_naming_the_field() {
    let with = |canary: &str, stable: &str| {
        let yaml = format!(
            "apiVersion: stickycanary.dev/v1alpha1\nkind: CanaryRollout\nmetadata: {{name: checkout, namespace: shop}}\nspec:\n  wasmPlugin: {{name: p}}\n  canary: {canary}\n  stable: {stable}\n"
        );
        let rollout: stickycanary::crd::CanaryRollout = serde_yaml::from_str(&yaml).unwrap();
        stickycanary::validate::validate_rollout(&rollout)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(with("{deployment: checkout}", "{}"), Vec::<String>::new());
    let both = with(
        "{deployment: checkout, scaledObject: a, horizontalPodAutoscaler: b}",
        "{}",
    );
    assert!(
        both[0].starts_with("spec.canary.horizontalPodAutoscaler: set either"),
        "{both:?}"
    );
    let queries = with("{deployment: checkout}", "{scalerQueries: {rate: q}}");
    assert!(
        queries[0].starts_with("spec.stable.scalerQueries: "),
        "{queries:?}"
    );
    let long = "a".repeat(60);
    let name = with(&format!("{{deployment: {long}}}"), "{}");
    assert!(
        name[0].starts_with("spec.canary.deployment: the generated stable's name"),
        "{name:?}"
    );
    let empty = with("{deployment: checkout}", "{podLabels: {}}");
    assert!(
        empty[0].starts_with("spec.stable.podLabels: must set"),
        "{empty:?}"
    );
}

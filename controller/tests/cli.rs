//! The `stickycanary` command as a user runs it: output, exit status, and one-line errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn stickycanary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args(args)
        .env_remove("RUST_LOG")
        // No cluster: commands that need one must fail cleanly, never reach anything.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Failed, with exactly one line on stderr and no panic or backtrace.
fn assert_one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got {:?}: {}",
        o.status,
        stdout(o)
    );
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

fn golden() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../filter/testdata/golden.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn assign_agrees_with_the_filters_golden_vectors() {
    let vectors = golden();
    assert!(vectors.len() >= 5, "golden file too small to mean anything");
    // Every vector at one weight, plus every weight for the first few (process spawns cost).
    for (i, vector) in vectors.iter().enumerate() {
        let salt = vector["salt"].as_str().unwrap();
        let user = vector["user"].as_str().unwrap();
        let versions = vector["versions"].as_object().unwrap();
        let weights: Vec<&String> = if i < 4 {
            versions.keys().collect()
        } else {
            versions.keys().filter(|w| w.as_str() == "50").collect()
        };
        for weight in weights {
            let out = stickycanary(&[
                "assign", "--salt", salt, "--user", user, "--weight", weight, "--json",
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            let got: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
            assert_eq!(got["bucket"], vector["bucket"], "bucket of {salt}:{user}");
            assert_eq!(
                got["version"], versions[weight],
                "version of {salt}:{user} at {weight}%"
            );
        }
    }
}

#[test]
fn assign_prints_bucket_threshold_and_version() {
    let vector = &golden()[0];
    let salt = vector["salt"].as_str().unwrap();
    let user = vector["user"].as_str().unwrap();
    let out = stickycanary(&["assign", "--salt", salt, "--weight", "100", "--user", user]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("bucket={} threshold=10000 version=canary", vector["bucket"])
    );
}

#[test]
fn assign_rejects_a_weight_out_of_range() {
    let err = assert_one_line_error(&stickycanary(&[
        "assign", "--salt", "s", "--weight", "101", "--user", "u",
    ]));
    assert!(err.contains("--weight"), "{err}");
    assert_one_line_error(&stickycanary(&[
        "assign", "--salt", "s", "--weight", "NaN", "--user", "u",
    ]));
}

#[test]
fn crd_prints_the_generated_resource_definition() {
    let out = stickycanary(&["crd"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text, stickycanary::crd::crd_yaml());
    assert!(text.contains("canaryrollouts.stickycanary.dev"));
}

#[test]
fn crd_alertprovider_prints_the_alert_provider_definition() {
    let out = stickycanary(&["crd", "alertprovider"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), stickycanary::crd::alert_provider_crd_yaml());
}

#[test]
fn validate_follows_references_between_the_files_it_is_given() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/examples");
    let provider = format!("{examples}/alertprovider-slack.yaml");
    let rollout = format!("{examples}/canaryrollout-checkout.yaml");
    let out = stickycanary(&["validate", &provider, &rollout]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains("AlertProvider shop/slack: valid AlertProvider"),
        "{text}"
    );
    assert!(!text.contains("not in this file"), "{text}");
    // The rollout alone: its provider cannot be followed, and validate says so.
    let alone = stdout(&stickycanary(&["validate", &rollout]));
    assert!(
        alone.contains("valid CanaryRollout checkout (4 stages, rollout key checkout, 1 alert)"),
        "{alone}"
    );
}

fn scratch_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

#[test]
fn validate_accepts_a_good_plugin_config_and_names_the_bad_field() {
    let (_d, good) = scratch_file(
        "config.json",
        r#"{"rollouts": {"checkout": {"hosts": ["checkout"], "weight": 10}}}"#,
    );
    let out = stickycanary(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("valid pluginConfig"),
        "{}",
        stdout(&out)
    );

    let (_d, bad) = scratch_file(
        "config.json",
        r#"{"rollouts": {"checkout": {"hosts": ["checkout"], "weight": 150}}}"#,
    );
    let err = assert_one_line_error(&stickycanary(&["validate", bad.to_str().unwrap()]));
    assert!(err.contains("rollouts.checkout.weight"), "{err}");
}

const GOOD_ROLLOUT: &str = "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  wasmPlugin: {name: stickycanary}
  canary: {deployment: checkout-canary}
  stages: [{weight: 10, duration: 1m}, {weight: 100}]
";

#[test]
fn validate_accepts_a_good_rollout_and_names_the_bad_field() {
    let (_d, good) = scratch_file("rollout.yaml", GOOD_ROLLOUT);
    let out = stickycanary(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("valid CanaryRollout checkout"),
        "{}",
        stdout(&out)
    );

    let (_d, bad) = scratch_file(
        "rollout.yaml",
        &GOOD_ROLLOUT.replace("weight: 10,", "weight: -5,"),
    );
    let out = stickycanary(&["validate", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("spec.stages[0].weight"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn validate_of_a_missing_file_is_one_line() {
    let err = assert_one_line_error(&stickycanary(&["validate", "/nonexistent/rollout.yaml"]));
    assert!(err.contains("/nonexistent/rollout.yaml"), "{err}");
}

#[test]
fn status_of_a_corrupt_status_file_is_one_line() {
    let (_d, path) = scratch_file(
        "checkout.status.json",
        "{\"rollout\": \"checkout\", \"status\": {",
    );
    let err = assert_one_line_error(&stickycanary(&[
        "status",
        "--status-file",
        path.to_str().unwrap(),
    ]));
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn cluster_commands_without_a_cluster_fail_in_one_line() {
    assert_one_line_error(&stickycanary(&["status", "checkout", "-n", "shop"]));
    assert_one_line_error(&stickycanary(&["abort", "checkout"]));
    let err = assert_one_line_error(&stickycanary(&[
        "controller",
        "--metrics-addr",
        "127.0.0.1:0",
    ]));
    assert!(err.contains("cluster"), "{err}");
}

#[test]
fn unknown_arguments_fail_without_a_panic() {
    let out = stickycanary(&["assign", "--salt"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"));
    let out = stickycanary(&["frobnicate"]);
    assert!(!out.status.success());
}

#[test]
fn help_shows_examples() {
    let out = stickycanary(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for sub in [
        "controller",
        "local",
        "status",
        "promote",
        "abort",
        "pause",
        "resume",
        "crd",
        "assign",
        "validate",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}");
    }
    assert!(text.contains("Examples:"));
}

#[test]
fn validate_of_malformed_json_reports_the_json_error_not_a_yaml_one() {
    // A trailing comma: YAML would call this a flow-mapping problem.
    let (_d, bad) = scratch_file(
        "config.json",
        "  \n{\"rollouts\": {\"checkout\": {\"hosts\": [\"checkout\"], \"weight\": 10},}}",
    );
    let err = assert_one_line_error(&stickycanary(&["validate", bad.to_str().unwrap()]));
    assert!(err.contains("config.json: (root): malformed JSON"), "{err}");
    assert!(err.contains("line 2"), "the JSON parser's position: {err}");
    assert!(!err.to_lowercase().contains("yaml"), "{err}");

    // A CanaryRollout written as JSON still validates as one.
    let json_rollout: serde_json::Value = serde_yaml::from_str(GOOD_ROLLOUT).unwrap();
    let (_d, good) = scratch_file("rollout.json", &json_rollout.to_string());
    let out = stickycanary(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid CanaryRollout checkout"));
}

#[test]
fn validate_and_local_name_an_unknown_field_in_a_rollout() {
    let typo = GOOD_ROLLOUT.to_string() + "  analysis:\n    errorRates: {maxPercent: 1}\n";
    let (dir, bad) = scratch_file("rollout.yaml", &typo);
    let err = assert_one_line_error(&stickycanary(&["validate", bad.to_str().unwrap()]));
    assert!(
        err.contains("rollout.yaml: spec.analysis.errorRates: unknown field (expected one of: "),
        "{err}"
    );
    assert!(
        err.contains("errorRate,"),
        "the right name is suggested: {err}"
    );

    // local refuses it before touching anything.
    let ecds = dir.path().join("envoy").join("filter.ecds.json");
    let err = assert_one_line_error(&stickycanary(&[
        "local",
        "--rollout",
        bad.to_str().unwrap(),
        "--envoy-ecds",
        ecds.to_str().unwrap(),
        "--once",
    ]));
    assert!(
        err.contains("spec.analysis.errorRates: unknown field"),
        "{err}"
    );
    assert!(!dir.path().join("checkout.status.json").exists());
}

#[test]
fn simulate_prints_the_same_tables_for_the_same_seed() {
    let args = [
        "simulate",
        "--quick",
        "--healthy-runs",
        "8",
        "--regression-runs",
        "4",
        "--seed",
        "11",
        "--only",
        "shared",
    ];
    let first = stickycanary(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let tables = stdout(&first);
    assert!(tables.contains("| "), "no Markdown table: {tables}");
    assert!(
        stderr(&first).contains("simulated "),
        "no progress line: {}",
        stderr(&first)
    );
    let again = stickycanary(&args);
    assert_eq!(stdout(&again), tables, "same seed, different figures");
}

/// The table rows of `stickycanary simulate` output whose scenario name contains `name`.
fn rows_of(tables: &str, name: &str) -> Vec<String> {
    tables
        .lines()
        .filter(|line| line.starts_with("| ") && line.contains(name))
        .map(str::to_string)
        .collect()
}

#[test]
fn simulate_only_keeps_each_scenarios_figures_and_the_user_model_changes_them() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--healthy-runs",
            "6",
            "--regression-runs",
            "6",
            "--seed",
            "11",
        ];
        args.extend_from_slice(extra);
        let out = stickycanary(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let row = "3% of users broken (100% errors)";
    let narrow = run(&["--only", row]);
    let wide = run(&["--only", "users broken"]);
    assert_eq!(rows_of(&narrow, row).len(), 4, "{narrow}");
    assert_eq!(rows_of(&narrow, row), rows_of(&wide, row));
    assert!(rows_of(&wide, "2% of users broken").len() == 4, "{wide}");
    assert!(
        !narrow.contains("| healthy"),
        "a table with no rows: {narrow}"
    );
    assert!(
        narrow.contains("2000 ordinary users, activity σ 1.5"),
        "{narrow}"
    );

    let few = run(&["--only", row, "--users", "50", "--activity-sigma", "2.5"]);
    assert!(few.contains("50 ordinary users, activity σ 2.5"), "{few}");
    assert_ne!(rows_of(&few, row), rows_of(&narrow, row), "{few}");
}

#[test]
fn simulate_rejects_a_filter_that_names_no_scenario_and_a_bad_sigma() {
    let none = stickycanary(&["simulate", "--only", "no such scenario"]);
    assert!(!none.status.success());
    let err = stderr(&none);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no scenario's name contains it"), "{err}");
    assert!(stdout(&none).is_empty());

    let sigma = stickycanary(&["simulate", "--activity-sigma", "9"]);
    assert!(!sigma.status.success());
    assert!(
        stderr(&sigma).contains("must be between 0 and 4"),
        "{}",
        stderr(&sigma)
    );
    let users = stickycanary(&["simulate", "--users", "0"]);
    assert!(!users.status.success());
}

#[test]
fn assign_from_a_rollout_without_a_cluster_is_one_line() {
    let err = assert_one_line_error(&stickycanary(&[
        "assign",
        "--rollout",
        "checkout",
        "-n",
        "shop",
        "--user",
        "u42",
    ]));
    assert!(err.contains("no cluster configuration"), "{err}");
    // --rollout and --status-file are two sources of one status: not both.
    let out = stickycanary(&[
        "assign",
        "--rollout",
        "checkout",
        "--status-file",
        "s.json",
        "--user",
        "u42",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

/// The `controller` command without a cluster, logging at trace: kube's config inference
/// logs a line before the one-line error. `terminal`: run it under a pseudo-terminal
/// (util-linux `script`), as a person at a shell would; otherwise stderr is a pipe.
fn controller_log_output(terminal: bool, no_color: Option<&str>) -> String {
    let binary = env!("CARGO_BIN_EXE_stickycanary");
    let mut command = if terminal {
        let mut script = Command::new("script");
        script.args(["-qec", &format!("'{binary}' controller"), "/dev/null"]);
        script
    } else {
        let mut direct = Command::new(binary);
        direct.arg("controller");
        direct
    };
    command
        .env("RUST_LOG", "trace")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NO_COLOR")
        .env_remove("STICKYCANARY_LOG_FORMAT");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    // Under `script` the program's stderr arrives on script's stdout.
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("TRACE"), "no log line was written: {text}");
    text
}

#[test]
fn piped_logs_carry_no_colour_codes() {
    let text = controller_log_output(false, None);
    assert!(!text.contains("\x1b["), "colour codes on a pipe: {text:?}");
}

#[test]
fn terminal_logs_are_coloured_unless_no_color_is_set() {
    let coloured = controller_log_output(true, None);
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colours: {coloured:?}"
    );
    let plain = controller_log_output(true, Some("1"));
    assert!(
        !plain.contains("\x1b["),
        "NO_COLOR=1 on a terminal: {plain:?}"
    );
    // An empty NO_COLOR counts as unset (no-color.org).
    let empty = controller_log_output(true, Some(""));
    assert!(
        empty.contains("\x1b["),
        "NO_COLOR= on a terminal: {empty:?}"
    );
}

#[test]
fn validate_takes_basic_auth_and_headers_and_refuses_two_auths_or_a_bad_header() {
    let with = |prometheus: &str| {
        GOOD_ROLLOUT.to_string()
            + "  prometheus:\n    address: https://prometheus-prod-10.grafana.net/api/prom\n"
            + prometheus
    };
    // Grafana Cloud / Mimir: basic auth and a tenant header, both from Secrets.
    let (_d, good) = scratch_file(
        "rollout.yaml",
        &with(
            "    basicAuth:\n      username: {name: grafana-cloud, key: user}\n      \
             password: {name: grafana-cloud, key: token}\n    headers:\n    \
             - {name: X-Scope-OrgID, valueFrom: {secretKeyRef: {name: tenant, key: id}}}\n    \
             - {name: X-Team, value: checkout}\n",
        ),
    );
    let out = stickycanary(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let refused = [
        (
            "    bearerTokenSecretRef: {name: t, key: token}\n    \
             basicAuth: {username: {name: b, key: u}, password: {name: b, key: p}}\n",
            "rollout.yaml: spec.prometheus.basicAuth: set either basicAuth or bearerTokenSecretRef, not both",
        ),
        (
            "    headers: [{name: 'X-Scope OrgID', value: t1}]\n",
            "rollout.yaml: spec.prometheus.headers[0].name: \"X-Scope OrgID\" is not a header name",
        ),
        (
            "    bearerTokenSecretRef: {name: t, key: token}\n    \
             headers: [{name: X-Scope-OrgID, value: t1}, {name: Authorization, value: Bearer s3cr3t}]\n",
            "rollout.yaml: spec.prometheus.headers[1].name: Authorization is already sent by spec.prometheus.bearerTokenSecretRef",
        ),
    ];
    for (prometheus, expected) in refused {
        let (_d, file) = scratch_file("rollout.yaml", &with(prometheus));
        let err = assert_one_line_error(&stickycanary(&["validate", file.to_str().unwrap()]));
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

#[test]
fn validate_warns_about_prometheus_without_verification_and_names_an_unknown_field() {
    let with = |prometheus: &str| GOOD_ROLLOUT.to_string() + "  prometheus:\n" + prometheus;
    let (_d, insecure) = scratch_file(
        "rollout.yaml",
        &with("    address: https://prom.example:9090\n    insecureSkipVerify: true\n"),
    );
    let out = stickycanary(&["validate", insecure.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("valid CanaryRollout checkout"), "{text}");
    assert!(
        text.contains("rollout.yaml: warning: spec.prometheus.insecureSkipVerify: Prometheus's TLS certificate is not verified"),
        "{text}"
    );

    // The new options validate: a token Secret, a CA from a ConfigMap, a timeout.
    let (_d, options) = scratch_file(
        "rollout.yaml",
        &with(
            "    address: https://prom.example:9090\n    bearerTokenSecretRef: {name: prom, key: token}\n    \
             ca: {configMapKeyRef: {name: corp-ca, key: ca.crt}}\n    timeout: 5s\n",
        ),
    );
    let out = stickycanary(&["validate", options.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("warning"), "{}", stdout(&out));

    let (_d, typo) = scratch_file(
        "rollout.yaml",
        &with("    address: https://prom.example:9090\n    bearerToken: s3cr3t\n"),
    );
    let err = assert_one_line_error(&stickycanary(&["validate", typo.to_str().unwrap()]));
    assert!(
        err.contains("rollout.yaml: spec.prometheus.bearerToken: unknown field (expected one of: "),
        "{err}"
    );
    assert!(err.contains("bearerTokenSecretRef"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");

    // A CA with verification off is a contradiction, named by field.
    let (_d, both) = scratch_file(
        "rollout.yaml",
        &with(
            "    address: https://prom.example:9090\n    insecureSkipVerify: true\n    \
             ca: {secretKeyRef: {name: ca, key: ca.crt}}\n",
        ),
    );
    let err = assert_one_line_error(&stickycanary(&["validate", both.to_str().unwrap()]));
    assert!(
        err.contains("spec.prometheus.insecureSkipVerify: verification is off"),
        "{err}"
    );
}

/// A Deployment named `name` selecting on `selector` (a YAML flow map).
fn deployment_yaml(name: &str, selector: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {selector}}}
  template:
    metadata: {{labels: {selector}}}
    spec: {{containers: [{{name: app, image: shop/checkout:v1}}]}}
"
    )
}

#[test]
fn validate_refuses_a_workload_in_the_same_file_the_stable_pod_labels_cannot_tell_apart() {
    let rollout = GOOD_ROLLOUT.replace(
        "  canary: {deployment: checkout-canary}\n",
        "  canary: {deployment: checkout-canary}\n  stable: {}\n",
    );
    let file = |workload: &str| {
        format!(
            "{rollout}---\n{}",
            deployment_yaml("checkout-canary", workload)
        )
    };
    let (_d, good) = scratch_file("all.yaml", &file("{app: checkout, version: canary}"));
    let out = stickycanary(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid CanaryRollout checkout"));

    let (_d, keys) = scratch_file("all.yaml", &file("{app: checkout}"));
    let err = assert_one_line_error(&stickycanary(&["validate", keys.to_str().unwrap()]));
    assert!(
        err.contains(": spec.stable.podLabels: version is not a key of checkout-canary's"),
        "{err}"
    );

    let (_d, same) = scratch_file("all.yaml", &file("{app: checkout, version: stable}"));
    let err = assert_one_line_error(&stickycanary(&["validate", same.to_str().unwrap()]));
    assert!(err.contains(": spec.stable.podLabels: "), "{err}");
    assert!(err.contains("cannot tell the pods apart"), "{err}");
}

#[test]
fn validate_refuses_a_hand_written_stable_deployment_with_the_way_to_migrate() {
    let rollout = GOOD_ROLLOUT.replace(
        "  canary: {deployment: checkout-canary}\n",
        "  canary: {deployment: checkout-canary}\n  stable: {deployment: checkout-stable}\n",
    );
    let (_r, rollout) = scratch_file("rollout.yaml", &rollout);
    let err = assert_one_line_error(&stickycanary(&["validate", rollout.to_str().unwrap()]));
    assert!(err.contains("spec.stable.deployment: the stable Deployment is generated now (checkout-canary-primary)"), "{err}");
    assert!(
        err.contains("Migrating from a hand-written stable Deployment"),
        "{err}"
    );
}

#[test]
fn validate_checks_a_rollouts_workload_given_in_another_file() {
    let rollout = GOOD_ROLLOUT.replace(
        "  canary: {deployment: checkout-canary}\n",
        "  canary: {deployment: checkout-canary}\n  stable: {podLabels: {track: stable}}\n",
    );
    let (_r, rollout) = scratch_file("rollout.yaml", &rollout);
    let (_d, deployments) = scratch_file(
        "deployments.yaml",
        &deployment_yaml("checkout-canary", "{app: checkout, track: stable}"),
    );
    let err = assert_one_line_error(&stickycanary(&[
        "validate",
        rollout.to_str().unwrap(),
        deployments.to_str().unwrap(),
    ]));
    assert!(
        err.contains("CanaryRollout default/checkout: spec.stable.podLabels: "),
        "{err}"
    );
    assert!(err.contains("cannot tell the pods apart"), "{err}");
}

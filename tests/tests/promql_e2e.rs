//! Every PromQL expression shipped under `manifests/` (Grafana dashboard, recording and
//! alerting rules, KEDA trigger) runs against a real Prometheus that scrapes a real Envoy
//! carrying the filter, and the controller's own `/metrics`, after a real rollout that
//! rolled back. Each must parse and return series.

use std::time::{Duration, Instant};

use stickycanary_e2e::backend_server::Behaviour;
use stickycanary_e2e::cadvisor;
use stickycanary_e2e::load;
use stickycanary_e2e::paths;
use stickycanary_e2e::promql_exprs::{shipped_exprs, ExprKind, PromqlExpr};
use stickycanary_e2e::stack::{RolloutPlan, Stack, StackOptions};

/// An alert's condition without its threshold: the series the alert compares.
fn alert_operand(expr: &str) -> &str {
    expr.rsplit_once(" > ").map(|(lhs, _)| lhs).unwrap_or(expr)
}

fn returns_series(stack: &Stack, expr: &str) -> Result<usize, String> {
    stack
        .prometheus
        .query(expr)
        .map(|series| series.len())
        .map_err(|e| e.to_string())
}

#[test]
fn every_shipped_promql_expression_parses_and_returns_series_from_the_real_stack() {
    let root = paths::workspace_root();
    let exprs: Vec<PromqlExpr> = shipped_exprs(&root).expect("shipped expressions");
    assert!(
        exprs.len() >= 10,
        "too few expressions found: {}",
        exprs.len()
    );

    // The shipped rules, evaluated every second instead of every 30s so the test is short.
    let scratch = tempfile::tempdir().expect("temp dir");
    let rules = std::fs::read_to_string(root.join("manifests/prometheus/rules.yaml"))
        .expect("rules.yaml")
        .replace("interval: 30s", "interval: 1s");
    let rules_path = scratch.path().join("rules.yaml");
    std::fs::write(&rules_path, rules).expect("write rules");

    // The kubelet's cAdvisor series for the resource panels and the throttling alert: the
    // sample shop's stable and canary pods (canary throttled in 40% of its periods).
    let kubelet = cadvisor::Exporter::start(cadvisor::sample_shop()).expect("cAdvisor exporter");
    let opts = StackOptions {
        plan: RolloutPlan {
            stages: vec![(25.0, Some("600s")), (100.0, None)],
            error_for: "3s",
            ..RolloutPlan::default()
        },
        canary: Behaviour {
            error_ratio: 0.2,
            error_status: 503,
            delay_ms: 0,
        },
        controller_metrics: true,
        rule_files: vec![rules_path],
        extra_targets: vec![kubelet.scrape_target()],
        ..StackOptions::default()
    };
    let mut stack = Stack::start(&opts).expect("stack");
    let mut load_opts = stack.load_options();
    load_opts.users = 5_000;
    load_opts.rate = Some(300.0);
    load_opts.track_users = false;
    load_opts.duration = Some(Duration::from_secs(120));
    let traffic = load::start(load_opts);
    stack.start_controller().expect("controller");
    let status = stack
        .wait_status(Duration::from_secs(90), |s| s["phase"] == "RolledBack")
        .expect("the failing canary is rolled back");
    assert_eq!(status["rollbackReason"], "error-rate");

    // Every expression gets a deadline: some need a second scrape of the controller or a
    // rule evaluation after the rollback.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut failures = Vec::new();
    for e in &exprs {
        let query = match e.kind {
            ExprKind::Alert => alert_operand(&e.expr),
            _ => e.expr.as_str(),
        };
        let outcome = loop {
            match returns_series(&stack, query) {
                Ok(n) if n > 0 => break Ok(n),
                Ok(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Ok(_) => break Err("no series".to_string()),
                Err(err) => break Err(err),
            }
        };
        if let Err(why) = outcome {
            failures.push(format!("{} ({:?}): {why}\n    {query}", e.origin, e.kind));
        }
    }
    // The error-rate alert's full condition holds for this canary (20% 503s).
    let error_alert = exprs
        .iter()
        .find(|e| e.kind == ExprKind::Alert && e.expr.contains("error_ratio"))
        .expect("an error-rate alert");
    let firing = returns_series(&stack, &error_alert.expr).expect("alert expression");
    // And the throttling alert's holds for the sample shop's canary pod (40% > 25%).
    let throttling_alert = exprs
        .iter()
        .find(|e| e.kind == ExprKind::Alert && e.expr.contains("canary_cpu_throttled"))
        .expect("a CPU throttling alert");
    let throttled = returns_series(&stack, &throttling_alert.expr).expect("alert expression");
    traffic.stop();

    assert!(
        failures.is_empty(),
        "{} of {} shipped expressions failed against the real stack:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );
    assert!(
        firing > 0,
        "the error-rate alert's condition did not hold: {}",
        error_alert.expr
    );
    assert_eq!(
        throttled, 1,
        "the throttling alert's condition holds for exactly the canary pod: {}",
        throttling_alert.expr
    );
}

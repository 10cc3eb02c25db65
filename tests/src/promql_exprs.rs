//! Every PromQL expression the project ships under `manifests/`: the Grafana dashboard's
//! panel targets and annotations, the Prometheus recording and alerting rules, and the KEDA
//! trigger. The end-to-end test runs each one against a real Prometheus scraping a real
//! Envoy with the filter; `tests/tests/manifests.rs` checks the list is complete.
//!
//! Grafana variables (`$__rate_interval`, `$__range`, `$rollout`, ...) are not PromQL, so the
//! dashboard's expressions are returned with them replaced by values Prometheus accepts:
//! built-in intervals by fixed durations, dashboard variables by their "All" value.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// One shipped expression and where it comes from, e.g.
/// `dashboard.json panel "Error rate (5xx)" target A` or `rules.yaml alert StickyCanaryLatencyHigh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromqlExpr {
    pub origin: String,
    pub kind: ExprKind,
    /// Ready to send to Prometheus (Grafana variables already substituted).
    pub expr: String,
}

/// Where an expression is used, which says what it needs to return series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// A Grafana panel target or annotation query.
    Dashboard,
    /// A recording rule (reads the filter's raw series, or earlier recording rules).
    Record,
    /// An alert condition: returns series only while the condition holds, and reads the
    /// recording rules' series, so Prometheus must load rules.yaml.
    Alert,
    /// The KEDA ScaledObject's Prometheus trigger.
    Keda,
}

/// Controller metrics the expressions may read (the rest come from the filter through Envoy).
const CONTROLLER_METRICS: [&str; 5] = [
    "stickycanary_rollout_weight",
    "stickycanary_rollout_phase",
    "stickycanary_rollbacks_total",
    "stickycanary_analysis_total",
    "stickycanary_weight_patch_total",
];

impl PromqlExpr {
    /// True when the expression reads the controller's own `/metrics` (weight, phase,
    /// rollbacks, ...): it returns series only when Prometheus also scrapes a running
    /// controller, and `stickycanary_rollbacks_total` only after a rollback.
    pub fn reads_controller_metrics(&self) -> bool {
        CONTROLLER_METRICS
            .iter()
            .any(|metric| self.expr.contains(metric))
    }
}

/// Grafana's built-in variables and the fixed values used for them outside Grafana.
/// `$__rate_interval` is at least four scrape intervals in Grafana; 1m covers a 15s scrape.
const GRAFANA_BUILTINS: [(&str, &str); 4] = [
    ("__rate_interval", "1m"),
    ("__interval", "30s"),
    ("__range", "5m"),
    ("__range_s", "300"),
];

/// All expressions: dashboard, rules and KEDA trigger, read from `<root>/manifests`.
pub fn shipped_exprs(workspace_root: &Path) -> Result<Vec<PromqlExpr>> {
    let manifests = workspace_root.join("manifests");
    let dashboard_path = manifests.join("grafana/dashboard.json");
    let dashboard_text = std::fs::read_to_string(&dashboard_path)
        .ctx(|| format!("reading {}", dashboard_path.display()))?;
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text)
        .map_err(|e| Error::Other(format!("{}: {e}", dashboard_path.display())))?;

    let rules_path = manifests.join("prometheus/rules.yaml");
    let rules = read_yaml(&rules_path)?;

    let keda_path = manifests.join("keda/scaledobject.yaml");
    let keda = read_yaml(&keda_path)?;

    let mut exprs = dashboard_exprs(&dashboard)?;
    exprs.extend(rule_exprs(&rules, "rules.yaml"));
    exprs.extend(keda_exprs(&keda, "scaledobject.yaml"));
    Ok(exprs)
}

fn read_yaml(path: &Path) -> Result<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// Expressions of every panel target (rows' nested panels included) and every annotation
/// query, with Grafana variables substituted. An expression that still holds a `$` after
/// substitution is an error naming it: it would not be valid PromQL.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Result<Vec<PromqlExpr>> {
    let variables = dashboard_variables(dashboard);
    let mut raw = Vec::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let ref_id = target["refId"].as_str().unwrap_or("?");
                raw.push((
                    format!("dashboard.json panel {title:?} target {ref_id}"),
                    expr,
                ));
            }
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            let name = annotation["name"].as_str().unwrap_or("<unnamed>");
            raw.push((format!("dashboard.json annotation {name:?}"), expr));
        }
    }
    raw.into_iter()
        .map(|(origin, expr)| {
            let expr = substitute_grafana_variables(expr, &variables);
            if expr.contains('$') {
                return Err(Error::Other(format!(
                    "{origin}: unknown Grafana variable left in {expr:?}"
                )));
            }
            Ok(PromqlExpr {
                origin,
                kind: ExprKind::Dashboard,
                expr,
            })
        })
        .collect()
}

/// Panels at the top level and inside collapsed rows.
pub fn all_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    panels
}

/// The dashboard's own variables, each mapped to its "All" value (`.+` when none is set),
/// which selects every rollout, plus Grafana's built-ins.
fn dashboard_variables(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut variables: Vec<(String, String)> = GRAFANA_BUILTINS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        if variable["type"].as_str() == Some("datasource") {
            continue;
        }
        let value = variable["allValue"].as_str().unwrap_or(".+");
        variables.push((name.to_string(), value.to_string()));
    }
    // Longest name first, so `$__range_s` is not read as `$__range` followed by `_s`.
    variables.sort_by_key(|variable| std::cmp::Reverse(variable.0.len()));
    variables
}

/// Replaces `${name}` and `$name` for each given variable.
pub fn substitute_grafana_variables(expr: &str, variables: &[(String, String)]) -> String {
    let mut out = expr.to_string();
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// `expr` of every rule in a Prometheus rule file (`groups[].rules[]`) or a PrometheusRule
/// (`spec.groups[].rules[]`).
pub fn rule_exprs(rules: &serde_yaml::Value, file: &str) -> Vec<PromqlExpr> {
    let groups = rules
        .get("groups")
        .or_else(|| rules.get("spec").and_then(|spec| spec.get("groups")));
    let mut exprs = Vec::new();
    for group in groups.and_then(|g| g.as_sequence()).into_iter().flatten() {
        for rule in group
            .get("rules")
            .and_then(|r| r.as_sequence())
            .into_iter()
            .flatten()
        {
            let Some(expr) = rule.get("expr").and_then(|e| e.as_str()) else {
                continue;
            };
            let (kind, label, name) = match (rule.get("record"), rule.get("alert")) {
                (Some(record), _) => (ExprKind::Record, "record", record.as_str()),
                (_, Some(alert)) => (ExprKind::Alert, "alert", alert.as_str()),
                _ => continue,
            };
            exprs.push(PromqlExpr {
                origin: format!("{file} {label} {}", name.unwrap_or("?")),
                kind,
                expr: expr.trim().to_string(),
            });
        }
    }
    exprs
}

/// `query` of every Prometheus trigger in a KEDA ScaledObject.
pub fn keda_exprs(scaled_object: &serde_yaml::Value, file: &str) -> Vec<PromqlExpr> {
    let triggers = scaled_object
        .get("spec")
        .and_then(|spec| spec.get("triggers"))
        .and_then(|t| t.as_sequence());
    triggers
        .into_iter()
        .flatten()
        .filter(|trigger| trigger.get("type").and_then(|t| t.as_str()) == Some("prometheus"))
        .filter_map(|trigger| {
            let query = trigger.get("metadata")?.get("query")?.as_str()?;
            Some(PromqlExpr {
                origin: format!("{file} prometheus trigger"),
                kind: ExprKind::Keda,
                expr: query.trim().to_string(),
            })
        })
        .collect()
}

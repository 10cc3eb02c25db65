//! The one-line-per-interval progress view of local mode (and `status`).

use std::time::Duration;

use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, CheckResult, Outcome};
use crate::observation::{MetricsObservation, VersionWindow};

fn version_part(name: &str, window: &VersionWindow, seconds: f64) -> String {
    let rps = window.requests / seconds.max(1.0);
    let errors = window
        .error_rate_percent()
        .map(|e| format!("{e:.2}%"))
        .unwrap_or_else(|| "-".to_string());
    let p99 = window
        .p99_ms
        .map(|p| format!("{p:.0}ms"))
        .unwrap_or_else(|| "-".to_string());
    format!("{name} {rps:.1} req/s err {errors} p99 {p99}")
}

/// `canary 41.2 req/s err 0.00% p99 12ms | stable ...` or why there are no numbers.
pub fn traffic_part(metrics: &MetricsObservation, window: Duration) -> String {
    match metrics {
        MetricsObservation::Unavailable { reason } => format!("metrics unavailable: {reason}"),
        MetricsObservation::Window { canary, stable } => {
            let seconds = window.as_secs_f64();
            format!(
                "{} | {}",
                version_part("canary", canary, seconds),
                version_part("stable", stable, seconds)
            )
        }
    }
}

fn check_part(check: &CheckResult) -> String {
    if check.message.is_empty() {
        match (check.value, check.threshold) {
            (Some(v), Some(t)) => format!("{} {v:.2} (limit {t})", check.name),
            _ => check.name.clone(),
        }
    } else {
        format!("{}: {}", check.name, check.message)
    }
}

/// The decision and its reason: this tick's events win, else the checks' verdicts.
pub fn decision_part(
    status: &CanaryRolloutStatus,
    events: &[(String, String)],
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    if let Some((reason, message)) = events.first() {
        return format!("{reason}: {message}");
    }
    if let Some(since) = &status.prometheus_unavailable_since {
        let seconds = now.duration_since(since.0).as_secs().max(0);
        return format!("hold: metrics unavailable for {seconds}s");
    }
    if let Some(wait) = &status.gate {
        let approve = if wait.manual {
            format!(" (stickycanary approve --gate {} opens it)", wait.gate)
        } else {
            String::new()
        };
        return format!("hold: {}{approve}", wait.describe());
    }
    if status.phase == crate::crd::Phase::Paused {
        return "paused: holding the weight, stage timer frozen".to_string();
    }
    if let Some(reason) = &status.rollback_reason {
        if status.phase.is_terminal() {
            return format!("rolled back: {reason}");
        }
    }
    let checks = status
        .last_analysis
        .as_ref()
        .map(|a| a.checks.as_slice())
        .unwrap_or_default();
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict == Outcome::Fail)
        .map(check_part)
        .collect();
    if !failing.is_empty() {
        return format!("breaching: {}", failing.join("; "));
    }
    let inconclusive: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict == Outcome::Inconclusive)
        .map(check_part)
        .collect();
    if !inconclusive.is_empty() {
        return format!("hold (inconclusive): {}", inconclusive.join("; "));
    }
    if checks.is_empty() {
        "hold".to_string()
    } else {
        "hold: checks pass".to_string()
    }
}

/// `Progressing stage 2/4 weight 25%` plus the stage clock when there is one.
pub fn stage_part(
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    let stages = spec.stages.len();
    let revision = status
        .canary_revision
        .as_deref()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let mut line = format!(
        "{}{revision} stage {}/{} weight {}%",
        status.phase,
        (status.stage_index as usize + 1).min(stages.max(1)),
        stages,
        status.weight
    );
    let duration = spec
        .stages
        .get(status.stage_index as usize)
        .and_then(|s| s.duration);
    if let (Some(started), Some(duration), false) = (
        &status.stage_started_at,
        duration,
        status.phase.is_terminal(),
    ) {
        let reference = status.paused_at.as_ref().map(|p| p.0).unwrap_or(now);
        let elapsed = reference.duration_since(started.0).as_secs().max(0);
        line.push_str(&format!(" ({elapsed}s/{}s)", duration.as_std().as_secs()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_shows_rates_error_percent_and_p99_per_version() {
        let obs = MetricsObservation::Window {
            canary: VersionWindow {
                requests: 100.0,
                errors: 5.0,
                p99_ms: Some(480.4),
                latency_buckets: vec![],
                shards: vec![],
            },
            stable: VersionWindow::default(),
        };
        let text = traffic_part(&obs, Duration::from_secs(10));
        assert_eq!(
            text,
            "canary 10.0 req/s err 5.00% p99 480ms | stable 0.0 req/s err - p99 -"
        );
    }

    #[test]
    fn an_event_of_this_tick_is_the_decision() {
        let status = CanaryRolloutStatus::default();
        let events = vec![("StageAdvanced".to_string(), "stage 2 at 25%".to_string())];
        let now = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(
            decision_part(&status, &events, now),
            "StageAdvanced: stage 2 at 25%"
        );
        assert_eq!(decision_part(&status, &[], now), "hold");
    }
}

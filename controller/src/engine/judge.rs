//! One analysis tick: run the checks, gate thin windows, keep the breach, unavailability
//! and inconclusive timers, and advance the stage when everything passed.

use std::collections::BTreeSet;

use super::checks::{Check, CheckInput, Evaluation, Outcome};
use super::lifecycle::{enter_stage, promote, roll_back};
use super::record::Tick;
use super::{reasons, stages};
use crate::analysis::sharded;
use crate::crd::{AnalysisRecord, CanaryRolloutSpec, CheckResult, Phase, VersionSummary};
use crate::duration::Duration;
use crate::observation::{MetricsObservation, Observations, VersionWindow};

/// One evaluated check.
pub(super) struct Judged {
    pub name: String,
    pub breach_for: Duration,
    pub evaluation: Evaluation,
    /// A guard-rail breach stable shows too (with `analysis.comparative`): held as
    /// inconclusive, and its breach timer starts over.
    pub shared_with_stable: bool,
}

pub(super) fn analyse(
    spec: &CanaryRolloutSpec,
    observations: &Observations,
    checks: &[Box<dyn Check>],
    tick: &mut Tick,
) {
    let analysis = &spec.analysis;
    let input = CheckInput {
        observations,
        analysis,
        now: tick.now,
        stage_started_at: tick.status.stage_started_at.as_ref().map(|time| time.0),
    };
    // With the comparative test judging canary against stable, an absolute guard rail that
    // stable breaches too is the service failing (a dependency, a traffic spike), not the
    // canary: hold instead of rolling back. Without it, the seed's plain rules apply as-is.
    let excuse_shared = analysis
        .comparative
        .as_ref()
        .is_some_and(|check| check.enabled);
    // The stateful comparative check keeps its evidence in the status; it runs first so
    // that a guard-rail breach can be read against it.
    let comparative = super::comparative::judge(spec, observations, tick);
    // A check whose `fromStage` is still ahead is not judged at all.
    let stage_index = tick.status.stage_index;
    let explained_by_users = |name: &str| explained_by_users(tick, name);
    let mut judged: Vec<Judged> = checks
        .iter()
        .filter(|check| super::stage_gate::applies(analysis, &check.name(), stage_index))
        .map(|check| {
            let mut evaluation = check.evaluate(&input);
            let shared = (excuse_shared && evaluation.outcome == Outcome::Fail)
                .then(|| check.stable_breach(&input))
                .flatten();
            let explained = (excuse_shared && evaluation.outcome == Outcome::Fail && shared.is_none())
                .then(|| explained_by_users(&check.name()))
                .flatten();
            if let Some(stable) = &shared {
                evaluation.outcome = Outcome::Inconclusive;
                evaluation.message = format!(
                    "{}, and {stable} too: the service is failing, not the canary; holding",
                    evaluation.message
                );
            } else if let Some(comparison) = &explained {
                evaluation.outcome = Outcome::Inconclusive;
                evaluation.message = format!(
                    "{}, but {comparison}: the excess is which users canary holds, not its code; holding",
                    evaluation.message
                );
            }
            Judged {
                name: check.name(),
                breach_for: check.breach_for(),
                evaluation,
                shared_with_stable: shared.is_some() || explained.is_some(),
            }
        })
        .collect();
    judged.extend(comparative);

    let thin_window = match &observations.metrics {
        MetricsObservation::Window { canary, .. }
            if canary.requests < analysis.min_requests as f64 =>
        {
            Some(format!(
                "thin window: {} canary requests < minRequests {}",
                canary.requests, analysis.min_requests
            ))
        }
        _ => None,
    };
    if let Some(thin) = &thin_window {
        for check in &mut judged {
            if check.evaluation.outcome != Outcome::Unavailable {
                check.evaluation.outcome = Outcome::Inconclusive;
                check.evaluation.message = format!("{thin} ({})", check.evaluation.message);
            }
        }
    }
    if let MetricsObservation::Window { canary, stable } = &observations.metrics {
        tick.status.last_analysis = Some(AnalysisRecord {
            at: tick.now_time(),
            canary: summary(canary),
            stable: summary(stable),
            checks: judged.iter().map(check_result).collect(),
        });
    }

    if let Some((reason, detail)) = track_breaches(&judged, tick) {
        roll_back(tick, reason, detail);
        return;
    }
    let unavailable = match &observations.metrics {
        MetricsObservation::Unavailable { reason } => Some(reason.clone()),
        MetricsObservation::Window { .. } => judged
            .iter()
            .find(|check| check.evaluation.outcome == Outcome::Unavailable)
            .map(|check| format!("{}: {}", check.name, check.evaluation.message)),
    };
    if let Some(reason) = unavailable {
        if hold_while_unavailable(spec, tick, reason) {
            return;
        }
    } else {
        tick.status.prometheus_unavailable_since = None;
        track_inconclusive(spec, &judged, thin_window, tick);
    }
    advance_if_passed(spec, &judged, tick);
}

/// Above this stable dispersion the shard comparison is too weak (its evidence is divided by
/// `φ`) to vouch for canary once its top shard is left out: with five error-prone users on
/// stable `φ` reached 50, and holding the guard rail on that comparison's word promoted a
/// 1% -> 5% regression in 0.3% of runs (0.1% without the hold).
const MAX_DISPERSION_TO_VOUCH: f64 = 2.0;

/// With shard series, a guard-rail breach (`error-rate`, `latency`) whose own comparison with
/// stable by user shard leans towards "no worse" (e-value below 1), whose canary excess lies
/// within the six shards most in excess ([`sharded::excess_beyond_top`]), or whose comparison
/// leans "no worse" once the top shard (one user) is left out while stable's dispersion is
/// at most [`MAX_DISPERSION_TO_VOUCH`], is not the canary's code: under sticky assignment a
/// canary that happens to hold more of the error-prone (or slow) users than its share
/// crosses an absolute limit that stable, holding the rest of them, stays under (issue 22: 20
/// users erring 30% of the time rolled back 3% of healthy canaries; one error-prone user at
/// 5 req/s 1.8%; 40 users at 0.1 req/s erring 30% of the time 1.1%, half of them by this
/// guard rail). `None` when the comparison cannot tell or leans against canary.
fn explained_by_users(tick: &Tick, name: &str) -> Option<String> {
    let state = tick.status.comparative.as_ref()?;
    let test = match name {
        "error-rate" => &state.errors,
        "latency" => &state.slow_requests,
        _ => return None,
    };
    let shards = test.shards.as_ref()?;
    if test.rejected {
        return None;
    }
    if test.log_e_value < 0.0 {
        return Some(format!(
            "canary is no worse than stable by user shard (e-value {:.2})",
            test.log_e_value.exp()
        ));
    }
    let beyond_top = sharded::excess_beyond_top(
        &test.segment_shards,
        &test.stable_outlying(),
        sharded::MAX_OUTLYING_SHARDS,
    );
    if let Some((excess, left_out)) = beyond_top.filter(|(excess, _)| *excess <= 0.0) {
        return Some(format!(
            "canary's events are {excess:.1} beyond its share outside the {left_out} shards most in excess"
        ));
    }
    (shards.without_top_log_e_value < 0.0 && shards.dispersion <= MAX_DISPERSION_TO_VOUCH).then(|| {
        format!(
            "canary is no worse than stable by user shard once its top shard is left out (e-value {:.2})",
            shards.without_top_log_e_value.exp()
        )
    })
}

/// Starts, keeps or ends each check's breach timer; returns the rollback reason and
/// detail of the first check whose breach has lasted its `for`.
fn track_breaches(judged: &[Judged], tick: &mut Tick) -> Option<(String, String)> {
    let now = tick.now_time();
    let breaches = &mut tick.status.breach_started_at;
    let names: BTreeSet<&str> = judged.iter().map(|check| check.name.as_str()).collect();
    breaches.retain(|name, _| names.contains(name.as_str()));
    let mut tripped = None;
    for check in judged {
        match check.evaluation.outcome {
            Outcome::Fail => {
                let started = breaches
                    .entry(check.name.clone())
                    .or_insert_with(|| now.clone());
                let lasted = stages::elapsed(tick.now, started);
                if lasted >= check.breach_for && tripped.is_none() {
                    let detail = format!(
                        "{} for {lasted} (limit {})",
                        check.evaluation.message, check.breach_for
                    );
                    tripped = Some((check.name.clone(), detail));
                }
            }
            Outcome::Pass => {
                breaches.remove(&check.name);
            }
            Outcome::Inconclusive if check.shared_with_stable => {
                breaches.remove(&check.name);
            }
            Outcome::Inconclusive | Outcome::Unavailable => {}
        }
    }
    tripped
}

/// Records how long metrics have been unavailable; rolls back once the grace is over.
/// Returns true when it rolled back.
fn hold_while_unavailable(spec: &CanaryRolloutSpec, tick: &mut Tick, reason: String) -> bool {
    let grace = spec.analysis.unavailable_grace;
    let since = match &tick.status.prometheus_unavailable_since {
        Some(since) => since.clone(),
        None => {
            let now = tick.now_time();
            tick.status.prometheus_unavailable_since = Some(now.clone());
            let message = format!(
                "holding weight {}%: {reason}; rolling back if it lasts {grace}",
                tick.status.weight
            );
            tick.event(reasons::PROMETHEUS_UNAVAILABLE, message, true);
            now
        }
    };
    let lasted = stages::elapsed(tick.now, &since);
    if lasted >= grace {
        let detail = format!("metrics unavailable for {lasted} (grace {grace}): {reason}");
        roll_back(tick, "prometheus-unavailable".to_string(), detail);
        return true;
    }
    false
}

/// One Inconclusive Event per streak of inconclusive windows, not one per interval.
fn track_inconclusive(
    spec: &CanaryRolloutSpec,
    judged: &[Judged],
    thin_window: Option<String>,
    tick: &mut Tick,
) {
    let first_inconclusive = judged
        .iter()
        .find(|check| check.evaluation.outcome == Outcome::Inconclusive);
    let Some(check) = first_inconclusive else {
        tick.status.inconclusive_since = None;
        return;
    };
    if tick.status.inconclusive_since.is_some() {
        return;
    }
    tick.status.inconclusive_since = Some(tick.now_time());
    let why =
        thin_window.unwrap_or_else(|| format!("{}: {}", check.name, check.evaluation.message));
    let status = &tick.status;
    let message = format!(
        "holding {}: {why}",
        stages::describe(spec, status.stage_index, status.weight)
    );
    tick.event(reasons::INCONCLUSIVE, message, false);
}

fn advance_if_passed(spec: &CanaryRolloutSpec, judged: &[Judged], tick: &mut Tick) {
    if tick.status.phase != Phase::Progressing {
        return;
    }
    let index = stages::clamp_index(spec, tick.status.stage_index);
    let Some(stage) = stages::stage(spec, index) else {
        return;
    };
    if stage.weight > tick.status.weight {
        // The target lags the stage (e.g. the stages were edited): catch up, never down.
        tick.set_weight(stage.weight);
    }
    let all_passed = judged
        .iter()
        .all(|check| check.evaluation.outcome == Outcome::Pass);
    // The stage clock stops while a window is closed or a freeze lasts.
    let Some(ran) = super::gates::clock_elapsed(&tick.status, tick.now) else {
        return;
    };
    let hold_for = stages::hold_for(stage);
    if !all_passed || ran < hold_for {
        return;
    }
    let last = stages::is_last(spec, index);
    let point = if last {
        // The promotion (Promoting, the stable rollout) waits for the schedule too.
        super::gates::Point::Promote
    } else {
        super::gates::Point::Raise {
            into_last: stages::is_last(spec, index + 1),
        }
    };
    if super::gates::hold(spec, tick, point) {
        return;
    }
    if last {
        let message = format!(
            "{} passed for {hold_for}; canary promoted to 100%",
            stages::describe(spec, index, tick.status.weight)
        );
        promote(tick, spec, "promoted", message);
    } else {
        enter_stage(spec, tick, index + 1, "stage-advanced");
    }
}

fn summary(window: &VersionWindow) -> VersionSummary {
    VersionSummary {
        requests: window.requests,
        error_rate_percent: window.error_rate_percent(),
        p99_ms: window.p99_ms,
    }
}

fn check_result(check: &Judged) -> CheckResult {
    let evaluation = &check.evaluation;
    CheckResult {
        name: check.name.clone(),
        // The status records an unavailable source as Inconclusive (see `crd::Outcome`).
        verdict: match evaluation.outcome {
            Outcome::Unavailable => Outcome::Inconclusive,
            outcome => outcome,
        },
        value: evaluation.value,
        threshold: evaluation.threshold,
        message: evaluation.message.clone(),
    }
}

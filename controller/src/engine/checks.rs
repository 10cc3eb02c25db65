//! The analysis checks: each turns one tick's observations into a verdict.
//!
//! A check is an evaluator over [`CheckInput`]; the engine owns everything around it
//! (thin-window gating, breach timers, rollback). New kinds of check, such as a
//! statistical canary-vs-stable comparison, implement [`Check`] and are added to the list
//! that [`for_spec`] builds (or passed to `engine::decide_with`).

use k8s_openapi::jiff::Timestamp;

use crate::analysis::sharded;
use crate::crd::{Analysis, CompareStableCheck, CustomCheck, ErrorRateCheck, LatencyCheck};
use crate::duration::Duration;
use crate::observation::{MetricsObservation, Observations, VersionWindow};

pub use crate::crd::Outcome;

/// A check's result with the numbers behind it (shown in `status.lastAnalysis.checks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// One line a human can act on.
    pub message: String,
}

impl Evaluation {
    pub fn new(
        outcome: Outcome,
        value: Option<f64>,
        threshold: Option<f64>,
        message: String,
    ) -> Self {
        Evaluation {
            outcome,
            value,
            threshold,
            message,
        }
    }

    fn inconclusive(message: impl Into<String>) -> Self {
        Evaluation::new(Outcome::Inconclusive, None, None, message.into())
    }

    fn unavailable(reason: &str) -> Self {
        Evaluation::new(
            Outcome::Unavailable,
            None,
            None,
            format!("metrics unavailable: {reason}"),
        )
    }
}

/// Everything a check may look at. The stored status is not offered on purpose: checks
/// are stateless, and the engine keeps the breach timers. A check that needs history
/// (a sequential test over the stage) gets it from the observations, which the I/O side
/// can query over `stage_started_at..now`.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    pub observations: &'a Observations,
    pub analysis: &'a Analysis,
    pub now: Timestamp,
    /// When the current stage's (pause-adjusted) clock started.
    pub stage_started_at: Option<Timestamp>,
}

impl<'a> CheckInput<'a> {
    /// The per-version window, or why there is none.
    pub fn window(&self) -> Result<(&'a VersionWindow, &'a VersionWindow), &'a str> {
        match &self.observations.metrics {
            MetricsObservation::Window { canary, stable } => Ok((canary, stable)),
            MetricsObservation::Unavailable { reason } => Err(reason),
        }
    }
}

/// One analysis check.
pub trait Check {
    /// Key in `status.breachStartedAt`, name in `status.lastAnalysis.checks`, and the
    /// rollback reason when it trips: `error-rate`, `latency`, `compare-stable`, `custom:<name>`.
    fn name(&self) -> String;
    /// How long a breach must last uninterrupted before it rolls back (0 = at once).
    fn breach_for(&self) -> Duration;
    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation;
    /// For a guard rail on canary's own numbers: stable's value when stable breaches the
    /// same limit in the same window (then the service, not the canary, is failing).
    /// `None` for checks that compare versions or read other series.
    fn stable_breach(&self, _input: &CheckInput<'_>) -> Option<String> {
        None
    }
}

/// The checks a spec asks for, in a fixed order (which also breaks ties between checks
/// that trip at the same tick).
pub fn for_spec(analysis: &Analysis) -> Vec<Box<dyn Check>> {
    let mut checks: Vec<Box<dyn Check>> = vec![
        Box::new(ErrorRate(analysis.error_rate.clone())),
        Box::new(LatencyP99(analysis.latency_p99.clone())),
    ];
    if let Some(compare) = &analysis.compare_stable {
        checks.push(Box::new(CompareStable(compare.clone())));
    }
    for custom in &analysis.custom {
        checks.push(Box::new(Custom(custom.clone())));
    }
    checks.extend(super::resources::for_spec(analysis));
    checks
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A guard rail on one version's own number (its error rate, its p99) against a limit.
/// Canary's number decides the check; stable's, read the same way, tells whether a breach
/// is shared ([`Check::stable_breach`]).
///
/// With shard series (contract 4's `stickycanary_shard_requests_total`) a breach must also
/// be *broad*: it must still hold with the outlying shards set aside ([`sharded::broad_rate`];
/// errors for the error rate, slow requests for the p99). A few heavy users sit in a few
/// shards, so they cannot trip a guard rail. A breach that is not broad passes, with a
/// message that says so.
struct GuardRail {
    /// The measure's name in messages: `error rate`, `p99`.
    what: &'static str,
    unit: &'static str,
    max: f64,
    /// The measure in one version's window; `None` when the window has none.
    measure: fn(&VersionWindow) -> Option<f64>,
    /// Why the check is inconclusive when canary's window has no measure.
    missing: &'static str,
    /// Whether a breach of `max` is broad, with the numbers; `None` without shard series.
    breadth: fn(&VersionWindow, f64) -> Option<Breadth>,
}

/// The shard reading of a breach.
struct Breadth {
    broad: bool,
    detail: String,
}

impl GuardRail {
    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        let (canary, _) = match input.window() {
            Ok(window) => window,
            Err(reason) => return Evaluation::unavailable(reason),
        };
        let Some(value) = (self.measure)(canary) else {
            return Evaluation::inconclusive(self.missing);
        };
        let mut evaluation = at_most(value, self.max, &format!("canary {}", self.what), self.unit);
        if evaluation.outcome == Outcome::Fail {
            if let Some(breadth) = (self.breadth)(canary, self.max) {
                evaluation.message = format!("{}; {}", evaluation.message, breadth.detail);
                if !breadth.broad {
                    evaluation.outcome = Outcome::Pass;
                    evaluation
                        .message
                        .push_str(": not a broad breach (one or two users)");
                }
            }
        }
        evaluation
    }

    fn stable_breach(&self, input: &CheckInput<'_>) -> Option<String> {
        let (_, stable) = input.window().ok()?;
        let value = (self.measure)(stable).filter(|value| *value > self.max)?;
        if (self.breadth)(stable, self.max).is_some_and(|breadth| !breadth.broad) {
            return None;
        }
        Some(format!(
            "stable {} {}{}",
            self.what,
            round2(value),
            self.unit
        ))
    }
}

/// Error-rate breadth: the error rate with the outlying shards set aside (a few heavy
/// users, [`sharded::broad_rate`]) is above `max`.
fn error_rate_breadth(window: &VersionWindow, max_percent: f64) -> Option<Breadth> {
    let per_shard: Vec<(f64, f64)> = window
        .shards
        .iter()
        .map(|shard| (shard.requests, shard.errors))
        .collect();
    if per_shard.is_empty() {
        return None;
    }
    let (rate, set_aside) = sharded::broad_rate(&per_shard)?;
    let percent = rate * 100.0;
    Some(Breadth {
        broad: percent > max_percent,
        detail: format!("{}% without outlying shards {set_aside:?}", round2(percent)),
    })
}

/// p99 breadth: the share of canary's requests slower than `max_ms` (from the histogram),
/// scaled by the share of its slow requests (the shards' `slow` outcome) that is broad, is
/// still above 1% (so the p99 would still be above `max_ms` without the outlying users).
///
/// The shards count `slow` above the filter's `slowThresholdMs`, which the comparative
/// check sets to stable's p99 bucket for a run, so it need not equal `max_ms`: the ratio
/// "broad slow rate / slow rate" says how much of the tail a few users make, whatever the
/// threshold. With no slow request in the shards at all the shards cannot tell, and the
/// breach counts as broad.
fn p99_breadth(window: &VersionWindow, max_ms: f64) -> Option<Breadth> {
    let per_shard: Vec<(f64, f64)> = window
        .shards
        .iter()
        .map(|shard| (shard.requests, shard.slow))
        .collect();
    if per_shard.is_empty() {
        return None;
    }
    let buckets = &window.latency_buckets;
    let le = crate::analysis::histogram::boundary_at_or_above(buckets, max_ms)?;
    let above_max = crate::analysis::histogram::slower_than(buckets, le)
        .zip(crate::analysis::histogram::total(buckets))
        .and_then(|(slow, total)| (total > 0.0).then(|| slow / total))?;
    let (requests, slow) = per_shard
        .iter()
        .fold((0.0, 0.0), |(n, x), (requests, slow)| {
            (n + requests, x + slow)
        });
    let (broad_slow, set_aside) = sharded::broad_rate(&per_shard)?;
    let overall = if requests > 0.0 { slow / requests } else { 0.0 };
    let broad_share = if overall > 0.0 {
        (broad_slow / overall).min(1.0)
    } else {
        1.0
    };
    let estimate = above_max * broad_share;
    Some(Breadth {
        broad: estimate > P99_TAIL,
        detail: format!(
            "{}% slower than {max_ms}ms without outlying shards {set_aside:?}",
            round2(estimate * 100.0)
        ),
    })
}

/// The share of requests above the p99.
const P99_TAIL: f64 = 0.01;

/// Fails when `value` is above `max`; the message names the measure, e.g.
/// `canary error rate 12.58% above max 5%`.
fn at_most(value: f64, max: f64, what: &str, unit: &str) -> Evaluation {
    let (outcome, relation) = if value > max {
        (Outcome::Fail, "above")
    } else {
        (Outcome::Pass, "within")
    };
    Evaluation::new(
        outcome,
        Some(value),
        Some(max),
        format!("{what} {}{unit} {relation} max {max}{unit}", round2(value)),
    )
}

/// Canary 5xx share above `maxPercent`.
pub struct ErrorRate(pub ErrorRateCheck);

impl ErrorRate {
    fn rail(&self) -> GuardRail {
        GuardRail {
            what: "error rate",
            unit: "%",
            max: self.0.max_percent,
            measure: VersionWindow::error_rate_percent,
            missing: "no canary requests in the window",
            breadth: error_rate_breadth,
        }
    }
}

impl Check for ErrorRate {
    fn name(&self) -> String {
        "error-rate".to_string()
    }

    fn breach_for(&self) -> Duration {
        self.0.for_duration
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        self.rail().evaluate(input)
    }

    fn stable_breach(&self, input: &CheckInput<'_>) -> Option<String> {
        self.rail().stable_breach(input)
    }
}

/// Canary p99 latency above `maxMs`.
pub struct LatencyP99(pub LatencyCheck);

impl LatencyP99 {
    fn rail(&self) -> GuardRail {
        GuardRail {
            what: "p99",
            unit: "ms",
            max: self.0.max_ms,
            measure: |window| window.p99_ms.filter(|p99| p99.is_finite()),
            missing: "no canary p99 in the window",
            breadth: p99_breadth,
        }
    }
}

impl Check for LatencyP99 {
    fn name(&self) -> String {
        "latency".to_string()
    }

    fn breach_for(&self) -> Duration {
        self.0.for_duration
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        self.rail().evaluate(input)
    }

    fn stable_breach(&self, input: &CheckInput<'_>) -> Option<String> {
        self.rail().stable_breach(input)
    }
}

/// Canary error rate more than `maxIncreasePercentPoints` above stable's.
pub struct CompareStable(pub CompareStableCheck);

impl Check for CompareStable {
    fn name(&self) -> String {
        "compare-stable".to_string()
    }

    fn breach_for(&self) -> Duration {
        self.0.for_duration
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        let (canary, stable) = match input.window() {
            Ok(window) => window,
            Err(reason) => return Evaluation::unavailable(reason),
        };
        let (Some(canary_rate), Some(stable_rate)) =
            (canary.error_rate_percent(), stable.error_rate_percent())
        else {
            return Evaluation::inconclusive("no requests on canary or stable in the window");
        };
        let limit = stable_rate + self.0.max_increase_percent_points;
        let breached = canary_rate > limit;
        Evaluation::new(
            if breached {
                Outcome::Fail
            } else {
                Outcome::Pass
            },
            Some(canary_rate),
            Some(limit),
            format!(
                "canary error rate {}% {} stable {}% + {} points",
                round2(canary_rate),
                if breached { "above" } else { "within" },
                round2(stable_rate),
                self.0.max_increase_percent_points
            ),
        )
    }
}

/// A custom PromQL value outside `[min, max]`.
pub struct Custom(pub CustomCheck);

impl Check for Custom {
    fn name(&self) -> String {
        format!("custom:{}", self.0.name)
    }

    fn breach_for(&self) -> Duration {
        self.0.for_duration
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        let observed = input
            .observations
            .custom
            .iter()
            .find(|custom| custom.name == self.0.name);
        let value = match observed.map(|custom| &custom.value) {
            None => return Evaluation::inconclusive("no result for this check"),
            Some(Err(reason)) => return Evaluation::unavailable(reason),
            Some(Ok(None)) => return Evaluation::inconclusive("query returned no data"),
            Some(Ok(Some(value))) if !value.is_finite() => {
                return Evaluation::inconclusive(format!("query returned {value}"))
            }
            Some(Ok(Some(value))) => *value,
        };
        if let Some(min) = self.0.min.filter(|min| value < *min) {
            return Evaluation::new(
                Outcome::Fail,
                Some(value),
                Some(min),
                format!("{value} below min {min}"),
            );
        }
        if let Some(max) = self.0.max.filter(|max| value > *max) {
            return Evaluation::new(
                Outcome::Fail,
                Some(value),
                Some(max),
                format!("{value} above max {max}"),
            );
        }
        Evaluation::new(
            Outcome::Pass,
            Some(value),
            self.0.max.or(self.0.min),
            format!("{value} within bounds"),
        )
    }
}

//! Each analysis check on its own: where it passes, fails, holds (inconclusive) or reports
//! the source unavailable, and how a new kind of check plugs into the engine.

// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::jiff::Timestamp;
use stickycanary::crd::{
    Analysis, CanaryRolloutSpec, CanaryRolloutStatus, CompareStableCheck, CustomCheck,
    ErrorRateCheck, LatencyCheck, Phase,
};
use stickycanary::duration::Duration;
use stickycanary::engine::checks::{
    for_spec, Check, CheckInput, CompareStable, Custom, ErrorRate, Evaluation, LatencyP99, Outcome,
};
use stickycanary::engine::{decide, decide_with};
use stickycanary::observation::{
    CanaryHealth, CustomObservation, MetricsObservation, Observations, ShardCounts, VersionWindow,
};

fn now() -> Timestamp {
    support::engine::at(3600)
}

fn version(requests: f64, errors: f64, p99_ms: Option<f64>) -> VersionWindow {
    VersionWindow {
        requests,
        errors,
        p99_ms,
        latency_buckets: Vec::new(),
        shards: Vec::new(),
    }
}

fn observed(canary: VersionWindow, stable: VersionWindow) -> Observations {
    support::engine::observe(MetricsObservation::Window { canary, stable }, None)
}

fn unavailable() -> Observations {
    Observations {
        metrics: MetricsObservation::Unavailable {
            reason: "timeout".to_string(),
        },
        custom: Vec::new(),
        resources: Default::default(),
        canary_health: CanaryHealth::Unknown,
        manual: None,
        stable_before_run: None,
    }
}

fn evaluate(check: &dyn Check, observations: &Observations) -> Evaluation {
    let analysis = Analysis::default();
    check.evaluate(&CheckInput {
        observations,
        analysis: &analysis,
        now: now(),
        stage_started_at: None,
    })
}

fn error_rate() -> ErrorRate {
    ErrorRate(ErrorRateCheck::default())
}

#[test]
fn error_rate_fails_only_above_max_percent() {
    let stable = version(1000.0, 0.0, Some(100.0));
    let cases = [
        (version(1000.0, 49.0, None), Outcome::Pass, Some(4.9)),
        (version(1000.0, 50.0, None), Outcome::Pass, Some(5.0)),
        (version(1000.0, 51.0, None), Outcome::Fail, Some(5.1)),
        (version(0.0, 0.0, None), Outcome::Inconclusive, None),
    ];
    for (canary, outcome, value) in cases {
        let evaluation = evaluate(&error_rate(), &observed(canary.clone(), stable.clone()));
        assert_eq!(evaluation.outcome, outcome, "{canary:?}");
        assert_eq!(evaluation.value, value, "{canary:?}");
    }
    let evaluation = evaluate(&error_rate(), &unavailable());
    assert_eq!(evaluation.outcome, Outcome::Unavailable);
    assert!(
        evaluation.message.contains("timeout"),
        "{}",
        evaluation.message
    );
}

#[test]
fn latency_fails_only_above_max_ms_and_needs_a_p99() {
    let check = LatencyP99(LatencyCheck::default());
    let stable = version(1000.0, 0.0, Some(100.0));
    for (p99, outcome) in [
        (Some(499.0), Outcome::Pass),
        (Some(500.0), Outcome::Pass),
        (Some(501.0), Outcome::Fail),
        (None, Outcome::Inconclusive),
        (Some(f64::NAN), Outcome::Inconclusive),
    ] {
        let evaluation = evaluate(&check, &observed(version(1000.0, 0.0, p99), stable.clone()));
        assert_eq!(evaluation.outcome, outcome, "p99 {p99:?}");
    }
}

#[test]
fn compare_stable_allows_the_margin_above_stable() {
    let check = CompareStable(CompareStableCheck {
        max_increase_percent_points: 1.0,
        for_duration: Duration::from_mins(1),
        from_stage: None,
    });
    let stable = version(10_000.0, 200.0, Some(100.0)); // 2%
    for (canary_errors, outcome) in [
        (30.0, Outcome::Pass), // 3% = 2% + 1 point
        (31.0, Outcome::Fail), // 3.1%
        (0.0, Outcome::Pass),
    ] {
        let evaluation = evaluate(
            &check,
            &observed(version(1000.0, canary_errors, None), stable.clone()),
        );
        assert_eq!(evaluation.outcome, outcome, "{canary_errors} errors");
        assert_eq!(evaluation.threshold, Some(3.0));
    }
    let no_stable = observed(version(1000.0, 50.0, None), version(0.0, 0.0, None));
    assert_eq!(evaluate(&check, &no_stable).outcome, Outcome::Inconclusive);
}

#[test]
fn custom_check_bounds_no_data_and_errors() {
    let check = Custom(CustomCheck {
        name: "conversion".to_string(),
        query: "vector(1)".to_string(),
        min: Some(0.5),
        max: Some(2.0),
        for_duration: Duration::ZERO,
        from_stage: None,
    });
    assert_eq!(check.name(), "custom:conversion");
    let with = |value: Result<Option<f64>, String>| {
        let mut observations = unavailable(); // custom checks do not need the metrics window
        observations.custom.push(CustomObservation {
            name: "conversion".to_string(),
            value,
        });
        evaluate(&check, &observations)
    };
    assert_eq!(with(Ok(Some(1.0))).outcome, Outcome::Pass);
    let low = with(Ok(Some(0.4)));
    assert_eq!((low.outcome, low.threshold), (Outcome::Fail, Some(0.5)));
    let high = with(Ok(Some(2.5)));
    assert_eq!((high.outcome, high.threshold), (Outcome::Fail, Some(2.0)));
    assert_eq!(with(Ok(None)).outcome, Outcome::Inconclusive);
    assert_eq!(with(Ok(Some(f64::INFINITY))).outcome, Outcome::Inconclusive);
    assert_eq!(with(Err("503".to_string())).outcome, Outcome::Unavailable);
    // A result for another check does not count.
    let mut other = unavailable();
    other.custom.push(CustomObservation {
        name: "latency-budget".to_string(),
        value: Ok(Some(0.0)),
    });
    assert_eq!(evaluate(&check, &other).outcome, Outcome::Inconclusive);
}

#[test]
fn the_spec_decides_which_checks_run_in_a_fixed_order() {
    let mut analysis = Analysis::default();
    let names = |analysis: &Analysis| -> Vec<String> {
        for_spec(analysis)
            .iter()
            .map(|check| check.name())
            .collect()
    };
    assert_eq!(names(&analysis), ["error-rate", "latency"]);
    analysis.compare_stable = Some(CompareStableCheck {
        max_increase_percent_points: 1.0,
        for_duration: Duration::from_mins(2),
        from_stage: None,
    });
    analysis.custom = vec![CustomCheck {
        name: "orders".to_string(),
        query: "vector(1)".to_string(),
        min: Some(1.0),
        max: None,
        for_duration: Duration::from_mins(5),
        from_stage: None,
    }];
    assert_eq!(
        names(&analysis),
        ["error-rate", "latency", "compare-stable", "custom:orders"]
    );
}

/// A stand-in for a new kind of analysis: fails whenever canary saw any 5xx at all.
struct ZeroErrors;

impl Check for ZeroErrors {
    fn name(&self) -> String {
        "zero-errors".to_string()
    }

    fn breach_for(&self) -> Duration {
        Duration::ZERO
    }

    fn evaluate(&self, input: &CheckInput<'_>) -> Evaluation {
        match input.window() {
            Ok((canary, _)) if canary.errors > 0.0 => Evaluation::new(
                Outcome::Fail,
                Some(canary.errors),
                Some(0.0),
                "errors".into(),
            ),
            Ok(_) => Evaluation::new(Outcome::Pass, Some(0.0), Some(0.0), "none".into()),
            Err(reason) => Evaluation::new(Outcome::Unavailable, None, None, reason.into()),
        }
    }
}

#[test]
fn a_new_kind_of_check_plugs_in_through_decide_with() {
    let spec: CanaryRolloutSpec = serde_yaml::from_str(
        "{wasmPlugin: {name: p}, canary: {deployment: d}, prometheus: {address: 'http://127.0.0.1:9'}}",
    )
    .unwrap();
    let started = decide(
        &spec,
        &CanaryRolloutStatus::default(),
        now(),
        &unavailable(),
    )
    .status;
    assert_eq!(started.phase, Phase::Progressing);

    // 1 error in 1000: fine for the seed's 5% rule, fatal for the stricter custom evaluator.
    let one_error = observed(
        version(1000.0, 1.0, Some(50.0)),
        version(1000.0, 0.0, Some(50.0)),
    );
    let later = now() + k8s_openapi::jiff::SignedDuration::from_secs(30);
    let standard = decide(&spec, &started, later, &one_error);
    assert_eq!(standard.status.phase, Phase::Progressing);

    let mut checks = for_spec(&spec.analysis);
    checks.push(Box::new(ZeroErrors));
    let strict = decide_with(&spec, &started, later, &one_error, &checks);
    assert_eq!(strict.status.phase, Phase::RolledBack);
    assert_eq!(
        strict.status.rollback_reason.as_deref(),
        Some("zero-errors")
    );
    let recorded: Vec<&str> = strict
        .status
        .last_analysis
        .as_ref()
        .unwrap()
        .checks
        .iter()
        .map(|check| check.name.as_str())
        .collect();
    assert_eq!(recorded, ["error-rate", "latency", "zero-errors"]);
}

/// A window over 16 shards of `requests` each, `errors` and `slow` per shard, plus
/// `heavy_errors` and `heavy_slow` in shard 4 (one heavy user), with `p99_ms`.
fn sharded(
    requests: f64,
    errors: f64,
    slow: f64,
    heavy: (f64, f64, f64),
    p99_ms: f64,
) -> VersionWindow {
    let shards: Vec<ShardCounts> = (0..16)
        .map(|shard| {
            let (heavy_requests, heavy_errors, heavy_slow) =
                if shard == 4 { heavy } else { (0.0, 0.0, 0.0) };
            ShardCounts {
                requests: requests + heavy_requests,
                errors: errors + heavy_errors,
                slow: slow + heavy_slow,
            }
        })
        .collect();
    let total: f64 = shards.iter().map(|shard| shard.requests).sum();
    let slow_total: f64 = shards.iter().map(|shard| shard.slow).sum();
    VersionWindow {
        requests: total,
        errors: shards.iter().map(|shard| shard.errors).sum(),
        p99_ms: Some(p99_ms),
        // The filter's slowThresholdMs at the guard rail's 500ms: the histogram's tail
        // above 500ms is the shards' slow requests.
        latency_buckets: vec![(500.0, total - slow_total), (f64::INFINITY, total)],
        shards,
    }
}

#[test]
fn with_shards_one_users_errors_cannot_trip_the_error_rate_guard_rail() {
    let stable = sharded(900.0, 9.0, 0.0, (0.0, 0.0, 0.0), 100.0);
    // A bot in shard 4 sends 240 requests, 120 of them 5xx; the rest of canary is at 1%.
    // Over all of canary that is 129.6 / 1200 = 10.8%; without the bot's shard, 1%.
    let canary = sharded(60.0, 0.6, 0.0, (240.0, 120.0, 0.0), 100.0);
    let evaluation = evaluate(&error_rate(), &observed(canary.clone(), stable.clone()));
    assert!(evaluation.value.unwrap() > 5.0, "{evaluation:?}");
    assert_eq!(evaluation.outcome, Outcome::Pass, "{}", evaluation.message);
    assert!(
        evaluation.message.contains("not a broad breach"),
        "{}",
        evaluation.message
    );
    // Without shard series the same totals breach, as the seed's rule says.
    let bare = VersionWindow {
        shards: Vec::new(),
        ..canary
    };
    let evaluation = evaluate(&error_rate(), &observed(bare, stable.clone()));
    assert_eq!(evaluation.outcome, Outcome::Fail);
    // A broad breach (6% in every shard) still fails.
    let broad = sharded(60.0, 3.6, 0.0, (0.0, 0.0, 0.0), 100.0);
    let evaluation = evaluate(&error_rate(), &observed(broad, stable));
    assert_eq!(evaluation.outcome, Outcome::Fail, "{}", evaluation.message);
    assert!(
        evaluation.message.contains("without outlying shards []"),
        "{}",
        evaluation.message
    );
}

#[test]
fn with_shards_a_p99_breach_counts_only_when_slow_requests_are_broad() {
    let check = LatencyP99(LatencyCheck::default());
    let stable = sharded(900.0, 0.0, 0.0, (0.0, 0.0, 0.0), 100.0);
    // One slow user: p99 above 500ms overall, 0.5% slow in the other shards.
    let narrow = sharded(100.0, 0.0, 0.5, (100.0, 0.0, 60.0), 900.0);
    let evaluation = evaluate(&check, &observed(narrow, stable.clone()));
    assert_eq!(evaluation.outcome, Outcome::Pass, "{}", evaluation.message);
    // 2% slow everywhere: broad.
    let broad = sharded(100.0, 0.0, 2.0, (0.0, 0.0, 0.0), 900.0);
    let evaluation = evaluate(&check, &observed(broad, stable));
    assert_eq!(evaluation.outcome, Outcome::Fail, "{}", evaluation.message);
}

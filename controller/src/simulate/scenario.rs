//! The simulated worlds: traffic shape, users, noise, and what (if anything) is wrong with
//! canary.

use super::users::{AffectedUsers, Bot, ErrorProne, Extras, SlowUser};

/// A shared error burst: both versions' 5xx rate rises by `extra_error_rate` for
/// `duration_s`, starting at a random time in the rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedBurst {
    pub extra_error_rate: f64,
    pub duration_s: f64,
}

/// Canary pods start slow: latency × (1 + `extra` · e^(−t/`time_constant_s`)), t from the
/// rollout's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmUp {
    pub extra: f64,
    pub time_constant_s: f64,
}

/// Everything that describes one simulated rollout's world.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name for the report.
    pub name: &'static str,
    /// True for a canary that is as good as stable (a rollback is a false positive).
    pub healthy: bool,
    /// Mean requests per second over both versions.
    pub total_rps: f64,
    /// Diurnal swing: traffic × (1 + amplitude · sin(2πt/period + random phase)).
    pub diurnal_amplitude: f64,
    pub diurnal_period_s: f64,
    pub stable_error_rate: f64,
    pub canary_error_rate: f64,
    pub stable_p99_ms: f64,
    /// Canary latency multiplier (1.3 = p99 +30%).
    pub canary_latency_factor: f64,
    pub burst: Option<SharedBurst>,
    pub warm_up: Option<WarmUp>,
    /// A few users producing a large share of the errors, on both versions alike.
    pub error_prone: Option<ErrorProne>,
    /// One client with its own traffic and error rate.
    pub bot: Option<Bot>,
    /// One healthy user slow on both versions, placed on canary.
    pub slow_user: Option<SlowUser>,
    /// A canary bug that hits only these users (a regression).
    pub affected: Option<AffectedUsers>,
    /// `analysis.minRequests` an operator would set for this traffic.
    pub min_requests: u64,
}

/// The noise every scenario carries unless it says otherwise.
fn base(name: &'static str, healthy: bool) -> Scenario {
    Scenario {
        name,
        healthy,
        total_rps: 50.0,
        diurnal_amplitude: 0.5,
        // A compressed day: the rollout (~45 min) sees a large part of a swing.
        diurnal_period_s: 2.0 * 3600.0,
        stable_error_rate: 0.01,
        canary_error_rate: 0.01,
        stable_p99_ms: 300.0,
        canary_latency_factor: 1.0,
        burst: None,
        warm_up: Some(WarmUp {
            extra: 1.0,
            time_constant_s: 20.0,
        }),
        error_prone: None,
        bot: None,
        slow_user: None,
        affected: None,
        min_requests: 100,
    }
}

impl Scenario {
    /// The users beyond the ordinary ones.
    pub fn extras(&self) -> Extras {
        Extras {
            error_prone: self.error_prone,
            bot: self.bot,
            slow_user: self.slow_user,
            affected: self.affected,
        }
    }
}

/// A regression at the goals' 50 req/s: steady (Poisson) traffic, canary warm-up.
fn regression(name: &'static str) -> Scenario {
    Scenario {
        diurnal_amplitude: 0.0,
        ..base(name, false)
    }
}

/// The healthy canaries (false-positive rate) and the regressions (detection), in report
/// order.
pub fn catalog() -> Vec<Scenario> {
    let burst = SharedBurst {
        extra_error_rate: 0.09,
        duration_s: 90.0,
    };
    // Five users at 0.2 req/s erring half the time: 0.5 errors/s, as many as the other
    // 50 req/s at 1% produce together.
    let few_users = ErrorProne {
        users: 5,
        rps_each: 0.2,
        error_rate: 0.5,
    };
    let bot = Bot {
        rps: 1.0,
        error_rate: 0.5,
        starts_failing_at_s: None,
    };
    // Between stable's p99 (300 ms) and the filter's default slow threshold (500 ms).
    let slow_user = |rps: f64, present_before: bool| SlowUser {
        rps,
        latency_ms: (410.0, 490.0),
        present_before,
    };
    vec![
        Scenario {
            burst: None,
            ..base("healthy, 50 req/s", true)
        },
        Scenario {
            burst: Some(burst),
            ..base("healthy, 50 req/s, shared 10% error burst for 90s", true)
        },
        Scenario {
            total_rps: 5.0,
            min_requests: 20,
            burst: None,
            ..base("healthy, 5 req/s (minRequests 20)", true)
        },
        Scenario {
            total_rps: 5.0,
            min_requests: 20,
            burst: Some(burst),
            ..base("healthy, 5 req/s (minRequests 20), shared burst", true)
        },
        Scenario {
            error_prone: Some(few_users),
            ..base("healthy, 50 req/s, half the errors from 5 users", true)
        },
        Scenario {
            total_rps: 5.0,
            min_requests: 20,
            error_prone: Some(ErrorProne {
                rps_each: few_users.rps_each / 10.0,
                ..few_users
            }),
            ..base(
                "healthy, 5 req/s (minRequests 20), half the errors from 5 users",
                true,
            )
        },
        Scenario {
            bot: Some(bot),
            ..base(
                "healthy, 50 req/s, one bot at 1 req/s with 50% errors",
                true,
            )
        },
        Scenario {
            total_rps: 5.0,
            min_requests: 20,
            bot: Some(bot),
            ..base(
                "healthy, 5 req/s (minRequests 20), one bot at 1 req/s with 50% errors",
                true,
            )
        },
        Scenario {
            canary_error_rate: 0.02,
            ..regression("errors 1% -> 2%")
        },
        Scenario {
            canary_error_rate: 0.05,
            ..regression("errors 1% -> 5%")
        },
        Scenario {
            canary_error_rate: 0.05,
            ..base("errors 1% -> 5%, traffic swinging +-50%", false)
        },
        Scenario {
            canary_error_rate: 0.05,
            error_prone: Some(few_users),
            ..regression("errors 1% -> 5%, half the errors from 5 users")
        },
        Scenario {
            canary_latency_factor: 1.3,
            ..regression("p99 +30% (300 -> 390ms)")
        },
        Scenario {
            canary_latency_factor: 2.0,
            ..regression("p99 +100% (300 -> 600ms)")
        },
        // Issue 22's scenarios: what sticky traffic does that independent noise does not.
        Scenario {
            slow_user: Some(slow_user(1.0, false)),
            ..base(
                "healthy, one slow user (450ms, 1 req/s) on canary from the start",
                true,
            )
        },
        Scenario {
            slow_user: Some(slow_user(0.1, false)),
            ..base(
                "healthy, one slow user (450ms, 0.1 req/s) on canary from the start",
                true,
            )
        },
        Scenario {
            slow_user: Some(slow_user(1.0, true)),
            ..base(
                "healthy, one slow user (450ms, 1 req/s), present before, moves to canary",
                true,
            )
        },
        Scenario {
            slow_user: Some(slow_user(0.1, true)),
            ..base(
                "healthy, one slow user (450ms, 0.1 req/s), present before, moves to canary",
                true,
            )
        },
        Scenario {
            error_prone: Some(ErrorProne {
                users: 20,
                rps_each: 0.2,
                error_rate: 0.3,
            }),
            ..base(
                "healthy, 50 req/s, 20 users at 0.2 req/s with 30% errors",
                true,
            )
        },
        Scenario {
            error_prone: Some(ErrorProne {
                users: 5,
                rps_each: 1.0,
                error_rate: 0.1,
            }),
            ..base(
                "healthy, 50 req/s, 5 heavy users at 1 req/s each (5 req/s) with 10% errors",
                true,
            )
        },
        Scenario {
            error_prone: Some(ErrorProne {
                users: 50,
                rps_each: 0.01,
                error_rate: 1.0,
            }),
            ..base(
                "healthy, 50 req/s, 50 light users at 0.01 req/s, all errors",
                true,
            )
        },
        Scenario {
            bot: Some(Bot {
                starts_failing_at_s: Some(900.0),
                ..bot
            }),
            ..base(
                "healthy, 50 req/s, a bot (1 req/s) starts failing 50% at 15m",
                true,
            )
        },
        Scenario {
            affected: Some(AffectedUsers {
                share: 0.10,
                extra_error_rate: 0.40,
            }),
            ..regression("10% of users get 40% errors")
        },
        Scenario {
            affected: Some(broken(0.03)),
            ..regression("3% of users broken (100% errors)")
        },
        Scenario {
            canary_error_rate: 0.06,
            ..regression("errors 1% -> 6%")
        },
        // Other traffic models than the goals' (appended, so the rows above keep their
        // seeds): other rates, base error rates and shares of broken users.
        Scenario {
            total_rps: 20.0,
            ..base("healthy, 20 req/s", true)
        },
        Scenario {
            total_rps: 200.0,
            error_prone: Some(ErrorProne {
                users: 20,
                rps_each: 0.2,
                error_rate: 0.3,
            }),
            ..base(
                "healthy, 200 req/s, 20 users at 0.2 req/s with 30% errors",
                true,
            )
        },
        Scenario {
            error_prone: Some(ErrorProne {
                users: 40,
                rps_each: 0.1,
                error_rate: 0.3,
            }),
            ..base(
                "healthy, 50 req/s, 40 users at 0.1 req/s with 30% errors",
                true,
            )
        },
        Scenario {
            total_rps: 20.0,
            affected: Some(broken(0.03)),
            ..regression("3% of users broken, 20 req/s")
        },
        Scenario {
            stable_error_rate: 0.03,
            canary_error_rate: 0.03,
            affected: Some(broken(0.03)),
            ..regression("3% of users broken, 3% base errors")
        },
        Scenario {
            affected: Some(broken(0.02)),
            ..regression("2% of users broken (100% errors)")
        },
        Scenario {
            total_rps: 20.0,
            affected: Some(AffectedUsers {
                share: 0.10,
                extra_error_rate: 0.40,
            }),
            ..regression("10% of users get 40% errors, 20 req/s")
        },
    ]
}

/// A canary bug that fails every request of `share` of the users.
fn broken(share: f64) -> AffectedUsers {
    AffectedUsers {
        share,
        extra_error_rate: 1.0,
    }
}

//! Simulated users: who sends how much, who errs how often, and where each one lands.
//!
//! Sticky assignment is what makes errors cluster: all of a user's requests, and so all of
//! that user's errors, go to one version. The model keeps exactly that:
//!
//! - Activity is heavy-tailed: each user's request rate is log-normal
//!   ([`ACTIVITY_SIGMA`]), scaled so the population sends the scenario's `total_rps`.
//! - Each user has an error propensity that is **the same on both versions** for a healthy
//!   canary: ordinary users err at the scenario's base rate; error-prone users and bots at
//!   their own. A regression adds to every canary user's propensity (it is on canary's code
//!   path, so it hits canary users broadly).
//! - Each user has a hash bucket in [0, 1) and a shard in 0..16 drawn independently, as the
//!   filter takes them from independent hash bits. A user is on canary while its bucket is
//!   below the weight, so users only ever move stable → canary, as with the filter's
//!   monotone assignment.
//!
//! A version's traffic in one shard is then a sum of independent Poisson streams, so per
//! (shard, version) the simulation draws Poisson counts from the summed rates: exact, and
//! cheap enough for thousands of rollouts.

use rand::rngs::StdRng;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

/// The filter's shard count (contract 4).
pub const SHARDS: usize = 16;
/// Ordinary users in a simulated population, by default.
pub const USERS: usize = 2000;
/// σ of ln(request rate) across ordinary users, by default: the top 1% of users send about
/// 20% of the requests.
pub const ACTIVITY_SIGMA: f64 = 1.5;

/// The ordinary users of every simulated population: how many, and how unequal their
/// activity is (`stickycanary simulate --users --activity-sigma`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserModel {
    pub users: usize,
    /// σ of ln(request rate): 1.5 puts about 20% of the requests on the top 1% of users,
    /// 2.0 about 37%, 1.0 about 9%.
    pub activity_sigma: f64,
}

impl Default for UserModel {
    fn default() -> Self {
        UserModel {
            users: USERS,
            activity_sigma: ACTIVITY_SIGMA,
        }
    }
}

/// A few users that produce a large share of all errors (a broken client build, accounts
/// whose data hits a bug both versions share).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorProne {
    pub users: usize,
    /// Each one's request rate (req/s).
    pub rps_each: f64,
    /// Each one's 5xx propensity (on both versions).
    pub error_rate: f64,
}

/// One client with its own traffic, say a bot retrying a bad request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bot {
    pub rps: f64,
    pub error_rate: f64,
    /// Seconds after the rollout's start at which the bot starts failing (`error_rate`);
    /// before, it errs at the base rate. `None`: failing from the start.
    pub starts_failing_at_s: Option<f64>,
}

/// One healthy user whose requests are all slow on both versions (a batch client, a heavy
/// report endpoint): latency uniform in `latency_ms`, between stable's p99 and the filter's
/// default slow threshold. It is placed on canary (hash bucket 0, the first user to move).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowUser {
    pub rps: f64,
    pub latency_ms: (f64, f64),
    /// Whether it already sent traffic (to stable) before the rollout started; otherwise it
    /// arrives with the rollout.
    pub present_before: bool,
}

/// A canary bug that hits only some users, chosen by something the hash does not see (an
/// account setting, a client version): spread over every shard and both sides of the cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffectedUsers {
    /// Share of the ordinary users affected.
    pub share: f64,
    /// Added to an affected user's 5xx propensity while it is on canary.
    pub extra_error_rate: f64,
}

/// One simulated user.
#[derive(Debug, Clone, Copy)]
struct User {
    rps: f64,
    error_rate: f64,
    /// Added on canary only (a bug that hits this user).
    canary_extra_error_rate: f64,
    bucket: f64,
    shard: usize,
    /// The bot: its propensity before it starts failing is the base rate.
    is_bot: bool,
    /// All requests at this latency band (ms), on both versions.
    pinned_latency_ms: Option<(f64, f64)>,
    /// Sends traffic only once the rollout has started.
    arrives_with_rollout: bool,
}

/// The population of one rollout.
#[derive(Debug, Clone)]
pub struct Population {
    users: Vec<User>,
    bot_starts_failing_at_s: Option<f64>,
    base_error_rate: f64,
}

/// The users beyond the ordinary ones, and the canary bug that hits some users.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extras {
    pub error_prone: Option<ErrorProne>,
    pub bot: Option<Bot>,
    pub slow_user: Option<SlowUser>,
    pub affected: Option<AffectedUsers>,
}

/// Request and 5xx rates (per second, before the diurnal swing) of one version in one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellRates {
    pub requests: f64,
    /// Errors from the users' own propensities.
    pub errors: f64,
    /// Of `requests`, those of a user with a pinned latency band (the slow user), and that
    /// band; the rest follow the version's latency distribution.
    pub pinned_requests: f64,
    pub pinned_latency_ms: (f64, f64),
}

/// What changes the cells over a rollout besides the weight.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moment {
    /// The rollout has started (users that arrive with it send traffic).
    pub started: bool,
    /// The bot has started failing.
    pub bot_failing: bool,
}

impl Population {
    /// Draws `model.users` ordinary users sending `total_rps` between them at
    /// `base_error_rate`, plus the error-prone users and the bot, if any.
    pub fn draw(
        model: UserModel,
        total_rps: f64,
        base_error_rate: f64,
        extras: &Extras,
        rng: &mut StdRng,
    ) -> Population {
        let plain = User {
            rps: 0.0,
            error_rate: base_error_rate,
            canary_extra_error_rate: 0.0,
            bucket: 0.0,
            shard: 0,
            is_bot: false,
            pinned_latency_ms: None,
            arrives_with_rollout: false,
        };
        let mut users: Vec<User> = (0..model.users)
            .map(|_| {
                let normal: f64 = StandardNormal.sample(rng);
                User {
                    rps: (model.activity_sigma * normal).exp(),
                    bucket: rng.random::<f64>(),
                    shard: rng.random_range(0..SHARDS),
                    ..plain
                }
            })
            .collect();
        if let Some(affected) = extras.affected {
            // Drawn apart from the bucket and shard: the bug does not follow the hash.
            for user in &mut users {
                if rng.random::<f64>() < affected.share {
                    user.canary_extra_error_rate = affected.extra_error_rate;
                }
            }
        }
        let activity: f64 = users.iter().map(|user| user.rps).sum();
        if activity > 0.0 {
            for user in &mut users {
                user.rps *= total_rps / activity;
            }
        }
        let special = |rps: f64, error_rate: f64, rng: &mut StdRng| User {
            rps,
            error_rate,
            bucket: rng.random::<f64>(),
            shard: rng.random_range(0..SHARDS),
            ..plain
        };
        if let Some(prone) = extras.error_prone {
            for _ in 0..prone.users {
                let user = special(prone.rps_each, prone.error_rate, rng);
                users.push(user);
            }
        }
        if let Some(bot) = extras.bot {
            let user = special(bot.rps, bot.error_rate, rng);
            users.push(User {
                is_bot: true,
                ..user
            });
        }
        if let Some(slow) = extras.slow_user {
            let user = special(slow.rps, base_error_rate, rng);
            users.push(User {
                bucket: 0.0,
                pinned_latency_ms: Some(slow.latency_ms),
                arrives_with_rollout: !slow.present_before,
                ..user
            });
        }
        Population {
            users,
            bot_starts_failing_at_s: extras.bot.and_then(|bot| bot.starts_failing_at_s),
            base_error_rate,
        }
    }

    /// When the bot starts failing, if it does so mid-rollout.
    pub fn bot_starts_failing_at_s(&self) -> Option<f64> {
        self.bot_starts_failing_at_s
    }

    /// Per shard, (canary, stable) rates at `weight` percent; `canary_extra_error_rate` is
    /// added to every canary user's propensity (a regression).
    pub fn cells(
        &self,
        weight: f64,
        canary_extra_error_rate: f64,
        moment: Moment,
    ) -> [(CellRates, CellRates); SHARDS] {
        let mut cells = [(CellRates::default(), CellRates::default()); SHARDS];
        let cut = (weight / 100.0).clamp(0.0, 1.0);
        for user in &self.users {
            if user.arrives_with_rollout && !moment.started {
                continue;
            }
            let own =
                if user.is_bot && self.bot_starts_failing_at_s.is_some() && !moment.bot_failing {
                    self.base_error_rate
                } else {
                    user.error_rate
                };
            let (canary, stable) = &mut cells[user.shard];
            let (cell, error_rate) = if user.bucket < cut {
                (
                    canary,
                    (own + canary_extra_error_rate + user.canary_extra_error_rate).min(1.0),
                )
            } else {
                (stable, own)
            };
            cell.requests += user.rps;
            cell.errors += user.rps * error_rate;
            if let Some(band) = user.pinned_latency_ms {
                cell.pinned_requests += user.rps;
                cell.pinned_latency_ms = band;
            }
        }
        cells
    }
}

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
/// Ordinary users in every simulated population.
pub const USERS: usize = 2000;
/// σ of ln(request rate) across ordinary users: the top 1% of users send about 20% of the
/// requests.
pub const ACTIVITY_SIGMA: f64 = 1.5;

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
}

/// One simulated user.
#[derive(Debug, Clone, Copy)]
struct User {
    rps: f64,
    error_rate: f64,
    bucket: f64,
    shard: usize,
}

/// The population of one rollout.
#[derive(Debug, Clone)]
pub struct Population {
    users: Vec<User>,
}

/// Request and 5xx rates (per second, before the diurnal swing) of one version in one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellRates {
    pub requests: f64,
    /// Errors from the users' own propensities.
    pub errors: f64,
}

impl Population {
    /// Draws `USERS` ordinary users sending `total_rps` between them at `base_error_rate`,
    /// plus the error-prone users and the bot, if any.
    pub fn draw(
        total_rps: f64,
        base_error_rate: f64,
        error_prone: Option<ErrorProne>,
        bot: Option<Bot>,
        rng: &mut StdRng,
    ) -> Population {
        let mut users: Vec<User> = (0..USERS)
            .map(|_| {
                let normal: f64 = StandardNormal.sample(rng);
                User {
                    rps: (ACTIVITY_SIGMA * normal).exp(),
                    error_rate: base_error_rate,
                    bucket: rng.random::<f64>(),
                    shard: rng.random_range(0..SHARDS),
                }
            })
            .collect();
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
        };
        if let Some(prone) = error_prone {
            for _ in 0..prone.users {
                let user = special(prone.rps_each, prone.error_rate, rng);
                users.push(user);
            }
        }
        if let Some(bot) = bot {
            let user = special(bot.rps, bot.error_rate, rng);
            users.push(user);
        }
        Population { users }
    }

    /// Per shard, (canary, stable) rates at `weight` percent; `canary_extra_error_rate` is
    /// added to every canary user's propensity (a regression).
    pub fn cells(
        &self,
        weight: f64,
        canary_extra_error_rate: f64,
    ) -> [(CellRates, CellRates); SHARDS] {
        let mut cells = [(CellRates::default(), CellRates::default()); SHARDS];
        let cut = (weight / 100.0).clamp(0.0, 1.0);
        for user in &self.users {
            let (canary, stable) = &mut cells[user.shard];
            let (cell, error_rate) = if user.bucket < cut {
                (canary, (user.error_rate + canary_extra_error_rate).min(1.0))
            } else {
                (stable, user.error_rate)
            };
            cell.requests += user.rps;
            cell.errors += user.rps * error_rate;
        }
        cells
    }
}

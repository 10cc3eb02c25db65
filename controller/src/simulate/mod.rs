//! The simulation harness: thousands of rollouts through the real `engine::decide`, fed
//! with synthetic per-version counts and latency histograms, to measure how often a healthy
//! canary is rolled back and how fast a regressed one is caught.
//!
//! - [`users`]: the population: heavy-tailed activity, per-user error propensities equal
//!   on both versions, hash buckets and shards (users only move stable → canary).
//! - [`traffic`]: Poisson arrivals per user shard, log-normal latencies in the proxy's
//!   histogram buckets and the filter's per-shard `slow` outcome.
//! - [`scenario`]: the worlds (diurnal swings, low traffic, shared error bursts, canary
//!   warm-up, regressions).
//! - [`rollout`]: one rollout, tick by tick, through the engine.
//! - [`report`]: many rollouts per scenario, summarised and rendered.
//!
//! Everything is seeded (`StdRng`, one seed per run derived from the base seed), so the
//! same options give the same figures on every machine, whatever the thread count.

pub mod report;
pub mod rollout;
pub mod scenario;
pub mod traffic;
pub mod users;

pub use report::{render_markdown, simulate_all, Options, ScenarioResult};
pub use rollout::{End, Variant};

//! The simulation harness: thousands of rollouts through the real `engine::decide`, fed
//! with synthetic per-version counts and latency histograms, to measure how often a healthy
//! canary is rolled back and how fast a regressed one is caught.
//!
//! - [`traffic`]: Poisson arrivals, Bernoulli errors, log-normal latencies in the proxy's
//!   histogram buckets.
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

pub use report::{render_markdown, simulate_all, Options, ScenarioResult};
pub use rollout::{End, Variant};

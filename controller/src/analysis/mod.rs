//! Statistics for judging a canary against stable on the same traffic.
//!
//! - [`sequential`]: an always-valid test on how events (errors, slow requests) split
//!   between the versions; its false-failure rate stays below α however often it is read.
//! - [`histogram`]: slow-request counts, threshold choice and quantiles from the
//!   per-version latency histograms.
//! - [`sharded`]: the same test with user shards as the unit of evidence, so that errors
//!   clustered by user (sticky assignment puts all of a user's errors on one version) do
//!   not pass for independent evidence.
//! - [`comparative`]: the `spec.analysis.comparative` check: cumulative counts kept in the
//!   status, the error and latency tests, and their Pass / Fail / Inconclusive decisions.

pub mod comparative;
pub mod histogram;
pub mod sequential;
pub mod sharded;

pub use comparative::{ComparativeCheck, ComparativeState, TestReport, WindowInput};

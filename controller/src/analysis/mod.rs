//! Statistics for judging a canary against stable on the same traffic.
//!
//! - [`sequential`]: an always-valid test on how events (errors, slow requests) split
//!   between the versions; its false-failure rate stays below α however often it is read.
//! - [`histogram`]: slow-request counts, threshold choice and quantiles from the
//!   per-version latency histograms.
//! - [`comparative`]: the `spec.analysis.comparative` check: cumulative counts kept in the
//!   status, the error and latency tests, and their Pass / Fail / Inconclusive decisions.

pub mod comparative;
pub mod histogram;
pub mod sequential;

pub use comparative::{ComparativeCheck, ComparativeState, Decision, TestReport, WindowInput};

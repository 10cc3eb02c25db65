//! stickycanary filter: pure config, matching and assignment, plus the proxy-wasm glue.
//!
//! Everything outside `wasm` is plain Rust with no proxy-wasm calls, tested natively and
//! shared with the controller (config schema, `assign`). [`flow`] is the per-request
//! flow against a small `Host` trait; the `wasm` module implements that trait with
//! proxy-wasm hostcalls and does nothing else.

pub mod assign;
pub mod config;
pub mod decision;
pub mod flow;
pub mod headers;
pub mod identity;
pub mod matching;
pub mod overrides;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod wasm;

//! stickycanary filter: pure config, matching and assignment, plus the proxy-wasm glue.
//!
//! Everything outside `wasm` is plain Rust with no proxy-wasm calls, tested natively and
//! shared with the controller (config schema, `assign`).

pub mod assign;
pub mod config;

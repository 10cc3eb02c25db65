//! stickycanary filter: pure config, matching and assignment, plus the proxy-wasm glue.
//!
//! Everything outside `wasm` is plain Rust with no proxy-wasm calls, tested natively and
//! shared with the controller (config schema, `assign`). The `wasm` module only turns
//! hostcalls into calls of [`decision::decide`] and stat updates.

pub mod assign;
pub mod config;
pub mod decision;
pub mod headers;
pub mod identity;
pub mod matching;
pub mod overrides;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod wasm;

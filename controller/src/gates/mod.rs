//! Gates (contract 5, "Gates"): webhooks at fixed points of a run, manual approvals that
//! live on the resource (or in local mode's status file), and rollout windows. Each floor
//! has its part:
//!
//! - `crd::gates`: the resource's fields; `validate::gates`: their cross-field checks.
//! - `engine::gates`, `engine::schedule`, `engine::approve`: what the answers mean, the
//!   rollout windows, the approve command (pure).
//! - [`webhook`]: the HTTP side both front ends share: which webhooks to call this tick, the
//!   calls themselves (timeout, body-size limit, no URL in any message), Events and
//!   post-rollout after it.
//! - `k8s::approve` and `local::approve`: `stickycanary approve` recording an approval.

pub mod webhook;

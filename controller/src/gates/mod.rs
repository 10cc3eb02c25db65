//! Gates (contract 5, "Gates"): webhooks at fixed points of a run, manual approvals that
//! live on the resource (or in local mode's status file), and rollout windows.
//!
//! - `crd::gates`: the resource's fields; `validate::gates`: their cross-field checks.
//! - [`schedule`]: rollout windows (pure).
//! - [`webhook`]: the HTTP side: which webhooks to call this tick, the calls themselves
//!   (timeout, body-size limit, no URL in any message), Events and post-rollout after it.
//! - [`approve`]: `stickycanary approve`, in the cluster and in local mode.
//! - `engine::gates` decides what the answers mean.

pub mod approve;
pub mod schedule;
pub mod webhook;

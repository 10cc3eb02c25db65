//! stickycanary controller library: the CanaryRollout resource, the pure decision engine,
//! and (from the controller-io side) Prometheus, weight targets, Kubernetes and local mode.

pub mod crd;
pub mod duration;
pub mod engine;
pub mod gates;
pub mod observation;
pub mod redact;
pub mod resources;
pub mod validate;

// controller-io: Prometheus source, weight targets, metrics and HTTP endpoints.
pub mod cli;
pub mod commands;
pub mod driver;
pub mod error;
pub mod field_managers;
pub mod k8s;
pub mod kube_error;
pub mod local;
pub mod metrics;
pub mod prometheus;
pub mod server;
pub mod target;

// analysis: the canary-vs-stable statistics and the simulation harness that measures them.
pub mod analysis;
pub mod simulate;

// integrations: the one outbound HTTP client stack, and alert providers on top of it.
pub mod alerts;
pub mod http;

//! stickycanary controller library: the CanaryRollout resource, the pure decision engine,
//! and (from the controller-io side) Prometheus, weight targets, Kubernetes and local mode.

pub mod crd;
pub mod duration;
pub mod engine;
pub mod observation;
pub mod validate;


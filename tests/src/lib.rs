//! End-to-end harness for stickycanary: everything here starts or talks to real processes
//! on 127.0.0.1 (Envoy running the built `.wasm`, Prometheus, the `sc-backend` test upstreams)
//! and tears them down again when the owning value is dropped, also when a test panics.
//!
//! Modules, one job each:
//! - [`ports`]: free loopback ports and "is it listening yet".
//! - [`proc`]: [`proc::ChildGuard`], a child process that is killed and reaped on drop, logging to a file.
//! - [`paths`]: the workspace root, the built wasm, the Envoy/Prometheus/cargo binaries.
//! - [`http1`]: a minimal blocking HTTP/1.1 client and request parser (keep-alive, chunked).
//! - [`envoy`]: bootstrap + ECDS file, start Envoy, swap the filter config by file move, read stats.
//! - [`prometheus`]: start Prometheus with a temp TSDB, instant queries, stop/restart.
//! - [`backend`]: start `sc-backend` and steer it at runtime; [`backend_server`] is its server logic.
//! - [`cadvisor`]: a loopback exporter of cAdvisor-shaped container series (the kubelet's `/metrics/cadvisor`).
//! - [`load`]: the load generator behind `sc-load` (many users, per-version/status counts).
//! - [`promql_exprs`]: every PromQL expression shipped under `manifests/` (dashboard, rules, KEDA).
//! - [`promtext`]: parse Prometheus text exposition (Envoy's `/stats/prometheus`).
//! - [`cli`]: clap parsing with one-line errors for every harness and bench binary.
//! - [`host`], [`stats`], [`interrupt`]: what the benches share: the machine and its load
//!   average, the median, Ctrl-C as a flag.
//! - [`stack`]: the whole local stack (backends, Envoy, Prometheus, `stickycanary local`) of `make demo` and the rollout tests.

pub mod backend;
pub mod backend_server;
pub mod cadvisor;
pub mod cli;
pub mod envoy;
pub mod error;
pub mod host;
pub mod http1;
pub mod interrupt;
pub mod load;
pub mod paths;
pub mod ports;
pub mod proc;
pub mod prometheus;
pub mod promql_exprs;
pub mod promtext;
pub mod stack;
pub mod stats;

pub use error::{Error, Result};

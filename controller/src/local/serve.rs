//! `stickycanary local --metrics-addr`: the same `/metrics`, `/healthz` and `/readyz` as
//! `controller` mode (`server.rs`, `metrics.rs`), served from the local loop's runtime and
//! brought up to date after every interval.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::crd::{CanaryRolloutSpec, CanaryRolloutStatus, Phase};
use crate::error::Error;
use crate::k8s::reconcile::analysis_result;
use crate::metrics::Metrics;
use crate::server::{serve_on, ServerState};

use super::TickReport;

/// The running endpoint server; stopped by [`MetricsServer::shutdown`] (or with the runtime).
pub struct MetricsServer {
    pub state: ServerState,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// Binds `addr` (a bind failure is a one-line error, before anything is changed) and
    /// serves in the background. `/readyz` says 503 until [`MetricsServer::set_ready`].
    pub async fn start(addr: SocketAddr) -> Result<MetricsServer, Error> {
        let cannot = |e: std::io::Error| Error::Io(format!("--metrics-addr {addr}: {e}"));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
        let addr = listener.local_addr().map_err(cannot)?;
        let state = ServerState {
            metrics: Metrics::new(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(MetricsServer {
            state,
            addr,
            stop,
            task,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Ready once the loop has run an interval and saved its status.
    pub fn set_ready(&self) {
        self.state.ready.store(true, Ordering::Relaxed);
    }

    /// Stops accepting, lets in-flight scrapes finish (bounded), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), self.task).await {
            tracing::warn!(error = %e, "metrics server stopped with an error");
        }
    }
}

/// The rollout a local loop drives, as the metrics label it.
pub struct RolloutLabel<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The series as they stand before the first interval: the saved weight and phase, and a
/// 0 for every rollback reason (so Prometheus sees a later rollback as an increase).
pub fn record_start(
    metrics: &Metrics,
    rollout: &RolloutLabel<'_>,
    spec: &CanaryRolloutSpec,
    status: &CanaryRolloutStatus,
) {
    metrics.init_rollbacks(rollout.namespace, rollout.name, spec);
    metrics.set_rollout(rollout.namespace, rollout.name, status.weight, status.phase);
}

/// One interval, as the controller's reconcile records it: the analysis result, a rollback
/// when this interval rolled back, and the weight and phase now in force.
pub fn record_tick(
    metrics: &Metrics,
    rollout: &RolloutLabel<'_>,
    previous: &CanaryRolloutStatus,
    report: &TickReport,
) {
    metrics.count_analysis(analysis_result(&report.metrics, &report.status));
    if report.status.phase == Phase::RolledBack && previous.phase != Phase::RolledBack {
        metrics.count_rollback(
            rollout.namespace,
            rollout.name,
            report
                .status
                .rollback_reason
                .as_deref()
                .unwrap_or("unknown"),
        );
    }
    metrics.set_rollout(
        rollout.namespace,
        rollout.name,
        report.status.weight,
        report.status.phase,
    );
}

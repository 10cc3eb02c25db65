//! The I/O side's error enum: every variant prints as one line naming the object and the
//! reason, and has a short label for `stickycanary_reconcile_errors_total{error}`.

use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(String),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("status file {path}: {reason}")]
    StatusFile { path: String, reason: String },
    #[error("rollout file {path}: {reason}")]
    RolloutFile { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
    /// A Deployment or ScaledObject call of the release lifecycle.
    #[error("{0}")]
    Workload(#[source] Box<crate::k8s::deployments::WorkloadError>),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Target(e) => e.metric_label(),
            Error::StatusFile { .. } => "status_file",
            Error::RolloutFile { .. } => "rollout_file",
            Error::Invalid(_) => "invalid",
            Error::Io(_) => "io",
            Error::Workload(_) => "workload",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(crate::target::wasmplugin::one_line(&e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

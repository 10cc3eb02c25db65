//! The I/O side's error enum: every variant prints as one line naming the object and the
//! reason, keeps its cause as `source()` (a `kube::Error` stays one, so callers match on
//! its status code, never on its text), and has a short label from a fixed set for
//! `stickycanary_reconcile_errors_total{error}` (controller-rs's `metric_label()`).

use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {}", one_line(source))]
    Kube {
        /// What was being done, e.g. "kubernetes API" or "cannot list CanaryRollouts".
        context: &'static str,
        #[source]
        source: kube::Error,
    },
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
    /// A Kubernetes error with what was being done.
    pub fn kube(context: &'static str, source: kube::Error) -> Self {
        Error::Kube { context, source }
    }

    /// The error's metric label: one of a fixed set, whatever the message says.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => kube_label(source),
            Error::Target(e) => e.metric_label(),
            Error::StatusFile { .. } => "status_file",
            Error::RolloutFile { .. } => "rollout_file",
            Error::Invalid(_) => "invalid",
            Error::Io(_) => "io",
            Error::Workload(_) => "workload",
        }
    }
}

/// The label of a Kubernetes error, by HTTP status code (never by message text).
pub fn kube_label(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(status) => match status.code {
            403 => "kube_forbidden",
            404 => "kube_not_found",
            409 => "kube_conflict",
            500..=599 => "kube_server_error",
            _ => "kube_api_error",
        },
        _ => "kube_transport",
    }
}

pub use crate::kube_error::{is_conflict, one_line};

impl From<kube::Error> for Error {
    fn from(source: kube::Error) -> Self {
        Error::kube("kubernetes API", source)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_kube_error_stays_the_source_and_prints_on_one_line() {
        let e = Error::from(api(409, "Conflict", "the object\nhas been modified"));
        let source = std::error::Error::source(&e).expect("kube::Error kept as the source");
        let kube = source.downcast_ref::<kube::Error>().expect("a kube::Error");
        assert!(is_conflict(kube));
        assert_eq!(
            e.to_string(),
            "kubernetes API: 409 Conflict: the object has been modified"
        );
    }

    #[test]
    fn a_conflict_is_known_by_its_status_code_not_its_text() {
        assert!(is_conflict(&api(409, "", "")));
        assert!(!is_conflict(&api(500, "InternalError", "409 Conflict")));
        assert!(!is_conflict(&api(422, "Conflict", "conflict")));
    }

    #[test]
    fn metric_labels_come_from_a_fixed_set_whatever_the_message() {
        let labels: std::collections::BTreeSet<_> = [
            api(403, "Forbidden", "user x cannot patch"),
            api(404, "NotFound", "gone"),
            api(409, "Conflict", "modified"),
            api(503, "ServiceUnavailable", "etcd 1234"),
            api(500, "InternalError", "random text 98765"),
            api(422, "Invalid", "spec.x"),
        ]
        .into_iter()
        .map(|e| Error::from(e).metric_label())
        .collect();
        let expected = [
            "kube_api_error",
            "kube_conflict",
            "kube_forbidden",
            "kube_not_found",
            "kube_server_error",
        ];
        assert_eq!(labels, expected.into_iter().collect());
    }
}

//! Reading a Kubernetes client error: what the error enum (`crate::error`) and the weight
//! targets (`crate::target`) both need, kept below both so that neither imports the other.

/// Whether a Kubernetes error is a 409 Conflict (status code, not message text).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

/// Whether a Kubernetes error is a 404 Not Found.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// A kube error on one line (API errors carry code, reason and message).
pub fn one_line(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message).replace('\n', " ")
        }
        other => other.to_string().replace('\n', " "),
    }
}

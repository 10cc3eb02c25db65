//! The benchmark's one error type: harness failures plus "this run cannot be trusted" reasons.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Harness(#[from] stickycanary_e2e::Error),
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, BenchError>;

pub fn failed(message: impl Into<String>) -> BenchError {
    BenchError::Failed(message.into())
}

//! How the agent ends: exit codes a script can act on (sysexits where one fits).

/// A failure with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What to print.
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input or configuration (EX_USAGE-like: 64).
    pub fn invalid(msg: impl Into<String>) -> Self {
        Failure {
            code: 64,
            error: anyhow::anyhow!(msg.into()),
        }
    }
    /// A needed program or service is missing (EX_UNAVAILABLE: 69).
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Failure {
            code: 69,
            error: anyhow::anyhow!(msg.into()),
        }
    }
    /// The job ran and failed (1).
    pub fn failed(msg: impl Into<String>) -> Self {
        Failure {
            code: 1,
            error: anyhow::anyhow!(msg.into()),
        }
    }
    /// Anything else (1).
    pub fn other(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

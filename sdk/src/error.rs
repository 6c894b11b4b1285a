//! The SDK's one error type.

use std::time::Duration;

/// Everything an SDK call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// None of the endpoints answered `WatchMaster`.
    #[error("no haplane endpoint answered: {0}")]
    NoEndpoint(String),
    /// An endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is not valid.
        message: String,
    },
    /// No master was known within the wait.
    #[error("no master within {0:?}")]
    NoMaster(Duration),
    /// The server refused the request (bad input, a conflict, not found, ...).
    #[error("{code:?}: {message}")]
    Rejected {
        /// The gRPC status code the server answered with.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The call may or may not have been applied (the connection broke mid-call); it was not
    /// retried because it is not idempotent.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The server sent something the SDK cannot read.
    #[error("unreadable answer: {0}")]
    Protocol(String),
    /// The client was dropped or its background task stopped.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        Error::Rejected {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

//! The SDK's one error type.

use haplane::MasterRef;
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
        /// Why, by machine, when the server said (its `google.rpc.ErrorInfo` detail).
        reason: Option<Reason>,
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

/// Why a server refused, read from the `google.rpc.ErrorInfo` detail of its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The node is not the master; the master it knows, if any.
    NotMaster {
        /// The master the refusing node named.
        master: Option<MasterRef>,
    },
    /// The node holds no managed state (a STANDBY, or a copy still loading).
    StateNotLoaded,
    /// The managed-state log cannot be read past a position (the message names the key).
    StateDamaged,
    /// A watch asked to resume from a position no longer kept: list again.
    Compacted,
    /// The entity is not at the expected version.
    VersionConflict,
    /// A reason this SDK does not know.
    Other(String),
}

impl Reason {
    /// The reason in `status`'s details, if it carries haplane's `ErrorInfo`.
    fn of(status: &tonic::Status) -> Option<Self> {
        use haplane::wire::{ERROR_DOMAIN, ERROR_MASTER_ID, ERROR_MASTER_URI, reason};
        use tonic_types::StatusExt;
        let info = status.get_details_error_info()?;
        if info.domain != ERROR_DOMAIN {
            return None;
        }
        let field = |key: &str| info.metadata.get(key).cloned().unwrap_or_default();
        Some(match info.reason.as_str() {
            reason::NOT_MASTER => Reason::NotMaster {
                master: MasterRef::from_wire(field(ERROR_MASTER_ID), field(ERROR_MASTER_URI)),
            },
            reason::STATE_NOT_LOADED => Reason::StateNotLoaded,
            reason::STATE_DAMAGED => Reason::StateDamaged,
            reason::COMPACTED => Reason::Compacted,
            reason::VERSION_CONFLICT => Reason::VersionConflict,
            other => Reason::Other(other.to_owned()),
        })
    }
}

impl Error {
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        Error::Rejected {
            code: status.code(),
            message: status.message().to_owned(),
            reason: Reason::of(status),
        }
    }

    /// The error of a call that is not tried again: a refusal is the server's answer; a call
    /// that broke on the way may or may not have been applied.
    pub(crate) fn from_final_status(status: &tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Error::Unknown(status.message().to_owned())
            }
            _ => Error::from_status(status),
        }
    }

    /// Why the server refused, when it said (`None` for other errors).
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Error::Rejected { reason, .. } => reason.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn refusal(reason: &str, domain: &str, metadata: &[(&str, &str)]) -> tonic::Status {
        let metadata: std::collections::HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tonic::Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "refused",
            ErrorDetails::with_error_info(reason, domain, metadata),
        )
    }

    #[test]
    fn refusals_are_typed_by_their_error_info() {
        let not_master = Error::from_status(&refusal(
            "NOT_MASTER",
            "haplane.v1",
            &[("masterId", "b"), ("masterUri", "http://b:1")],
        ));
        assert_eq!(
            not_master.reason(),
            Some(&Reason::NotMaster {
                master: Some(MasterRef {
                    id: "b".into(),
                    uri: "http://b:1".into()
                })
            })
        );
        let unknown_master = Error::from_status(&refusal("NOT_MASTER", "haplane.v1", &[]));
        assert_eq!(
            unknown_master.reason(),
            Some(&Reason::NotMaster { master: None })
        );
        let not_loaded = Error::from_status(&refusal("STATE_NOT_LOADED", "haplane.v1", &[]));
        assert_eq!(not_loaded.reason(), Some(&Reason::StateNotLoaded));
        let foreign = Error::from_status(&refusal("NOT_MASTER", "elsewhere.example", &[]));
        assert_eq!(foreign.reason(), None);
        let plain = Error::from_status(&tonic::Status::failed_precondition("no details"));
        assert_eq!(plain.reason(), None);
        assert_eq!(Error::Closed.reason(), None);
    }
}

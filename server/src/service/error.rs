//! The service's error kinds and the one table that maps them to gRPC status codes and HTTP
//! statuses. A caller's mistake is never INTERNAL or 500.

use crate::node::NodeError;
use crate::service::WatchersFull;
use crate::store::StoreError;
use haplane::wire::{MASTER_ID_METADATA, MASTER_URI_METADATA};
use haplane::{InvalidValue, MasterRef};
use std::collections::HashMap;

/// Brooklyn's message for a write sent to a non-master.
pub const NOT_MASTER_MESSAGE: &str =
    "This request is only permitted against an active primary server";

/// What went wrong serving a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// A master-only call reached a non-master.
    #[error("{NOT_MASTER_MESSAGE}")]
    NotMaster { master: Option<MasterRef> },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    /// An expected version did not match (optimistic concurrency).
    #[error("{0}")]
    Conflict(String),
    /// A read on a node that holds no managed state (STANDBY, FAILED, ...).
    #[error("{0}")]
    StateNotLoaded(String),
    /// The store is unreachable or the node is shutting down; trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The managed-state log cannot be read past a position (a corrupt or missing entry).
    #[error("managed state damaged: {0}")]
    DataLoss(String),
    /// A watch asked to resume from a position no longer kept.
    #[error("{0}")]
    Compacted(String),
}

impl From<InvalidValue> for ServiceError {
    fn from(err: InvalidValue) -> Self {
        ServiceError::InvalidArgument {
            field: err.field.to_owned(),
            message: err.reason,
        }
    }
}

impl From<NodeError> for ServiceError {
    fn from(err: NodeError) -> Self {
        match err {
            NodeError::NotMaster { master } => ServiceError::NotMaster { master },
            NodeError::FailedPrecondition(message) => ServiceError::FailedPrecondition(message),
            NodeError::NotFound(message) => ServiceError::NotFound(message),
            NodeError::Unavailable(message) => ServiceError::Unavailable(message),
            NodeError::Store(err) => err.into(),
        }
    }
}

/// A watch past its cap: the client may retry later or elsewhere.
impl From<WatchersFull> for tonic::Status {
    fn from(full: WatchersFull) -> Self {
        tonic::Status::resource_exhausted(full.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => ServiceError::NotFound(err.to_string()),
            StoreError::Unavailable { .. } => ServiceError::Unavailable(err.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl ServiceError {
    /// The HTTP status for the REST shim.
    pub fn http_status(&self) -> u16 {
        match self {
            ServiceError::InvalidArgument { .. } => 400,
            ServiceError::NotMaster { .. } => 403,
            ServiceError::FailedPrecondition(_) => 409,
            ServiceError::NotFound(_) => 404,
            ServiceError::Conflict(_) => 412,
            ServiceError::StateNotLoaded(_) => 403,
            ServiceError::Unavailable(_) => 503,
            ServiceError::Internal(_) | ServiceError::DataLoss(_) => 500,
            ServiceError::Compacted(_) => 410,
        }
    }
}

impl ServiceError {
    /// The `google.rpc.ErrorInfo` reason of this error, and its metadata, if it has one.
    fn error_info(&self) -> Option<(&'static str, HashMap<String, String>)> {
        use haplane::wire::{ERROR_MASTER_ID, ERROR_MASTER_URI, reason};
        Some(match self {
            ServiceError::NotMaster { master } => {
                let (id, uri) = MasterRef::to_wire(master.as_ref());
                let metadata = [(ERROR_MASTER_ID, id), (ERROR_MASTER_URI, uri)]
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect();
                (reason::NOT_MASTER, metadata)
            }
            ServiceError::StateNotLoaded(_) => (reason::STATE_NOT_LOADED, HashMap::new()),
            ServiceError::DataLoss(_) => (reason::STATE_DAMAGED, HashMap::new()),
            ServiceError::Compacted(_) => (reason::COMPACTED, HashMap::new()),
            ServiceError::Conflict(_) => (reason::VERSION_CONFLICT, HashMap::new()),
            _ => return None,
        })
    }
}

impl From<ServiceError> for tonic::Status {
    /// The status code and message, with a `google.rpc.ErrorInfo` detail for the refusals a
    /// client acts on; a not-master refusal also names the master in metadata.
    fn from(err: ServiceError) -> Self {
        let message = err.to_string();
        let code = match &err {
            ServiceError::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            ServiceError::NotMaster { master } => {
                let message = format!(
                    "{message}; master is {}",
                    master.as_ref().map_or("unknown", |m| &m.id)
                );
                let mut status = with_info(tonic::Code::FailedPrecondition, message, &err);
                let (master_id, master_uri) = MasterRef::to_wire(master.as_ref());
                for (key, value) in [
                    (MASTER_ID_METADATA, master_id),
                    (MASTER_URI_METADATA, master_uri),
                ] {
                    if let Ok(value) = value.parse() {
                        status.metadata_mut().insert(key, value);
                    }
                }
                return status;
            }
            ServiceError::FailedPrecondition(_) | ServiceError::StateNotLoaded(_) => {
                tonic::Code::FailedPrecondition
            }
            ServiceError::NotFound(_) => tonic::Code::NotFound,
            ServiceError::Conflict(_) => tonic::Code::Aborted,
            ServiceError::Unavailable(_) => tonic::Code::Unavailable,
            ServiceError::Internal(_) => tonic::Code::Internal,
            ServiceError::DataLoss(_) => tonic::Code::DataLoss,
            ServiceError::Compacted(_) => tonic::Code::OutOfRange,
        };
        with_info(code, message, &err)
    }
}

/// A status with `err`'s `ErrorInfo` detail, if it has one, and for an invalid argument a
/// `google.rpc.BadRequest` naming the field, so generated clients can point at it.
fn with_info(code: tonic::Code, message: String, err: &ServiceError) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let details = match (err, err.error_info()) {
        (_, Some((reason, metadata))) => {
            ErrorDetails::with_error_info(reason, haplane::wire::ERROR_DOMAIN, metadata)
        }
        (ServiceError::InvalidArgument { field, message }, None) => {
            ErrorDetails::with_bad_request_violation(field, message)
        }
        _ => return tonic::Status::new(code, message),
    };
    tonic::Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_mistakes_map_to_client_errors() {
        let invalid = ServiceError::from(InvalidValue::new("mode", "bad"));
        assert_eq!(invalid.http_status(), 400);
        let status = tonic::Status::from(invalid);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad_request =
            tonic_types::StatusExt::get_details_bad_request(&status).expect("a BadRequest detail");
        assert_eq!(
            bad_request
                .field_violations
                .iter()
                .map(|v| (v.field.as_str(), v.description.as_str()))
                .collect::<Vec<_>>(),
            [("mode", "bad")]
        );
        let not_master = ServiceError::NotMaster {
            master: MasterRef::from_wire("a".into(), "http://a".into()),
        };
        assert_eq!(not_master.http_status(), 403);
        let status = tonic::Status::from(not_master);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.metadata().get(MASTER_ID_METADATA).unwrap(), "a");
        assert_eq!(
            status.metadata().get(MASTER_URI_METADATA).unwrap(),
            "http://a"
        );
        let unavailable = ServiceError::from(StoreError::Unavailable {
            message: "down".into(),
        });
        assert_eq!(
            tonic::Status::from(unavailable).code(),
            tonic::Code::Unavailable
        );
    }
}

//! Names on the wire that the server, the SDK and other clients must spell alike: gRPC metadata,
//! HTTP headers and the master health service.

/// gRPC metadata on a `FAILED_PRECONDITION` "not the master" answer: the master's node id...
pub const MASTER_ID_METADATA: &str = "haplane-master-id";
/// ...and its URI (either may be empty when no master is known).
pub const MASTER_URI_METADATA: &str = "haplane-master-uri";
/// The `google.rpc.ErrorInfo` domain of haplane's error details.
pub const ERROR_DOMAIN: &str = "haplane.v1";
/// `ErrorInfo.reason` values, so a client can tell refusals apart by machine.
pub mod reason {
    /// This node is not the master; the metadata name the master it knows (`masterId`,
    /// `masterUri`, empty when none).
    pub const NOT_MASTER: &str = "NOT_MASTER";
    /// This node holds no managed state (a STANDBY, or a copy still loading).
    pub const STATE_NOT_LOADED: &str = "STATE_NOT_LOADED";
    /// The managed-state log cannot be read past a position (the message names the key).
    pub const STATE_DAMAGED: &str = "STATE_DAMAGED";
    /// A watch asked to resume from a position no longer kept.
    pub const COMPACTED: &str = "COMPACTED";
    /// An entity is not at the expected version (`If-Match`).
    pub const VERSION_CONFLICT: &str = "VERSION_CONFLICT";
}
/// `ErrorInfo.metadata` keys of a `NOT_MASTER` refusal.
pub const ERROR_MASTER_ID: &str = "masterId";
/// See [`ERROR_MASTER_ID`].
pub const ERROR_MASTER_URI: &str = "masterUri";
/// gRPC request metadata (`true`) that lets `SetState` / `SetPriority` act on a non-master.
pub const ALLOW_NON_MASTER_METADATA: &str = "allow-non-master-access";
/// REST headers (`true`) with the same effect: Brooklyn's, AMP's and haplane's.
pub const ALLOW_NON_MASTER_HEADERS: [&str; 3] = [
    "brooklyn-allow-non-master-access",
    "amp-allow-non-master-access",
    "haplane-allow-non-master-access",
];
/// The HTTP Basic user name nodes present with a peer secret (`--peer-secret-file`).
pub const PEER_USER: &str = "haplane-peer";
/// Whether a request is gRPC by its `content-type` (`application/grpc`, `application/grpc+proto`,
/// ...), so that it is answered the gRPC way.
pub fn is_grpc_request(headers: &tonic::codegen::http::HeaderMap) -> bool {
    headers
        .get(tonic::codegen::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc.health.v1` service name that is SERVING only on the master.
pub const MASTER_HEALTH_SERVICE: &str = "haplane.v1.Master";

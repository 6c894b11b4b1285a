//! Names on the wire that the server, the SDK and other clients must spell alike: gRPC metadata,
//! HTTP headers and the master health service.

/// gRPC metadata on a `FAILED_PRECONDITION` "not the master" answer: the master's node id...
pub const MASTER_ID_METADATA: &str = "haplane-master-id";
/// ...and its URI (either may be empty when no master is known).
pub const MASTER_URI_METADATA: &str = "haplane-master-uri";
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

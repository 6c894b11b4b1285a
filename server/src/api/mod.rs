//! The adapters over the HA service: gRPC (`grpc/`, with the peer client the node calls), the
//! Brooklyn-compatible REST shim, console and metrics (`rest/`), and the credentials check both
//! share (`auth/`).

pub mod auth;
pub mod grpc;
pub mod rest;

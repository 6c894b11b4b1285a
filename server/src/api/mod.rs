//! The adapters over the HA service: gRPC (`grpc/`, with the peer client the node calls), the
//! Brooklyn-compatible REST shim, console and metrics (`rest/`), the credentials check both share
//! (`auth.rs`) and the per-thread relay that wakes watch streams (`watch_relay.rs`).

pub mod auth;
pub mod grpc;
pub mod rest;
pub mod watch_relay;

//! haplane-server: one HA node. The election core is pure (`election`), the runtime loop
//! (`node`) drives it against a `Store`, and gRPC / REST adapters serve one `HaCore`.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod election;
pub mod error;
pub mod grpc;
pub mod grpc_entities;
pub mod ha_cli;
pub mod metrics;
pub mod node;
pub mod rest;
pub mod rest_entities;
pub mod serve;
pub mod service;
pub mod state;
pub mod store;
pub mod watch_relay;

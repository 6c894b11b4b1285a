//! haplane-server: one HA node. The election core is pure (`election`), the runtime loop
//! (`node`) drives it against a `Store`, and gRPC / REST adapters serve one `HaCore`.

#![warn(clippy::clone_on_ref_ptr, unreachable_pub)]

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod election;
pub mod node;
pub mod participant;
pub mod serve;
pub mod service;
pub mod state;
pub mod store;

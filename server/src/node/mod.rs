//! The node runtime: one task that owns the `Election`, polls the store, executes the election's
//! decisions and operator commands, and publishes the node's snapshot and master view. The
//! service layer talks to it through a `NodeHandle`.
//!
//! Where each concern lives:
//! - `runtime.rs`: the loop (`start`, the poll, commands, the graceful stop) and the bound on
//!   every store call;
//! - `join.rs`: joining the plane at start-up, and the periodic check that the store is still
//!   the one joined;
//! - `plane_store.rs`: the store layout (keys, JSON) and the reads and writes of records and
//!   claims that feed the election;
//! - `operator.rs`: operator commands (mode, promotion and step-down, listing, record removal);
//! - `peers.rs`: how the node reaches its peers (`Peers`, implemented by the gRPC client);
//! - `publish.rs`: what readers see (`Snapshot`, the master view, the state history);
//! - `handle.rs`: the handle the service layer holds.

mod handle;
mod join;
mod operator;
mod peers;
mod plane_store;
mod publish;
mod runtime;
#[cfg(test)]
mod tests;

pub use handle::{Listing, NodeCounters, NodeHandle};
pub use peers::{PeerError, Peers};
pub use publish::{Snapshot, StateChange};
pub use runtime::{hostname, start};

use crate::store::StoreError;
use haplane::{HaMode, NodeId};
use std::sync::Arc;
use std::time::Duration;

/// Runtime settings of a node (derived from `config::Settings` once the port is known).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub node_id: NodeId,
    pub node_uri: String,
    pub ha_mode: HaMode,
    pub priority: i64,
    pub version: String,
    pub poll_period: Duration,
    pub heartbeat_timeout: Duration,
    pub safety_margin: Duration,
    pub record_retention: Duration,
    /// Existing state is required (`--persist rebind`).
    pub require_existing: bool,
    /// Delete managed state at start-up (`--persist clean`), unless a live master holds it.
    pub clean_state: bool,
    /// How to reach peers for nudges and step-down requests.
    pub peers: Arc<dyn Peers>,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store {store}: {source}")]
    Store { store: String, source: StoreError },
    #[error("{0}")]
    Refused(String),
    #[error("store {store}: {message}")]
    Corrupt { store: String, message: String },
}

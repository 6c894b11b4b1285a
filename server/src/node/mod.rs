//! The node runtime: one task that owns the `Election`, polls the store, executes the election's
//! decisions and operator commands, and publishes the node's snapshot and master view. The
//! service layer talks to it through a `NodeHandle`.
//!
//! Where each concern lives:
//! - `runtime.rs`: the loop (`start`, the poll, commands, the graceful stop) and the bound on
//!   every store call;
//! - `join.rs`: joining the plane at start-up, and the periodic check that the store is still
//!   the one joined;
//! - `plane_store.rs`: the reads and writes (keys and encoding from `store::layout`) of records and
//!   claims that feed the election;
//! - `operator.rs`: operator commands (mode, promotion and step-down, listing, record removal);
//! - `peers.rs`: how the node reaches its peers (`Peers`, implemented by the gRPC client);
//! - `publish.rs`: what readers see (`Snapshot`, the master view, the state history);
//! - `role.rs`: this node's own role (leader until when) and the stream of its changes;
//! - `handle.rs`: the handle the service layer holds.

mod handle;
mod join;
mod operator;
mod peers;
mod plane_store;
mod publish;
mod role;
mod runtime;
#[cfg(test)]
mod tests;

pub use handle::{Guard, Listing, NodeCounters, NodeHandle};
pub use peers::{PeerError, Peers, StepDownAnswer};
pub use publish::{Snapshot, StateChange};
pub use role::Role;
pub use runtime::{hostname, start};

use crate::election::{ElectionConfig, StartupRefusal};
use crate::store::StoreError;
use haplane::{Epoch, HaMode, MasterRef};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// `--persist`: what to do with existing state at start-up (docs/behaviour.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    Disabled,
    Auto,
    Rebind,
    Clean,
}

impl FromStr for PersistMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disabled" => Ok(Self::Disabled),
            "auto" => Ok(Self::Auto),
            "rebind" => Ok(Self::Rebind),
            "clean" => Ok(Self::Clean),
            _ => Err(format!(
                "{text:?} is not one of disabled, auto, rebind, clean"
            )),
        }
    }
}

/// How long an AUTO node waits after start-up before claiming an empty plane (the election's
/// `startup_grace`): two polls, so that nodes started together see each other's records.
pub fn startup_grace(poll_period: Duration) -> Duration {
    poll_period * 2
}

/// Runtime settings of a node (derived from `config::Settings` once the port is known).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Identity and timings, as the election uses them.
    pub election: ElectionConfig,
    pub ha_mode: HaMode,
    pub priority: i64,
    pub poll_period: Duration,
    pub record_retention: Duration,
    /// `Rebind` requires existing state; `Clean` deletes managed state at start-up unless a
    /// live master holds it.
    pub persist: PersistMode,
    /// How to reach peers for nudges and step-down requests.
    pub peers: Arc<dyn Peers>,
}

/// Why the node refused a command or could not carry it out; the api layer maps it to its own
/// error (`ServiceError`) in one place.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A master-only command on a node that does not act as master; names the master it knows.
    #[error("not the master")]
    NotMaster { master: Option<MasterRef> },
    /// Refused in this node's current state (mode rules, the master's own record).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    /// Try again (shutting down, a lost claim race).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a node refused to start (its messages name the setting that decided it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("--ha-mode master: node {master} is a live master (epoch {epoch})")]
    LiveMaster { master: String, epoch: Epoch },
    #[error("--ha-mode {}: there is no live master to follow", mode_flag(*.0))]
    NoMasterToFollow(HaMode),
    #[error("--ha-mode master: another node claimed epoch {0} first")]
    ClaimLost(Epoch),
    #[error(
        "--persist clean: another node's record is live; refusing to wipe the state it may serve (stop every node first)"
    )]
    CleanWhileLive,
    #[error("could not tell whether the current master is live")]
    MasterLivenessUnknown,
    #[error(
        "--node-id {node_id} is in use: its record is still being written (pid {pid} on {hostname}); stop that process or choose another id"
    )]
    NodeIdInUse {
        node_id: String,
        pid: u32,
        hostname: String,
    },
    #[error("--persist rebind: {store} holds no plane to rebind to")]
    NothingToRebind { store: String },
}

impl From<StartupRefusal> for Refusal {
    fn from(refusal: StartupRefusal) -> Self {
        match refusal {
            StartupRefusal::LiveMaster { master, epoch } => Refusal::LiveMaster { master, epoch },
            StartupRefusal::NoMasterToFollow(mode) => Refusal::NoMasterToFollow(mode),
        }
    }
}

/// How `mode` is written on the command line (`hot-standby`).
fn mode_flag(mode: HaMode) -> String {
    mode.as_str().to_ascii_lowercase().replace('_', "-")
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store {store}: {source}")]
    Store { store: String, source: StoreError },
    #[error("{0}")]
    Refused(Refusal),
    #[error("store {store}: {message}")]
    Corrupt { store: String, message: String },
}

//! What the client's calls answer: a node's state, the plane's records, entities, and the
//! client's own counters.

use haplane::{MasterRef, NodeState};
use std::time::Duration;

/// What the client has done, for tests and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Unary RPCs of the SDK's typed calls (not the follower's `GetState` probes of a node that
    /// shows no master; `master_channel` traffic is the caller's).
    pub unary_calls: u64,
    /// `WatchMaster` streams opened (one per member moved to).
    pub watch_streams: u64,
}

/// One node, as `get_state` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub node_id: String,
    pub state: NodeState,
    pub priority: i64,
    pub epoch: u64,
    /// The master the node knows of, `None` while it knows none.
    pub master: Option<MasterRef>,
    pub plane_id: String,
}

/// One node record, as `list_states` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub node_uri: String,
    pub status: NodeState,
    pub priority: i64,
    pub live: bool,
    pub last_seen_age: Duration,
    pub heartbeat: u64,
    pub version: String,
}

/// The plane, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneStates {
    pub plane_id: String,
    pub own_id: String,
    /// The master's id, `None` while the plane has none.
    pub master_id: Option<String>,
    pub epoch: u64,
    pub nodes: Vec<NodeInfo>,
}

/// A managed-state entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: String,
    /// A JSON object.
    pub attributes: serde_json::Value,
    pub version: u64,
    pub updated_epoch: u64,
}

//! What the client's calls answer: a node's state, the plane's records, entities, and the
//! client's own counters.

use haplane::{MasterRef, NodeState};
use std::time::Duration;

/// What the client has done, for tests and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Unary RPCs of the SDK's typed calls (not the follower's `GetState` probes of a node that
    /// shows no master; `master_channel` traffic is the caller's).
    pub unary_calls: u64,
    /// `WatchMaster` streams opened (one per member moved to).
    pub watch_streams: u64,
}

/// One node, as `get_state` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateInfo {
    /// The node's id.
    pub node_id: String,
    /// The node's state now.
    pub state: NodeState,
    /// The node's election priority; the higher is preferred.
    pub priority: i64,
    /// The highest epoch the node knows of.
    pub epoch: u64,
    /// The master the node knows of, `None` while it knows none.
    pub master: Option<MasterRef>,
    /// The id of the node's plane.
    pub plane_id: String,
}

/// One node record, as `list_states` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id.
    pub node_id: String,
    /// The URI the node advertises.
    pub node_uri: String,
    /// The state the node last stored; `live` says whether it is still heartbeating.
    pub status: NodeState,
    /// The node's election priority; the higher is preferred.
    pub priority: i64,
    /// Whether the answering node sees this node's heartbeat change.
    pub live: bool,
    /// How long ago, by the answering node's monotonic clock, the record's heartbeat last
    /// changed (millisecond precision).
    pub last_seen_age: Duration,
    /// The record's heartbeat counter, one higher on every write.
    pub heartbeat: u64,
    /// The version the node reports, compared in elections.
    pub version: String,
    /// The highest epoch the node knew when it wrote the record.
    pub epoch_seen: u64,
    /// How far the node's managed state reaches (its last applied log position).
    pub state_seq: u64,
}

/// The plane, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlaneStates {
    /// The plane's id.
    pub plane_id: String,
    /// The id of the node that answered.
    pub own_id: String,
    /// The master's id, `None` while the plane has none.
    pub master_id: Option<String>,
    /// The highest epoch the answering node knows of.
    pub epoch: u64,
    /// Every node record in the plane.
    pub nodes: Vec<NodeInfo>,
}

/// A managed-state entity.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entity {
    /// The entity's id.
    pub id: String,
    /// A JSON object.
    pub attributes: serde_json::Value,
    /// 1 on creation, one higher on every change.
    pub version: u64,
    /// The epoch of the master that wrote this version.
    pub updated_epoch: u64,
}

/// One epoch of the plane's history: who claimed it, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimInfo {
    /// The epoch claimed.
    pub epoch: u64,
    /// The node that became master.
    pub node_id: String,
    /// The URI it advertised then.
    pub node_uri: String,
    /// Its wall clock when it claimed, milliseconds since the Unix epoch.
    pub claimed_at_ms: i64,
    /// Why it claimed.
    pub reason: String,
}

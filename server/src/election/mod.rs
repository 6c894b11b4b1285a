//! The election as a pure state machine: fed what the node read from the store and the time on its
//! monotonic clock, it says what to write and whether to claim the next epoch. No I/O, no tokio.
//!
//! Where each concern lives:
//! - `mod.rs`: the timings and identity (`ElectionConfig`), the `Election` state itself, its
//!   constructor and accessors;
//! - `lease.rs`: this node as master: the rule for acting (`lease_allows_acting`, `Lease`), claim
//!   won, lease renewal by own writes and next-claim reads, stepping down on a newer claim, fencing;
//! - `peers.rs`: the other nodes as read from the store (`PeerView`), their liveness and silence,
//!   and which master may be acting now (`active_master`);
//! - `decide.rs`: what to do: follower state, electability, the next epoch, `decide` and its
//!   `winner`, the start-up checks (`StartupVerdict`);
//! - `operator.rs`: operator requests (`set_mode`, priority, terminate, step-down for a
//!   switchover) and which records may be removed;
//! - `record.rs`: our own record as written, and the listings (`NodeSummary`, members);
//! - `chooser.rs`: who should be master among eligible candidates.

pub mod chooser;
mod decide;
mod lease;
mod operator;
mod peers;
mod record;

pub use decide::{Decision, StartupRefusal, StartupVerdict};
pub use lease::{Lease, lease_allows_acting};
pub use operator::{ModeChange, ModeRefused};
pub use peers::PeerView;
pub use record::NodeSummary;

use haplane::{Epoch, HaMode, MasterClaim, NodeId, NodeState};
use peers::Absence;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Timings and identity; fixed for the life of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElectionConfig {
    pub node_id: NodeId,
    pub node_uri: String,
    pub version: String,
    /// A peer is live while its heartbeat changed within this long, by our clock.
    pub heartbeat_timeout: Duration,
    /// A master stops acting `heartbeat_timeout - safety_margin` after its last good write began.
    /// The margin absorbs the difference of clock rates between nodes (docs/behaviour.md).
    pub safety_margin: Duration,
    /// An AUTO node waits this long after start-up before claiming an empty plane, so that nodes
    /// started together see each other and the best of them wins.
    pub startup_grace: Duration,
    pub started_at_ms: i64,
    pub pid: u32,
    pub hostname: String,
}

/// The election state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Election {
    cfg: ElectionConfig,
    mode: HaMode,
    state: NodeState,
    priority: i64,
    heartbeat: u64,
    peers: BTreeMap<NodeId, PeerView>,
    claim: Option<MasterClaim>,
    /// Set while the holder of the current claim (someone else) has no record in the store.
    claimant_absent: Option<Absence>,
    started_at: Instant,
    /// Start of the last own-record write that succeeded.
    last_good_write: Option<Instant>,
    /// Start of a successful own-record write that may renew the lease once a read of the next
    /// claim, begun after it, finds none (`no_newer_claim`).
    pending_renewal: Option<Instant>,
    /// While master: until when, and from when, acting as master is allowed.
    lease: Lease,
    /// Why this node stopped taking part for good (the store was replaced or rolled back).
    store_problem: Option<String>,
    /// A predecessor we claimed past without knowing it stopped may act until then: no claim of
    /// ours acts before it, even one made after this claim was fenced.
    wait_out_until: Option<Instant>,
    /// Works alone (`--ha-mode disabled`): master of its own state, no store, no election.
    standalone: bool,
    /// A demoted master sits out elections until an epoch above this one exists.
    sit_out_through: Option<Epoch>,
    /// Set when the lease lapsed; cleared by the first good write that began after it.
    fenced_at: Option<Instant>,
    /// The managed-state position we publish in our record.
    state_seq: u64,
}

impl Election {
    /// A node starting in `mode` at `now`. `Disabled` makes a standalone master.
    pub fn new(cfg: ElectionConfig, mode: HaMode, priority: i64, now: Instant) -> Self {
        let standalone = mode == HaMode::Disabled;
        Self {
            cfg,
            mode,
            state: if standalone {
                NodeState::Master
            } else {
                NodeState::Initializing
            },
            priority,
            heartbeat: 0,
            peers: BTreeMap::new(),
            claim: None,
            claimant_absent: None,
            started_at: now,
            last_good_write: None,
            pending_renewal: None,
            lease: Lease::default(),
            store_problem: None,
            wait_out_until: None,
            standalone,
            sit_out_through: None,
            fenced_at: None,
            state_seq: 0,
        }
    }

    /// Sets the managed-state position published in our next record.
    pub fn set_state_seq(&mut self, seq: u64) {
        self.state_seq = seq;
    }

    /// The managed-state position the current claimant last published (0 if unknown or us).
    pub fn master_state_seq(&self) -> u64 {
        self.claim
            .as_ref()
            .filter(|claim| claim.node_id != self.cfg.node_id)
            .and_then(|claim| self.peers.get(&claim.node_id))
            .map_or(0, |peer| peer.record.state_seq)
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn mode(&self) -> HaMode {
        self.mode
    }

    pub fn priority(&self) -> i64 {
        self.priority
    }

    pub fn is_standalone(&self) -> bool {
        self.standalone
    }

    /// The highest epoch known (0 before the first claim).
    pub fn epoch(&self) -> Epoch {
        self.claim.as_ref().map_or(0, |claim| claim.epoch)
    }

    /// The highest claim known.
    pub fn claim(&self) -> Option<&MasterClaim> {
        self.claim.as_ref()
    }

    /// The master lease (`until` is `None` when not master; standalone masters never lapse).
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Why this node left the plane for good, if it did (`store_replaced`).
    pub fn store_problem(&self) -> Option<&str> {
        self.store_problem.as_deref()
    }
}

#[cfg(test)]
mod tests;

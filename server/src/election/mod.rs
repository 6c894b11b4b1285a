//! The election as a pure state machine: fed what the node read from the store and the time on its
//! monotonic clock, it says what to write and whether to claim the next epoch. No I/O, no tokio.

pub mod chooser;

use chooser::Candidate;
use haplane::{Epoch, HaMode, MasterClaim, Member, NodeId, NodeRecord, NodeState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The one rule for acting as master: MASTER state and, unless standalone (which has no lease),
/// a lease that has not yet run out at `now`.
pub fn lease_allows_acting(
    state: NodeState,
    standalone: bool,
    lease_until: Option<Instant>,
    now: Instant,
) -> bool {
    state == NodeState::Master && (standalone || lease_until.is_some_and(|until| now < until))
}

/// Timings and identity; fixed for the life of a node.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub node_id: NodeId,
    pub node_uri: String,
    pub version: String,
    /// A peer is live while its heartbeat changed within this long, by our clock.
    pub heartbeat_timeout: Duration,
    /// A master stops acting `heartbeat_timeout - safety_margin` after its last good write began.
    pub safety_margin: Duration,
    /// An AUTO node waits this long after start-up before claiming an empty plane, so that nodes
    /// started together see each other and the best of them wins.
    pub startup_grace: Duration,
    pub started_at_ms: i64,
    pub pid: u32,
    pub hostname: String,
}

/// What the node should do after `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Wait,
    /// Create `master/<epoch>.json` (create-if-absent), then report with `claim_won` / `claim_lost`.
    Claim {
        epoch: Epoch,
        reason: String,
    },
}

/// What a start-up mode check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupVerdict {
    /// Keep observing; liveness of the current claim is not yet known.
    Wait,
    Proceed,
    Refuse(String),
}

/// How a `set_mode` request is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// Nothing more to do than write the record.
    Done,
    /// Promote now: claim this epoch.
    Claim { epoch: Epoch },
    /// A master stepped down: write the record, then tell the peers.
    SteppedDown,
}

/// Why `set_mode` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModeRefused(pub String);

/// One peer as we have seen it.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub record: NodeRecord,
    /// When (our clock) we last saw its heartbeat counter change, or first saw it.
    pub last_change: Instant,
    /// Whether we have seen the counter change at all (not just a first sighting).
    pub seen_changing: bool,
}

/// One row of `ListStates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub record: NodeRecord,
    pub live: bool,
    pub last_seen_age: Duration,
}

/// The election state of one node.
#[derive(Debug, Clone)]
pub struct Election {
    cfg: ElectionConfig,
    mode: HaMode,
    state: NodeState,
    priority: i64,
    heartbeat: u64,
    peers: BTreeMap<NodeId, PeerView>,
    claim: Option<MasterClaim>,
    claim_seen_at: Option<Instant>,
    started_at: Instant,
    /// Start of the last own-record write that succeeded.
    last_good_write: Option<Instant>,
    /// While master: acting as master is allowed until then.
    lease_until: Option<Instant>,
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
            claim_seen_at: None,
            started_at: now,
            last_good_write: None,
            lease_until: None,
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

    /// When the master lease ends (`None` when not master; standalone masters never lapse).
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease_until
    }

    /// Whether this node may act as master at `now`: master state and an unexpired lease.
    pub fn may_act_as_master(&self, now: Instant) -> bool {
        lease_allows_acting(self.state, self.standalone, self.lease_until, now)
    }

    fn lease_length(&self) -> Duration {
        self.cfg
            .heartbeat_timeout
            .saturating_sub(self.cfg.safety_margin)
    }

    fn is_live(&self, peer: &PeerView, now: Instant) -> bool {
        now.saturating_duration_since(peer.last_change) < self.cfg.heartbeat_timeout
    }

    /// The peer we know as `id`.
    pub fn peer(&self, id: &NodeId) -> Option<&PeerView> {
        self.peers.get(id)
    }

    // ----- inputs -----------------------------------------------------------------------------

    /// A record read from the store. Our own is ignored: we know our state better.
    pub fn observe_record(&mut self, record: NodeRecord, now: Instant) {
        if record.node_id == self.cfg.node_id {
            return;
        }
        match self.peers.get_mut(&record.node_id) {
            Some(peer) => {
                if peer.record.heartbeat != record.heartbeat {
                    peer.last_change = now;
                    peer.seen_changing = true;
                }
                peer.record = record;
            }
            None => {
                let view = PeerView {
                    record,
                    last_change: now,
                    seen_changing: false,
                };
                self.peers.insert(view.record.node_id.clone(), view);
            }
        }
    }

    /// A record that is no longer in the store.
    pub fn forget_peer(&mut self, id: &NodeId) {
        self.peers.remove(id);
    }

    /// Ids of every peer we know.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().cloned().collect()
    }

    /// A master claim read from the store. Lower or equal epochs than the known one are ignored.
    /// A master that learns of a newer claim by someone else steps down at once.
    pub fn observe_claim(&mut self, claim: MasterClaim, now: Instant) {
        if claim.epoch <= self.epoch() {
            return;
        }
        let superseded = self.state == NodeState::Master && !self.standalone;
        self.claim = Some(claim);
        self.claim_seen_at = Some(now);
        if superseded {
            self.lease_until = None;
            self.state = self.follower_state();
        }
    }

    /// The record to write now; bumps the heartbeat counter.
    pub fn next_record(&mut self, wall_clock_ms: i64, now: Instant) -> NodeRecord {
        self.heartbeat += 1;
        self.record_snapshot(wall_clock_ms, now)
    }

    /// The record as it would be written, without bumping the counter.
    pub fn record_snapshot(&self, wall_clock_ms: i64, now: Instant) -> NodeRecord {
        NodeRecord {
            node_id: self.cfg.node_id.clone(),
            node_uri: self.cfg.node_uri.clone(),
            status: self.state,
            priority: self.priority,
            heartbeat: self.heartbeat,
            version: self.cfg.version.clone(),
            epoch_seen: self.epoch(),
            local_timestamp_ms: wall_clock_ms,
            started_at_ms: self.cfg.started_at_ms,
            pid: self.cfg.pid,
            hostname: self.cfg.hostname.clone(),
            electable: self.publishes_electable(now),
            state_seq: self.state_seq,
        }
    }

    /// The outcome of writing our own record, which began at `started`.
    pub fn own_write_finished(&mut self, started: Instant, ok: bool) {
        if !ok {
            return;
        }
        self.last_good_write = Some(started);
        if self.fenced_at.is_some_and(|fenced| started > fenced) {
            self.fenced_at = None;
        }
        if self.state == NodeState::Master && !self.standalone {
            // Renew only a lease that was still valid when the write began: a master that was
            // paused past its lease must not be revived by a write that happens to succeed.
            match self.lease_until {
                Some(until) if started < until => {
                    self.lease_until = Some(started + self.lease_length());
                }
                _ => self.fence(started),
            }
        }
    }

    fn fence(&mut self, now: Instant) {
        self.lease_until = None;
        self.state = NodeState::Failed;
        self.fenced_at = Some(now);
    }

    /// Our claim for `epoch` was created: we are master.
    pub fn claim_won(&mut self, claim: MasterClaim, now: Instant) {
        let lease_until = self
            .last_good_write
            .map(|start| start + self.lease_length());
        self.claim = Some(claim);
        self.claim_seen_at = Some(now);
        self.sit_out_through = None;
        match lease_until {
            Some(until) if now < until => {
                self.lease_until = Some(until);
                self.state = NodeState::Master;
            }
            // The claim went through but our own lease is gone: publish the step-down at once so
            // peers do not wait for the timeout.
            _ => self.fence(now),
        }
    }

    // ----- decisions --------------------------------------------------------------------------

    fn follower_state(&self) -> NodeState {
        match self.mode {
            HaMode::Standby => NodeState::Standby,
            HaMode::HotBackup => NodeState::HotBackup,
            HaMode::Disabled => NodeState::Failed,
            HaMode::Auto | HaMode::Master | HaMode::HotStandby => NodeState::HotStandby,
        }
    }

    fn mode_is_electable(&self) -> bool {
        matches!(
            self.mode,
            HaMode::Auto | HaMode::Master | HaMode::Standby | HaMode::HotStandby
        )
    }

    fn sitting_out(&self) -> bool {
        self.sit_out_through
            .is_some_and(|through| self.epoch() <= through)
    }

    /// Whether our record tells peers that we stand in elections.
    fn publishes_electable(&self, now: Instant) -> bool {
        self.mode_is_electable()
            && !self.sitting_out()
            && self.fenced_at.is_none()
            && self.own_lease_possible(now)
    }

    /// Whether a claim made now would give us a valid lease.
    fn own_lease_possible(&self, now: Instant) -> bool {
        self.last_good_write
            .is_some_and(|start| now < start + self.lease_length())
    }

    /// Whether `record` says its writer gave up the claim for `epoch`.
    fn released(record: &NodeRecord, epoch: Epoch) -> bool {
        record.status != NodeState::Master && record.epoch_seen >= epoch
    }

    /// The claim of a master that is acting now, as far as we can tell.
    pub fn active_master(&self, now: Instant) -> Option<&MasterClaim> {
        let claim = self.claim.as_ref()?;
        if claim.node_id == self.cfg.node_id {
            return self.may_act_as_master(now).then_some(claim);
        }
        let active = match self.peers.get(&claim.node_id) {
            Some(peer) => self.is_live(peer, now) && !Self::released(&peer.record, claim.epoch),
            // Not read yet: assume the claimant is alive for one timeout after we saw the claim.
            None => self.claim_seen_at.is_some_and(|seen| {
                now.saturating_duration_since(seen) < self.cfg.heartbeat_timeout
            }),
        };
        active.then_some(claim)
    }

    /// Whether the node should read every record this poll: when no master is active, or the
    /// master's heartbeat has been quiet for half a timeout (so candidates are fresh if it dies).
    pub fn wants_membership_scan(&self, now: Instant) -> bool {
        if self.standalone || self.state == NodeState::Master {
            return false;
        }
        let Some(claim) = self.active_master(now) else {
            return true;
        };
        self.peers.get(&claim.node_id).is_some_and(|peer| {
            now.saturating_duration_since(peer.last_change) >= self.cfg.heartbeat_timeout / 2
        })
    }

    /// Checks the lease and the current claim, moves between follower states, and says whether
    /// to claim the next epoch.
    pub fn decide(&mut self, now: Instant) -> Decision {
        if self.standalone {
            return Decision::Wait;
        }
        if self.state == NodeState::Master {
            if !self.may_act_as_master(now) {
                self.fence(now);
            }
            return Decision::Wait;
        }
        if !self.mode_is_electable() {
            self.state = self.follower_state();
            return Decision::Wait;
        }
        if self.fenced_at.is_some() {
            return Decision::Wait;
        }
        self.state = self.follower_state();
        if self.active_master(now).is_some() {
            return Decision::Wait;
        }
        let in_grace = now.saturating_duration_since(self.started_at) < self.cfg.startup_grace;
        if (self.mode == HaMode::Auto && in_grace) || !self.own_lease_possible(now) {
            return Decision::Wait;
        }
        if self.winner(now).as_ref() == Some(&self.cfg.node_id) {
            Decision::Claim {
                epoch: self.epoch() + 1,
                reason: "elected: no live master".to_owned(),
            }
        } else {
            Decision::Wait
        }
    }

    /// The node that should be master now among live, electable nodes (us included).
    fn winner(&self, now: Instant) -> Option<NodeId> {
        let mut candidates: Vec<Candidate<'_>> = self
            .peers
            .values()
            .filter(|peer| {
                self.is_live(peer, now)
                    && peer.record.electable
                    && peer.record.status.is_electable_state()
            })
            .map(|peer| Candidate {
                node_id: &peer.record.node_id,
                priority: peer.record.priority,
                version: &peer.record.version,
                state: peer.record.status,
            })
            .collect();
        // A demoted master stands again only when nobody else can.
        if self.mode_is_electable() && (!self.sitting_out() || candidates.is_empty()) {
            candidates.push(Candidate {
                node_id: &self.cfg.node_id,
                priority: self.priority,
                version: &self.cfg.version,
                state: self.state,
            });
        }
        chooser::choose(&candidates).cloned()
    }

    /// Whether the holder of the current claim (someone else) is a live master: `None` when
    /// it is not (no claim, released, silent for a timeout), `Some(false)` while we have seen its
    /// record but not yet seen it change, `Some(true)` once seen heartbeating.
    pub fn claimant_liveness(&self, now: Instant) -> Option<bool> {
        let claim = self.claim.as_ref()?;
        if claim.node_id == self.cfg.node_id {
            // Our own claim from a previous life: we are not acting on it.
            return None;
        }
        let peer = self.peers.get(&claim.node_id)?;
        if Self::released(&peer.record, claim.epoch) || !self.is_live(peer, now) {
            return None;
        }
        Some(peer.seen_changing)
    }

    /// Start-up check for the explicit modes (SPEC 1): MASTER refuses a live master, STANDBY and
    /// HOT_STANDBY need one. Waits while the current claimant's liveness is unknown.
    pub fn startup_verdict(&self, now: Instant) -> StartupVerdict {
        let needs_master = matches!(self.mode, HaMode::Standby | HaMode::HotStandby);
        let refuses_master = self.mode == HaMode::Master;
        if !needs_master && !refuses_master {
            return StartupVerdict::Proceed;
        }
        let live = match self.claimant_liveness(now) {
            Some(false) => return StartupVerdict::Wait,
            Some(true) => true,
            None => false,
        };
        match (live, refuses_master) {
            (true, true) => StartupVerdict::Refuse(format!(
                "--ha-mode master: node {} is a live master (epoch {})",
                self.claim.as_ref().map_or("?", |c| c.node_id.as_str()),
                self.epoch()
            )),
            (false, false) => StartupVerdict::Refuse(format!(
                "--ha-mode {}: there is no live master to follow",
                self.mode.as_str().to_ascii_lowercase().replace('_', "-")
            )),
            _ => StartupVerdict::Proceed,
        }
    }

    /// Start-up in MASTER mode after a `Proceed` verdict: claim the next epoch now.
    pub fn startup_claim(&self) -> Decision {
        Decision::Claim {
            epoch: self.epoch() + 1,
            reason: "started with --ha-mode master".to_owned(),
        }
    }

    // ----- operator requests ------------------------------------------------------------------

    /// Runtime mode change (SPEC 1). Returns what the node must do next.
    pub fn set_mode(&mut self, mode: HaMode, now: Instant) -> Result<ModeChange, ModeRefused> {
        if self.standalone {
            return if mode == HaMode::Disabled {
                Ok(ModeChange::Done)
            } else {
                Err(ModeRefused(
                    "this node was started with --ha-mode disabled; restart it to join a plane"
                        .to_owned(),
                ))
            };
        }
        let was_master = self.state == NodeState::Master;
        match mode {
            HaMode::Master if was_master => Ok(ModeChange::Done),
            HaMode::Master => {
                if !self.own_lease_possible(now) {
                    return Err(ModeRefused(
                        "cannot promote: this node has no recent successful heartbeat write"
                            .to_owned(),
                    ));
                }
                self.mode = HaMode::Auto;
                self.fenced_at = None;
                Ok(ModeChange::Claim {
                    epoch: self.epoch() + 1,
                })
            }
            HaMode::Auto => {
                self.mode = HaMode::Auto;
                if !was_master {
                    self.state = self.follower_state();
                }
                Ok(ModeChange::Done)
            }
            HaMode::Standby | HaMode::HotStandby | HaMode::HotBackup | HaMode::Disabled => {
                self.mode = mode;
                if was_master {
                    self.sit_out_through = Some(self.epoch());
                    self.lease_until = None;
                }
                self.state = self.follower_state();
                Ok(if was_master {
                    ModeChange::SteppedDown
                } else {
                    ModeChange::Done
                })
            }
        }
    }

    /// Runtime priority change; returns the previous priority.
    pub fn set_priority(&mut self, priority: i64) -> i64 {
        std::mem::replace(&mut self.priority, priority)
    }

    /// Graceful stop: publish TERMINATED (which also releases a claim).
    pub fn terminate(&mut self) {
        self.state = NodeState::Terminated;
        self.lease_until = None;
    }

    // ----- views ------------------------------------------------------------------------------

    /// Every known node, us first, with liveness by our clock.
    pub fn summaries(&self, wall_clock_ms: i64, now: Instant) -> Vec<NodeSummary> {
        let own = NodeSummary {
            record: self.record_snapshot(wall_clock_ms, now),
            live: true,
            last_seen_age: Duration::ZERO,
        };
        std::iter::once(own)
            .chain(self.peers.values().map(|peer| NodeSummary {
                record: peer.record.clone(),
                live: self.is_live(peer, now),
                last_seen_age: now.saturating_duration_since(peer.last_change),
            }))
            .collect()
    }

    /// Members as pushed to watchers.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        self.summaries(0, now)
            .into_iter()
            .map(|summary| Member {
                node_id: summary.record.node_id.to_string(),
                node_uri: summary.record.node_uri,
                status: summary.record.status,
                live: summary.live,
            })
            .collect()
    }

    /// Records that may be deleted: TERMINATED ones at least `terminated_age` old, and FAILED or
    /// stale ones at least `retention` old (ages by our clock). Never the active master.
    pub fn removable(
        &self,
        terminated_age: Duration,
        retention: Duration,
        now: Instant,
    ) -> Vec<NodeId> {
        let master = self.active_master(now).map(|claim| claim.node_id.clone());
        self.peers
            .values()
            .filter(|peer| Some(&peer.record.node_id) != master.as_ref())
            .filter(|peer| {
                let age = now.saturating_duration_since(peer.last_change);
                match peer.record.status {
                    NodeState::Terminated => age >= terminated_age,
                    NodeState::Failed => age >= retention,
                    _ => !self.is_live(peer, now) && age >= retention,
                }
            })
            .map(|peer| peer.record.node_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;

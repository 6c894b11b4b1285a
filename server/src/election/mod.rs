//! The election as a pure state machine: fed what the node read from the store and the time on its
//! monotonic clock, it says what to write and whether to claim the next epoch. No I/O, no tokio.

pub mod chooser;

use chooser::Candidate;
use haplane::{Epoch, HaMode, MasterClaim, Member, NodeId, NodeRecord, NodeState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The one rule for acting as master: MASTER state and, unless standalone (which has no lease),
/// a lease that has not yet run out at `now`, and no wait for a predecessor still pending
/// (`acting_from`: see `Election::claim_won`).
pub fn lease_allows_acting(state: NodeState, standalone: bool, lease: Lease, now: Instant) -> bool {
    state == NodeState::Master
        && (standalone
            || (lease.until.is_some_and(|until| now < until)
                && lease.acting_from.is_none_or(|from| now >= from)))
}

/// A master's lease as the node's readers need it to decide, at any instant, whether it acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Acting as master is allowed until then.
    pub until: Option<Instant>,
    /// A master that could not confirm its predecessor stopped acts only from then on.
    pub acting_from: Option<Instant>,
}

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
    Refuse(StartupRefusal),
}

/// Why a node may not start in its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRefusal {
    /// MASTER mode, and `master` is a live master of `epoch`.
    LiveMaster { master: String, epoch: Epoch },
    /// STANDBY or HOT_STANDBY mode, and there is no live master to follow.
    NoMasterToFollow(HaMode),
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerView {
    pub record: NodeRecord,
    /// When (our clock) we last saw its heartbeat counter change, or first saw it: the end of
    /// the first successful read that returned the current counter.
    pub last_change: Instant,
    /// When the latest successful read that returned this record began. Silence is judged from
    /// successful reads only: a read that fails tells nothing about the peer.
    pub last_read_started: Instant,
    /// Whether we have seen the counter change at all (not just a first sighting).
    pub seen_changing: bool,
}

/// The claimant's record was missing from the store: since when, by successful reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Absence {
    /// End of the first successful read that found no record.
    since: Instant,
    /// Start of the latest successful read that found no record.
    last_read_started: Instant,
}

/// One row of `ListStates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub record: NodeRecord,
    pub live: bool,
    pub last_seen_age: Duration,
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

    /// Whether this node may act as master at `now`: master state and an unexpired lease.
    pub fn may_act_as_master(&self, now: Instant) -> bool {
        lease_allows_acting(self.state, self.standalone, self.lease, now)
    }

    /// Why this node left the plane for good, if it did (`store_replaced`).
    pub fn store_problem(&self) -> Option<&str> {
        self.store_problem.as_deref()
    }

    fn lease_length(&self) -> Duration {
        self.cfg
            .heartbeat_timeout
            .saturating_sub(self.cfg.safety_margin)
    }

    /// Liveness for choosing candidates and for listings: heard from within a timeout.
    fn is_live(&self, peer: &PeerView, now: Instant) -> bool {
        now.saturating_duration_since(peer.last_change) < self.cfg.heartbeat_timeout
    }

    /// Whether a successful read that began a full timeout after we first saw the peer's
    /// current heartbeat still returned it. Only this proves a master's lease is over: its
    /// lease began before we first saw that heartbeat, and a later renewal would have changed it.
    fn confirmed_silent(&self, peer: &PeerView) -> bool {
        peer.last_read_started >= peer.last_change + self.cfg.heartbeat_timeout
    }

    /// The peer we know as `id`.
    pub fn peer(&self, id: &NodeId) -> Option<&PeerView> {
        self.peers.get(id)
    }

    // ----- inputs -----------------------------------------------------------------------------

    /// A record read from the store by a read that began at `read_started` and ended at `now`.
    /// Our own is ignored: we know our state better.
    pub fn observe_record(&mut self, record: NodeRecord, read_started: Instant, now: Instant) {
        if record.node_id == self.cfg.node_id {
            return;
        }
        if self
            .claim
            .as_ref()
            .is_some_and(|claim| claim.node_id == record.node_id)
        {
            self.claimant_absent = None;
        }
        match self.peers.get_mut(&record.node_id) {
            Some(peer) => {
                // A restarted process counts its heartbeats from zero again: the same counter
                // from another process is a change, not silence.
                let changed = peer.record.heartbeat != record.heartbeat
                    || peer.record.started_at_ms != record.started_at_ms
                    || peer.record.pid != record.pid;
                if changed {
                    peer.last_change = now;
                    peer.seen_changing = true;
                }
                peer.last_read_started = peer.last_read_started.max(read_started);
                peer.record = record;
            }
            None => {
                let view = PeerView {
                    record,
                    last_change: now,
                    last_read_started: read_started,
                    seen_changing: false,
                };
                self.peers.insert(view.record.node_id.clone(), view);
            }
        }
    }

    /// A record we deleted ourselves (clean-up of terminated and dead nodes).
    pub fn forget_peer(&mut self, id: &NodeId) {
        self.peers.remove(id);
    }

    /// A successful read that began at `read_started` and ended at `now` found no record for
    /// `id`: we forget the peer, and for the claimant we start (or go on) counting its absence.
    pub fn observe_absent(&mut self, id: &NodeId, read_started: Instant, now: Instant) {
        self.peers.remove(id);
        if self
            .claim
            .as_ref()
            .is_some_and(|claim| claim.node_id == *id)
        {
            let absence = self.claimant_absent.get_or_insert(Absence {
                since: now,
                last_read_started: read_started,
            });
            absence.last_read_started = absence.last_read_started.max(read_started);
        }
    }

    /// Ids of every peer we know.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().cloned().collect()
    }

    /// A master claim read from the store. Lower or equal epochs than the known one are ignored.
    /// A master that learns of a newer claim by someone else steps down at once.
    pub fn observe_claim(&mut self, claim: MasterClaim) {
        if claim.epoch <= self.epoch() {
            return;
        }
        let superseded = self.state == NodeState::Master && !self.standalone;
        self.claim = Some(claim);
        self.claimant_absent = None;
        if superseded {
            self.lease = Lease::default();
            self.pending_renewal = None;
            self.state = self.follower_state();
        }
    }

    /// A read of the claim after ours, begun at `read_started`, found none. A successful own
    /// write begun before that read renews the lease: had a newer claim existed when the write
    /// began, the read would have found it. So a master's lease never outlives, by more than one
    /// lease length, the creation of a newer claim (docs/behaviour.md, exclusion).
    pub fn no_newer_claim(&mut self, read_started: Instant, now: Instant) {
        let Some(write_started) = self.pending_renewal else {
            return;
        };
        if write_started >= read_started || self.state != NodeState::Master || self.standalone {
            return;
        }
        self.pending_renewal = None;
        match self.lease.until {
            Some(until) if now < until => {
                self.lease.until = Some(until.max(write_started + self.lease_length()));
            }
            _ => self.fence(now),
        }
    }

    /// The store no longer holds the plane this node joined (plane id changed, `plane.json`
    /// gone, or our own claim vanished): stop acting at once and take no further part.
    pub fn store_replaced(&mut self, why: String, now: Instant) {
        if self.standalone {
            return;
        }
        self.store_problem = Some(why);
        self.fence(now);
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

    /// The outcome of writing our own record, which began at `started` and ended at `finished`.
    pub fn own_write_finished(&mut self, started: Instant, finished: Instant, ok: bool) {
        if !ok {
            return;
        }
        if self.state == NodeState::Master && !self.standalone {
            // A write renews only a lease that was still valid when it *completed*: a master
            // paused or slowed past its lease must not be revived by a write that lands late,
            // because peers may have timed it out meanwhile. The renewal itself waits for the
            // next-claim read (`no_newer_claim`).
            match self.lease.until {
                Some(until) if finished < until => self.pending_renewal = Some(started),
                _ => {
                    self.fence(finished);
                    return;
                }
            }
        }
        self.last_good_write = Some(started);
        if self.fenced_at.is_some_and(|fenced| started > fenced) {
            self.fenced_at = None;
        }
    }

    fn fence(&mut self, now: Instant) {
        self.lease = Lease::default();
        self.pending_renewal = None;
        self.state = NodeState::Failed;
        self.fenced_at = Some(now);
    }

    /// Our claim was created by a call that ended at `now`: we are master. `predecessor_stopped`
    /// says whether we know the previous master cannot be acting (it released, was silent for a
    /// timeout, or answered our step-down request). If not, we act only a full timeout after the
    /// claim: by then the old master has read our claim or its lease has run out, since it
    /// renews only after a read of the next claim finds none.
    pub fn claim_won(&mut self, claim: MasterClaim, predecessor_stopped: bool, now: Instant) {
        let lease_until = self
            .last_good_write
            .map(|start| start + self.lease_length());
        self.claim = Some(claim);
        self.claimant_absent = None;
        self.sit_out_through = None;
        if !predecessor_stopped {
            let until = now + self.cfg.heartbeat_timeout;
            self.wait_out_until = Some(self.wait_out_until.map_or(until, |w| w.max(until)));
        }
        match lease_until {
            Some(until) if now < until => {
                self.lease = Lease {
                    until: Some(until),
                    acting_from: self.wait_out_until.filter(|from| now < *from),
                };
                self.state = NodeState::Master;
            }
            // The claim went through but our own lease is gone: publish the step-down at once so
            // peers do not wait for the timeout.
            _ => self.fence(now),
        }
    }

    // ----- decisions --------------------------------------------------------------------------

    /// The state a node of our mode takes when it is not master.
    pub fn follower_state(&self) -> NodeState {
        if self.store_problem.is_some() {
            return NodeState::Failed;
        }
        match self.mode {
            HaMode::Standby => NodeState::Standby,
            HaMode::HotBackup => NodeState::HotBackup,
            HaMode::Disabled => NodeState::Failed,
            HaMode::Auto | HaMode::Master | HaMode::HotStandby => NodeState::HotStandby,
        }
    }

    fn mode_is_electable(&self) -> bool {
        self.store_problem.is_none()
            && matches!(
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

    /// The master that may be acting now, as far as we can tell: the holder of the highest
    /// claim until it released it or successful reads proved it silent for a timeout; else a
    /// peer whose record says MASTER in an epoch at least as high as any claim we know (its claim
    /// may be one we have not read yet, or one a rolled-back store lost).
    pub fn active_master(&self, now: Instant) -> Option<MasterClaim> {
        if let Some(claim) = &self.claim {
            if claim.node_id == self.cfg.node_id {
                if self.may_act_as_master(now) {
                    return Some(claim.clone());
                }
            } else if self.claimant_may_act(claim) {
                return Some(claim.clone());
            }
        }
        self.unclaimed_master()
    }

    fn claimant_may_act(&self, claim: &MasterClaim) -> bool {
        match self.peers.get(&claim.node_id) {
            Some(peer) => {
                !self.confirmed_silent(peer) && !Self::released(&peer.record, claim.epoch)
            }
            None => self.claimant_absent.is_none_or(|absent| {
                absent.last_read_started < absent.since + self.cfg.heartbeat_timeout
            }),
        }
    }

    fn unclaimed_master(&self) -> Option<MasterClaim> {
        let holder = self.claim.as_ref().map(|claim| &claim.node_id);
        self.peers
            .values()
            .filter(|peer| {
                peer.record.status == NodeState::Master
                    && peer.record.epoch_seen >= self.epoch()
                    && Some(&peer.record.node_id) != holder
                    && !self.confirmed_silent(peer)
            })
            .max_by_key(|peer| peer.record.epoch_seen)
            .map(|peer| MasterClaim {
                epoch: peer.record.epoch_seen,
                node_id: peer.record.node_id.clone(),
                node_uri: peer.record.node_uri.clone(),
                claimed_at: 0,
                reason: "seen in its record".to_owned(),
            })
    }

    /// The highest epoch any peer's record says it has seen.
    pub fn highest_epoch_seen(&self) -> Epoch {
        self.peers
            .values()
            .map(|peer| peer.record.epoch_seen)
            .max()
            .unwrap_or(0)
            .max(self.epoch())
    }

    /// The epoch the next claim must take: above every claim and every epoch a record has seen.
    pub fn next_epoch(&self) -> Epoch {
        self.highest_epoch_seen() + 1
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
            if self.lease.until.is_none_or(|until| now >= until) {
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
                epoch: self.next_epoch(),
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
        let claim = self.active_master(now)?;
        if claim.node_id == self.cfg.node_id {
            // Our own claim from a previous life: we are not acting on it.
            return None;
        }
        let Some(peer) = self.peers.get(&claim.node_id) else {
            // A claim whose holder's record we have not read: unknown until proved absent.
            return Some(false);
        };
        Some(peer.seen_changing && self.is_live(peer, now))
    }

    /// Whether some other node's record may still be heartbeating: `Some(true)` when one was
    /// seen changing within a timeout, `Some(false)` while a record that does not say it stopped
    /// has been neither seen changing nor proved silent, `None` when none can be live.
    pub fn any_peer_liveness(&self, now: Instant) -> Option<bool> {
        let mut undecided = false;
        for peer in self.peers.values() {
            if matches!(peer.record.status, NodeState::Terminated) {
                continue;
            }
            if peer.seen_changing && self.is_live(peer, now) {
                return Some(true);
            }
            if !self.confirmed_silent(peer) {
                undecided = true;
            }
        }
        undecided.then_some(false)
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
            (true, true) => StartupVerdict::Refuse(StartupRefusal::LiveMaster {
                master: self
                    .claim
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |c| c.node_id.to_string()),
                epoch: self.epoch(),
            }),
            (false, false) => StartupVerdict::Refuse(StartupRefusal::NoMasterToFollow(self.mode)),
            _ => StartupVerdict::Proceed,
        }
    }

    /// Start-up in MASTER mode after a `Proceed` verdict: claim the next epoch now.
    pub fn startup_claim(&self) -> Decision {
        Decision::Claim {
            epoch: self.next_epoch(),
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
                if let Some(problem) = &self.store_problem {
                    return Err(ModeRefused(format!("cannot promote: {problem}")));
                }
                self.mode = HaMode::Auto;
                self.fenced_at = None;
                Ok(ModeChange::Claim {
                    epoch: self.next_epoch(),
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
                    self.lease = Lease::default();
                    self.pending_renewal = None;
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
        self.lease = Lease::default();
        self.pending_renewal = None;
    }

    /// A peer asked us to step down from `epoch` so that it can take over (switchover). A master
    /// of that epoch (or an older one) stops acting and sits the next election out; answers
    /// whether this node is now sure not to act as master in any epoch up to `epoch`.
    pub fn step_down_for(&mut self, epoch: Epoch, now: Instant) -> bool {
        if self.standalone || (epoch < self.epoch() && self.state == NodeState::Master) {
            // Standalone nodes have no plane; a master of a newer epoch than the asker knows
            // stays: the asker must first catch up.
            return false;
        }
        if self.state == NodeState::Master {
            self.sit_out_through = Some(self.epoch());
            self.lease = Lease::default();
            self.pending_renewal = None;
            self.state = self.follower_state();
        }
        !self.may_act_as_master(now)
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
        let master = self.active_master(now).map(|claim| claim.node_id);
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

//! The other nodes as this node has read them (`PeerView`, the claimant's absence) and what
//! that tells: who is live, who is proved silent, and which master may be acting now.

use super::Election;
use haplane::{Epoch, MasterClaim, NodeId, NodeRecord, NodeState};
use std::time::Instant;

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
pub(super) struct Absence {
    /// End of the first successful read that found no record.
    since: Instant,
    /// Start of the latest successful read that found no record.
    last_read_started: Instant,
}

impl Election {
    /// Liveness for choosing candidates and for listings: heard from within a timeout.
    pub(super) fn is_live(&self, peer: &PeerView, now: Instant) -> bool {
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
}

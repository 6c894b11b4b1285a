//! This node as master: the one rule for acting (`lease_allows_acting`), the lease, and what
//! moves it: winning a claim, own writes and the next-claim reads that renew it, a newer claim
//! that supersedes it, and fencing when it lapses or the store is replaced.

use super::Election;
use haplane::{MasterClaim, NodeState};
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

impl Election {
    /// Whether this node may act as master at `now`: master state and an unexpired lease.
    pub fn may_act_as_master(&self, now: Instant) -> bool {
        lease_allows_acting(self.state, self.standalone, self.lease, now)
    }

    fn lease_length(&self) -> Duration {
        self.cfg
            .heartbeat_timeout
            .saturating_sub(self.cfg.safety_margin)
    }

    /// Whether a claim made now would give us a valid lease.
    pub fn own_lease_possible(&self, now: Instant) -> bool {
        self.last_good_write
            .is_some_and(|start| now < start + self.lease_length())
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

    pub(super) fn fence(&mut self, now: Instant) {
        self.lease = Lease::default();
        self.pending_renewal = None;
        self.state = NodeState::Failed;
        self.fenced_at = Some(now);
    }

    /// Our next claim, if won, acts only from `until` on: the predecessor stepped down but
    /// reported its lease to role watchers that may act on it until then.
    pub fn wait_out(&mut self, until: Instant) {
        self.wait_out_until = Some(self.wait_out_until.map_or(until, |known| known.max(until)));
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
            self.wait_out(now + self.cfg.heartbeat_timeout);
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
}

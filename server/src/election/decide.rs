//! The election's decisions: the follower state of our mode, whether we stand in elections, the
//! next epoch, whether to claim it (`decide`, `winner`), and the start-up checks of the explicit
//! modes.

use super::Election;
use super::chooser::{self, Candidate};
use haplane::{Epoch, HaMode, NodeId, NodeState};
use std::time::Instant;

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

impl Election {
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
    pub(super) fn publishes_electable(&self, now: Instant) -> bool {
        self.mode_is_electable()
            && !self.sitting_out()
            && self.fenced_at.is_none()
            && self.own_lease_possible(now)
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
}

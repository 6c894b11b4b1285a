//! Operator requests: mode and priority changes, the graceful stop, stepping down for a peer's
//! switchover, and which peer records may be removed.

use super::{Election, Lease};
use haplane::{Epoch, HaMode, NodeId, NodeState};
use std::time::{Duration, Instant};

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

impl Election {
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

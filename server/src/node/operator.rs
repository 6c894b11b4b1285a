//! Operator commands carried out by the loop: mode changes (promotion asks the master to step
//! down first), a peer's step-down request, listing the plane, removing records.

use super::handle::{Guard, Listing};
use super::runtime::Runtime;
use super::{NodeError, StepDownAnswer};
use crate::clock::wall_clock_ms;
use crate::election::ModeChange;
use crate::store::{StoreError, layout};
use haplane::{Epoch, HaMode, MasterClaim, MasterRef, NodeId, NodeState};
use std::time::Duration;

impl Runtime {
    pub(super) async fn set_mode(
        &mut self,
        mode: HaMode,
        guard: Guard,
    ) -> Result<NodeState, NodeError> {
        if mode == HaMode::Master && !self.election.is_standalone() {
            // A master deposed a moment ago by another node's promotion may not have seen the
            // newer claim yet; without this probe it would answer "already master" and do nothing
            // (or, let through as master, promote itself: the guard is checked after it).
            self.probe_claims().await?;
            self.publish();
        }
        self.check_guard(guard)?;
        let now = self.clock.now();
        let previous = self.snapshot.borrow().effective_state(now);
        let change = self
            .election
            .set_mode(mode, now)
            .map_err(|refused| NodeError::FailedPrecondition(refused.0))?;
        tracing::info!(%mode, ?change, "mode changed by operator");
        match change {
            ModeChange::Done => {
                if !self.election.is_standalone() {
                    self.write_record().await?;
                }
            }
            ModeChange::SteppedDown => {
                self.write_record().await?;
                self.publish();
                self.nudge_peers();
            }
            ModeChange::Claim { .. } => self.promote().await?,
        }
        Ok(previous)
    }

    pub(super) async fn set_priority(
        &mut self,
        priority: i64,
        guard: Guard,
    ) -> Result<i64, NodeError> {
        self.check_guard(guard)?;
        let previous = self.election.set_priority(priority);
        if !self.election.is_standalone() {
            self.write_record().await?;
        }
        Ok(previous)
    }

    /// A change let through because this node was master is refused if it no longer acts
    /// (deposed, or its lease ran out, while the request waited for the loop).
    fn check_guard(&self, guard: Guard) -> Result<(), NodeError> {
        let acting = self.snapshot.borrow().may_act_as_master(self.clock.now());
        if guard == Guard::MasterOnly && !acting {
            return Err(self.not_master());
        }
        Ok(())
    }

    /// Operator promotion (switchover): ask the master that may be acting to step down, then
    /// claim the next epoch; re-read and retry once if a concurrent claim took it. A master that
    /// does not answer is waited out after the claim (`Election::claim_won`), never overlapped;
    /// one that does, but reported its lease to role watchers (sidecars), is waited out until a
    /// safety margin after that lease's end, since they may act on it until then.
    pub(super) async fn promote(&mut self) -> Result<(), NodeError> {
        for _ in 0..2 {
            self.probe_claims().await?;
            let predecessor = match self.election.active_master(self.clock.now()) {
                Some(master) if master.node_id != self.options.election.node_id => {
                    self.ask_to_step_down(&master).await
                }
                _ => StepDownAnswer {
                    stopped: true,
                    promised: Duration::ZERO,
                },
            };
            if predecessor.stopped && !predecessor.promised.is_zero() {
                let until =
                    self.clock.now() + predecessor.promised + self.options.election.safety_margin;
                self.election.wait_out(until);
            }
            // A slow answer (up to the call's 2 s bound) may have outlasted the lease our last
            // heartbeat would give: a claim now would be fenced at once and its epoch wasted.
            if !self.election.own_lease_possible(self.clock.now()) {
                self.write_record().await?;
            }
            let epoch = self.election.next_epoch();
            if self
                .claim(epoch, "promoted by operator", predecessor.stopped)
                .await?
            {
                return Ok(());
            }
        }
        Err(NodeError::Unavailable(
            "promotion lost the claim race twice; try again".to_owned(),
        ))
    }

    /// Asks `master` to step down so that we can take over: its answer, or "not stopped" when
    /// it declined or did not answer.
    pub(super) async fn ask_to_step_down(&self, master: &MasterClaim) -> StepDownAnswer {
        let from = self.options.election.node_id.to_string();
        match self
            .options
            .peers
            .step_down(&master.node_uri, &from, master.epoch)
            .await
        {
            Ok(answer) if answer.stopped => {
                tracing::info!(master = %master.node_id, epoch = master.epoch, promised = ?answer.promised, "the master stepped down for us");
                answer
            }
            Ok(answer) => {
                tracing::warn!(master = %master.node_id, epoch = master.epoch, "the master declined to step down; waiting out its lease after our claim");
                answer
            }
            Err(err) => {
                tracing::warn!(master = %master.node_id, error = %err, "cannot reach the master to ask it to step down; waiting out its lease after our claim");
                StepDownAnswer {
                    stopped: false,
                    promised: Duration::ZERO,
                }
            }
        }
    }

    /// A peer's switchover request, already answered and published (`Publisher::step_down`):
    /// the election follows, then the released record is written and the peers told.
    pub(super) async fn step_down(&mut self, epoch: Epoch) {
        let was_master = self.election.state() == NodeState::Master;
        self.election.step_down_for(epoch, self.clock.now());
        self.publish();
        if was_master && self.election.state() != NodeState::Master {
            tracing::info!(epoch, "stepped down for a switchover");
            if let Err(err) = self.write_record().await {
                tracing::warn!(error = %err, "cannot publish the step-down in our record");
            }
            self.nudge_peers();
        }
    }

    pub(super) async fn list(&mut self) -> Result<Listing, NodeError> {
        let fresh = self
            .last_scan
            .is_some_and(|at| self.clock.now().duration_since(at) < self.options.poll_period);
        if !fresh && !self.election.is_standalone() {
            self.scan_members().await?;
        }
        let now = self.clock.now();
        let snapshot = self.snapshot.borrow().clone();
        let mut nodes = self.election.summaries(wall_clock_ms(), now);
        // Our own row says what we report now: the election still says MASTER until the next
        // poll fences a lease that ran out during the scan, or a step-down it has not handled.
        if let Some(own) = nodes.first_mut() {
            own.record.status = snapshot.effective_state(now);
        }
        Ok(Listing {
            plane_id: self.plane_id.clone(),
            own_id: self.options.election.node_id.to_string(),
            master: snapshot.master_at(now).cloned(),
            epoch: self.election.epoch(),
            nodes,
        })
    }

    /// Master only: deletes `node`'s record, or every record `Election::removable` names —
    /// TERMINATED ones at least `terminated_age` old (0 on request, the retention when automatic)
    /// and FAILED or stale ones older than the retention.
    pub(super) async fn remove_records(
        &mut self,
        node: Option<NodeId>,
        terminated_age: Duration,
    ) -> Result<Vec<String>, NodeError> {
        // Checked again before each delete and before the answer: the scan and the deletes are
        // store calls, which the lease may not outlast.
        self.check_guard(Guard::MasterOnly)?;
        self.scan_members().await?;
        let now = self.clock.now();
        let targets = match node {
            Some(id) if id == self.options.election.node_id => {
                return Err(NodeError::FailedPrecondition(
                    "cannot remove the master's own record".to_owned(),
                ));
            }
            Some(id) if self.election.peer(&id).is_none() => {
                return Err(NodeError::NotFound(format!("no record for node {id}")));
            }
            Some(id) => vec![id],
            None => self
                .election
                .removable(terminated_age, self.options.record_retention, now),
        };
        let mut removed = Vec::new();
        for id in targets {
            self.check_guard(Guard::MasterOnly)?;
            match self.bounded(self.store.delete(&layout::node(&id)?)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {
                    tracing::info!(node_id = %id, "removed node record");
                    self.election.forget_peer(&id);
                    removed.push(id.to_string());
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.check_guard(Guard::MasterOnly)?;
        Ok(removed)
    }

    pub(super) async fn clean_up_if_due(&mut self) {
        let now = self.clock.now();
        let period = self.options.record_retention.min(Duration::from_secs(60));
        if !self.election.may_act_as_master(now) || now.duration_since(self.last_cleanup) < period {
            return;
        }
        self.last_cleanup = now;
        let retention = self.options.record_retention;
        if let Err(err) = self.remove_records(None, retention).await {
            tracing::warn!(error = %err, "record clean-up failed");
        }
    }

    pub(super) fn not_master(&self) -> NodeError {
        let now = self.clock.now();
        // Never this node: a refusal means it does not act, even while its election still says
        // MASTER for a step-down the loop has not carried out yet.
        let claim = self
            .election
            .active_master(now)
            .filter(|claim| claim.node_id != self.options.election.node_id);
        NodeError::NotMaster {
            master: claim.map(|c| MasterRef {
                id: c.node_id.to_string(),
                uri: c.node_uri,
            }),
        }
    }
}

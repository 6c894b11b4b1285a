//! What readers of the node see: the `Snapshot` (state, lease, master), published after every
//! poll and command and before any store call of a node that stopped acting; the master view
//! watchers follow; and the history of state changes.

use super::NodeError;
use super::runtime::Runtime;
use crate::clock::wall_clock_ms;
use crate::election::Lease;
use haplane::{Epoch, HaMode, MasterRef, MasterView, NodeState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// How many state changes the metrics endpoint keeps.
pub(super) const HISTORY_LEN: usize = 200;

/// What every reader of the node's state sees; republished after every poll and command.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node_id: String,
    pub node_uri: String,
    pub plane_id: String,
    pub mode: HaMode,
    pub state: NodeState,
    pub priority: i64,
    pub epoch: Epoch,
    /// The master this node knows of (itself while master).
    pub master: Option<MasterRef>,
    /// While master: until when, and from when, acting as master is allowed (standalone:
    /// forever).
    pub lease: Lease,
    pub standalone: bool,
    /// What a master that may not act yet (it waits for its predecessor's lease) reports.
    pub follower_state: NodeState,
    /// The managed-state position the master last published in its record.
    pub master_state_seq: u64,
}

impl Snapshot {
    /// Whether this node may act as master at `now` (state MASTER and a valid lease).
    pub fn may_act_as_master(&self, now: Instant) -> bool {
        crate::election::lease_allows_acting(self.state, self.standalone, self.lease, now)
    }

    /// The error for a master-only request on this node, naming the master it knows (never
    /// itself: a node that refuses does not act, whatever its last snapshot names).
    pub fn not_master(&self) -> NodeError {
        NodeError::NotMaster {
            master: self
                .master
                .clone()
                .filter(|master| master.id != self.node_id),
        }
    }

    /// The master to name at `now`: the one this snapshot knows, but this node itself only while
    /// it may act as master (not once its lease lapsed, nor while it waits out a predecessor's).
    pub fn master_at(&self, now: Instant) -> Option<&MasterRef> {
        self.master
            .as_ref()
            .filter(|master| master.id != self.node_id || self.may_act_as_master(now))
    }

    /// The state to report at `now`: a master whose lease lapsed (the loop is stuck on the store)
    /// reports FAILED rather than MASTER, and one still waiting out its predecessor's lease
    /// reports its follower state.
    pub fn effective_state(&self, now: Instant) -> NodeState {
        if self.state != NodeState::Master || self.may_act_as_master(now) {
            self.state
        } else if self.lease.until.is_some_and(|until| now < until) {
            self.follower_state
        } else {
            NodeState::Failed
        }
    }
}

impl Snapshot {
    /// This node no longer acts as master: its follower state, no lease.
    fn stop_acting(&mut self) {
        self.state = self.follower_state;
        self.lease = Lease::default();
    }
}

/// Publishes snapshots and the master view, and lets a switchover's step-down take effect for
/// every reader at once, without waiting for the runtime loop (which may be in the middle of slow
/// store calls): a master snapshot of an epoch a peer asked us to leave is never published again.
/// Both sides decide under the channel's lock, so a snapshot the loop built before the request
/// cannot overwrite the step-down.
///
/// The view watchers see names this node only while it may act as master: the loop proposes a
/// view after each poll and command, and `show_view` shows it with this node's own part read off
/// the snapshot at that instant. It runs again on a step-down and whenever the role changes
/// without a new snapshot (a lease that ran out while the loop waits on the store, or a waiting
/// master's acting start: `follow_role`).
#[derive(Debug, Clone)]
pub(super) struct Publisher {
    pub(super) sender: Arc<watch::Sender<Snapshot>>,
    /// The highest epoch a peer asked us to step down from (0: none).
    pub(super) step_down_from: Arc<AtomicU64>,
    pub(super) view: Arc<watch::Sender<Arc<MasterView>>>,
    /// The view the loop last proposed, before `shown` reads this node's part off the snapshot.
    pub(super) proposed: Arc<Mutex<Arc<MasterView>>>,
    /// The lease's clock, read under the view's lock (`show_view`).
    pub(super) clock: Arc<dyn crate::clock::Clock>,
}

impl Publisher {
    /// Publishes `snapshot`; answers the state it replaced.
    pub(super) fn publish(&self, mut snapshot: Snapshot) -> NodeState {
        let mut previous = snapshot.state;
        self.sender.send_modify(|current| {
            let left = self.step_down_from.load(Ordering::SeqCst);
            if snapshot.state == NodeState::Master && !snapshot.standalone && snapshot.epoch <= left
            {
                snapshot.stop_acting();
            }
            previous = current.state;
            *current = snapshot;
        });
        previous
    }

    /// Proposes `view` as the master view and shows it.
    pub(super) fn publish_view(&self, view: MasterView) {
        *self
            .proposed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(view);
        self.show_view();
    }

    /// Shows the proposed view as the snapshot has it now; watchers wake only on a change of
    /// master. Decided under the view channel's lock, clock read included, so that of two
    /// callers the later snapshot and instant are shown last (the snapshot's lock is only ever
    /// taken inside the view's).
    pub(super) fn show_view(&self) {
        self.view.send_if_modified(|current| {
            let now = self.clock.now();
            let proposed = Arc::clone(
                &self
                    .proposed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let shown = shown(proposed, &self.sender.borrow(), now);
            if Arc::ptr_eq(current, &shown) {
                return false;
            }
            let changed = current.master_differs(&shown);
            *current = shown;
            changed
        });
    }

    /// A peer asks us to leave `epoch`: whether we now surely do not act as master in it or
    /// any older one (false when we are master of a newer epoch than the asker knows). Readers
    /// and watchers see the step-down before the answer leaves.
    pub(super) fn step_down(&self, epoch: Epoch, now: Instant) -> bool {
        let mut stopped = false;
        self.sender.send_modify(|current| {
            let newer = current.state == NodeState::Master && current.epoch > epoch;
            if current.standalone || newer {
                return;
            }
            self.step_down_from.fetch_max(epoch, Ordering::SeqCst);
            if current.state == NodeState::Master {
                current.stop_acting();
            }
            stopped = !current.may_act_as_master(now);
        });
        self.show_view();
        stopped
    }
}

/// `proposed` as watchers may see it at `now`: this node named master only while `snapshot`
/// lets it act, and its own member status the state it reports then.
fn shown(proposed: Arc<MasterView>, snapshot: &Snapshot, now: Instant) -> Arc<MasterView> {
    let own_name_stale = proposed
        .master
        .as_ref()
        .is_some_and(|master| master.id == snapshot.node_id && !snapshot.may_act_as_master(now));
    let own_status = snapshot.effective_state(now);
    let own_status_stale = proposed
        .members
        .iter()
        .any(|member| member.node_id == snapshot.node_id && member.status != own_status);
    if !own_name_stale && !own_status_stale {
        return proposed;
    }
    let mut view = MasterView::clone(&proposed);
    if own_name_stale {
        view.master = None;
    }
    for member in &mut view.members {
        if member.node_id == snapshot.node_id {
            member.status = own_status;
        }
    }
    Arc::new(view)
}

/// Shows the master view anew at every change of this node's role that comes without a new
/// snapshot, until the node stops: so watchers stop being told this node is master when its
/// lease runs out while the loop waits on a hung store call.
pub(super) async fn follow_role(
    publisher: Publisher,
    roles: impl futures::Stream<Item = super::Role>,
) {
    use futures::StreamExt;
    let mut roles = std::pin::pin!(roles);
    while roles.next().await.is_some() {
        publisher.show_view();
    }
}

/// One change of state, for the metrics' history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub state: NodeState,
    pub at_ms: i64,
}

impl Runtime {
    /// Publishes at once when the election's state or lease differs from what readers see: a
    /// node that stopped acting as master must say so before its next store call.
    pub(super) fn publish_if_stepped_down(&self) {
        let stale = {
            let published = self.snapshot.borrow();
            published.state != self.election.state() || published.lease != self.election.lease()
        };
        if stale {
            self.publish();
        }
    }

    /// Publishes the snapshot, the master view (watchers wake only on a change of master) and
    /// the state history.
    pub(super) fn publish(&self) {
        let now = self.clock.now();
        // A master still waiting out its predecessor's lease proposes itself already: it starts
        // acting at an instant no publish marks, and `follow_role` shows it named from then.
        let waiting = self.election.state() == NodeState::Master
            && self
                .election
                .lease()
                .acting_from
                .is_some_and(|from| now < from);
        let active = if waiting {
            self.election.claim().cloned()
        } else {
            self.election.active_master(now)
        };
        let master = match (&active, self.election.is_standalone()) {
            (_, true) => Some(MasterRef {
                id: self.options.election.node_id.to_string(),
                uri: self.options.election.node_uri.clone(),
            }),
            (Some(claim), false) => Some(MasterRef {
                id: claim.node_id.to_string(),
                uri: claim.node_uri.clone(),
            }),
            (None, false) => None,
        };
        // A failover is a master of another epoch after one this node knew: the first election
        // it sees is none.
        if master.is_some() {
            let epoch = self.election.epoch();
            let known = self.counters.master_epoch.swap(epoch, Ordering::Relaxed);
            if known != 0 && known != epoch {
                self.counters.failovers.fetch_add(1, Ordering::Relaxed);
            }
        }
        let snapshot = Snapshot {
            node_id: self.options.election.node_id.to_string(),
            node_uri: self.options.election.node_uri.clone(),
            plane_id: self.plane_id.clone(),
            mode: self.election.mode(),
            state: self.election.state(),
            priority: self.election.priority(),
            epoch: self.election.epoch(),
            master: master.clone(),
            lease: self.election.lease(),
            standalone: self.election.is_standalone(),
            follower_state: self.election.follower_state(),
            master_state_seq: self.election.master_state_seq(),
        };
        let previous_state = self.publisher.publish(snapshot);
        let state = self.snapshot.borrow().state;
        if previous_state != state
            && let Ok(mut history) = self.history.lock()
        {
            tracing::info!(from = %previous_state, to = %state, "state changed");
            history.push_back(StateChange {
                state,
                at_ms: wall_clock_ms(),
            });
            while history.len() > HISTORY_LEN {
                history.pop_front();
            }
        }
        let view = MasterView {
            epoch: self.election.epoch(),
            master,
            plane_id: self.plane_id.clone(),
            members: self.election.members(now),
        };
        // Shared, not copied, by every watcher: a change of master reaches thousands of streams.
        self.publisher.publish_view(view);
    }
}

//! The handle the service layer holds: reads of the published snapshot and view, and commands
//! the runtime loop carries out in order with its polls.

use super::publish::{Publisher, Snapshot, StateChange};
use super::role::Promises;
use super::{NodeError, Role, StepDownAnswer};
use crate::clock::Clock;
use crate::election::NodeSummary;
use haplane::{Epoch, HaMode, MasterRef, MasterView, NodeId, NodeState};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

pub(super) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// Requests the runtime loop carries out in order with its polls.
#[derive(Debug)]
pub(super) enum Command {
    /// The mode, and whether only an acting master may change it (`Guard`).
    SetMode(HaMode, Guard, Reply<NodeState>),
    SetPriority(i64, Guard, Reply<i64>),
    List(Reply<Listing>),
    RemoveTerminated(Option<NodeId>, Reply<Vec<String>>),
    /// A peer asked us to leave `epoch` (switchover); readers already see us stepped down.
    StepDown(Epoch),
    Nudge,
}

/// Who may have a change carried out: Brooklyn's guard lets a change through on the master, or
/// anywhere with the explicit override. The guard is checked again when the loop carries the
/// change out, since the node may have been deposed while the request waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Only while this node acts as master.
    MasterOnly,
    /// On any node (the override was given).
    AnyNode,
}

/// `ListStates`: the plane as this node sees it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub plane_id: String,
    pub own_id: String,
    pub master: Option<MasterRef>,
    pub epoch: Epoch,
    pub nodes: Vec<NodeSummary>,
}

/// Counters shared with metrics.
#[derive(Debug)]
pub struct NodeCounters {
    pub skipped_records: AtomicU64,
    /// Changes of master this node has seen (not the first election it saw).
    pub failovers: AtomicU64,
    /// The epoch of the last master this node saw (0: none yet).
    pub master_epoch: AtomicU64,
    /// Members whose heartbeat this node saw change, as of its last full scan (counted each poll).
    pub live_members: AtomicU64,
    pub polls: AtomicU64,
    /// Seconds each own-record (heartbeat) write took, successful or not.
    pub heartbeat_write_seconds: Histogram,
    /// When the node loop last began a poll, and last wrote its record (for the probes).
    pub last_poll: std::sync::Mutex<Option<Instant>>,
    pub last_heartbeat_written: std::sync::Mutex<Option<Instant>>,
}

impl NodeCounters {
    /// Notes `now` in `slot`.
    pub fn mark(slot: &std::sync::Mutex<Option<Instant>>, now: Instant) {
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
    }

    /// What `slot` holds.
    pub fn read(slot: &std::sync::Mutex<Option<Instant>>) -> Option<Instant> {
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for NodeCounters {
    fn default() -> Self {
        Self {
            skipped_records: AtomicU64::default(),
            failovers: AtomicU64::default(),
            master_epoch: AtomicU64::default(),
            live_members: AtomicU64::default(),
            polls: AtomicU64::default(),
            // 0.25 ms to about 4 s.
            heartbeat_write_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            last_poll: std::sync::Mutex::new(None),
            last_heartbeat_written: std::sync::Mutex::new(None),
        }
    }
}

/// The handle the service uses to talk to the runtime loop.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) snapshot: watch::Receiver<Snapshot>,
    pub(super) publisher: Publisher,
    pub(super) view: watch::Receiver<Arc<MasterView>>,
    pub(super) history: Arc<Mutex<VecDeque<StateChange>>>,
    pub counters: Arc<NodeCounters>,
    pub clock: Arc<dyn Clock>,
    pub(super) state_seq: Arc<AtomicU64>,
    /// Why the managed state cannot be read past this node's position, if it cannot.
    pub(super) state_damage: Arc<std::sync::Mutex<Option<String>>>,
    /// Whether the managed state is ready for this node's role (loaded; fenced on a master).
    pub(super) state_ready: Arc<std::sync::atomic::AtomicBool>,
    /// The leases reported to role watchers (`promise_role`), which a successor waits out.
    pub(super) promises: Arc<Promises>,
}

impl NodeHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Reads the current snapshot in place (no copy of its strings; hot paths use this).
    pub fn read_snapshot<R>(&self, read: impl FnOnce(&Snapshot) -> R) -> R {
        read(&self.snapshot.borrow())
    }

    /// A receiver of the node's snapshot, republished after every poll and command.
    pub fn watch_snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// A receiver of the master view: current value first, then each change of master.
    pub fn watch_view(&self) -> watch::Receiver<Arc<MasterView>> {
        self.view.clone()
    }

    pub fn history(&self) -> Vec<StateChange> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        let shutting_down = || NodeError::Unavailable("node is shutting down".to_owned());
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Changes the HA mode; answers the previous state.
    pub async fn set_mode(&self, mode: HaMode, guard: Guard) -> Result<NodeState, NodeError> {
        self.ask(|reply| Command::SetMode(mode, guard, reply)).await
    }

    /// Changes the priority; answers the previous one.
    pub async fn set_priority(&self, priority: i64, guard: Guard) -> Result<i64, NodeError> {
        self.ask(|reply| Command::SetPriority(priority, guard, reply))
            .await
    }

    /// Reads every record (at most once a poll period) and lists the plane.
    pub async fn list(&self) -> Result<Listing, NodeError> {
        self.ask(Command::List).await
    }

    /// Master only: deletes terminated / long-dead records, or the one named.
    pub async fn remove_terminated(&self, node: Option<NodeId>) -> Result<Vec<String>, NodeError> {
        self.ask(|reply| Command::RemoveTerminated(node, reply))
            .await
    }

    /// A peer asks this node to step down from `epoch` so that it can take over; answers at
    /// once, without waiting for the loop, whether this node no longer acts as master (or
    /// declines: it is master of a newer epoch than the asker knows), and how long the leases it
    /// reported to role watchers still run. The loop then records the step-down in the store.
    pub fn step_down(&self, epoch: Epoch) -> StepDownAnswer {
        let stopped = self.publisher.step_down(epoch, self.clock.now());
        if stopped && self.commands.try_send(Command::StepDown(epoch)).is_err() {
            tracing::warn!(
                epoch,
                "step-down not queued for the loop; readers see it already"
            );
        }
        // Read after the step-down is published: a report made before it is recorded, one
        // made after it says leader=false (both under the promises' lock, see `promise_role`).
        let promised = self.promises.remaining(self.clock.now());
        StepDownAnswer { stopped, promised }
    }

    /// This node's role now, as reported to a role watcher (a sidecar), with the instant it was
    /// read: a leader's lease end is recorded as promised, for `step_down` to answer.
    pub fn promise_role(&self) -> (Role, Instant) {
        let mut promised = self.promises.lock();
        let now = self.clock.now();
        let role = self.read_snapshot(|snapshot| snapshot.role(now));
        if let Some(until) = role.valid_until.filter(|_| role.leader) {
            *promised = Some(promised.map_or(until, |known| known.max(until)));
        }
        (role, now)
    }

    /// The managed-state position this node has applied (and publishes).
    pub fn applied_state_seq(&self) -> u64 {
        self.state_seq.load(Ordering::Relaxed)
    }

    /// Sets the managed-state position this node publishes in its next record.
    pub fn publish_state_seq(&self, seq: u64) {
        self.state_seq.store(seq, Ordering::Relaxed);
    }

    /// Reports that the managed-state log cannot be read past this node's position (`None`:
    /// it can again), for the health answer and the metrics.
    pub fn report_state_damage(&self, damage: Option<String>) {
        *self
            .state_damage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = damage;
    }

    /// Reports whether the managed state is ready for this node's role (for `/readyz`).
    pub fn report_state_ready(&self, ready: bool) {
        self.state_ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the managed state was last reported ready.
    pub fn state_ready(&self) -> bool {
        self.state_ready.load(Ordering::Relaxed)
    }

    /// The damage last reported, if any.
    pub fn state_damage(&self) -> Option<String> {
        self.state_damage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks the loop to poll now (a peer stepped down or claimed).
    pub fn nudge(&self) {
        let _ = self.commands.try_send(Command::Nudge);
    }
}

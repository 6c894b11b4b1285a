//! `HaCore`: the one HA service behind both the gRPC and the REST faces. It applies the
//! non-master guard, validates input and asks the node runtime; it knows nothing of tonic or axum.

pub mod encoded;
pub mod error;
mod history;
pub mod probes;
mod role;
pub mod watch_relay;

pub use role::RoleView;

use crate::node::{Guard, Listing, NodeHandle, Snapshot, StateChange};
use crate::service::error::ServiceError;
use crate::service::watch_relay::ThreadRelays;
use crate::store::counting::{CountingStore, RequestCounts};
use haplane::{Epoch, HaMode, MasterRef, MasterView, NodeId, NodeState};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_stream::Stream;

/// Whether the caller asked to act on a non-master (`allow-non-master-access: true`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Access {
    pub allow_non_master: bool,
}

impl Access {
    /// The guard the node checks again when it carries the change out.
    fn guard(self) -> Guard {
        if self.allow_non_master {
            Guard::AnyNode
        } else {
            Guard::MasterOnly
        }
    }
}

/// This node as `GetState` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateView {
    pub node_id: String,
    pub state: NodeState,
    pub priority: i64,
    pub epoch: Epoch,
    pub master: Option<MasterRef>,
    pub plane_id: String,
    /// While this node acts as master: how long its lease lasts from now (`None` otherwise, and
    /// for a standalone master, which has no lease to lose).
    pub lease_valid_for: Option<Duration>,
}

/// What a load balancer should make of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthClass {
    Master,
    /// HOT_STANDBY or HOT_BACKUP: can serve reads.
    HotReplica,
    Other,
}

/// Figures for the metrics endpoints.
#[derive(Debug, Clone)]
pub struct MetricsView {
    pub state: NodeState,
    pub uptime: Duration,
    pub priority: i64,
    pub epoch: Epoch,
    pub poll_period: Duration,
    pub heartbeat_timeout: Duration,
    pub history: Vec<StateChange>,
    pub skipped_records: u64,
    pub failovers: u64,
    pub store_requests: RequestCounts,
    pub watchers: i64,
    pub polls: u64,
    /// Why the managed state cannot be read past this node's position, if it cannot.
    pub state_damage: Option<String>,
    /// While this node acts as master: how long its lease lasts from now.
    pub lease_remaining: Option<Duration>,
    /// Members whose heartbeat this node saw change, as of its last full scan.
    pub live_members: u64,
    /// Log entries the master has published past this node's managed-state position (0 on
    /// the master itself).
    pub state_lag_entries: u64,
    /// Store request times by operation.
    pub store_latency: crate::store::counting::LatencyFamily,
}

/// The HA service of one node. Cloning it is one reference count: axum clones the state of
/// a route several times per request, and the serving threads share it.
#[derive(Debug, Clone)]
pub struct HaCore {
    inner: Arc<Core>,
}

#[derive(Debug)]
struct Core {
    node: NodeHandle,
    poll_period: Duration,
    heartbeat_timeout: Duration,
    started: Instant,
    /// Becomes true once the node has stopped and published its last view.
    stopped: watch::Receiver<bool>,
    store: Arc<CountingStore>,
    watchers: Arc<AtomicI64>,
    /// Open watches (WatchMaster, SSE and entity Watch) past this are refused: each holds memory
    /// for as long as its client keeps it open.
    max_watchers: i64,
    /// Open health watches (`grpc.health.v1.Health/Watch`, which needs no credentials unless
    /// health is protected) have their own, tighter cap: `HEALTH_WATCHERS_SHARE` of the above.
    health_watchers: Arc<AtomicI64>,
    relays: ThreadRelays,
}

/// Health watches may take this fraction (1/N) of `--max-watchers`: tighter, because anyone
/// who can reach the port may open them.
const HEALTH_WATCHERS_SHARE: i64 = 16;

/// One more open watch in `open`, unless `max` are open already.
fn take_place(open: &Arc<AtomicI64>, max: i64) -> Option<WatcherGuard> {
    open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
        (count < max).then_some(count + 1)
    })
    .ok()
    .map(|_| WatcherGuard(Arc::clone(open)))
}

/// A watch refused at its cap (RESOURCE_EXHAUSTED / 503 at the adapters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchersFull {
    max: i64,
    health: bool,
}

impl std::fmt::Display for WatchersFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.health {
            true => write!(
                f,
                "this node serves at most {} health watches at once; retry later",
                self.max
            ),
            false => write!(
                f,
                "this node serves at most {} watches at once; retry later or watch another node",
                self.max
            ),
        }
    }
}

/// Counts one open watch while it lives.
#[derive(Debug)]
pub struct WatcherGuard(Arc<AtomicI64>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WatcherGuard {
    /// `stream`, with this watch counted until the stream is dropped.
    pub fn hold<S: Stream>(self, stream: S) -> impl Stream<Item = S::Item> {
        use tokio_stream::StreamExt;
        stream.map(move |item| {
            let _open = &self;
            item
        })
    }
}

impl HaCore {
    pub fn new(
        node: NodeHandle,
        poll_period: Duration,
        heartbeat_timeout: Duration,
        stopped: watch::Receiver<bool>,
        store: Arc<CountingStore>,
        max_watchers: usize,
    ) -> Self {
        let started = node.clock.now();
        let inner = Arc::new(Core {
            node,
            poll_period,
            heartbeat_timeout,
            started,
            stopped,
            store,
            watchers: Arc::default(),
            max_watchers: i64::try_from(max_watchers).unwrap_or(i64::MAX),
            health_watchers: Arc::default(),
            relays: ThreadRelays::default(),
        });
        Self { inner }
    }

    fn now(&self) -> Instant {
        self.inner.node.clock.now()
    }

    /// `GetState`.
    pub fn state(&self) -> StateView {
        let now = self.now();
        self.inner.node.read_snapshot(|snapshot| StateView {
            state: snapshot.effective_state(now),
            node_id: snapshot.node_id.clone(),
            priority: snapshot.priority,
            epoch: snapshot.epoch,
            master: snapshot.master_at(now).cloned(),
            plane_id: snapshot.plane_id.clone(),
            lease_valid_for: snapshot.role(now).lease_left(now),
        })
    }

    /// This node's state (FAILED for a master whose lease ran out).
    pub fn current_state(&self) -> NodeState {
        let now = self.now();
        self.inner
            .node
            .read_snapshot(|snapshot| snapshot.effective_state(now))
    }

    pub fn priority(&self) -> i64 {
        self.inner.node.read_snapshot(|snapshot| snapshot.priority)
    }

    /// When this master's lease runs out, if it holds one that has not run out yet.
    pub fn lease_end(&self) -> Option<Instant> {
        let now = self.now();
        self.inner
            .node
            .read_snapshot(|snapshot| snapshot.lease.until)
            .filter(|until| *until > now)
    }

    /// Whether this node may act as master right now (state and lease).
    pub fn is_master(&self) -> bool {
        let now = self.now();
        self.inner
            .node
            .read_snapshot(|snapshot| snapshot.may_act_as_master(now))
    }

    /// The error for a master-only request on this node, naming the master.
    pub fn not_master(&self) -> ServiceError {
        self.inner.node.read_snapshot(Snapshot::not_master).into()
    }

    /// Brooklyn's guard: changes on a non-master need the explicit override.
    pub fn check_write_access(&self, access: Access) -> Result<(), ServiceError> {
        if access.allow_non_master || self.is_master() {
            Ok(())
        } else {
            Err(self.not_master())
        }
    }

    /// `ListStates`.
    pub async fn list_states(&self) -> Result<Listing, ServiceError> {
        Ok(self.inner.node.list().await?)
    }

    /// `SetState`: answers the previous state.
    pub async fn set_state(&self, mode: HaMode, access: Access) -> Result<NodeState, ServiceError> {
        self.check_write_access(access)?;
        Ok(self.inner.node.set_mode(mode, access.guard()).await?)
    }

    /// `SetPriority`: answers the previous priority.
    pub async fn set_priority(&self, priority: i64, access: Access) -> Result<i64, ServiceError> {
        self.check_write_access(access)?;
        Ok(self
            .inner
            .node
            .set_priority(priority, access.guard())
            .await?)
    }

    /// `RemoveTerminated`: master only, whatever the access override says, and refused as such
    /// before its argument is read (as the REST guard refuses it).
    pub async fn remove_terminated(
        &self,
        node_id: Option<&str>,
    ) -> Result<Vec<String>, ServiceError> {
        if !self.is_master() {
            return Err(self.not_master());
        }
        let node = node_id.map(NodeId::parse).transpose()?;
        Ok(self.inner.node.remove_terminated(node).await?)
    }

    /// A receiver of the master view (current first, then each change of master).
    pub fn watch_master(&self) -> watch::Receiver<Arc<MasterView>> {
        self.inner.node.watch_view()
    }

    /// Notified after each change of master and of the stop, on the calling thread (see
    /// `watch_relay`); read the view itself from `watch_master`.
    pub fn master_wakeups(&self) -> Arc<tokio::sync::Notify> {
        self.inner
            .relays
            .for_this_thread(&self.inner.node.watch_view(), &self.inner.stopped)
    }

    /// Registers an open watch (for the watchers gauge and the cap) until the guard drops;
    /// refused when `max_watchers` are open already.
    pub fn count_watcher(&self) -> Result<WatcherGuard, WatchersFull> {
        take_place(&self.inner.watchers, self.inner.max_watchers).ok_or(WatchersFull {
            max: self.inner.max_watchers,
            health: false,
        })
    }

    /// Registers an open health watch until the guard drops; refused when a
    /// `HEALTH_WATCHERS_SHARE` of `max_watchers` are open already.
    pub fn count_health_watcher(&self) -> Result<WatcherGuard, WatchersFull> {
        let max = (self.inner.max_watchers / HEALTH_WATCHERS_SHARE).max(1);
        take_place(&self.inner.health_watchers, max).ok_or(WatchersFull { max, health: true })
    }

    /// The heartbeat write latency histogram.
    pub fn heartbeat_write_seconds(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.inner.node.counters.heartbeat_write_seconds.clone()
    }

    /// Becomes true once the node stopped and published its last view.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.inner.stopped.clone()
    }

    /// A peer says the store changed.
    pub fn nudge(&self) {
        self.inner.node.nudge();
    }

    /// A peer asks this node to step down from `epoch` for a switchover.
    pub fn step_down(&self, epoch: u64) -> crate::node::StepDownAnswer {
        self.inner.node.step_down(epoch)
    }

    /// Load-balancer class of this node.
    pub fn health(&self) -> HealthClass {
        match self.current_state() {
            NodeState::Master => HealthClass::Master,
            NodeState::HotStandby | NodeState::HotBackup => HealthClass::HotReplica,
            _ => HealthClass::Other,
        }
    }

    /// Whether the node is running (not stopped).
    pub fn is_up(&self) -> bool {
        !*self.inner.stopped.borrow()
    }

    /// Whether the node is up and in a working state (not FAILED, TERMINATED or INITIALIZING).
    pub fn is_healthy(&self) -> bool {
        self.is_up()
            && !matches!(
                self.current_state(),
                NodeState::Failed | NodeState::Terminated | NodeState::Initializing
            )
    }

    pub fn metrics(&self) -> MetricsView {
        let now = self.now();
        let snapshot = self.inner.node.snapshot();
        let counters = &self.inner.node.counters;
        MetricsView {
            state: snapshot.effective_state(now),
            uptime: now.saturating_duration_since(self.inner.started),
            priority: snapshot.priority,
            epoch: snapshot.epoch,
            poll_period: self.inner.poll_period,
            heartbeat_timeout: self.inner.heartbeat_timeout,
            history: self.inner.node.history(),
            skipped_records: counters.skipped_records.load(Ordering::Relaxed),
            failovers: counters.failovers.load(Ordering::Relaxed),
            store_requests: self.inner.store.counts(),
            watchers: self.inner.watchers.load(Ordering::Relaxed),
            polls: counters.polls.load(Ordering::Relaxed),
            state_damage: self.inner.node.state_damage(),
            lease_remaining: snapshot.role(now).lease_left(now),
            live_members: counters.live_members.load(Ordering::Relaxed),
            state_lag_entries: snapshot
                .master_state_seq
                .saturating_sub(self.inner.node.applied_state_seq()),
            store_latency: self.inner.store.latency(),
        }
    }

    /// Why the managed state cannot be read past this node's position, if it cannot.
    pub fn state_damage(&self) -> Option<String> {
        self.inner.node.state_damage()
    }
}

/// The master views a watcher receives: the current one at once, then one per change of master
/// (a slow watcher skips straight to the newest), then, after the node stopped and published its
/// last view, `Unavailable`. Shared by gRPC `WatchMaster` and the REST SSE stream.
///
/// The stream is polled by the connection's own stream task; there is no task or channel per
/// watcher, every watcher shares the one `Arc` the node published, and the one wake-up (of a view
/// change or the stop) comes from the serving thread's relay (`watch_relay`), awaited through a
/// future kept inside the stream rather than boxed beside it.
pub fn master_events(core: &HaCore, min_epoch: u64, watcher: WatcherGuard) -> MasterEvents {
    let relay = core.master_wakeups();
    MasterEvents {
        wakeup: Arc::clone(&relay).notified_owned(),
        relay,
        read_now: true,
        views: core.watch_master(),
        stopped: core.stopped(),
        min_epoch,
        last_sent: None,
        ended: false,
        _watcher: watcher,
    }
}

pin_project_lite::pin_project! {
    /// The stream `master_events` answers.
    pub struct MasterEvents {
        #[pin]
        wakeup: tokio::sync::futures::OwnedNotified,
        relay: Arc<tokio::sync::Notify>,
        // True until the first view is read: it is sent without waiting for a change.
        read_now: bool,
        views: watch::Receiver<Arc<MasterView>>,
        stopped: watch::Receiver<bool>,
        min_epoch: u64,
        last_sent: Option<Arc<MasterView>>,
        ended: bool,
        _watcher: WatcherGuard,
    }
}

impl Stream for MasterEvents {
    type Item = Result<Arc<MasterView>, ServiceError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let shutting_down = || ServiceError::Unavailable("node is shutting down".to_owned());
        let mut this = self.project();
        while !*this.ended {
            if !*this.read_now {
                std::task::ready!(this.wakeup.as_mut().poll(cx));
            }
            *this.read_now = false;
            // Armed before the view is read: a change after the read completes the new future.
            this.wakeup.set(Arc::clone(this.relay).notified_owned());
            let view = Arc::clone(&this.views.borrow());
            let is_new = this
                .last_sent
                .as_ref()
                .is_none_or(|last| last.master_differs(&view));
            if is_new && view.epoch >= *this.min_epoch {
                *this.last_sent = Some(Arc::clone(&view));
                return Poll::Ready(Some(Ok(view)));
            }
            // The last view is sent first; then a stop, or a node whose view has gone, ends it.
            if *this.stopped.borrow() || this.views.has_changed().is_err() {
                *this.ended = true;
                return Poll::Ready(Some(Err(shutting_down())));
            }
        }
        Poll::Ready(None)
    }
}

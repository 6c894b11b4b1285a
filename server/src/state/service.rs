//! `StateService`: the managed-state service behind the entity gRPC and REST faces. On the master
//! it fences the log for its epoch, then appends writes; on hot copies it tails the log; on a
//! STANDBY it holds nothing.

use super::compact::{Compactor, SnapshotPolicy, Tail};
use super::history::History;
use super::log::{LogError, StateLog};
use super::{Applied, Entity, EntityId, EntityState, Page, PageRequest};
use crate::node::NodeHandle;
use crate::service::error::ServiceError;
use haplane::NodeState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock, broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

/// Entries read per catch-up step.
const READ_BATCH: usize = 256;
/// How often a master compacts besides after each snapshot.
const COMPACT_EVERY: Duration = Duration::from_secs(5);

/// A read answer: the entities and how current they are.
#[derive(Debug, Clone)]
pub struct ReadView<T> {
    pub value: T,
    pub as_of_seq: u64,
    pub lag: Duration,
}

/// A write request.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: EntityId,
    /// `Some` for a put, `None` for a delete.
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    pub expected_version: Option<u64>,
    pub idempotency_key: Option<String>,
}

/// This node's copy of the state and what goes with it.
#[derive(Debug)]
pub(super) struct Replica {
    pub(super) state: EntityState,
    pub(super) loaded: bool,
    /// When this copy last matched the master's published log position (hot copies).
    caught_up_at: Option<Instant>,
    /// The epoch whose fence this node appended: writes are accepted for it only.
    pub(super) writable_epoch: Option<u64>,
    /// Recent changes, for watchers that resume.
    history: History,
    /// Changes as they are applied; replaced (ending every watch) when the copy jumps.
    events: broadcast::Sender<Applied>,
    /// The log since the last snapshot (master).
    pub(super) tail: Tail,
}

impl Default for Replica {
    fn default() -> Self {
        Self {
            state: EntityState::default(),
            loaded: false,
            caught_up_at: None,
            writable_epoch: None,
            history: History::starting_after(0),
            events: broadcast::channel(1024).0,
            tail: Tail::default(),
        }
    }
}

impl Replica {
    /// Takes `state` (a snapshot) as this copy. A copy that was already loaded jumps: its
    /// watchers cannot follow and are ended.
    fn load(&mut self, state: EntityState) {
        if self.loaded {
            self.events = broadcast::channel(1024).0;
        }
        self.history = History::starting_after(state.applied_seq);
        self.state = state;
        self.loaded = true;
    }

    /// Keeps and sends the changes of one entry that took `bytes` of the log.
    pub(super) fn changed(&mut self, applied: &[Applied], bytes: usize) {
        let share = bytes / applied.len().max(1);
        for change in applied {
            self.history.push(change.clone(), share);
            // No receivers is fine.
            let _ = self.events.send(change.clone());
        }
    }
}

#[derive(Debug)]
pub(super) struct Inner {
    /// `None`: `--persist disabled`, the state lives in memory only.
    pub(super) log: Option<StateLog>,
    pub(super) node: NodeHandle,
    pub(super) replica: RwLock<Replica>,
    /// Serialises everything that appends to the log or replaces the replica.
    pub(super) writer: Mutex<()>,
    /// Writes waiting for the next group commit.
    pub(super) queue: std::sync::Mutex<Vec<super::commit::Pending>>,
    /// Held while a snapshot is written and compacted (at most one at a time).
    pub(super) compactor: Arc<Mutex<Compactor>>,
    pub(super) policy: SnapshotPolicy,
}

/// The managed-state service of one node.
#[derive(Debug, Clone)]
pub struct StateService {
    pub(super) inner: Arc<Inner>,
}

pub(super) fn log_error(err: LogError) -> ServiceError {
    match err {
        LogError::Store(err) => err.into(),
        LogError::Taken(seq) => ServiceError::Unavailable(format!(
            "log position {seq} was taken by another writer; retry"
        )),
        LogError::Corrupt { .. } => ServiceError::DataLoss(err.to_string()),
        LogError::Readable(_) => ServiceError::FailedPrecondition(err.to_string()),
    }
}

impl StateService {
    /// A service over `log` (`None` keeps the state in memory) for `node`, snapshotting and
    /// compacting the log by `policy`.
    pub fn new(log: Option<StateLog>, node: NodeHandle, policy: SnapshotPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                log,
                node,
                replica: RwLock::new(Replica::default()),
                writer: Mutex::new(()),
                queue: std::sync::Mutex::new(Vec::new()),
                compactor: Arc::new(Mutex::new(Compactor::new(policy))),
                policy,
            }),
        }
    }

    /// Reports (once per change, loudly) why the log cannot be read past this node's position,
    /// or that it can again.
    fn set_damage(&self, damage: Option<String>) {
        let node = &self.inner.node;
        if let Some(message) = &damage
            && node.state_damage().as_ref() != Some(message)
        {
            tracing::error!(damage = %message, "managed state cannot be read past this position; see docs/behaviour.md §6.4");
        }
        node.report_state_damage(damage);
    }

    /// Reports `damage` and answers it as the error of the read or write that met it.
    fn damaged(&self, damage: String) -> ServiceError {
        self.set_damage(Some(damage.clone()));
        ServiceError::DataLoss(damage)
    }

    pub(super) fn now(&self) -> Instant {
        self.inner.node.clock.now()
    }

    /// Keeps the replica in step with the node's role until `stopped`: every `period`, and at
    /// once when the node's state or the master's published log position changes. A master also
    /// compacts now and then between snapshots, so what passes the minimum age goes even when
    /// writes stop.
    pub async fn run(self, period: Duration, mut stopped: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut node = self.inner.node.watch_snapshot();
        let mut last_seen = (node.borrow().state, node.borrow().master_state_seq);
        let mut compacted_at = self.now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = node.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // The snapshot is republished every poll; only a new state or a grown log
                    // needs a step now.
                    let seen = {
                        let snapshot = node.borrow_and_update();
                        (snapshot.state, snapshot.master_state_seq)
                    };
                    if std::mem::replace(&mut last_seen, seen) == seen {
                        continue;
                    }
                }
                _ = stopped.wait_for(|s| *s) => return,
            }
            if let Err(err) = self.follow_role().await {
                tracing::warn!(error = %err, "managed state not in step with the store");
            }
            self.report_ready().await;
            if self.now().saturating_duration_since(compacted_at) >= COMPACT_EVERY {
                compacted_at = self.now();
                self.compact_in_background();
            }
        }
    }

    /// Tells the node whether the state is ready for its role: loaded, and fenced on a master.
    async fn report_ready(&self) {
        let snapshot = self.inner.node.snapshot();
        let replica = self.inner.replica.read().await;
        let ready = match snapshot.effective_state(self.now()) {
            NodeState::Master => replica.writable_epoch == Some(snapshot.epoch),
            _ => replica.loaded,
        };
        self.inner.node.report_state_ready(ready);
    }

    /// One step: fence as a new master, tail as a hot copy, drop the state as a standby.
    pub async fn follow_role(&self) -> Result<(), ServiceError> {
        let snapshot = self.inner.node.snapshot();
        match snapshot.effective_state(self.now()) {
            NodeState::Master => {
                let fenced = self.inner.replica.read().await.writable_epoch == Some(snapshot.epoch);
                if !fenced {
                    self.fence(snapshot.epoch).await?;
                }
            }
            NodeState::HotStandby | NodeState::HotBackup => {
                let _writer = self.inner.writer.lock().await;
                let mut replica = self.inner.replica.write().await;
                replica.writable_epoch = None;
                // The master publishes the end of its log in its record, which this node reads
                // every poll anyway: read the log only when it grew.
                if replica.loaded && snapshot.master_state_seq <= replica.state.applied_seq {
                    replica.caught_up_at = Some(self.now());
                    return Ok(());
                }
                drop(replica);
                self.catch_up(false).await?;
            }
            _ => {
                let _writer = self.inner.writer.lock().await;
                *self.inner.replica.write().await = Replica::default();
            }
        }
        Ok(())
    }

    /// Loads the latest snapshot if nothing is loaded, then applies every newer log entry. A
    /// position the master has written past but that cannot be read (compacted while this node
    /// was behind, or damaged) is skipped by loading a newer snapshot if there is one; else the
    /// damage is reported. `fencing`: also make sure nothing lies past the end found, neither a
    /// snapshot nor a later entry (a compacted or missing position must never look free to a new
    /// master). The caller holds the writer lock.
    pub(super) async fn catch_up(&self, fencing: bool) -> Result<(), ServiceError> {
        let Some(log) = &self.inner.log else {
            let mut replica = self.inner.replica.write().await;
            replica.loaded = true;
            replica.caught_up_at = Some(self.now());
            return Ok(());
        };
        if !self.inner.replica.read().await.loaded {
            let state = log.latest_snapshot().await.map_err(log_error)?;
            self.inner.replica.write().await.load(state);
        }
        // The position at which a gap was seen once: a writer may have been appending past it
        // between the read and the listing, so the gap counts only when it is seen again.
        let mut gap_seen_at = None;
        loop {
            let applied = self.inner.replica.read().await.state.applied_seq;
            let entries = match log.read_after(applied, READ_BATCH).await {
                Ok(entries) => entries,
                Err(LogError::Corrupt { key, message }) => {
                    if self.load_snapshot_past(log, applied).await? {
                        continue;
                    }
                    return Err(self.damaged(format!("{key} cannot be read: {message}")));
                }
                Err(err) => return Err(log_error(err)),
            };
            let done = entries.len() < READ_BATCH;
            let mut replica = self.inner.replica.write().await;
            for (entry, bytes) in &entries {
                let applied = replica.state.apply(entry).map_err(ServiceError::Internal)?;
                replica.changed(&applied, *bytes);
            }
            let applied = replica.state.applied_seq;
            self.inner.node.publish_state_seq(applied);
            if !done {
                continue;
            }
            let mut published = self.inner.node.snapshot().master_state_seq;
            if fencing {
                // A new master knows no published position but its own: the log itself must
                // show that nothing lies past the end found (a missing entry with later ones
                // after it is damage, never a free slot to fence in).
                published = published.max(log.last_entry_seq().await.map_err(log_error)?);
            }
            drop(replica);
            if fencing || applied < published {
                if self.load_snapshot_past(log, applied).await? {
                    continue;
                }
                if applied < published && gap_seen_at != Some(applied) {
                    gap_seen_at = Some(applied);
                    continue;
                }
                if applied < published {
                    return Err(self.damaged(format!(
                        "log entry {} is missing, though the log reaches {published}",
                        applied + 1
                    )));
                }
            }
            self.inner.replica.write().await.caught_up_at = Some(self.now());
            self.set_damage(None);
            return Ok(());
        }
    }

    /// Loads the newest snapshot if it is past `applied`; whether it did. A snapshot past
    /// `applied` that cannot be loaded is damage: the log before it may be compacted, so going
    /// on (or fencing) from here could drop acknowledged writes.
    async fn load_snapshot_past(&self, log: &StateLog, applied: u64) -> Result<bool, ServiceError> {
        let newest = log.snapshot_seqs().await.map_err(log_error)?;
        let Some(&newest) = newest.last().filter(|&&seq| seq > applied) else {
            return Ok(false);
        };
        let state = log.latest_snapshot().await.map_err(log_error)?;
        if state.applied_seq <= applied {
            return Err(self.damaged(format!(
                "{} cannot be loaded, and this copy is at {applied}",
                crate::store::layout::snapshot(newest)
                    .map_or_else(|_| newest.to_string(), |key| key.to_string())
            )));
        }
        tracing::warn!(
            from = applied,
            to = state.applied_seq,
            "the log after this copy's position is compacted or unreadable; loaded a newer snapshot"
        );
        self.inner.replica.write().await.load(state);
        Ok(true)
    }

    /// Reads through `read` on a node that holds the state (master or hot copy).
    async fn read<T>(
        &self,
        read: impl FnOnce(&EntityState) -> T,
    ) -> Result<ReadView<T>, ServiceError> {
        let now = self.now();
        let replica = self.inner.replica.read().await;
        let (state, epoch) = self.holding_state(&replica, now)?;
        let lag = if state == NodeState::Master && replica.writable_epoch == Some(epoch) {
            Duration::ZERO
        } else {
            replica
                .caught_up_at
                .map_or(Duration::MAX, |at| now.saturating_duration_since(at))
        };
        Ok(ReadView {
            value: read(&replica.state),
            as_of_seq: replica.state.applied_seq,
            lag,
        })
    }

    /// This node's state and epoch if it holds a loaded copy, else why not.
    fn holding_state(
        &self,
        replica: &Replica,
        now: Instant,
    ) -> Result<(NodeState, u64), ServiceError> {
        let (state, epoch) = self
            .inner
            .node
            .read_snapshot(|snapshot| (snapshot.effective_state(now), snapshot.epoch));
        let holds_state = matches!(
            state,
            NodeState::Master | NodeState::HotStandby | NodeState::HotBackup
        );
        if !holds_state || !replica.loaded {
            return Err(ServiceError::StateNotLoaded(format!(
                "state not loaded: this node is {state}; read from the master or a hot standby"
            )));
        }
        Ok((state, epoch))
    }

    /// One entity.
    pub async fn get(&self, id: &EntityId) -> Result<ReadView<Arc<Entity>>, ServiceError> {
        let view = self.read(|state| state.entities.get(id).cloned()).await?;
        match view.value {
            Some(entity) => Ok(ReadView {
                value: entity,
                as_of_seq: view.as_of_seq,
                lag: view.lag,
            }),
            None => Err(ServiceError::NotFound(format!("no entity {}", id.as_str()))),
        }
    }

    /// One page of the entities whose id starts with `prefix`.
    pub async fn list(
        &self,
        prefix: &str,
        page: &PageRequest,
    ) -> Result<ReadView<Page>, ServiceError> {
        self.read(|state| state.page(prefix, page)).await
    }

    /// The changes to entities whose id starts with `prefix`: first those kept from `start_seq`
    /// on (`None`: none), then each as it is applied. A position older than the kept changes is
    /// `Compacted`; resuming needs a loaded copy. The stream ends with `Unavailable` when the
    /// watcher falls behind or this node's copy jumps or is dropped.
    pub async fn watch(
        &self,
        prefix: String,
        start_seq: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Applied, ServiceError>> + Send + 'static, ServiceError>
    {
        let (backlog, receiver) = self.backlog_and_live(start_seq).await?;
        let live = BroadcastStream::new(receiver).map(|change| {
            change.map_err(|_| {
                ServiceError::Unavailable(
                    "this watcher fell behind; resume from the last seq seen".to_owned(),
                )
            })
        });
        let ended = tokio_stream::once(Err(ServiceError::Unavailable(
            "this node's copy of the state jumped or was dropped; resume from the last seq seen on the master or a hot standby".to_owned(),
        )));
        let changes = tokio_stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .chain(ended)
            .filter(move |change| {
                change
                    .as_ref()
                    .map_or(true, |change| change.id.as_str().starts_with(&prefix))
            });
        // The first error ends the stream: a watcher told it fell behind must not be sent the
        // changes after the ones it missed (an SSE client would move its Last-Event-ID past them).
        Ok(futures::StreamExt::scan(changes, false, |ended, change| {
            let next = (!*ended).then(|| {
                *ended = change.is_err();
                change
            });
            futures::future::ready(next)
        }))
    }

    /// The kept changes from `start_seq` on and a receiver of the next, taken together.
    async fn backlog_and_live(
        &self,
        start_seq: Option<u64>,
    ) -> Result<(Vec<Applied>, broadcast::Receiver<Applied>), ServiceError> {
        let replica = self.inner.replica.read().await;
        let backlog = match start_seq {
            None => Vec::new(),
            Some(start) => {
                self.holding_state(&replica, self.now())?;
                replica
                    .history
                    .since(start)
                    .map_err(|compacted| ServiceError::Compacted(compacted.to_string()))?
            }
        };
        Ok((backlog, replica.events.subscribe()))
    }
}

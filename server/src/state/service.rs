//! `StateService`: the managed-state service behind the entity gRPC and REST faces. On the master
//! it fences the log for its epoch, then appends writes; on hot copies it tails the log; on a
//! STANDBY it holds nothing.

use super::log::{LogError, StateLog};
use super::{Change, Entity, EntityId, EntityState, LogEntry, Page, PageRequest, WriteOutcome};
use crate::node::NodeHandle;
use crate::service::error::ServiceError;
use haplane::NodeState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock, broadcast, watch};

/// A snapshot is written every this many log entries.
const SNAPSHOT_EVERY: u64 = 100;
/// Entries read per catch-up step.
const READ_BATCH: usize = 256;

/// A read answer: the entities and how current they are.
#[derive(Debug, Clone)]
pub struct ReadView<T> {
    pub value: T,
    pub as_of_seq: u64,
    pub lag: Duration,
}

/// One applied change, for watchers.
#[derive(Debug, Clone)]
pub struct EntityEvent {
    pub seq: u64,
    pub id: EntityId,
    /// `None` after a delete.
    pub entity: Option<Entity>,
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

#[derive(Debug, Default)]
struct Replica {
    state: EntityState,
    loaded: bool,
    /// When this copy last matched the master's published log position (hot copies).
    caught_up_at: Option<Instant>,
    /// The epoch whose fence this node appended: writes are accepted for it only.
    writable_epoch: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    /// `None`: `--persist disabled`, the state lives in memory only.
    log: Option<StateLog>,
    node: NodeHandle,
    replica: RwLock<Replica>,
    /// Serialises everything that appends to the log or replaces the replica.
    writer: Mutex<()>,
    events: broadcast::Sender<EntityEvent>,
}

/// The managed-state service of one node.
#[derive(Debug, Clone)]
pub struct StateService {
    inner: Arc<Inner>,
}

fn log_error(err: LogError) -> ServiceError {
    match err {
        LogError::Store(err) => err.into(),
        LogError::Taken(seq) => ServiceError::Unavailable(format!(
            "log position {seq} was taken by another writer; retry"
        )),
        LogError::Corrupt { .. } => ServiceError::Internal(err.to_string()),
    }
}

impl StateService {
    /// A service over `log` (`None` keeps the state in memory) for `node`.
    pub fn new(log: Option<StateLog>, node: NodeHandle) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                log,
                node,
                replica: RwLock::new(Replica::default()),
                writer: Mutex::new(()),
                events,
            }),
        }
    }

    fn now(&self) -> Instant {
        self.inner.node.clock.now()
    }

    /// Keeps the replica in step with the node's role until `stopped`: every `period`, and at
    /// once when the node's state or the master's published log position changes.
    pub async fn run(self, period: Duration, mut stopped: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut node = self.inner.node.watch_snapshot();
        let mut last_seen = (node.borrow().state, node.borrow().master_state_seq);
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
        }
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
                self.catch_up().await?;
            }
            _ => {
                let _writer = self.inner.writer.lock().await;
                *self.inner.replica.write().await = Replica::default();
            }
        }
        Ok(())
    }

    /// Loads the latest snapshot if nothing is loaded, then applies every newer log entry.
    /// The caller holds the writer lock.
    async fn catch_up(&self) -> Result<(), ServiceError> {
        let Some(log) = &self.inner.log else {
            let mut replica = self.inner.replica.write().await;
            replica.loaded = true;
            replica.caught_up_at = Some(self.now());
            return Ok(());
        };
        if !self.inner.replica.read().await.loaded {
            let state = log.latest_snapshot().await.map_err(log_error)?;
            let mut replica = self.inner.replica.write().await;
            replica.state = state;
            replica.loaded = true;
        }
        loop {
            let applied = self.inner.replica.read().await.state.applied_seq;
            let entries = log
                .read_after(applied, READ_BATCH)
                .await
                .map_err(log_error)?;
            let done = entries.len() < READ_BATCH;
            let mut replica = self.inner.replica.write().await;
            for entry in &entries {
                let outcome = replica.state.apply(entry).map_err(ServiceError::Internal)?;
                self.publish(entry, outcome);
            }
            self.inner.node.publish_state_seq(replica.state.applied_seq);
            if done {
                replica.caught_up_at = Some(self.now());
                return Ok(());
            }
        }
    }

    fn publish(&self, entry: &LogEntry, outcome: Option<WriteOutcome>) {
        let Some(outcome) = outcome else { return };
        let id = match &entry.change {
            Change::Put { id, .. } | Change::Delete { id } => id.clone(),
            Change::Fence => return,
        };
        // No receivers is fine.
        let _ = self.inner.events.send(EntityEvent {
            seq: outcome.seq,
            id,
            entity: outcome.entity,
        });
    }

    /// A new master's first act: catch up, then append a fence for `epoch`, so that a deposed
    /// master's late append finds its position taken.
    async fn fence(&self, epoch: u64) -> Result<(), ServiceError> {
        let _writer = self.inner.writer.lock().await;
        self.fence_locked(epoch).await
    }

    /// `fence` for a caller that holds the writer lock.
    async fn fence_locked(&self, epoch: u64) -> Result<(), ServiceError> {
        if self.inner.replica.read().await.writable_epoch == Some(epoch) {
            return Ok(());
        }
        self.catch_up().await?;
        loop {
            match self.append(epoch, None, Change::Fence).await {
                Ok(_) => break,
                Err(LogError::Taken(_)) => self.catch_up().await?,
                Err(err) => return Err(log_error(err)),
            }
        }
        self.inner.replica.write().await.writable_epoch = Some(epoch);
        tracing::info!(epoch, "managed state fenced and writable");
        Ok(())
    }

    /// Appends one entry at the next position and applies it. The caller holds the writer lock.
    async fn append(
        &self,
        epoch: u64,
        idempotency_key: Option<String>,
        change: Change,
    ) -> Result<Option<WriteOutcome>, LogError> {
        let seq = self.inner.replica.read().await.state.applied_seq + 1;
        let entry = LogEntry {
            seq,
            epoch,
            idempotency_key,
            change,
        };
        if let Some(log) = &self.inner.log {
            log.append(&entry).await?;
        }
        let mut replica = self.inner.replica.write().await;
        let outcome = replica
            .state
            .apply(&entry)
            .map_err(|message| LogError::Corrupt {
                key: crate::store::layout::log_entry(seq)
                    .map_or_else(|_| seq.to_string(), |key| key.to_string()),
                message,
            })?;
        self.publish(&entry, outcome.clone());
        self.inner.node.publish_state_seq(seq);
        if seq % SNAPSHOT_EVERY == 0
            && let Some(log) = &self.inner.log
            && let Err(err) = log.write_snapshot(&replica.state).await
        {
            tracing::warn!(error = %err, seq, "snapshot not written; replay stays longer");
        }
        Ok(outcome)
    }

    /// Applies a put or delete on the master. Acknowledged only once the entry is in the store
    /// and the lease held from before the write until after it.
    pub async fn write(&self, write: Write) -> Result<WriteOutcome, ServiceError> {
        let _writer = self.inner.writer.lock().await;
        let snapshot = self.inner.node.snapshot();
        if !snapshot.may_act_as_master(self.now()) {
            return Err(snapshot.not_master().into());
        }
        // A master that has not fenced its epoch yet (just elected) does so now.
        self.fence_locked(snapshot.epoch).await?;
        {
            let replica = self.inner.replica.read().await;
            if let Some(key) = &write.idempotency_key
                && let Some(outcome) = replica.state.outcome_of(key)
            {
                return Ok(outcome.clone());
            }
            let current = replica
                .state
                .entities
                .get(&write.id)
                .map_or(0, |e| e.version);
            if let Some(expected) = write.expected_version
                && expected != current
            {
                return Err(ServiceError::Conflict(format!(
                    "{} is at version {current}, not {expected}",
                    write.id.as_str()
                )));
            }
            if write.attributes.is_none() && current == 0 {
                return Err(ServiceError::NotFound(format!(
                    "no entity {}",
                    write.id.as_str()
                )));
            }
        }
        let change = match write.attributes {
            Some(attributes) => Change::Put {
                id: write.id,
                attributes,
            },
            None => Change::Delete { id: write.id },
        };
        let appended = self
            .append(snapshot.epoch, write.idempotency_key, change)
            .await;
        if !self.inner.node.snapshot().may_act_as_master(self.now()) {
            return Err(ServiceError::Unavailable(
                "the master lease lapsed during the write; its outcome is unknown: retry with the same idempotency key".to_owned(),
            ));
        }
        match appended {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err(ServiceError::Unavailable(
                "this master was fenced by a newer one".to_owned(),
            )),
            Err(LogError::Taken(_)) => {
                // Someone else wrote here: a newer master's fence, or our own write whose
                // answer was lost. Catch up; a newer fence ends our writes.
                self.catch_up().await?;
                let fenced_out = self.inner.replica.read().await.state.fence_epoch > snapshot.epoch;
                Err(if fenced_out {
                    self.inner.replica.write().await.writable_epoch = None;
                    self.inner.node.snapshot().not_master().into()
                } else {
                    ServiceError::Unavailable("the log moved under this write; retry".to_owned())
                })
            }
            Err(err) => Err(log_error(err)),
        }
    }

    /// Reads through `read` on a node that holds the state (master or hot copy).
    async fn read<T>(
        &self,
        read: impl FnOnce(&EntityState) -> T,
    ) -> Result<ReadView<T>, ServiceError> {
        let now = self.now();
        let state = self.inner.node.snapshot().effective_state(now);
        let replica = self.inner.replica.read().await;
        let holds_state = matches!(
            state,
            NodeState::Master | NodeState::HotStandby | NodeState::HotBackup
        );
        if !holds_state || !replica.loaded {
            return Err(ServiceError::StateNotLoaded(format!(
                "state not loaded: this node is {state}; read from the master or a hot standby"
            )));
        }
        let lag = if state == NodeState::Master && replica.writable_epoch.is_some() {
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

    /// One entity.
    pub async fn get(&self, id: &EntityId) -> Result<ReadView<Entity>, ServiceError> {
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

    /// Applied changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EntityEvent> {
        self.inner.events.subscribe()
    }
}

//! The master's write path: group commit (writes waiting together become one log entry, one
//! create-if-absent), the fence a new master appends first, and the snapshots and compaction that
//! follow the log, off the write path.

use super::compact::Compactor;
use super::log::{LogError, StateLog};
use super::service::{Replica, StateService, Write, log_error};
use super::{Applied, Change, Entity, EntityId, LogEntry, Op, WriteOutcome};
use crate::clock::wall_clock_ms;
use crate::service::error::ServiceError;
use crate::store::layout;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, oneshot};

/// Writes committed in one log entry, at most.
const MAX_BATCH: usize = 512;
/// A snapshot upload that takes longer is abandoned (the log stays longer until the next).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Deletions compaction runs at once.
const DELETE_CONCURRENCY: usize = 16;
/// Deletions between two checks of the lease.
const DELETE_CHUNK: usize = 256;

const OUTCOME_UNKNOWN: &str =
    "the write was interrupted; its outcome is unknown: retry with the same idempotency key";
const LEASE_LAPSED: &str = "the master lease lapsed during the write; its outcome is unknown: retry with the same idempotency key";

/// A write waiting for the next commit, and where its answer goes.
#[derive(Debug)]
pub(super) struct Pending {
    write: Write,
    answer: oneshot::Sender<Result<WriteOutcome, ServiceError>>,
}

type Answer = oneshot::Sender<Result<WriteOutcome, ServiceError>>;

impl StateService {
    /// Applies a put or delete on the master. Acknowledged only once the entry that carries it is
    /// in the store and the lease held from before the entry was written until after.
    /// Concurrent writes are committed together; each is checked (`If-Match`, idempotency key)
    /// as if applied alone, in arrival order.
    pub async fn write(&self, write: Write) -> Result<WriteOutcome, ServiceError> {
        let (answer, answered) = oneshot::channel();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Pending { write, answer });
        // The commit runs in its own task, so a caller that goes away cannot cut it short.
        tokio::spawn(self.clone().commit_queued());
        answered
            .await
            .unwrap_or_else(|_| Err(ServiceError::Unavailable(OUTCOME_UNKNOWN.to_owned())))
    }

    /// Commits the queued writes, a batch at a time, until none are left.
    async fn commit_queued(self) {
        let _writer = self.inner.writer.lock().await;
        loop {
            let batch: Vec<Pending> = {
                let mut queue = self
                    .inner
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = queue.len().min(MAX_BATCH);
                queue.drain(..count).collect()
            };
            if batch.is_empty() {
                return;
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&self, batch: Vec<Pending>) {
        let snapshot = self.inner.node.snapshot();
        let refuse = |batch: Vec<Pending>, err: ServiceError| {
            for pending in batch {
                let _ = pending.answer.send(Err(err.clone()));
            }
        };
        if !snapshot.may_act_as_master(self.now()) {
            return refuse(batch, snapshot.not_master().into());
        }
        // A master that has not fenced its epoch yet (just elected) does so now.
        if let Err(err) = self.fence_locked(snapshot.epoch).await {
            return refuse(batch, err);
        }
        let (ops, waiting) = self.admit(batch).await;
        if ops.is_empty() {
            return;
        }
        let mut result = self.append_ops(snapshot.epoch, ops).await;
        if !self.inner.node.snapshot().may_act_as_master(self.now()) {
            result = Err(ServiceError::Unavailable(LEASE_LAPSED.to_owned()));
        }
        for (answer, index) in waiting {
            let outcome = result.as_ref().map_err(Clone::clone).and_then(|outcomes| {
                outcomes.get(index).cloned().ok_or_else(|| {
                    ServiceError::Internal("a committed write has no outcome".to_owned())
                })
            });
            let _ = answer.send(outcome);
        }
    }

    /// Answers the writes that need no entry (a retried key, a failed `If-Match`, deleting what
    /// is not there) and turns the rest into ops; each answer waits for the op at its index.
    async fn admit(&self, batch: Vec<Pending>) -> (Vec<Op>, Vec<(Answer, usize)>) {
        let replica = self.inner.replica.read().await;
        let state = &replica.state;
        let mut versions: HashMap<EntityId, u64> = HashMap::new();
        let mut keyed: HashMap<String, usize> = HashMap::new();
        let mut ops = Vec::new();
        let mut waiting = Vec::new();
        for Pending { write, answer } in batch {
            if let Some(key) = &write.idempotency_key {
                if let Some(earlier) = state.recorded(key) {
                    let outcome = match key_reused(key, &earlier.id, earlier.version > 0, &write) {
                        Some(refusal) => Err(refusal),
                        None => Ok(state.retried(earlier, write.attributes.as_ref())),
                    };
                    let _ = answer.send(outcome);
                    continue;
                }
                if let Some(&index) = keyed.get(key) {
                    let earlier: &Op = &ops[index];
                    match key_reused(key, &earlier.id, earlier.put.is_some(), &write) {
                        Some(refusal) => {
                            let _ = answer.send(Err(refusal));
                        }
                        None => waiting.push((answer, index)),
                    }
                    continue;
                }
            }
            let current = versions
                .get(&write.id)
                .copied()
                .unwrap_or_else(|| state.version_of(&write.id));
            if let Err(err) = precondition(&write, current) {
                let _ = answer.send(Err(err));
                continue;
            }
            let next = if write.attributes.is_some() {
                current + 1
            } else {
                0
            };
            versions.insert(write.id.clone(), next);
            if let Some(key) = &write.idempotency_key {
                keyed.insert(key.clone(), ops.len());
            }
            waiting.push((answer, ops.len()));
            ops.push(Op {
                key: write.idempotency_key,
                id: write.id,
                put: write.attributes,
            });
        }
        (ops, waiting)
    }

    /// Appends `ops` as one entry; their outcomes in order.
    async fn append_ops(
        &self,
        epoch: u64,
        ops: Vec<Op>,
    ) -> Result<Vec<WriteOutcome>, ServiceError> {
        match self.append(epoch, Change::Batch { ops }).await {
            Ok(applied) if applied.is_empty() => {
                // Void: a newer fence precedes it; this node writes no more for its epoch.
                self.inner.replica.write().await.writable_epoch = None;
                Err(ServiceError::Unavailable(
                    "this master was fenced by a newer one".to_owned(),
                ))
            }
            Ok(applied) => Ok(applied
                .into_iter()
                .map(|change| WriteOutcome {
                    seq: change.seq,
                    entity: change.entity.map(|entity| Entity::clone(&entity)),
                })
                .collect()),
            Err(LogError::Taken(_)) => {
                // Someone else wrote here: a newer master's fence, or our own entry whose answer
                // was lost. Catch up; a newer fence ends our writes.
                self.catch_up(false).await?;
                let mut replica = self.inner.replica.write().await;
                if replica.state.fence_epoch > epoch {
                    replica.writable_epoch = None;
                    Err(self.inner.node.snapshot().not_master().into())
                } else {
                    Err(ServiceError::Unavailable(
                        "the log moved under this write; retry".to_owned(),
                    ))
                }
            }
            Err(err) => Err(log_error(err)),
        }
    }

    /// A new master's first act: catch up, then append a fence for `epoch`, so that a deposed
    /// master's late append finds its position taken.
    pub(super) async fn fence(&self, epoch: u64) -> Result<(), ServiceError> {
        let _writer = self.inner.writer.lock().await;
        self.fence_locked(epoch).await
    }

    /// `fence` for a caller that holds the writer lock.
    async fn fence_locked(&self, epoch: u64) -> Result<(), ServiceError> {
        if self.inner.replica.read().await.writable_epoch == Some(epoch) {
            return Ok(());
        }
        self.catch_up(true).await?;
        loop {
            match self.append(epoch, Change::Fence).await {
                Ok(_) => break,
                Err(LogError::Taken(_)) => self.catch_up(true).await?,
                Err(err) => return Err(log_error(err)),
            }
        }
        // A fence below a newer one is void: this node is not the master of the log.
        if self.inner.replica.read().await.state.fence_epoch != epoch {
            return Err(self.inner.node.snapshot().not_master().into());
        }
        // A fence must land after everything written, never in a compacted position below a
        // snapshot (catch_up checked just before; this closes the gap between). If a snapshot
        // now lies at or past it, this copy was behind: drop it, and load and fence again.
        if let Some(log) = &self.inner.log {
            let fenced_at = self.inner.replica.read().await.state.applied_seq;
            let snapshots = log.snapshot_seqs().await.map_err(log_error)?;
            if snapshots.last().is_some_and(|&seq| seq >= fenced_at) {
                tracing::error!(
                    fenced_at,
                    "the fence landed in a compacted part of the log; reloading"
                );
                *self.inner.replica.write().await = Replica::default();
                return Err(ServiceError::Unavailable(
                    "this master was behind a compacted log; it reloads and fences again: retry"
                        .to_owned(),
                ));
            }
        }
        self.inner.replica.write().await.writable_epoch = Some(epoch);
        tracing::info!(epoch, "managed state fenced and writable");
        Ok(())
    }

    /// Appends one entry at the next position and applies it; starts a snapshot when one is due.
    /// The caller holds the writer lock.
    async fn append(&self, epoch: u64, change: Change) -> Result<Vec<Applied>, LogError> {
        let seq = self.inner.replica.read().await.state.applied_seq + 1;
        let entry = LogEntry {
            seq,
            epoch,
            at_ms: u64::try_from(wall_clock_ms()).unwrap_or(0),
            idempotency_key: None,
            change,
        };
        let bytes = match &self.inner.log {
            Some(log) => log.append(&entry).await?,
            None => 0,
        };
        let mut replica = self.inner.replica.write().await;
        let applied = replica
            .state
            .apply(&entry)
            .map_err(|message| LogError::Corrupt {
                key: layout::log_entry(seq).map_or_else(|_| seq.to_string(), |key| key.to_string()),
                message,
            })?;
        replica.changed(&applied, bytes);
        self.inner.node.publish_state_seq(seq);
        replica.tail.appended(bytes);
        // Not at a fence: the fence's own check must not find a snapshot of itself.
        if entry.change != Change::Fence
            && replica.tail.snapshot_due(self.inner.policy.every_entries)
            && let Some(log) = &self.inner.log
            && let Ok(compactor) = std::sync::Arc::clone(&self.inner.compactor).try_lock_owned()
        {
            let view = replica.state.clone();
            replica.tail.snapshot_started();
            tokio::spawn(self.clone().snapshot(log.clone(), view, compactor));
        }
        Ok(applied)
    }

    /// Writes `view` as a snapshot, then compacts; runs beside the writes, one at a time.
    async fn snapshot(
        self,
        log: StateLog,
        view: super::EntityState,
        mut compactor: OwnedMutexGuard<Compactor>,
    ) {
        let seq = view.applied_seq;
        let written = match tokio::time::timeout(SNAPSHOT_TIMEOUT, log.write_snapshot(view)).await {
            Ok(written) => written.map_err(|err| err.to_string()),
            Err(_) => Err(format!("upload timed out after {SNAPSHOT_TIMEOUT:?}")),
        };
        match written {
            Ok(bytes) => {
                self.inner
                    .replica
                    .write()
                    .await
                    .tail
                    .snapshot_written(bytes);
                compactor.wrote(seq, self.now());
                tracing::debug!(seq, bytes, "snapshot written");
            }
            Err(error) => {
                tracing::warn!(%error, seq, "snapshot not written; the next entry tries again");
                self.inner.replica.write().await.tail.snapshot_failed();
                return;
            }
        }
        if let Err(err) = self.compact(&log, &mut compactor).await {
            tracing::warn!(error = %err, "compaction stopped; it resumes after the next snapshot");
        }
    }

    /// Compacts beside the writes if this node may act as master and no snapshot or compaction
    /// is under way.
    pub(super) fn compact_in_background(&self) {
        let Some(log) = self.inner.log.clone() else {
            return;
        };
        if !self.inner.node.snapshot().may_act_as_master(self.now()) {
            return;
        }
        if let Ok(mut compactor) = std::sync::Arc::clone(&self.inner.compactor).try_lock_owned() {
            let service = self.clone();
            tokio::spawn(async move {
                if let Err(err) = service.compact(&log, &mut compactor).await {
                    tracing::warn!(error = %err, "compaction stopped; it is tried again later");
                }
            });
        }
    }

    /// Deletes what the retention allows: old snapshots and the log they cover. Only while this
    /// node may act as master (a deposed master deletes nothing).
    async fn compact(&self, log: &StateLog, compactor: &mut Compactor) -> Result<(), LogError> {
        let epoch = self.inner.node.snapshot().epoch;
        let in_store = log.snapshot_seqs().await?;
        let plan = compactor.plan(&in_store, self.now());
        // How far this node deleted in this epoch (in another, another master may have
        // compacted since: the log is listed again).
        let done = compactor
            .log_deleted_through
            .filter(|(at_epoch, _)| *at_epoch == epoch)
            .map(|(_, done)| done);
        let nothing_new = plan.snapshots.is_empty()
            && (plan.log_through == 0 || done.is_some_and(|done| plan.log_through <= done));
        if nothing_new || !self.inner.node.snapshot().may_act_as_master(self.now()) {
            return Ok(());
        }
        let entries: Vec<u64> = match done {
            Some(done) => (done + 1..=plan.log_through).collect(),
            None => log
                .entry_seqs()
                .await?
                .into_iter()
                .filter(|&seq| seq <= plan.log_through)
                .collect(),
        };
        let snapshot_keys = plan.snapshots.iter().map(|&seq| layout::snapshot(seq));
        let entry_keys = entries.iter().map(|&seq| layout::log_entry(seq));
        let keys = snapshot_keys
            .chain(entry_keys)
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in keys.chunks(DELETE_CHUNK) {
            // A master that lost its lease mid-way stops deleting.
            if !self.inner.node.snapshot().may_act_as_master(self.now()) {
                return Ok(());
            }
            let deletions = chunk
                .iter()
                .cloned()
                .map(|key| async move { log.delete(&key).await });
            let deleted = futures::stream::iter(deletions)
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            deleted.into_iter().collect::<Result<(), LogError>>()?;
        }
        compactor.log_deleted_through = Some((epoch, plan.log_through));
        tracing::debug!(
            snapshots = plan.snapshots.len(),
            entries = entries.len(),
            through = plan.log_through,
            "compacted"
        );
        Ok(())
    }
}

/// `None` when `write`, sent with `key`, is the write the key already names (a put or a delete,
/// `earlier_put`, of `earlier_id`); else the refusal. A key names one write: answering another
/// write with the earlier one's outcome would acknowledge a write that was never applied.
fn key_reused(
    key: &str,
    earlier_id: &EntityId,
    earlier_put: bool,
    write: &Write,
) -> Option<ServiceError> {
    if *earlier_id == write.id && earlier_put == write.attributes.is_some() {
        return None;
    }
    let kind = |put: bool| if put { "put" } else { "delete" };
    Some(ServiceError::InvalidArgument {
        field: "idempotency key".into(),
        message: format!(
            "{key:?} already names a {} of {}, not this {} of {}; a retry repeats its write, \
             another write needs another key",
            kind(earlier_put),
            earlier_id.as_str(),
            kind(write.attributes.is_some()),
            write.id.as_str()
        ),
    })
}

/// Whether `write` may apply to an entity at version `current` (0: absent).
fn precondition(write: &Write, current: u64) -> Result<(), ServiceError> {
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
    Ok(())
}

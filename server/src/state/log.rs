//! The managed state's persistence: numbered log entries under `state/log/` created with
//! create-if-absent, and snapshots under `state/snapshots/` that bound replay. I/O only.

use super::{EntityState, LogEntry};
use crate::store::{PutMode, Store, StoreError, layout};
use std::sync::Arc;

/// Why reading or writing the log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The slot was taken by another writer (a newer master's fence, or our own earlier write).
    #[error("log position {0} is already taken")]
    Taken(u64),
    #[error("{key} cannot be read: {message}")]
    Corrupt { key: String, message: String },
}

/// The log in one store.
#[derive(Debug, Clone)]
pub struct StateLog {
    store: Arc<dyn Store>,
}

impl StateLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Writes `entry` at its position, only if the position is free.
    pub async fn append(&self, entry: &LogEntry) -> Result<(), LogError> {
        match self
            .store
            .put(
                &layout::log_entry(entry.seq)?,
                layout::compact_json_body(entry)?,
                PutMode::Create,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => Err(LogError::Taken(entry.seq)),
            Err(err) => Err(err.into()),
        }
    }

    /// The entries after `applied_seq`, in order, up to the first position not yet written.
    pub async fn read_after(
        &self,
        applied_seq: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, LogError> {
        let mut entries = Vec::new();
        let mut seq = applied_seq + 1;
        while entries.len() < limit {
            let key = layout::log_entry(seq)?;
            let body = match self.store.get(&key).await {
                Ok(body) => body,
                Err(StoreError::NotFound { .. }) => break,
                Err(err) => return Err(err.into()),
            };
            let entry: LogEntry =
                serde_json::from_slice(&body).map_err(|err| LogError::Corrupt {
                    key: key.to_string(),
                    message: err.to_string(),
                })?;
            if entry.seq != seq {
                return Err(LogError::Corrupt {
                    key: key.to_string(),
                    message: format!("holds entry {} instead of {seq}", entry.seq),
                });
            }
            entries.push(entry);
            seq += 1;
        }
        Ok(entries)
    }

    /// The newest readable snapshot, or an empty state.
    pub async fn latest_snapshot(&self) -> Result<EntityState, LogError> {
        let mut keys = self.store.list(layout::SNAPSHOTS).await?;
        keys.sort();
        for key in keys.iter().rev() {
            match self.store.get(key).await {
                Ok(body) => match serde_json::from_slice::<EntityState>(&body) {
                    Ok(state) => return Ok(state),
                    Err(err) => {
                        tracing::warn!(%key, error = %err, "unreadable snapshot; trying an older one")
                    }
                },
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(EntityState::default())
    }

    /// Saves `state` as the snapshot at its position (the same position always holds the same
    /// content, so overwriting is safe).
    pub async fn write_snapshot(&self, state: &EntityState) -> Result<(), LogError> {
        self.store
            .put(
                &layout::snapshot(state.applied_seq)?,
                layout::compact_json_body(state)?,
                PutMode::Overwrite,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Change;
    use crate::state::tests::fence;
    use crate::store::fs::DirStore;

    #[tokio::test]
    async fn a_deposed_writer_cannot_append_after_a_newer_fence() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path()).unwrap());
        let log = StateLog::new(store);
        log.append(&fence(1, 1)).await.unwrap();
        // The old master (epoch 1) and the new one (epoch 2) both know entry 1.
        log.append(&fence(2, 2)).await.unwrap();
        let late = LogEntry {
            seq: 2,
            epoch: 1,
            idempotency_key: Some("k".into()),
            change: Change::Fence,
        };
        assert_eq!(log.append(&late).await, Err(LogError::Taken(2)));
        let mut state = EntityState::default();
        for entry in log.read_after(0, 100).await.unwrap() {
            state.apply(&entry).unwrap();
        }
        assert_eq!((state.applied_seq, state.fence_epoch), (2, 2));
    }

    #[tokio::test]
    async fn snapshots_round_trip_and_corrupt_entries_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path()).unwrap());
        let log = StateLog::new(Arc::clone(&store));
        assert_eq!(log.latest_snapshot().await.unwrap(), EntityState::default());
        let mut state = EntityState::default();
        state.apply(&fence(1, 3)).unwrap();
        log.write_snapshot(&state).await.unwrap();
        assert_eq!(log.latest_snapshot().await.unwrap(), state);
        store
            .put(
                &layout::log_entry(2).unwrap(),
                bytes::Bytes::from_static(b"{oops"),
                PutMode::Create,
            )
            .await
            .unwrap();
        let err = log.read_after(1, 10).await.unwrap_err();
        assert!(
            matches!(err, LogError::Corrupt { ref key, .. } if key.contains("00000000000000000002")),
            "{err}"
        );
    }
}

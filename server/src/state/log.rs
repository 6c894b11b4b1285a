//! The managed state's persistence: numbered log entries under `state/log/` created with
//! create-if-absent, and snapshots under `state/snapshots/` that bound replay. I/O only.

use super::{Entity, EntityId, EntityState, LogEntry, Outcomes, Recorded};
use crate::store::{Key, PutMode, Store, StoreError, layout};
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
    /// `void_entry` of an entry that is fine.
    #[error("log entry {0} is readable; only a damaged or missing entry is voided")]
    Readable(u64),
}

/// What `void_entry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidedEntry {
    /// The entry's key, which now holds a void entry.
    pub key: String,
    /// Where the damaged bytes were moved (`None`: the entry was missing).
    pub kept: Option<String>,
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

    /// Writes `entry` at its position, only if the position is free; its size in bytes.
    pub async fn append(&self, entry: &LogEntry) -> Result<usize, LogError> {
        let body = layout::compact_json_body(entry)?;
        let size = body.len();
        match self
            .store
            .put(&layout::log_entry(entry.seq)?, body, PutMode::Create)
            .await
        {
            Ok(()) => Ok(size),
            Err(StoreError::AlreadyExists { .. }) => Err(LogError::Taken(entry.seq)),
            Err(err) => Err(err.into()),
        }
    }

    /// The entries after `applied_seq` with their sizes, in order, up to the first position not
    /// in the store.
    pub async fn read_after(
        &self,
        applied_seq: u64,
        limit: usize,
    ) -> Result<Vec<(LogEntry, usize)>, LogError> {
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
            entries.push((entry, body.len()));
            seq += 1;
        }
        Ok(entries)
    }

    /// The positions of the snapshots in the store, oldest first.
    pub async fn snapshot_seqs(&self) -> Result<Vec<u64>, LogError> {
        let mut seqs = self
            .positions(layout::SNAPSHOTS, layout::snapshot_seq, layout::snapshot)
            .await?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The positions listed under `prefix`, only of keys spelled as this node writes them
    /// (`key_of` gives back the listed key).
    async fn positions(
        &self,
        prefix: &str,
        seq_of: fn(&Key) -> Option<u64>,
        key_of: fn(u64) -> Result<Key, StoreError>,
    ) -> Result<Vec<u64>, LogError> {
        Ok(self
            .store
            .list(prefix)
            .await?
            .iter()
            .filter_map(|key| {
                let seq = seq_of(key)?;
                (key_of(seq).ok()? == *key).then_some(seq)
            })
            .collect())
    }

    /// The newest readable snapshot, or an empty state.
    pub async fn latest_snapshot(&self) -> Result<EntityState, LogError> {
        for seq in self.snapshot_seqs().await?.into_iter().rev() {
            let key = layout::snapshot(seq)?;
            match self.store.get(&key).await {
                Ok(body) => match SnapshotFile::decode(&body) {
                    Ok(state) if state.applied_seq == seq => return Ok(state),
                    Ok(state) => tracing::warn!(
                        %key,
                        holds = state.applied_seq,
                        "snapshot holds another position; trying an older one"
                    ),
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

    /// Saves `state` as the snapshot at its position and returns its size (the same position
    /// always holds the same content, so overwriting is safe).
    /// Encoding runs on a blocking thread: a large state takes a while.
    pub async fn write_snapshot(&self, state: EntityState) -> Result<usize, LogError> {
        let key = layout::snapshot(state.applied_seq)?;
        let body = tokio::task::spawn_blocking(move || SnapshotFile::encode(&state))
            .await
            .map_err(|err| StoreError::Generic {
                message: format!("snapshot encoding stopped: {err}"),
            })??;
        let size = body.len();
        self.store.put(&key, body, PutMode::Overwrite).await?;
        Ok(size)
    }

    /// Replaces the entry at `seq`, which cannot be read (or is missing), with a void one: its
    /// bytes move to `state/damaged/<seq>.json` first. Refuses an entry that parses. What the
    /// entry carried is lost; that is what the operator asked for.
    pub async fn void_entry(&self, seq: u64) -> Result<VoidedEntry, LogError> {
        let key = layout::log_entry(seq)?;
        let kept = match self.store.get(&key).await {
            Ok(body) => {
                if serde_json::from_slice::<LogEntry>(&body).is_ok_and(|entry| entry.seq == seq) {
                    return Err(LogError::Readable(seq));
                }
                let kept = layout::damaged_entry(seq)?;
                self.store.put(&kept, body, PutMode::Overwrite).await?;
                Some(kept.to_string())
            }
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => return Err(err.into()),
        };
        let void = LogEntry {
            seq,
            epoch: 0,
            at_ms: 0,
            idempotency_key: None,
            change: super::Change::Void,
        };
        self.store
            .put(&key, layout::compact_json_body(&void)?, PutMode::Overwrite)
            .await?;
        Ok(VoidedEntry {
            key: key.to_string(),
            kept,
        })
    }

    /// The highest log position in the store (0: none).
    pub async fn last_entry_seq(&self) -> Result<u64, LogError> {
        Ok(self.entry_seqs().await?.into_iter().max().unwrap_or(0))
    }

    /// The positions of every log entry in the store (one listing; for the first compaction and
    /// a new master's check).
    pub async fn entry_seqs(&self) -> Result<Vec<u64>, LogError> {
        self.positions(layout::LOG, layout::log_entry_seq, layout::log_entry)
            .await
    }

    /// Deletes a snapshot or log entry (already gone is fine).
    pub async fn delete(&self, key: &Key) -> Result<(), LogError> {
        match self.store.delete(key).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// A snapshot as stored: entities as `[id, attributes, version, updated_epoch]` rows and the
/// idempotency table as `[key, record]` rows, oldest first. Snapshots written before group
/// commit (an `entities` map and `outcomes` holding entity copies) are still read.
#[derive(Debug, Default, serde::Deserialize)]
struct SnapshotFile {
    applied_seq: u64,
    fence_epoch: u64,
    #[serde(default)]
    rows: Vec<(EntityId, Attributes, u64, u64)>,
    #[serde(default)]
    recorded: Vec<(String, Recorded)>,
    /// Older snapshots: id -> entity.
    #[serde(default)]
    entities: std::collections::BTreeMap<EntityId, Entity>,
}

type Attributes = serde_json::Map<String, serde_json::Value>;

impl SnapshotFile {
    fn encode(state: &EntityState) -> Result<bytes::Bytes, StoreError> {
        use serde::ser::SerializeStruct;
        /// Serialises an iterator as a JSON array without collecting it.
        struct Rows<I>(std::cell::RefCell<Option<I>>);
        impl<I: Iterator<Item = T>, T: serde::Serialize> serde::Serialize for Rows<I> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self.0.borrow_mut().take() {
                    Some(rows) => serializer.collect_seq(rows),
                    None => serializer.collect_seq(std::iter::empty::<T>()),
                }
            }
        }
        struct View<'a>(&'a EntityState);
        impl serde::Serialize for View<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let state = self.0;
                let rows = state
                    .entities
                    .values()
                    .map(|e| (&e.id, &e.attributes, e.version, e.updated_epoch));
                let mut out = serializer.serialize_struct("SnapshotFile", 4)?;
                out.serialize_field("applied_seq", &state.applied_seq)?;
                out.serialize_field("fence_epoch", &state.fence_epoch)?;
                out.serialize_field("rows", &Rows(std::cell::RefCell::new(Some(rows))))?;
                let recorded = Rows(std::cell::RefCell::new(Some(state.outcomes.iter())));
                out.serialize_field("recorded", &recorded)?;
                out.end()
            }
        }
        layout::compact_json_body(&View(state))
    }

    fn decode(body: &[u8]) -> serde_json::Result<EntityState> {
        let file: SnapshotFile = serde_json::from_slice(body)?;
        let rows = file
            .rows
            .into_iter()
            .map(|(id, attributes, version, updated_epoch)| Entity {
                id,
                attributes,
                version,
                updated_epoch,
            })
            .chain(file.entities.into_values());
        let mut outcomes = Outcomes::default();
        for (key, recorded) in file.recorded {
            outcomes.restore(key, recorded);
        }
        Ok(EntityState {
            applied_seq: file.applied_seq,
            fence_epoch: file.fence_epoch,
            entities: rows.map(|e| (e.id.clone(), Arc::new(e))).collect(),
            outcomes,
        })
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
            at_ms: 0,
            idempotency_key: Some("k".into()),
            change: Change::Fence,
        };
        assert_eq!(log.append(&late).await, Err(LogError::Taken(2)));
        let mut state = EntityState::default();
        for (entry, _) in log.read_after(0, 100).await.unwrap() {
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
        let mut attributes = serde_json::Map::new();
        attributes.insert("v".into(), serde_json::json!([1, "two"]));
        let ops = ["a/1", "a/2", "b"].map(|id| crate::state::Op {
            key: Some(format!("key-{id}")),
            id: EntityId::parse(id).unwrap(),
            put: Some(attributes.clone()),
        });
        let batch = LogEntry {
            seq: 2,
            epoch: 3,
            at_ms: 5,
            idempotency_key: None,
            change: Change::Batch { ops: ops.to_vec() },
        };
        state.apply(&batch).unwrap();
        log.write_snapshot(state.clone()).await.unwrap();
        assert_eq!(log.latest_snapshot().await.unwrap(), state);
        assert_eq!(log.snapshot_seqs().await.unwrap(), [2]);
        // A snapshot written before group commit (an entities map, outcomes with entity copies).
        let legacy = r#"{"applied_seq":7,"fence_epoch":2,"entities":{"x":{"id":"x","attributes":{"n":1},"version":4,"updated_epoch":2}},"outcomes":{"k":{"seq":7,"entity":null}},"outcome_order":["k"]}"#;
        store
            .put(
                &layout::snapshot(7).unwrap(),
                bytes::Bytes::from_static(legacy.as_bytes()),
                PutMode::Create,
            )
            .await
            .unwrap();
        let loaded = log.latest_snapshot().await.unwrap();
        assert_eq!((loaded.applied_seq, loaded.fence_epoch), (7, 2));
        assert_eq!(loaded.version_of(&EntityId::parse("x").unwrap()), 4);
        let legacy_key = layout::snapshot(7).unwrap();
        log.delete(&legacy_key).await.unwrap();
        log.delete(&legacy_key).await.unwrap();
        assert_eq!(log.latest_snapshot().await.unwrap(), state);
        store
            .put(
                &layout::log_entry(3).unwrap(),
                bytes::Bytes::from_static(b"{oops"),
                PutMode::Create,
            )
            .await
            .unwrap();
        let err = log.read_after(2, 10).await.unwrap_err();
        assert!(
            matches!(err, LogError::Corrupt { ref key, .. } if key.contains("00000000000000000003")),
            "{err}"
        );
    }
}

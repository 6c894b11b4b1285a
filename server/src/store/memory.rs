//! An in-memory `Store` for unit tests of the node runtime under paused time: one shared map,
//! seen through views that each have their own switch to stall every call (a node whose store
//! hangs while its peers' still answers).

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How long each call takes.
const CALL_TIME: std::time::Duration = std::time::Duration::from_micros(200);

/// A view of one shared in-memory map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
    /// While set, every call through this view waits forever (its caller's timeout ends it).
    stalled: AtomicBool,
}

impl MemoryStore {
    /// Another view of the same map, with its own stall switch (off).
    pub fn view(&self) -> Self {
        Self {
            objects: Arc::clone(&self.objects),
            stalled: AtomicBool::new(false),
        }
    }

    /// Stalls (or resumes) every call through this view.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Every call takes `CALL_TIME` (of paused, virtual time in the runtime tests): a store
    /// that answered in no time at all would give a write and the read after it the same start
    /// instant, and the lease rule renews only on a read begun after the write began.
    async fn answer(&self) {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(CALL_TIME).await;
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.answer().await;
        self.objects()
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.answer().await;
        let mut objects = self.objects();
        if mode == PutMode::Create && objects.contains_key(key.as_str()) {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        objects.insert(key.as_str().to_owned(), body);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.answer().await;
        self.objects()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .map(|key| Key::parse(key))
            .collect()
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.answer().await;
        self.objects()
            .remove(key.as_str())
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(Arc::new(MemoryStore::default())).await;
    }
}

//! An in-memory `Store` for unit tests of the node runtime under paused time: one shared map,
//! seen through views that each have their own switches to stall or slow every call (a node
//! whose store hangs or crawls while its peers' still answers).

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long each call takes unless slowed down, in microseconds.
const CALL_TIME_MICROS: u64 = 200;

/// A view of one shared in-memory map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
    /// While set, every call through this view waits forever (its caller's timeout ends it).
    stalled: AtomicBool,
    /// How long each call through this view takes, in microseconds (0: `CALL_TIME_MICROS`).
    call_time_micros: AtomicU64,
}

impl MemoryStore {
    /// Another view of the same map, with its own stall switch (off).
    pub fn view(&self) -> Self {
        Self {
            objects: Arc::clone(&self.objects),
            stalled: AtomicBool::new(false),
            call_time_micros: AtomicU64::new(0),
        }
    }

    /// Makes every call through this view take `call_time` (a slow store that still answers).
    pub fn slow_down(&self, call_time: Duration) {
        let micros = u64::try_from(call_time.as_micros()).unwrap_or(u64::MAX);
        self.call_time_micros.store(micros, Ordering::SeqCst);
    }

    /// Stalls (or resumes) every call through this view.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Every call takes `CALL_TIME_MICROS` (of paused, virtual time in the runtime tests): a store
    /// that answered in no time at all would give a write and the read after it the same start
    /// instant, and the lease rule renews only on a read begun after the write began.
    async fn answer(&self) {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let micros = match self.call_time_micros.load(Ordering::SeqCst) {
            0 => CALL_TIME_MICROS,
            slowed => slowed,
        };
        tokio::time::sleep(Duration::from_micros(micros)).await;
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

//! The store of `--persist disabled`: there is none, and every request says so. Only a
//! standalone node (HA mode DISABLED) runs on it, and it never calls it.

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;

/// No persistence.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStore;

fn refused() -> StoreError {
    StoreError::NotSupported {
        message: "persistence is disabled (--persist disabled)".to_owned(),
    }
}

#[async_trait]
impl Store for NoStore {
    async fn get(&self, _key: &Key) -> Result<Bytes, StoreError> {
        Err(refused())
    }
    async fn put(&self, _key: &Key, _body: Bytes, _mode: PutMode) -> Result<(), StoreError> {
        Err(refused())
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<Key>, StoreError> {
        Err(refused())
    }
    async fn delete(&self, _key: &Key) -> Result<(), StoreError> {
        Err(refused())
    }
    fn describe(&self) -> String {
        "no store (--persist disabled)".to_owned()
    }
}

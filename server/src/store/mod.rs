//! The shared persistence store: one small trait (`get`, `put` with create-if-absent, `list`,
//! `delete`) that every backend implements, validated keys, and the store's error kinds.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod counting;
pub mod disabled;
#[cfg(any(test, feature = "test-support"))]
pub mod faulty;
pub mod fs;
pub mod layout;
#[cfg(test)]
pub mod memory;
pub mod nfs;
pub mod s3;

/// The environment variable that switches store fault injection on (`faulty.rs`, in builds with
/// the `test-support` feature only).
pub const FAULTS_ENV: &str = "HAPLANE_TEST_STORE_FAULTS";

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;

/// A validated store key: `/`-separated segments of `[A-Za-z0-9_.-]`, none empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 512;

    /// Validates `key`.
    pub fn parse(key: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidKey {
            key: haplane::truncate_for_message(key),
            reason: reason.to_owned(),
        };
        if key.is_empty() || key.len() > Self::MAX_LEN {
            return Err(invalid("must be 1 to 512 characters"));
        }
        if !haplane::is_safe_path(key) {
            return Err(invalid(
                "must be '/'-separated segments of A-Z a-z 0-9 _ - ., none empty, '.' or '..'",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment (`nodes/a.json` → `a.json`).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How `put` treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Atomically replace whatever is there.
    Overwrite,
    /// Create only if absent; otherwise fail with `AlreadyExists` and leave the object as it was.
    Create,
}

/// What went wrong with a store operation, by condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: precondition failed: {message}")]
    Precondition { key: String, message: String },
    #[error("store unavailable: {message}")]
    Unavailable { message: String },
    #[error("not supported by this store: {message}")]
    NotSupported { message: String },
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("store error: {message}")]
    Generic { message: String },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// One shared persistence location. Writes are atomic: a reader sees an old or a new object,
/// never part of one.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The object at `key`, or `NotFound`.
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError>;
    /// Writes `body` at `key` as `mode` says.
    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError>;
    /// Every key that starts with `prefix` (a folder such as `nodes/`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError>;
    /// Removes `key`; `NotFound` if it was not there.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;
    /// Where the store is, for messages (never includes secrets).
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(Key::parse("nodes/a-1.json").is_ok());
        assert!(Key::parse("master/00000000000000000042.json").is_ok());
        for bad in [
            "", "/a", "a/", "a//b", "../x", "a/../b", "./a", "a b", "a\\b", "%2e%2e",
        ] {
            assert!(
                matches!(Key::parse(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(Key::parse("a/b/c.json").unwrap().file_name(), "c.json");
    }
}

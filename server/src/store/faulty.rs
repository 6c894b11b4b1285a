//! A fault-injecting `Store` wrapper for chaos and outage tests, and only for them: it is switched
//! on by the environment variable `HAPLANE_TEST_STORE_FAULTS=<control file>` (never by a flag or
//! the config file) and logs a warning at start-up. The control file is re-read at most every
//! 100 ms, so a test changes faults while the node runs. Its lines (all optional):
//!
//! ```text
//! latency_ms = 50        # added before every call
//! error_rate = 0.1       # calls that fail as Unavailable without reaching the store
//! lost_ack_rate = 0.1    # writes that reach the store but report Unavailable (a lost answer)
//! outage = true          # every call fails as Unavailable (the store is unreachable)
//! ```
//!
//! A missing or empty file means no faults; an unreadable line is ignored with a warning.

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REREAD_EVERY: Duration = Duration::from_millis(100);

/// The faults in force.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    pub latency: Duration,
    pub error_rate: f64,
    pub lost_ack_rate: f64,
    pub outage: bool,
}

impl Faults {
    /// Parses the control file's text; unknown or malformed lines are returned as warnings.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut faults = Faults::default();
        let mut warnings = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let parsed = line.split_once('=').and_then(|(key, value)| {
                let value = value.trim();
                match key.trim() {
                    "latency_ms" => value
                        .parse()
                        .ok()
                        .map(|ms| faults.latency = Duration::from_millis(ms)),
                    "error_rate" => rate(value).map(|r| faults.error_rate = r),
                    "lost_ack_rate" => rate(value).map(|r| faults.lost_ack_rate = r),
                    "outage" => value.parse().ok().map(|on| faults.outage = on),
                    _ => None,
                }
            });
            if parsed.is_none() {
                warnings.push(format!("ignored fault line {line:?}"));
            }
        }
        (faults, warnings)
    }
}

fn rate(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
}

/// Wraps a store and injects the faults its control file names.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    control: PathBuf,
    // A std Mutex: held only to read or replace the cached faults, never across an await.
    cached: Mutex<(Instant, Faults)>,
}

impl FaultyStore {
    /// Wraps `inner` when `HAPLANE_TEST_STORE_FAULTS` is set; otherwise returns it unchanged.
    pub fn wrap_if_enabled(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        match std::env::var_os(super::FAULTS_ENV) {
            Some(control) => {
                tracing::warn!(control = %PathBuf::from(&control).display(), "TEST ONLY: store fault injection is on");
                Arc::new(Self::new(inner, control.into()))
            }
            None => inner,
        }
    }

    pub fn new(inner: Arc<dyn Store>, control: PathBuf) -> Self {
        let stale = Instant::now()
            .checked_sub(REREAD_EVERY)
            .unwrap_or_else(Instant::now);
        Self {
            inner,
            control,
            cached: Mutex::new((stale, Faults::default())),
        }
    }

    fn faults(&self) -> Faults {
        let Ok(mut cached) = self.cached.lock() else {
            return Faults::default();
        };
        if cached.0.elapsed() >= REREAD_EVERY {
            let text = std::fs::read_to_string(&self.control).unwrap_or_default();
            let (faults, warnings) = Faults::parse(&text);
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            *cached = (Instant::now(), faults);
        }
        cached.1
    }

    /// Applies latency, then fails the call if an outage or an injected error says so.
    async fn before_call(&self) -> Result<Faults, StoreError> {
        let faults = self.faults();
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        if faults.outage {
            return Err(injected("store outage"));
        }
        if rand::random::<f64>() < faults.error_rate {
            return Err(injected("error"));
        }
        Ok(faults)
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable {
        message: format!("injected fault: {what}"),
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.before_call().await?;
        self.inner.get(key).await
    }

    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let faults = self.before_call().await?;
        self.inner.put(key, body, mode).await?;
        if rand::random::<f64>() < faults.lost_ack_rate {
            return Err(injected("write applied but its answer lost"));
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        self.before_call().await?;
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let faults = self.before_call().await?;
        self.inner.delete(key).await?;
        if rand::random::<f64>() < faults.lost_ack_rate {
            return Err(injected("delete applied but its answer lost"));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::DirStore;

    #[test]
    fn the_control_file_is_parsed_and_bad_lines_reported() {
        let (faults, warnings) = Faults::parse(
            "latency_ms = 20\nerror_rate=0.5 # half\nlost_ack_rate = 2\noutage = true\nspeed = 9\n",
        );
        assert_eq!(faults.latency, Duration::from_millis(20));
        assert_eq!(faults.error_rate, 0.5);
        assert_eq!(faults.lost_ack_rate, 0.0, "a rate above 1 is ignored");
        assert!(faults.outage);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(Faults::parse("").0, Faults::default());
    }

    #[tokio::test]
    async fn faults_follow_the_control_file_and_lost_acks_still_write() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("faults");
        let inner = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
        let store = FaultyStore::new(Arc::<DirStore>::clone(&inner), control.clone());
        let key = Key::parse("nodes/a.json").unwrap();
        store
            .put(&key, Bytes::from_static(b"1"), PutMode::Overwrite)
            .await
            .unwrap();

        std::fs::write(&control, "outage = true\n").unwrap();
        tokio::time::sleep(REREAD_EVERY).await;
        assert!(matches!(
            store.get(&key).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert!(store.list("nodes/").await.is_err());

        std::fs::write(&control, "lost_ack_rate = 1\n").unwrap();
        tokio::time::sleep(REREAD_EVERY).await;
        let lost = store
            .put(&key, Bytes::from_static(b"2"), PutMode::Overwrite)
            .await;
        assert!(matches!(lost, Err(StoreError::Unavailable { .. })));
        assert_eq!(
            &inner.get(&key).await.unwrap()[..],
            b"2",
            "the write happened"
        );

        std::fs::write(&control, "").unwrap();
        tokio::time::sleep(REREAD_EVERY).await;
        assert_eq!(&store.get(&key).await.unwrap()[..], b"2");
    }
}

//! A `Store` wrapper that counts requests by operation and result, and times them by operation,
//! for metrics, the request budget and benchmarks.

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Seconds each store request took, by `operation` label (shared with the metrics registry).
pub type LatencyFamily = Family<Vec<(&'static str, String)>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Counts of store requests, keyed by `(operation, result)`, e.g. `("put_create", "already_exists")`.
pub type RequestCounts = BTreeMap<(&'static str, &'static str), u64>;

/// Wraps a store and counts every request it forwards.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    // A std Mutex: held only to bump a counter, never across an await.
    counts: Mutex<RequestCounts>,
    latency: LatencyFamily,
}

impl CountingStore {
    /// Counts requests to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counts: Mutex::new(RequestCounts::new()),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }

    /// The request times by operation (a handle on the same histograms).
    pub fn latency(&self) -> LatencyFamily {
        self.latency.clone()
    }

    /// A copy of the counts so far.
    pub fn counts(&self) -> RequestCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total requests so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T, StoreError>) {
        self.latency
            .get_or_create(&vec![("operation", operation.to_owned())])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(_) => "ok",
            Err(StoreError::NotFound { .. }) => "not_found",
            Err(StoreError::AlreadyExists { .. }) => "already_exists",
            Err(StoreError::Unavailable { .. }) => "unavailable",
            Err(_) => "error",
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((operation, outcome)).or_default() += 1;
        }
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record("get", started, &result);
        result
    }

    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.put(key, body, mode).await;
        let operation = match mode {
            PutMode::Overwrite => "put_overwrite",
            PutMode::Create => "put_create",
        };
        self.record(operation, started, &result);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        self.record("list", started, &result);
        result
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record("delete", started, &result);
        result
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

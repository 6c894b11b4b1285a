//! Time for the node runtime: a monotonic `Clock` (tokio's, so tests can pause and advance it)
//! and the wall clock, which is only ever written into records for operators to read.

use std::time::Instant;

/// A monotonic clock. Liveness and leases are judged only with this.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, monotonic.
    fn now(&self) -> Instant;
}

/// tokio's clock: real time normally, paused and advanced by hand in `start_paused` tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A duration in whole milliseconds for the wire, saturating at `u64::MAX`.
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch, for the informational timestamps in records.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

//! Failed authentications per client address and the back-off they earn: `FREE_FAILURES` free
//! within `FAILURE_WINDOW`, then doubling waits up to `MAX_BACKOFF`, for at most `MAX_TRACKED`
//! addresses.

use super::{FAILURE_WINDOW, FREE_FAILURES, MAX_BACKOFF, MAX_TRACKED};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failures {
    /// Failures since the address last succeeded or its window ran out.
    count: u32,
    last: Instant,
    /// Refused without checking until then.
    blocked_until: Option<Instant>,
}

impl Failures {
    /// Whether the entry no longer affects anything at `now`.
    pub(super) fn is_over(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= FAILURE_WINDOW
            && self.blocked_until.is_none_or(|until| until <= now)
    }
}

/// Failed authentications per client address, and the back-off they earn.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    /// How much longer `address` is refused, if it is.
    pub(super) fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let addresses = self.addresses.lock().ok()?;
        let until = addresses.get(&address)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure of `address`; the back-off it starts, if any.
    pub(super) fn failed(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut addresses = self.addresses.lock().ok()?;
        if addresses.len() >= MAX_TRACKED && !addresses.contains_key(&address) {
            addresses.retain(|_, failures| !failures.is_over(now));
        }
        if addresses.len() >= MAX_TRACKED && !addresses.contains_key(&address) {
            return None;
        }
        let failures = addresses.entry(address).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if failures.is_over(now) {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        let over = failures.count.checked_sub(FREE_FAILURES)?;
        let backoff = Duration::from_secs(1)
            .checked_mul(1 << over.min(16))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        failures.blocked_until = Some(now + backoff);
        Some(backoff)
    }

    /// Forgets the failures of `address` after it authenticated.
    pub(super) fn succeeded(&self, address: IpAddr) {
        if let Ok(mut addresses) = self.addresses.lock() {
            addresses.remove(&address);
        }
    }
}

//! Wakes a serving thread's master watchers from a task on that same thread.
//!
//! The node publishes its master view from its own thread, so the wake-ups of thousands of
//! watch streams would reach a serving thread as remote wake-ups, which its runtime interleaves
//! with the local ones: each stream's connection would then write right after that one stream
//! queued its frame. A relay task per serving thread turns the one remote wake-up into local
//! ones, which run in order: every stream queues its frame, then each connection writes once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use tokio::sync::watch;

/// One relay per thread that asked, each a counter bumped after every change of the upstream.
#[derive(Debug, Default)]
pub struct ThreadRelays {
    relays: Mutex<HashMap<ThreadId, watch::Receiver<u64>>>,
}

impl ThreadRelays {
    /// A receiver that changes after each change of `upstream`, notified by a task on the calling
    /// thread's runtime (started on the first call from this thread). It closes when `upstream`
    /// does. Must be called within a Tokio runtime.
    pub fn for_this_thread<T: Send + Sync + 'static>(
        &self,
        upstream: &watch::Receiver<T>,
    ) -> watch::Receiver<u64> {
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        relays
            .entry(std::thread::current().id())
            .or_insert_with(|| {
                let (sender, receiver) = watch::channel(0u64);
                let mut upstream = upstream.clone();
                tokio::spawn(async move {
                    while upstream.changed().await.is_ok() {
                        sender.send_modify(|count| *count = count.wrapping_add(1));
                    }
                });
                receiver
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_each_change_and_closes_with_the_upstream() {
        let (upstream, receiver) = watch::channel(0);
        let relays = ThreadRelays::default();
        let mut wakeups = relays.for_this_thread(&receiver);
        let mut again = relays.for_this_thread(&receiver);
        upstream.send_replace(1);
        wakeups.changed().await.unwrap();
        again.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 1);
        upstream.send_replace(2);
        wakeups.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 2);
        drop(upstream);
        assert!(wakeups.changed().await.is_err());
    }
}

//! Wakes a serving thread's master watchers from a task on that same thread, on each change of
//! the master view and when the node stops.
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
    /// A receiver that changes after each change of `upstream` and of `stopped`, notified by a
    /// task on the calling thread's runtime (started on the first call from this thread). It
    /// closes when `upstream` does. Must be called within a Tokio runtime.
    pub fn for_this_thread<T: Send + Sync + 'static>(
        &self,
        upstream: &watch::Receiver<T>,
        stopped: &watch::Receiver<bool>,
    ) -> watch::Receiver<u64> {
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        relays
            .entry(std::thread::current().id())
            .or_insert_with(|| {
                let (sender, receiver) = watch::channel(0u64);
                let (mut upstream, mut stopped) = (upstream.clone(), stopped.clone());
                tokio::spawn(async move {
                    let mut stop_closed = false;
                    loop {
                        tokio::select! {
                            changed = upstream.changed() => if changed.is_err() { break },
                            changed = stopped.changed(), if !stop_closed => if changed.is_err() {
                                stop_closed = true;
                                continue;
                            }
                        }
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
        let (stop, stopped) = watch::channel(false);
        let relays = ThreadRelays::default();
        let mut wakeups = relays.for_this_thread(&receiver, &stopped);
        let mut again = relays.for_this_thread(&receiver, &stopped);
        upstream.send_replace(1);
        wakeups.changed().await.unwrap();
        again.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 1);
        upstream.send_replace(2);
        wakeups.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 2);
        stop.send_replace(true);
        wakeups.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 3, "the stop wakes too");
        drop(stop);
        upstream.send_replace(3);
        wakeups.changed().await.unwrap();
        assert_eq!(*wakeups.borrow_and_update(), 4);
        drop(upstream);
        assert!(wakeups.changed().await.is_err());
    }
}

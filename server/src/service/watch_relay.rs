//! Wakes a serving thread's master watchers from a task on that same thread, on each change of
//! the master view and when the node stops.
//!
//! The node publishes its master view from its own thread, so the wake-ups of thousands of
//! watch streams would reach a serving thread as remote wake-ups, which its runtime interleaves
//! with the local ones: each stream's connection would then write right after that one stream
//! queued its frame. A relay task per serving thread turns the one remote wake-up into local
//! ones, which run in order: every stream queues its frame, then each connection writes once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tokio::sync::{Notify, watch};

/// One relay per thread that asked, each notified (`notify_waiters`) after every change of the
/// upstream and of `stopped`, and once more when the upstream closes.
#[derive(Debug, Default)]
pub struct ThreadRelays {
    relays: Mutex<HashMap<ThreadId, Arc<Notify>>>,
}

impl ThreadRelays {
    /// The calling thread's relay of `upstream` and `stopped`, notified by a task on that
    /// thread's runtime (started on the first call from this thread). A watcher takes
    /// `notified_owned()` before it reads the upstream, so a change after the read wakes it.
    /// Must be called within a Tokio runtime.
    pub fn for_this_thread<T: Send + Sync + 'static>(
        &self,
        upstream: &watch::Receiver<T>,
        stopped: &watch::Receiver<bool>,
    ) -> Arc<Notify> {
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let relay = relays
            .entry(std::thread::current().id())
            .or_insert_with(|| {
                let relay = Arc::new(Notify::new());
                let (mut upstream, mut stopped) = (upstream.clone(), stopped.clone());
                let notify = Arc::clone(&relay);
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
                        notify.notify_waiters();
                    }
                    // The upstream closed: its watchers find that out when woken.
                    notify.notify_waiters();
                });
                relay
            });
        Arc::clone(relay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_each_change_and_the_close_of_the_upstream() {
        let (upstream, receiver) = watch::channel(0);
        let (stop, stopped) = watch::channel(false);
        let relays = ThreadRelays::default();
        let relay = relays.for_this_thread(&receiver, &stopped);
        assert!(
            Arc::ptr_eq(&relay, &relays.for_this_thread(&receiver, &stopped)),
            "one relay per thread"
        );
        let woken = |relay: &Arc<Notify>| {
            let next = Arc::clone(relay).notified_owned();
            tokio::time::timeout(std::time::Duration::from_secs(10), next)
        };
        let next = woken(&relay);
        upstream.send_replace(1);
        next.await.expect("woken by a change of the upstream");
        let next = woken(&relay);
        stop.send_replace(true);
        next.await.expect("woken by the stop");
        drop(stop);
        let next = woken(&relay);
        upstream.send_replace(2);
        next.await
            .expect("still woken by the upstream after the stop channel closed");
        let next = woken(&relay);
        drop(upstream);
        next.await.expect("woken when the upstream closes");
        assert!(receiver.has_changed().is_err());
    }
}

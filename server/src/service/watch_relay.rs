//! Wakes a serving thread's master watchers from a task on that same thread, on each change of
//! the master view and when the node stops.
//!
//! The node publishes its master view from its own thread, so the wake-ups of thousands of
//! watch streams would reach a serving thread as remote wake-ups, which its runtime interleaves
//! with the local ones: each stream's connection would then write right after that one stream
//! queued its frame. A relay task per serving thread turns the one remote wake-up into local
//! ones, which run in order: the streams queue their frames, then each connection writes once.
//!
//! The relay wakes its watchers in `GROUPS` groups, one after the other, and yields between
//! them, so the first connections write (and their watchers read) while the streams of the later
//! groups have still to run; woken all at once, no connection wrote until every stream had
//! queued its frame. A connection's streams share one group (`on_connection` names the
//! connection a request came on), so each connection still writes once per change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tokio::sync::{Notify, watch};

/// Wake-up groups of a serving thread's watchers.
const GROUPS: usize = 16;

tokio::task_local! {
    /// The connection the request being handled came on (a number the same for all its
    /// streams).
    static CONNECTION: u64;
}

/// `request` (one request's handling), as coming from `connection`: its watchers join that
/// connection's wake-up group.
pub fn on_connection<F: Future>(connection: u64, request: F) -> impl Future<Output = F::Output> {
    CONNECTION.scope(connection, request)
}

/// One relay per thread that asked, each with `GROUPS` groups of watchers; after every change of
/// the upstream and of `stopped`, and once more when the upstream closes, it notifies
/// (`notify_waiters`) each group in turn.
#[derive(Debug, Default)]
pub struct ThreadRelays {
    relays: Mutex<HashMap<ThreadId, Box<[Arc<Notify>]>>>,
}

impl ThreadRelays {
    /// The group of the calling thread's relay of `upstream` and `stopped` for the request's
    /// connection (see `on_connection`; group 0 outside one), notified by a task on that
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
        let groups = relays
            .entry(std::thread::current().id())
            .or_insert_with(|| {
                let groups: Box<[Arc<Notify>]> =
                    (0..GROUPS).map(|_| Arc::new(Notify::new())).collect();
                let (mut upstream, mut stopped) = (upstream.clone(), stopped.clone());
                let notify = groups.clone();
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
                        for group in &notify {
                            group.notify_waiters();
                            // The group's streams queue their frames and their connections
                            // write before the next group is woken.
                            tokio::task::yield_now().await;
                        }
                    }
                    // The upstream closed: its watchers find that out when woken.
                    for group in &notify {
                        group.notify_waiters();
                    }
                });
                groups
            });
        let connection = CONNECTION.try_with(|connection| *connection).unwrap_or(0);
        Arc::clone(&groups[connection as usize % GROUPS])
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
        let other = on_connection(1, async { relays.for_this_thread(&receiver, &stopped) }).await;
        assert!(
            !Arc::ptr_eq(&relay, &other),
            "another connection, another group"
        );
        let again = on_connection(1, async { relays.for_this_thread(&receiver, &stopped) }).await;
        assert!(Arc::ptr_eq(&other, &again), "one group per connection");
        let (next, next_other) = (woken(&relay), woken(&other));
        upstream.send_replace(1);
        next.await.expect("woken by a change of the upstream");
        next_other
            .await
            .expect("the other group woken by the same change");
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

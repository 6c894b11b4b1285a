//! The accept loop: deals connections to the serving threads round-robin and keeps the count
//! under `max_connections`, shedding the oldest idle connection to make room.

use super::activity::Activity;
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A connection younger than this is never shed for a newer one: a burst of new connections
/// at the limit is refused instead of shedding the clients that arrived just before it and
/// have not yet sent their request.
pub(super) const SHED_MIN_AGE: Duration = Duration::from_millis(250);

/// Open connections may exceed `max_connections` by at most this many, the shed ones still
/// closing (each on its own serving thread): a new connection that would go past it is refused,
/// so a flood cannot run the process out of descriptors while sheds are under way. Well inside
/// the descriptors kept back from connections (`MIN_RESERVED_DESCRIPTORS`).
pub(super) const MAX_SHEDS_CLOSING: usize = 16;

/// One of the `max_connections` places, held while its connection is open, with what the
/// accept loop needs to shed the connection.
pub(super) struct Slot {
    pub(super) open: Arc<AtomicUsize>,
    pub(super) activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Asks the oldest connection in `accepted` (in accept order) that has no request in flight
/// and is at least `SHED_MIN_AGE` old to close; false when there is none. Forgets closed
/// connections on the way.
pub(super) fn shed_oldest_idle(accepted: &mut VecDeque<Weak<Activity>>) -> bool {
    let mut index = 0;
    while index < accepted.len() {
        match accepted[index].upgrade() {
            None => {
                accepted.remove(index);
            }
            // The rest are younger still.
            Some(activity) if activity.opened.elapsed() < SHED_MIN_AGE => return false,
            Some(activity) if activity.idle_for().is_some() => {
                activity.shed.notify_one();
                accepted.remove(index);
                return true;
            }
            Some(_) => index += 1,
        }
    }
    false
}

/// Deals accepted connections round-robin to the serving threads until `stopped`. A socket is
/// handed over as a std socket so that it registers with the serving thread's own reactor.
/// At `max_connections` open ones, the oldest idle connection is shed for a new one, or the new
/// one is closed at once if all are busy (logged at most every 10 s, with how many).
pub(super) async fn accept(
    listener: &TcpListener,
    connections: &[mpsc::UnboundedSender<(StdTcpStream, Slot)>],
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut by_age: VecDeque<Weak<Activity>> = VecDeque::new();
    let (mut shed, mut refused) = (0_u64, 0_u64);
    let mut last_warning: Option<Instant> = None;
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        let stream = match accepted.and_then(|(stream, _)| handover(stream)) {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: the listener itself stays usable.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open_now = open.load(Ordering::Relaxed);
        if open_now >= max_connections {
            // The shed connection gives its place back from its own thread, a moment later;
            // until then it counts in `open`, so `open_now - max_connections` are still closing.
            let room =
                open_now < max_connections + MAX_SHEDS_CLOSING && shed_oldest_idle(&mut by_age);
            if room {
                shed += 1;
            } else {
                refused += 1;
            }
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections,
                    shed,
                    refused,
                    "connection limit reached: shedding the oldest idle connections, refusing \
                     new ones when all are busy"
                );
                last_warning = Some(Instant::now());
                (shed, refused) = (0, 0);
            }
            if !room {
                drop(stream);
                continue;
            }
        }
        open.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        if by_age.len() >= max_connections.saturating_mul(2) {
            by_age.retain(|activity| activity.strong_count() > 0);
        }
        by_age.push_back(Arc::downgrade(&activity));
        let slot = Slot {
            open: Arc::clone(&open),
            activity,
        };
        if connections[next].send((stream, slot)).is_err() {
            tracing::error!("a serving thread has stopped; not accepting any more connections");
            return;
        }
        next = (next + 1) % connections.len();
    }
}

/// TCP_NODELAY (otherwise Nagle holds back small frames until the client's delayed ACK, ~40 ms),
/// then out of this runtime's reactor.
pub(super) fn handover(stream: TcpStream) -> io::Result<StdTcpStream> {
    stream.set_nodelay(true)?;
    stream.into_std()
}

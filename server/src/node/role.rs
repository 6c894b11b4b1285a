//! This node's own role, for leader-only work beside it (a sidecar over `WatchRole`) or inside
//! it (an embedded participant): whether it acts as master, in which epoch, and until when its
//! lease lets it. `role_changes` follows it, including a lease that lapses or an acting start
//! that arrives without a new snapshot.

use super::NodeHandle;
use super::publish::Snapshot;
use futures::Stream;
use haplane::{Epoch, NodeState};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// This node's role at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// The state the node reports (FAILED for a master whose lease lapsed).
    pub state: NodeState,
    pub epoch: Epoch,
    /// Whether the node acts as master now: MASTER with a valid lease.
    pub leader: bool,
    /// While leader: the instant the lease ends unless renewed. A leader stops before then, and
    /// no other node can act as master until a safety margin after it. `None` for a leader
    /// without a store (standalone), whose term cannot end by a lease.
    pub valid_until: Option<Instant>,
}

impl Role {
    /// Whether this role is leadership that is still valid at `now`.
    pub fn leads_at(&self, now: Instant) -> bool {
        self.leader && self.valid_until.is_none_or(|until| now < until)
    }

    /// While leader: how long the lease lasts from `now` (`None` otherwise, and for a
    /// standalone leader, which has no lease to lose).
    pub fn lease_left(&self, now: Instant) -> Option<Duration> {
        self.valid_until
            .map(|until| until.saturating_duration_since(now))
    }
}

impl Snapshot {
    /// The role this snapshot gives at `now`.
    pub fn role(&self, now: Instant) -> Role {
        let leader = self.may_act_as_master(now);
        Role {
            state: self.effective_state(now),
            epoch: self.epoch,
            leader,
            valid_until: if leader && !self.standalone {
                self.lease.until
            } else {
                None
            },
        }
    }

    /// The next instant after `now` at which the role changes with no new snapshot: the lease's
    /// end, or the start of acting for a master waiting out its predecessor.
    fn role_changes_at(&self, now: Instant) -> Option<Instant> {
        if self.state != NodeState::Master || self.standalone {
            return None;
        }
        [self.lease.acting_from, self.lease.until]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min()
    }
}

impl NodeHandle {
    /// This node's role now.
    pub fn role(&self) -> Role {
        let now = self.clock.now();
        self.read_snapshot(|snapshot| snapshot.role(now))
    }

    /// Every change of this node's role, starting with the current one. A renewed lease is a
    /// change (its `valid_until` moved), so a leader hears from it every poll. Ends when the
    /// node stops.
    pub fn role_changes(&self) -> impl Stream<Item = Role> + Send + use<> {
        struct Follow {
            snapshots: watch::Receiver<Snapshot>,
            clock: std::sync::Arc<dyn crate::clock::Clock>,
            last: Option<Role>,
        }
        let follow = Follow {
            snapshots: self.watch_snapshot(),
            clock: std::sync::Arc::clone(&self.clock),
            last: None,
        };
        futures::stream::unfold(follow, |mut follow| async move {
            loop {
                let now = follow.clock.now();
                let (role, next_change) = {
                    let snapshot = follow.snapshots.borrow_and_update();
                    (snapshot.role(now), snapshot.role_changes_at(now))
                };
                if follow.last != Some(role) {
                    follow.last = Some(role);
                    return Some((role, follow));
                }
                let wake = next_change.map(tokio::time::Instant::from_std);
                tokio::select! {
                    changed = follow.snapshots.changed() => if changed.is_err() {
                        return None;
                    },
                    () = async {
                        if let Some(at) = wake {
                            tokio::time::sleep_until(at).await;
                        }
                    }, if wake.is_some() => {}
                }
            }
        })
    }
}

/// The leases this node reported to role watchers (sidecars), which may act on them until they
/// end: a successor acts only a safety margin after that (docs/behaviour.md 5.5). A report and a
/// step-down both take the lock, so no report slips past a step-down.
#[derive(Debug)]
pub(super) struct Promises {
    until: std::sync::Mutex<Option<Instant>>,
    margin: Duration,
}

impl Promises {
    pub(super) fn new(margin: Duration) -> Self {
        Self {
            until: std::sync::Mutex::new(None),
            margin,
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What a step-down answers at `now`: how long the last reported lease still runs, at least
    /// 1 ms while `now` is within the margin after its end (the successor adds the margin), and
    /// zero once that has passed or nothing was reported.
    pub(super) fn remaining(&self, now: Instant) -> Duration {
        match *self.lock() {
            Some(until) if now < until + self.margin => until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            _ => Duration::ZERO,
        }
    }

    /// How long until the last reported lease and the margin after it have passed at `now`.
    pub(super) fn with_margin(&self, now: Instant) -> Duration {
        self.lock().map_or(Duration::ZERO, |until| {
            (until + self.margin).saturating_duration_since(now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_lease_counts_until_the_margin_after_its_end() {
        let promises = Promises::new(Duration::from_millis(250));
        let t0 = Instant::now();
        assert_eq!(promises.remaining(t0), Duration::ZERO, "nothing reported");
        *promises.lock() = Some(t0 + Duration::from_millis(100));
        assert_eq!(promises.remaining(t0), Duration::from_millis(100));
        assert_eq!(promises.with_margin(t0), Duration::from_millis(350));
        // Ended, but a sidecar told of it may still act within the margin: the successor, which
        // adds the margin to what it is answered, must still wait.
        let ended = t0 + Duration::from_millis(150);
        assert!(promises.remaining(ended) > Duration::ZERO);
        assert_eq!(promises.with_margin(ended), Duration::from_millis(200));
        let past = t0 + Duration::from_millis(400);
        assert_eq!(promises.remaining(past), Duration::ZERO);
        assert_eq!(promises.with_margin(past), Duration::ZERO);
    }
}

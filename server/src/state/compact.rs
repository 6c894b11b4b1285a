//! When the master writes a snapshot, and what compaction may delete afterwards. Pure decisions
//! (the I/O is in `state::commit`):
//! - a snapshot is due once the log written since the last one reaches half that snapshot's size
//!   (at least `MIN_TAIL_BYTES`) or `every_entries` entries;
//! - compaction keeps the newest `snapshots_kept` snapshots and any snapshot seen for less than
//!   `min_age`; log entries are deleted only at or below a snapshot that has been in the store
//!   for `min_age`, so a reader still loading an older snapshot has that long to finish, and a
//!   deleted position is always covered by a snapshot old enough for every node to see it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Log bytes written since the last snapshot that make a snapshot due, at least.
pub const MIN_TAIL_BYTES: u64 = 4 * 1024 * 1024;
/// When snapshots are taken and what compaction keeps (`--state-snapshot-every`,
/// `--state-snapshots-kept`, `--state-retention-min-age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Log entries since the last snapshot that make a snapshot due whatever their size.
    pub every_entries: u64,
    /// The newest snapshots kept (at least 1).
    pub snapshots_kept: usize,
    /// Nothing is deleted that is younger than this, and no entry before its covering snapshot
    /// is this old.
    pub min_age: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every_entries: 10_000,
            snapshots_kept: 1,
            min_age: Duration::from_secs(10),
        }
    }
}

/// What the log holds since the last snapshot, and whether a snapshot is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tail {
    pub entries: u64,
    pub bytes: u64,
    /// The size of the last snapshot written (0: none yet).
    pub last_snapshot_bytes: u64,
    /// The last snapshot failed: the next entry starts another.
    pub retry: bool,
}

impl Tail {
    /// Counts an appended entry of `bytes`.
    pub fn appended(&mut self, bytes: usize) {
        self.entries += 1;
        self.bytes += bytes as u64;
    }

    /// Whether the log since the last snapshot is long enough for a new one.
    pub fn snapshot_due(&self, every_entries: u64) -> bool {
        self.retry
            || self.entries >= every_entries
            || self.bytes >= MIN_TAIL_BYTES.max(self.last_snapshot_bytes / 2)
    }

    /// The snapshot started at the last reset failed; the next entry starts another.
    pub fn snapshot_failed(&mut self) {
        self.retry = true;
    }

    /// A snapshot of everything counted is under way: counting starts again.
    pub fn snapshot_started(&mut self) {
        *self = Tail {
            last_snapshot_bytes: self.last_snapshot_bytes,
            ..Tail::default()
        };
    }

    /// The snapshot under way was written, `bytes` long.
    pub fn snapshot_written(&mut self, bytes: usize) {
        self.last_snapshot_bytes = bytes as u64;
    }
}

/// What one compaction deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub snapshots: Vec<u64>,
    /// Log entries at or below this position (0: none).
    pub log_through: u64,
}

/// Compaction's memory: when this node first saw each snapshot (the store keeps no times, so a
/// snapshot found in the store counts as new when first seen: deletion is only ever later).
#[derive(Debug, Clone, Default)]
pub struct Compactor {
    policy: SnapshotPolicy,
    first_seen: BTreeMap<u64, Instant>,
    /// The epoch and log position through which this node has deleted (another epoch, or
    /// `None`: the next compaction lists what the log holds).
    pub log_deleted_through: Option<(u64, u64)>,
}

impl Compactor {
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self {
            policy,
            first_seen: BTreeMap::new(),
            log_deleted_through: None,
        }
    }

    /// Notes a snapshot this node wrote at `seq` just now.
    pub fn wrote(&mut self, seq: u64, now: Instant) {
        self.first_seen.entry(seq).or_insert(now);
    }

    /// What may be deleted, given the snapshot positions in the store now.
    pub fn plan(&mut self, in_store: &[u64], now: Instant) -> Plan {
        self.first_seen.retain(|seq, _| in_store.contains(seq));
        for &seq in in_store {
            self.first_seen.entry(seq).or_insert(now);
        }
        let old_enough =
            |seen: &Instant| now.saturating_duration_since(*seen) >= self.policy.min_age;
        let kept_from = self
            .first_seen
            .len()
            .saturating_sub(self.policy.snapshots_kept.max(1));
        let snapshots: Vec<u64> = self
            .first_seen
            .iter()
            .take(kept_from)
            .filter(|(_, seen)| old_enough(seen))
            .map(|(&seq, _)| seq)
            .collect();
        // Entries are covered by the newest snapshot that has been in the store for min_age,
        // but a kept older snapshot still needs the entries after it.
        let covered = self
            .first_seen
            .iter()
            .filter(|(_, seen)| old_enough(seen))
            .map(|(&seq, _)| seq)
            .next_back()
            .unwrap_or(0);
        let oldest_kept = self
            .first_seen
            .keys()
            .find(|seq| !snapshots.contains(seq))
            .copied()
            .unwrap_or(0);
        Plan {
            snapshots,
            log_through: covered.min(oldest_kept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_AGE: Duration = Duration::from_secs(60);

    fn compactor(kept: usize) -> Compactor {
        Compactor::new(SnapshotPolicy {
            snapshots_kept: kept,
            min_age: MIN_AGE,
            ..SnapshotPolicy::default()
        })
    }

    #[test]
    fn nothing_young_is_deleted_and_the_newest_snapshots_stay() {
        let start = Instant::now();
        let mut compactor = compactor(1);
        // Snapshots 100 and 200 are found in the store; 300 is written later.
        assert_eq!(compactor.plan(&[100, 200], start), Plan::default());
        compactor.wrote(300, start + MIN_AGE / 2);
        let at = |d: Duration| start + d;
        // 100 and 200 are old enough to go, 300 (the newest) stays; 300 is too young to cover
        // the log, so only the entries up to 200 go.
        let plan = compactor.plan(&[100, 200, 300], at(MIN_AGE));
        assert_eq!(
            plan,
            Plan {
                snapshots: vec![100, 200],
                log_through: 200,
            }
        );
        // Once 300 is old enough it covers the log.
        let plan = compactor.plan(&[300], at(MIN_AGE * 2));
        assert_eq!(
            plan,
            Plan {
                snapshots: vec![],
                log_through: 300,
            }
        );
    }

    #[test]
    fn kept_snapshots_keep_the_log_after_them() {
        let start = Instant::now();
        let mut compactor = compactor(2);
        let plan = compactor.plan(&[100, 200, 300], start + MIN_AGE);
        assert_eq!(plan, Plan::default(), "all first seen just now");
        let plan = compactor.plan(&[100, 200, 300], start + MIN_AGE * 2);
        assert_eq!(
            plan,
            Plan {
                snapshots: vec![100],
                log_through: 200,
            }
        );
    }

    #[test]
    fn a_snapshot_is_due_by_entries_or_by_bytes_relative_to_the_last() {
        let every = 1_000;
        let mut tail = Tail::default();
        tail.appended(MIN_TAIL_BYTES as usize - 1);
        assert!(!tail.snapshot_due(every));
        tail.appended(1);
        assert!(tail.snapshot_due(every));
        tail.snapshot_started();
        tail.snapshot_written(64 * 1024 * 1024);
        tail.appended(MIN_TAIL_BYTES as usize);
        assert!(!tail.snapshot_due(every), "half of 64 MiB is 32 MiB");
        tail.appended(28 * 1024 * 1024);
        assert!(tail.snapshot_due(every));
        tail.snapshot_started();
        for _ in 0..every - 1 {
            tail.appended(1);
        }
        assert!(!tail.snapshot_due(every));
        tail.appended(1);
        assert!(tail.snapshot_due(every));
        // A failed snapshot is due again at once, not after another full tail.
        tail.snapshot_started();
        assert!(!tail.snapshot_due(every));
        tail.snapshot_failed();
        assert!(tail.snapshot_due(every));
        tail.snapshot_started();
        assert!(!tail.snapshot_due(every));
    }
}

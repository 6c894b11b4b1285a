//! The recent changes a node applied, kept so that a watcher can resume from a log position
//! (`Watch` with `start_seq`, SSE `Last-Event-ID`). Bounded by count and by bytes; a position
//! older than what is kept is "compacted" and the watcher re-lists.

use super::Applied;
use std::collections::VecDeque;

/// Changes kept, at most.
pub const HISTORY_CHANGES: usize = 10_000;
/// Bytes of log the kept changes came from, at most.
pub const HISTORY_BYTES: usize = 64 * 1024 * 1024;

/// Recent changes, oldest first, complete from `from_seq` on.
#[derive(Debug, Clone)]
pub struct History {
    changes: VecDeque<(Applied, usize)>,
    bytes: usize,
    /// Every change at this position or later is kept.
    from_seq: u64,
}

/// Why a watch cannot resume where it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "changes before seq {oldest} are no longer kept here (asked from {asked}); list again and watch from the list's as_of_seq + 1"
)]
pub struct Compacted {
    pub asked: u64,
    pub oldest: u64,
}

impl History {
    /// An empty history for a replica at `applied_seq`: complete from the next position.
    pub fn starting_after(applied_seq: u64) -> Self {
        Self {
            changes: VecDeque::new(),
            bytes: 0,
            from_seq: applied_seq + 1,
        }
    }

    /// Keeps `change`, which took about `bytes` of the log, forgetting the oldest past the bounds.
    pub fn push(&mut self, change: Applied, bytes: usize) {
        self.bytes += bytes;
        self.changes.push_back((change, bytes));
        while self.changes.len() > HISTORY_CHANGES || self.bytes > HISTORY_BYTES {
            let Some((oldest, size)) = self.changes.pop_front() else {
                break;
            };
            self.bytes -= size;
            // A position is complete only while all of its changes are kept.
            self.from_seq = self.from_seq.max(oldest.seq + 1);
        }
    }

    /// The kept changes at `start_seq` or later, or `Compacted` if some of them are gone.
    pub fn since(&self, start_seq: u64) -> Result<Vec<Applied>, Compacted> {
        if start_seq < self.from_seq {
            return Err(Compacted {
                asked: start_seq,
                oldest: self.from_seq,
            });
        }
        Ok(self
            .changes
            .iter()
            .map(|(change, _)| change)
            .filter(|change| change.seq >= start_seq)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EntityId;

    fn change(seq: u64) -> Applied {
        Applied {
            seq,
            id: EntityId::parse("a").unwrap(),
            entity: None,
        }
    }

    #[test]
    fn resumes_from_a_kept_position_and_refuses_a_forgotten_one() {
        let mut history = History::starting_after(4);
        assert_eq!(history.since(4).unwrap_err().oldest, 5);
        for seq in 5..10 {
            history.push(change(seq), 10);
        }
        let seqs = |changes: Vec<Applied>| changes.iter().map(|c| c.seq).collect::<Vec<_>>();
        assert_eq!(seqs(history.since(7).unwrap()), [7, 8, 9]);
        assert_eq!(seqs(history.since(5).unwrap()).len(), 5);
        assert!(history.since(20).unwrap().is_empty());
    }

    #[test]
    fn a_position_partly_forgotten_is_compacted() {
        let mut history = History::starting_after(0);
        // Two changes of entry 1 and one of entry 2, then enough bytes to push one out.
        history.push(change(1), HISTORY_BYTES / 2);
        history.push(change(1), HISTORY_BYTES / 2);
        history.push(change(2), 1);
        assert_eq!(history.since(1).unwrap_err().oldest, 2);
        assert_eq!(history.since(2).unwrap().len(), 1);
        for seq in 3..(HISTORY_CHANGES as u64 + 10) {
            history.push(change(seq), 0);
        }
        assert_eq!(history.changes.len(), HISTORY_CHANGES);
        assert!(history.since(5).is_err());
    }
}

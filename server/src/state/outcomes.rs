//! The idempotency table: what each keyed write did (seq, entity id, version), not a copy of the
//! entity, so it stays small. It is bounded by count and by age, both measured in the log (the
//! entries' own times), so every replica forgets the same keys at the same position.

use super::EntityId;
use serde::{Deserialize, Serialize};

/// Keyed writes remembered, at most (oldest forgotten first).
pub const RETRY_MEMORY: usize = 100_000;
/// How long a keyed write is remembered, measured between log entries' times.
pub const RETRY_WINDOW_MS: u64 = 10 * 60 * 1000;

/// What one keyed write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
    pub id: EntityId,
    /// The entity's version after the write; 0 after a delete.
    pub version: u64,
    pub epoch: u64,
    /// The time of the entry that carried it (0: unknown, kept until pushed out by count).
    #[serde(default)]
    pub at_ms: u64,
}

/// Idempotency key -> what the write did, oldest first in `order`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    by_key: imbl::HashMap<String, Recorded>,
    order: imbl::Vector<String>,
}

impl Outcomes {
    /// Records `key`, then forgets the oldest keys past the count or the time window.
    pub fn record(&mut self, key: String, recorded: Recorded) {
        let newest_ms = recorded.at_ms;
        if self.by_key.insert(key.clone(), recorded).is_none() {
            self.order.push_back(key);
        }
        while let Some(oldest) = self.order.front() {
            let expired = self.by_key.get(oldest).is_none_or(|r| {
                r.at_ms != 0 && r.at_ms.saturating_add(RETRY_WINDOW_MS) < newest_ms
            });
            if self.order.len() <= RETRY_MEMORY && !expired {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }

    /// Puts back a key from a snapshot, as it was (no forgetting: the snapshot already did).
    pub fn restore(&mut self, key: String, recorded: Recorded) {
        if self.by_key.insert(key.clone(), recorded).is_none() {
            self.order.push_back(key);
        }
    }

    pub fn get(&self, key: &str) -> Option<&Recorded> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The keys and their records, oldest first (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Recorded)> {
        self.order
            .iter()
            .filter_map(|key| self.by_key.get(key).map(|r| (key, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(seq: u64, at_ms: u64) -> Recorded {
        Recorded {
            seq,
            id: EntityId::parse("a").unwrap(),
            version: seq,
            epoch: 1,
            at_ms,
        }
    }

    #[test]
    fn keys_are_forgotten_past_the_count() {
        let mut outcomes = Outcomes::default();
        for seq in 1..=(RETRY_MEMORY as u64 + 5) {
            outcomes.record(format!("k{seq}"), recorded(seq, 1));
        }
        assert_eq!(outcomes.len(), RETRY_MEMORY);
        assert!(outcomes.get("k5").is_none());
        assert_eq!(outcomes.get("k6").map(|r| r.seq), Some(6));
        assert_eq!(outcomes.iter().next().map(|(k, _)| k.as_str()), Some("k6"));
    }

    #[test]
    fn keys_are_forgotten_past_the_window_measured_in_log_time() {
        let mut outcomes = Outcomes::default();
        outcomes.record("old".into(), recorded(1, 1_000));
        outcomes.record("mid".into(), recorded(2, 2_000));
        outcomes.record("new".into(), recorded(3, 1_000 + RETRY_WINDOW_MS));
        assert!(outcomes.get("old").is_some(), "exactly the window is kept");
        outcomes.record("newer".into(), recorded(4, 1_001 + RETRY_WINDOW_MS));
        assert!(outcomes.get("old").is_none());
        assert!(outcomes.get("mid").is_some());
        assert_eq!(outcomes.len(), 3);
    }
}

//! Managed state (SPEC 6): entities replicated through an append-only log in the store. This file
//! is the pure part: log entries, the in-memory entity map, and how an entry applies to it.

pub mod commit;
pub mod compact;
pub mod history;
pub mod log;
pub mod outcomes;
pub mod service;

pub use outcomes::{Outcomes, Recorded};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An entity id: 1 to 200 characters of `[A-Za-z0-9_.-]` in `/`-separated non-empty segments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityId(String);

impl EntityId {
    pub const MAX_LEN: usize = 200;

    pub fn parse(id: &str) -> Result<Self, haplane::InvalidValue> {
        if id.is_empty() || id.len() > Self::MAX_LEN || !haplane::is_safe_path(id) {
            return Err(haplane::InvalidValue::new(
                "id",
                format!(
                    "{:?} must be 1 to 200 characters of A-Z a-z 0-9 _ - . in '/'-separated segments",
                    haplane::truncate_for_message(id)
                ),
            ));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EntityId {
    type Error = haplane::InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EntityId> for String {
    fn from(id: EntityId) -> Self {
        id.0
    }
}

/// One entity as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: EntityId,
    /// A JSON object.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// 1 on creation, +1 on every change.
    pub version: u64,
    /// The epoch of the master that wrote this version.
    pub updated_epoch: u64,
}

/// What one log entry does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new master's first entry: entries of lower epochs after it are void.
    Fence,
    /// Writes committed together (group commit), applied in order.
    Batch { ops: Vec<Op> },
    /// One put, as written before group commit (still read from older logs).
    Put {
        id: EntityId,
        attributes: serde_json::Map<String, serde_json::Value>,
    },
    /// One delete, as written before group commit (still read from older logs).
    Delete { id: EntityId },
    /// An entry an operator put in place of a damaged one (`haplane state void-entry`): it
    /// applies nothing, so replay goes on past it.
    Void,
}

/// One write in a batch: a put when `put` holds attributes, else a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub id: EntityId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `state/log/<seq>.json`: created once with create-if-absent, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub epoch: u64,
    /// The master's wall clock when it wrote the entry (bounds the idempotency window; 0 in
    /// entries written before it was recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_ms: u64,
    /// The key of a single `Put`/`Delete` (older logs); batches carry a key per op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub change: Change,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl LogEntry {
    /// The writes this entry carries, in order (none for a fence).
    fn ops(&self) -> Vec<Op> {
        match &self.change {
            Change::Fence | Change::Void => Vec::new(),
            Change::Batch { ops } => ops.clone(),
            Change::Put { id, attributes } => vec![Op {
                key: self.idempotency_key.clone(),
                id: id.clone(),
                put: Some(attributes.clone()),
            }],
            Change::Delete { id } => vec![Op {
                key: self.idempotency_key.clone(),
                id: id.clone(),
                put: None,
            }],
        }
    }
}

/// The result of one write, as answered to its writer (and again to a retry).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub seq: u64,
    /// The entity after a put; `None` after a delete.
    pub entity: Option<Entity>,
}

/// One applied write, for watchers: the entity after it, `None` after a delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub seq: u64,
    pub id: EntityId,
    pub entity: Option<Arc<Entity>>,
}

/// The entity map at some log position. Its maps are persistent (`imbl`), so a copy for a
/// snapshot is taken in constant time and written while the master goes on writing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityState {
    /// The last log entry applied (0: none).
    pub applied_seq: u64,
    /// The highest fence epoch applied.
    pub fence_epoch: u64,
    pub entities: imbl::OrdMap<EntityId, Arc<Entity>>,
    /// Idempotency key -> recorded outcome, bounded by count and age.
    pub outcomes: Outcomes,
}

impl EntityState {
    /// Applies the next entry and returns its writes in order (none for a fence or a void
    /// entry). Entries out of sequence are refused; entries of an epoch below the last fence
    /// are void (a deposed master's late write) and only advance the position.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<Vec<Applied>, String> {
        if entry.seq != self.applied_seq + 1 {
            return Err(format!(
                "log entry {} does not follow {}",
                entry.seq, self.applied_seq
            ));
        }
        self.applied_seq = entry.seq;
        if entry.epoch < self.fence_epoch {
            return Ok(Vec::new());
        }
        if entry.change == Change::Fence {
            self.fence_epoch = entry.epoch;
            return Ok(Vec::new());
        }
        let mut applied = Vec::new();
        for op in entry.ops() {
            let entity = match op.put {
                Some(attributes) => {
                    let version = self.version_of(&op.id) + 1;
                    let entity = Arc::new(Entity {
                        id: op.id.clone(),
                        attributes,
                        version,
                        updated_epoch: entry.epoch,
                    });
                    self.entities.insert(op.id.clone(), Arc::clone(&entity));
                    Some(entity)
                }
                None => {
                    self.entities.remove(&op.id);
                    None
                }
            };
            if let Some(key) = op.key {
                self.outcomes.record(
                    key,
                    Recorded {
                        seq: entry.seq,
                        id: op.id.clone(),
                        version: entity.as_ref().map_or(0, |e| e.version),
                        epoch: entry.epoch,
                        at_ms: entry.at_ms,
                    },
                );
            }
            applied.push(Applied {
                seq: entry.seq,
                id: op.id,
                entity,
            });
        }
        Ok(applied)
    }

    /// The version `id` is at (0: absent).
    pub fn version_of(&self, id: &EntityId) -> u64 {
        self.entities.get(id).map_or(0, |e| e.version)
    }

    /// What the keyed write recorded under `key` did, if it is still remembered.
    pub fn recorded(&self, key: &str) -> Option<&Recorded> {
        self.outcomes.get(key)
    }

    /// The answer for a retry of the write `recorded`: the recorded seq and version; the entity
    /// as it is now if still at that version, else as the retry itself describes it (a retry
    /// repeats its request).
    pub fn retried(
        &self,
        recorded: &Recorded,
        attributes: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> WriteOutcome {
        let entity = (recorded.version > 0).then(|| match self.entities.get(&recorded.id) {
            Some(now) if now.version == recorded.version => Entity::clone(now),
            _ => Entity {
                id: recorded.id.clone(),
                attributes: attributes.cloned().unwrap_or_default(),
                version: recorded.version,
                updated_epoch: recorded.epoch,
            },
        });
        WriteOutcome {
            seq: recorded.seq,
            entity,
        }
    }
}

/// How a list is cut into pages: entities after `after` (a previous page's last id), at most
/// `size` of them and at most `max_bytes` of attributes (or one entity, whatever it holds), so an
/// answer is never much larger than the largest entity a `Put` could carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<EntityId>,
    pub size: usize,
    pub max_bytes: usize,
}

impl PageRequest {
    /// Entities per page when the caller names none.
    pub const DEFAULT_SIZE: usize = 1_000;
    /// The most entities per page; a larger request gets this many.
    pub const MAX_SIZE: usize = 10_000;
    /// Attribute bytes per page, past which a page ends early (at least one entity per page).
    pub const MAX_BYTES: usize = 2 * 1024 * 1024;

    /// A page of `size` entities (0: the default; above the maximum: the maximum) after the
    /// entity named by `token` (empty: from the start). A token that is not an entity id is
    /// refused.
    pub fn new(size: usize, token: &str) -> Result<Self, haplane::InvalidValue> {
        let after = if token.is_empty() {
            None
        } else {
            Some(EntityId::parse(token).map_err(|_| {
                haplane::InvalidValue::new("page_token", "not a token from a previous page")
            })?)
        };
        let size = match size {
            0 => Self::DEFAULT_SIZE,
            size => size.min(Self::MAX_SIZE),
        };
        Ok(PageRequest {
            after,
            size,
            max_bytes: Self::MAX_BYTES,
        })
    }
}

/// One page of a list, and the token of the next (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entities: Vec<Arc<Entity>>,
    pub next_token: Option<String>,
}

impl EntityState {
    /// The entities whose id starts with `prefix`, in id order, one page at a time. Ids with a
    /// prefix are contiguous in that order, so a page reads only its own entities.
    pub fn page(&self, prefix: &str, request: &PageRequest) -> Page {
        use std::ops::Bound;
        let start = match &request.after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        let mut matching = self
            .entities
            .range((start, Bound::Unbounded))
            .skip_while(|(id, _)| !id.as_str().starts_with(prefix) && id.as_str() < prefix)
            .take_while(|(id, _)| id.as_str().starts_with(prefix))
            .map(|(_, entity)| entity)
            .peekable();
        let mut entities = Vec::new();
        let mut bytes = 0;
        while let Some(entity) = matching.next_if(|entity| {
            let size = serde_json::to_vec(&entity.attributes).map_or(0, |json| json.len());
            // The first entity always fits: a page makes progress whatever one entity holds.
            let fits = entities.is_empty() || bytes + size <= request.max_bytes;
            if fits {
                bytes += size;
            }
            fits && entities.len() < request.size
        }) {
            entities.push(Arc::clone(entity));
        }
        let next_token = matching
            .peek()
            .and(entities.last())
            .map(|last| last.id.as_str().to_owned());
        Page {
            entities,
            next_token,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn id(text: &str) -> EntityId {
        EntityId::parse(text).unwrap()
    }

    fn attributes(value: i64) -> serde_json::Map<String, serde_json::Value> {
        json!({ "value": value }).as_object().unwrap().clone()
    }

    fn batch(seq: u64, epoch: u64, ops: Vec<Op>) -> LogEntry {
        LogEntry {
            seq,
            epoch,
            at_ms: 1,
            idempotency_key: None,
            change: Change::Batch { ops },
        }
    }

    fn op(name: &str, value: Option<i64>, key: Option<&str>) -> Op {
        Op {
            key: key.map(str::to_owned),
            id: id(name),
            put: value.map(attributes),
        }
    }

    fn put(seq: u64, epoch: u64, name: &str, value: i64, key: Option<&str>) -> LogEntry {
        batch(seq, epoch, vec![op(name, Some(value), key)])
    }

    /// A fence entry, for the tests of this module and of `log`.
    pub(crate) fn fence(seq: u64, epoch: u64) -> LogEntry {
        LogEntry {
            seq,
            epoch,
            at_ms: 0,
            idempotency_key: None,
            change: Change::Fence,
        }
    }

    #[test]
    fn entity_ids_allow_slashes_but_no_traversal() {
        assert!(EntityId::parse("apps/web/frontend-1").is_ok());
        assert!(EntityId::parse(&"a".repeat(200)).is_ok());
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../x",
            "a/../b",
            "a b",
            "%2e%2e",
            &"a".repeat(201),
        ] {
            assert!(EntityId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_applies_its_ops_in_order_and_records_each_key() {
        let mut state = EntityState::default();
        state.apply(&fence(1, 1)).unwrap();
        let applied = state
            .apply(&batch(
                2,
                1,
                vec![
                    op("a", Some(1), Some("k1")),
                    op("a", Some(2), None),
                    op("b", Some(3), Some("k2")),
                    op("b", None, Some("k3")),
                ],
            ))
            .unwrap();
        let versions: Vec<_> = applied
            .iter()
            .map(|a| (a.id.as_str(), a.entity.as_ref().map(|e| e.version)))
            .collect();
        assert_eq!(
            versions,
            [("a", Some(1)), ("a", Some(2)), ("b", Some(1)), ("b", None)]
        );
        assert!(applied.iter().all(|a| a.seq == 2));
        assert_eq!(state.version_of(&id("a")), 2);
        assert_eq!(state.version_of(&id("b")), 0);
        assert_eq!(state.outcomes.len(), 3);
        // A retry of k1 answers version 1, which "a" no longer is: the entity as the retry
        // describes it. A retry of k3 (a delete) answers no entity.
        let retried = state.retried(state.recorded("k1").unwrap(), Some(&attributes(1)));
        assert_eq!(retried.seq, 2);
        let entity = retried.entity.unwrap();
        assert_eq!((entity.version, entity.attributes), (1, attributes(1)));
        let deleted = state.recorded("k3").unwrap();
        assert_eq!((deleted.id.as_str(), deleted.version), ("b", 0));
        assert_eq!(state.retried(deleted, None).entity, None);
        assert!(state.recorded("unknown").is_none());
    }

    #[test]
    fn single_puts_and_deletes_from_older_logs_still_apply() {
        let mut state = EntityState::default();
        let old = |seq, change| LogEntry {
            seq,
            epoch: 1,
            at_ms: 0,
            idempotency_key: Some(format!("old{seq}")),
            change,
        };
        let json = r#"{"seq":1,"epoch":1,"idempotency_key":"old1","change":{"kind":"put","id":"a","attributes":{"value":1}}}"#;
        let entry: LogEntry = serde_json::from_str(json).unwrap();
        assert_eq!(
            entry,
            old(
                1,
                Change::Put {
                    id: id("a"),
                    attributes: attributes(1)
                }
            )
        );
        state.apply(&entry).unwrap();
        assert_eq!(
            state
                .retried(state.recorded("old1").unwrap(), None)
                .entity
                .unwrap()
                .version,
            1
        );
        state
            .apply(&old(2, Change::Delete { id: id("a") }))
            .unwrap();
        assert!(state.entities.is_empty());
        assert_eq!(state.applied_seq, 2);
    }

    #[test]
    fn entries_must_follow_in_sequence() {
        let mut state = EntityState::default();
        assert!(state.apply(&put(2, 1, "a", 1, None)).is_err());
        assert_eq!(state.applied_seq, 0);
    }

    #[test]
    fn a_deposed_masters_entry_after_a_newer_fence_is_void() {
        let mut state = EntityState::default();
        state.apply(&fence(1, 1)).unwrap();
        state.apply(&fence(2, 2)).unwrap();
        assert!(
            state
                .apply(&put(3, 1, "a", 1, Some("late")))
                .unwrap()
                .is_empty()
        );
        assert!(state.entities.is_empty());
        assert!(state.outcomes.get("late").is_none());
        assert_eq!(state.applied_seq, 3);
    }

    #[test]
    fn pages_cover_a_prefix_once_in_order_and_end_by_count_or_bytes() {
        let mut state = EntityState::default();
        for id in ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1", "a0"] {
            let id = EntityId::parse(id).unwrap();
            let mut attributes = serde_json::Map::new();
            attributes.insert("v".to_owned(), serde_json::json!("x".repeat(10)));
            state.entities.insert(
                id.clone(),
                Arc::new(Entity {
                    id,
                    attributes,
                    version: 1,
                    updated_epoch: 1,
                }),
            );
        }
        let ids = |page: &Page| {
            page.entities
                .iter()
                .map(|e| e.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let mut request = PageRequest::new(2, "").unwrap();
        let mut seen = Vec::new();
        loop {
            let page = state.page("a/", &request);
            assert!(page.entities.len() <= 2);
            seen.extend(ids(&page));
            match page.next_token {
                Some(token) => request = PageRequest::new(2, &token).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, ["a/1", "a/2", "a/3", "a/4", "a/5"]);
        // A byte budget ends a page before an entity that would pass it (each holds 18 bytes of
        // attributes), but never before its first entity.
        let budget = |max_bytes| PageRequest {
            max_bytes,
            ..PageRequest::new(10, "").unwrap()
        };
        assert_eq!(ids(&state.page("", &budget(40))), ["a/1", "a/2"]);
        let page = state.page("", &budget(1));
        assert_eq!(ids(&page), ["a/1"]);
        assert_eq!(page.next_token.as_deref(), Some("a/1"));
        // The last page says so; defaults and bounds; a bad token is refused.
        assert_eq!(
            state
                .page("b/", &PageRequest::new(0, "").unwrap())
                .next_token,
            None
        );
        assert_eq!(
            PageRequest::new(0, "").unwrap().size,
            PageRequest::DEFAULT_SIZE
        );
        assert_eq!(
            PageRequest::new(1 << 20, "").unwrap().size,
            PageRequest::MAX_SIZE
        );
        assert_eq!(PageRequest::new(5, "../x").unwrap_err().field, "page_token");
    }
}

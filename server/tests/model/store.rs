//! The abstract store the model's nodes share: exactly what docs/behaviour.md §4 asks of a
//! real one. Each node's record is replaced atomically (the last two versions are kept, so a
//! read can be answered with a stale one); claims are created with create-if-absent and never
//! change. Which versions a read may return is `Reads`; whether a call succeeds, fails, times out
//! or loses its answer is chosen by the model (`plane.rs`), not here.

use haplane::{Epoch, MasterClaim, NodeRecord};
use std::collections::BTreeMap;

/// How fresh a successful read is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// A read returns a value the key held at some instant between the call's start and its
    /// answer: linearizable reads, as S3 and a local file system give.
    Linearizable,
    /// A read may also return an older kept version, as long as it is not older than what the
    /// same reader last read of that key (monotonic reads, nothing more). A claim key has two
    /// versions, none and the claim, so a reader that never saw a claim may keep missing it.
    Stale,
}

/// How many versions of a record key the store keeps for stale reads.
const KEPT: usize = 2;

/// The kept versions of one record key, oldest first. Version 0 is "no record".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Versions {
    kept: Vec<(u32, Option<NodeRecord>)>,
}

impl Versions {
    fn new() -> Self {
        Self {
            kept: vec![(0, None)],
        }
    }

    /// The newest version and its record.
    pub fn current(&self) -> (u32, Option<&NodeRecord>) {
        let (version, record) = self.kept.last().expect("a key always has a version");
        (*version, record.as_ref())
    }

    /// The record of a kept `version` (`Some(None)`: version 0, no record).
    pub fn get(&self, version: u32) -> Option<Option<&NodeRecord>> {
        self.kept
            .iter()
            .find(|(kept, _)| *kept == version)
            .map(|(_, record)| record.as_ref())
    }

    fn put(&mut self, record: NodeRecord) {
        let next = self.current().0 + 1;
        self.kept.push((next, Some(record)));
        if self.kept.len() > KEPT {
            self.kept.remove(0);
        }
    }

    /// The versions a read may return: it began when `at_start` was current, and its reader
    /// last read `last_read` of this key.
    pub fn readable(&self, reads: Reads, at_start: u32, last_read: u32) -> Vec<u32> {
        let floor = match reads {
            Reads::Linearizable => at_start.max(last_read),
            Reads::Stale => last_read,
        };
        let versions: Vec<u32> = self
            .kept
            .iter()
            .map(|(version, _)| *version)
            .filter(|version| *version >= floor)
            .collect();
        if versions.is_empty() {
            // Everything at or above the floor was replaced since: only the newest remains.
            vec![self.current().0]
        } else {
            versions
        }
    }
}

/// The shared store: one record key per node (by index) and the claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    pub records: Vec<Versions>,
    pub claims: BTreeMap<Epoch, MasterClaim>,
}

impl Store {
    pub fn new(nodes: usize) -> Self {
        Self {
            records: (0..nodes).map(|_| Versions::new()).collect(),
            claims: BTreeMap::new(),
        }
    }

    /// Atomic replace of `node`'s own record.
    pub fn put_record(&mut self, node: usize, record: NodeRecord) {
        self.records[node].put(record);
    }

    /// Create-if-absent of `master/<epoch>`: whether it was created (false: the epoch was taken,
    /// and the claim there is left as it was).
    pub fn create_claim(&mut self, claim: MasterClaim) -> bool {
        if self.claims.contains_key(&claim.epoch) {
            return false;
        }
        self.claims.insert(claim.epoch, claim);
        true
    }

    /// The highest epoch with a claim (0: none).
    pub fn highest_claim(&self) -> Epoch {
        self.claims.keys().next_back().copied().unwrap_or(0)
    }
}

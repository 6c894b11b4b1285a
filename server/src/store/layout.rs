//! The plane's key layout in the store (docs/behaviour.md §4.1) and the encoding of its values,
//! in one place for the node runtime and the managed state.

use super::{Key, StoreError};
use bytes::Bytes;
use haplane::{Epoch, NodeId};

/// The plane's identity: `PlaneInfo`.
pub const PLANE: &str = "plane.json";
/// One record per node: `nodes/<id>.json`.
pub const NODES: &str = "nodes/";
/// One claim per epoch, created if absent: `master/<epoch, 20 digits>.json`.
pub const CLAIMS: &str = "master/";
/// Everything of the managed state.
pub const STATE: &str = "state/";
/// Managed-state snapshots: `state/snapshots/<seq, 20 digits>.json`.
pub const SNAPSHOTS: &str = "state/snapshots/";
/// Managed-state log entries, created if absent: `state/log/<seq, 20 digits>.json`.
pub const LOG: &str = "state/log/";

pub fn plane() -> Result<Key, StoreError> {
    Key::parse(PLANE)
}

pub fn node(id: &NodeId) -> Result<Key, StoreError> {
    Key::parse(&format!("{NODES}{id}.json"))
}

pub fn claim(epoch: Epoch) -> Result<Key, StoreError> {
    Key::parse(&format!("{CLAIMS}{epoch:020}.json"))
}

/// The epoch of a key listed under `CLAIMS`; `None` for anything else.
pub fn claim_epoch(key: &Key) -> Option<Epoch> {
    numbered(key, CLAIMS)
}

pub fn log_entry(seq: u64) -> Result<Key, StoreError> {
    Key::parse(&format!("{LOG}{seq:020}.json"))
}

/// Where `haplane state void-entry` keeps a damaged log entry's bytes.
pub fn damaged_entry(seq: u64) -> Result<Key, StoreError> {
    Key::parse(&format!("{STATE}damaged/{seq:020}.json"))
}

/// The position of a key listed under `LOG`; `None` for anything else.
pub fn log_entry_seq(key: &Key) -> Option<u64> {
    numbered(key, LOG)
}

pub fn snapshot(seq: u64) -> Result<Key, StoreError> {
    Key::parse(&format!("{SNAPSHOTS}{seq:020}.json"))
}

/// The position of a key listed under `SNAPSHOTS`; `None` for anything else.
pub fn snapshot_seq(key: &Key) -> Option<u64> {
    numbered(key, SNAPSHOTS)
}

/// The number in `<prefix><number>.json`.
fn numbered(key: &Key, prefix: &str) -> Option<u64> {
    key.as_str()
        .strip_prefix(prefix)?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// A record, claim or the plane's identity as a store body: pretty JSON, for the operator who
/// reads them.
pub fn json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, StoreError> {
    encode(serde_json::to_vec_pretty(value))
}

/// A managed-state log entry or snapshot as a store body: compact JSON (there are many, and
/// snapshots are large).
pub fn compact_json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, StoreError> {
    encode(serde_json::to_vec(value))
}

fn encode(encoded: serde_json::Result<Vec<u8>>) -> Result<Bytes, StoreError> {
    encoded.map(Bytes::from).map_err(|err| StoreError::Generic {
        message: format!("cannot encode: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let id = NodeId::parse("ha-1").unwrap();
        assert_eq!(node(&id).unwrap().as_str(), "nodes/ha-1.json");
        assert_eq!(
            claim(42).unwrap().as_str(),
            "master/00000000000000000042.json"
        );
        assert_eq!(claim_epoch(&claim(42).unwrap()), Some(42));
        assert_eq!(claim_epoch(&node(&id).unwrap()), None);
        assert_eq!(
            log_entry(7).unwrap().as_str(),
            "state/log/00000000000000000007.json"
        );
        assert_eq!(
            snapshot(7).unwrap().as_str(),
            "state/snapshots/00000000000000000007.json"
        );
        assert!(log_entry(7).unwrap().as_str().starts_with(STATE));
        assert_eq!(plane().unwrap().as_str(), "plane.json");
    }
}

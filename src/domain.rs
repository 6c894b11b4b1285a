//! Plain domain types shared by the server and the SDK: ids, states, modes, the records kept in
//! the store, and the master view pushed to watchers. No protobuf or I/O here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A caller gave a value that is not valid for the named field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidValue {
    /// The parameter or field that was wrong (`node_id`, `mode`, ...).
    pub field: &'static str,
    /// What is wrong with it, for the operator.
    pub reason: String,
}

impl InvalidValue {
    /// An error for `field`, saying `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A node id: `[A-Za-z0-9_-]{1,64}`, because it becomes a store key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Longest accepted node id.
    pub const MAX_LEN: usize = 64;

    /// Validates `id`.
    pub fn parse(id: &str) -> Result<Self, InvalidValue> {
        let valid_chars = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if id.is_empty() || id.len() > Self::MAX_LEN || !valid_chars {
            return Err(InvalidValue::new(
                "node_id",
                format!(
                    "{:?} must be 1 to {} characters of A-Z, a-z, 0-9, '_' or '-'",
                    truncate_for_message(id),
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` cut to 80 characters, for an error message that quotes a caller's value.
pub fn truncate_for_message(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Whether `path` is `/`-separated segments of `A-Z a-z 0-9 _ - .`, none empty, `.` or `..`:
/// the shape of store keys and of entity ids (which become keys), so no value can name a file
/// outside its folder.
pub fn is_safe_path(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    })
}

/// A JSON object given by a caller as `field` (an entity's attributes).
pub fn json_object(
    field: &'static str,
    json: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, InvalidValue> {
    match serde_json::from_slice(json) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(InvalidValue::new(field, "must be a JSON object")),
        Err(err) => Err(InvalidValue::new(field, format!("not JSON: {err}"))),
    }
}

impl TryFrom<String> for NodeId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Upper-cases a mode or state name and accepts `-` for `_` (`hot-standby` = `HOT_STANDBY`).
fn normalise_name(text: &str) -> String {
    text.trim().to_ascii_uppercase().replace('-', "_")
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical upper-case name (`HOT_STANDBY`).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let wanted = normalise_name(text);
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == wanted)
                    .ok_or_else(|| {
                        let names: Vec<_> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        InvalidValue::new(
                            $field,
                            format!("{:?} is not one of {}", truncate_for_message(text), names.join(", ")),
                        )
                    })
            }
        }
    };
}

named_enum!(
    /// The state a node publishes.
    NodeState, "state" {
        /// Starting, or in a transition.
        Initializing = "INITIALIZING",
        /// Lukewarm follower that can be promoted.
        Standby = "STANDBY",
        /// Read-only live copy that can be promoted.
        HotStandby = "HOT_STANDBY",
        /// Read-only live copy that is never promoted.
        HotBackup = "HOT_BACKUP",
        /// The one node that accepts writes.
        Master = "MASTER",
        /// Needs attention.
        Failed = "FAILED",
        /// Stopped gracefully.
        Terminated = "TERMINATED",
    }
);

named_enum!(
    /// The HA mode a node starts in or is switched to.
    HaMode, "mode" {
        /// Works alone, no election.
        Disabled = "DISABLED",
        /// Joins and lets the election decide.
        Auto = "AUTO",
        /// Becomes master (fails at start-up if a live master exists).
        Master = "MASTER",
        /// Lukewarm follower.
        Standby = "STANDBY",
        /// Hot follower.
        HotStandby = "HOT_STANDBY",
        /// Hot follower that never takes part in elections.
        HotBackup = "HOT_BACKUP",
    }
);

impl NodeState {
    /// Whether a node in this state may be chosen as master (SPEC 2), given its record is fresh.
    pub fn is_electable_state(self) -> bool {
        matches!(
            self,
            NodeState::Initializing
                | NodeState::Standby
                | NodeState::HotStandby
                | NodeState::Master
        )
    }
}

/// The master term number; increases by one at every change of master.
pub type Epoch = u64;

/// A node's own record, `nodes/<node_id>.json`, rewritten every poll.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node the record belongs to; it names the record's key.
    pub node_id: NodeId,
    /// The URI the node advertises, where peers and clients reach it.
    pub node_uri: String,
    /// The state the node was in when it wrote the record.
    pub status: NodeState,
    /// The node's election priority; the higher is preferred.
    pub priority: i64,
    /// Increases by one on every write; liveness is judged by seeing it change.
    pub heartbeat: u64,
    /// The version the node reports, compared in elections (release over pre-release, then
    /// higher).
    pub version: String,
    /// The highest epoch this node knew of when it wrote the record.
    pub epoch_seen: Epoch,
    /// The writer's wall clock (informational; never used for liveness).
    pub local_timestamp_ms: i64,
    /// When the writing process started, in milliseconds since the Unix epoch by its wall clock;
    /// with `pid`, tells a restarted process (whose heartbeat counts from zero again) apart.
    pub started_at_ms: i64,
    /// The writing process's id.
    pub pid: u32,
    /// The host the node runs on (informational).
    pub hostname: String,
    /// False while the node sits out elections (demoted master, HOT_BACKUP, DISABLED).
    #[serde(default = "default_true")]
    pub electable: bool,
    /// The last managed-state log entry the writer applied; on the master, the end of the log,
    /// so hot copies read the log only when it grew.
    #[serde(default)]
    pub state_seq: u64,
}

fn default_true() -> bool {
    true
}

/// A master claim, `master/<epoch>.json`, created once and never changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasterClaim {
    /// The epoch the claim makes `node_id` master of; it names the claim's key.
    pub epoch: Epoch,
    /// The node that claimed the epoch.
    pub node_id: NodeId,
    /// The URI the claimant advertised when it claimed.
    pub node_uri: String,
    /// The claimant's wall clock when it claimed, in milliseconds since the Unix epoch
    /// (informational).
    pub claimed_at: i64,
    /// Why the node claimed, for operators (`elected: no live master`, ...).
    pub reason: String,
}

/// `plane.json`: written once by the first node of a plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneInfo {
    /// The plane's random id; a new one means the store was replaced or reset.
    pub plane_id: String,
    /// The first node's wall clock when it wrote the file, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The format of `plane.json` and the records the first node wrote.
    pub format_version: u32,
}

/// One node as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub node_id: String,
    /// The URI the node advertises.
    pub node_uri: String,
    /// The state in the node's latest record.
    pub status: NodeState,
    /// Whether the node sending the view sees this node's heartbeat change.
    pub live: bool,
}

/// The node acting as master, as a reader learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRef {
    /// The master's node id.
    pub id: String,
    /// The URI the master advertises, where calls for the master go.
    pub uri: String,
}

impl MasterRef {
    /// From the wire's two strings, where an empty id means "no master".
    pub fn from_wire(id: String, uri: String) -> Option<MasterRef> {
        (!id.is_empty()).then_some(MasterRef { id, uri })
    }

    /// To the wire's two strings (id, URI): both empty for "no master".
    pub fn to_wire(master: Option<&MasterRef>) -> (String, String) {
        Self::into_wire(master.cloned())
    }

    /// As `to_wire`, without copying the strings.
    pub fn into_wire(master: Option<MasterRef>) -> (String, String) {
        master.map_or_else(Default::default, |m| (m.id, m.uri))
    }
}

/// Who the master is, as pushed on `WatchMaster`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterView {
    /// The highest epoch the sending node knows of.
    pub epoch: Epoch,
    /// `None` while the plane has no master.
    pub master: Option<MasterRef>,
    /// The plane's id; empty while the sending node has not joined a plane.
    pub plane_id: String,
    /// Every node of the plane, as the sending node sees them.
    pub members: Vec<Member>,
}

impl MasterView {
    /// Whether `other` names a different master (epoch, id or URI); members alone do not count.
    pub fn master_differs(&self, other: &MasterView) -> bool {
        self.epoch != other.epoch || self.master != other.master
    }

    /// The master's id, empty while there is none (for text and JSON output).
    pub fn master_id(&self) -> &str {
        self.master.as_ref().map_or("", |m| &m.id)
    }

    /// The master's URI, empty while there is none (for text and JSON output).
    pub fn master_uri(&self) -> &str {
        self.master.as_ref().map_or("", |m| &m.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_and_json_objects_are_checked() {
        for good in ["a", "a/b.c", "x_1-2/y"] {
            assert!(is_safe_path(good), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a b", "é"] {
            assert!(!is_safe_path(bad), "{bad:?}");
        }
        assert_eq!(json_object("body", br#"{"a":1}"#).unwrap()["a"], 1);
        let not_object = json_object("body", b"[1]").unwrap_err();
        assert_eq!(not_object.field, "body");
        assert!(not_object.reason.contains("JSON object"));
        assert!(
            json_object("body", b"{")
                .unwrap_err()
                .reason
                .starts_with("not JSON")
        );
    }

    #[test]
    fn node_ids_are_validated() {
        assert!(NodeId::parse("node-1_A").is_ok());
        assert!(NodeId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "../x", "a/b", "a.b", "é", "a b", &"a".repeat(65)] {
            let err = NodeId::parse(bad).unwrap_err();
            assert_eq!(err.field, "node_id", "{bad:?}");
        }
    }

    #[test]
    fn mode_names_are_case_insensitive_and_accept_hyphens() {
        for text in ["hot_standby", "HOT_STANDBY", "hot-standby", " Hot-Standby "] {
            assert_eq!(text.parse::<HaMode>().unwrap(), HaMode::HotStandby);
        }
        let err = "primary".parse::<HaMode>().unwrap_err();
        assert_eq!(err.field, "mode");
        assert!(err.reason.contains("HOT_BACKUP"), "{}", err.reason);
    }

    #[test]
    fn record_round_trips_through_json_and_defaults_electable() {
        let json = r#"{"node_id":"a","node_uri":"http://x","status":"HOT_STANDBY","priority":-3,
            "heartbeat":7,"version":"1.0","epoch_seen":2,"local_timestamp_ms":1,"started_at_ms":0,
            "pid":9,"hostname":"h"}"#;
        let record: NodeRecord = serde_json::from_str(json).unwrap();
        assert!(record.electable);
        assert_eq!(record.status, NodeState::HotStandby);
        let again: NodeRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(again, record);
    }

    #[test]
    fn record_with_invalid_node_id_is_rejected() {
        let json = r#"{"node_id":"../etc","node_uri":"","status":"MASTER","priority":0,
            "heartbeat":0,"version":"","epoch_seen":0,"local_timestamp_ms":0,"started_at_ms":0,
            "pid":0,"hostname":""}"#;
        assert!(serde_json::from_str::<NodeRecord>(json).is_err());
    }
}

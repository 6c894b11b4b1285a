//! Property tests for every decoder a node runs on input it does not control: store documents
//! (node records, master claims, plane.json, log entries, snapshots of entities), ids and keys
//! (path traversal), modes and wire enums, and the config file. None may panic; what they accept
//! keeps its invariants; valid documents round-trip.

use haplane::convert::{ha_mode_from_wire, node_state_from_wire};
use haplane::{HaMode, MasterClaim, NodeId, NodeRecord, NodeState, PlaneInfo};
use haplane_server::config::{LaunchArgs, Settings};
use haplane_server::state::{Change, Entity, EntityId, LogEntry, Op};
use haplane_server::store::Key;
use proptest::prelude::*;

/// Strings made of the characters that matter for ids and paths, plus anything.
fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(
            prop_oneof![
                Just("."),
                Just(".."),
                Just("/"),
                Just("%2e"),
                Just("%2F"),
                Just("\\"),
                Just("a"),
                Just("Z9"),
                Just("_"),
                Just("-"),
                Just("\0"),
                Just("é"),
                Just(" "),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

fn node_state() -> impl Strategy<Value = NodeState> {
    prop::sample::select(vec![
        NodeState::Initializing,
        NodeState::Standby,
        NodeState::HotStandby,
        NodeState::HotBackup,
        NodeState::Master,
        NodeState::Failed,
        NodeState::Terminated,
    ])
}

fn node_record() -> impl Strategy<Value = NodeRecord> {
    (
        "[A-Za-z0-9_-]{1,64}",
        any::<String>(),
        node_state(),
        any::<i64>(),
        any::<u64>(),
        (
            any::<u64>(),
            any::<i64>(),
            any::<u32>(),
            any::<bool>(),
            any::<u64>(),
        ),
    )
        .prop_map(|(id, uri, status, priority, heartbeat, rest)| NodeRecord {
            node_id: NodeId::parse(&id).unwrap(),
            node_uri: uri.clone(),
            status,
            priority,
            heartbeat,
            version: "1.0.0".into(),
            epoch_seen: rest.0,
            local_timestamp_ms: rest.1,
            started_at_ms: rest.1,
            pid: rest.2,
            hostname: uri,
            electable: rest.3,
            state_seq: rest.4,
        })
}

/// A valid document with one byte changed, cut short, or left alone.
fn damaged(body: Vec<u8>, position: usize, byte: u8, cut: bool) -> Vec<u8> {
    let mut body = body;
    if body.is_empty() {
        return body;
    }
    let at = position % body.len();
    if cut {
        body.truncate(at);
    } else {
        body[at] = byte;
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn store_documents_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<NodeRecord>(&bytes);
        let _ = serde_json::from_slice::<MasterClaim>(&bytes);
        let _ = serde_json::from_slice::<PlaneInfo>(&bytes);
        let _ = serde_json::from_slice::<LogEntry>(&bytes);
        let _ = serde_json::from_slice::<Vec<Entity>>(&bytes);
    }

    #[test]
    fn node_records_round_trip_and_damaged_ones_keep_their_invariants(
        record in node_record(), position in any::<usize>(), byte in any::<u8>(), cut in any::<bool>(),
    ) {
        let body = serde_json::to_vec(&record).unwrap();
        prop_assert_eq!(&serde_json::from_slice::<NodeRecord>(&body).unwrap(), &record);
        if let Ok(parsed) = serde_json::from_slice::<NodeRecord>(&damaged(body, position, byte, cut)) {
            // Whatever still parses carries a valid node id (it becomes a store key).
            prop_assert!(NodeId::parse(parsed.node_id.as_str()).is_ok());
            let key = format!("nodes/{}.json", parsed.node_id);
            prop_assert!(Key::parse(&key).is_ok());
        }
    }

    #[test]
    fn log_entries_round_trip_and_damaged_ones_keep_valid_ids(
        id in "[a-z]{1,8}(/[a-z0-9._-]{1,8}){0,3}", value in any::<i64>(), seq in any::<u64>(),
        epoch in any::<u64>(), key in proptest::option::of("[a-z0-9-]{1,36}"),
        position in any::<usize>(), byte in any::<u8>(), cut in any::<bool>(),
    ) {
        prop_assume!(EntityId::parse(&id).is_ok());
        let mut attributes = serde_json::Map::new();
        attributes.insert("v".into(), value.into());
        let op = Op { key, id: EntityId::parse(&id).unwrap(), put: Some(attributes) };
        let entry = LogEntry {
            seq,
            epoch,
            at_ms: seq,
            idempotency_key: None,
            change: Change::Batch { ops: vec![op.clone(), Op { put: None, ..op }] },
        };
        let body = serde_json::to_vec(&entry).unwrap();
        prop_assert_eq!(&serde_json::from_slice::<LogEntry>(&body).unwrap(), &entry);
        if let Ok(LogEntry { change: Change::Batch { ops }, .. }) =
            serde_json::from_slice::<LogEntry>(&damaged(body, position, byte, cut))
        {
            for op in ops {
                prop_assert!(EntityId::parse(op.id.as_str()).is_ok());
            }
        }
    }

    #[test]
    fn accepted_ids_and_keys_never_escape_their_directory(text in path_like()) {
        if let Ok(id) = NodeId::parse(&text) {
            prop_assert!(!id.as_str().contains('/') && !id.as_str().contains('.'));
        }
        if let Ok(id) = EntityId::parse(&text) {
            prop_assert!(id.as_str().split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            prop_assert!(!id.as_str().contains('%') && !id.as_str().contains('\\'));
        }
        if let Ok(key) = Key::parse(&text) {
            prop_assert!(!key.as_str().starts_with('/'));
            prop_assert!(key.as_str().split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            prop_assert!(key.as_str().bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn modes_and_wire_enums_never_panic_and_accepted_modes_round_trip(text in any::<String>(), wire in any::<i32>()) {
        if let Ok(mode) = text.parse::<HaMode>() {
            prop_assert_eq!(mode.as_str().parse::<HaMode>().unwrap(), mode);
        }
        let _ = ha_mode_from_wire(wire);
        let _ = node_state_from_wire(wire);
    }

    #[test]
    fn config_files_never_panic_and_errors_name_a_setting(
        key in prop::sample::select(vec!["poll_period", "heartbeat_timeout", "safety_margin",
            "record_retention", "priority", "ha_mode", "persist", "bind", "node_id", "advertise_uri"]),
        value in prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("\"18446744073709551615s\"".to_owned()),
            Just("\"584542046091y\"".to_owned()),
            Just("\"0ns\"".to_owned()),
            Just("\"9223372036854775807\"".to_owned()),
        ],
        noise in "[ -~\n]{0,40}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haplane.toml");
        for text in [format!("{key} = {value}\n"), format!("{key} = {value}\n{noise}")] {
            std::fs::write(&file, &text).unwrap();
            let args = LaunchArgs { config: Some(file.clone()), ..LaunchArgs::default() };
            if let Err(err) = Settings::load(args) {
                prop_assert!(!err.flag.is_empty());
                prop_assert!(!err.message.is_empty());
            }
        }
    }
}

#[test]
fn extreme_durations_on_the_command_line_are_refused_not_overflowed() {
    for (poll, timeout) in [
        ("18446744073709551615s", "10s"),
        ("1s", "18446744073709551615s"),
        ("500000000y", "500000001y"),
        ("0ns", "0ns"),
    ] {
        let args = LaunchArgs {
            poll_period: humantime::parse_duration(poll).ok(),
            heartbeat_timeout: humantime::parse_duration(timeout).ok(),
            ..LaunchArgs::default()
        };
        assert!(Settings::load(args).is_err(), "{poll} / {timeout}");
    }
}

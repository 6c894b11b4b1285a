//! Managed state at scale, end to end on real nodes: group commit keeps each write's own checks,
//! compaction bounds the store while a copy left behind jumps to a snapshot, a watch resumes from a
//! log position (gRPC and SSE) or is told the position is gone, and a damaged log entry is
//! reported with its key and recovered by a snapshot past it without losing a write, or, when no
//! node holds it, by the operator's `haplane state void-entry`, which loses only that entry.

use haplane_tests::haplane::pb::{self, entity_service_client::EntityServiceClient};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(30);

/// Steady timings: these tests write hundreds of entries to one master and expect every write
/// acknowledged.
fn options(extra: &[&str]) -> PlaneOptions {
    PlaneOptions {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..PlaneOptions::steady()
    }
}

async fn entities(uri: &str) -> EntityServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(uri.to_owned())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    EntityServiceClient::new(channel)
}

fn put(id: &str, json: &str, key: &str, expected: Option<u64>) -> pb::PutRequest {
    pb::PutRequest {
        id: id.into(),
        attributes_json: json.into(),
        expected_version: expected,
        idempotency_key: key.into(),
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// A one-node plane that acknowledged three writes `<prefix>/0..2`, its node then stopped; the
/// writes' log positions.
async fn three_writes_then_stopped(prefix: &str) -> (Plane, Vec<u64>) {
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let answer = client
            .put(put(&format!("{prefix}/{i}"), "{}", "", None))
            .await
            .unwrap()
            .into_inner();
        seqs.push(answer.seq);
    }
    plane.nodes[master].sigterm();
    plane.nodes[master].wait_exit(DEADLINE).await;
    (plane, seqs)
}

/// The DATA_LOSS refusal a write of `id` eventually gets.
async fn refused_for_data_loss(client: &EntityServiceClient<Channel>, id: &str) -> tonic::Status {
    eventually(DEADLINE, "writes refused with DATA_LOSS", || {
        let mut client = client.clone();
        async move {
            client
                .put(put(id, "{}", "", None))
                .await
                .err()
                .filter(|status| status.code() == Code::DataLoss)
        }
    })
    .await
}

/// `haplane state void-entry --seq <seq> [--yes]` on the plane's store.
fn void_entry(plane: &Plane, seq: u64, yes: bool) -> std::process::Output {
    let mut command = std::process::Command::new(haplane_tests::haplane_binary());
    command.args(["state", "void-entry", "--seq", &seq.to_string()]);
    command.args([
        "--persistence-dir",
        &plane.store_dir().display().to_string(),
    ]);
    if yes {
        command.arg("--yes");
    }
    command.output().expect("run haplane state void-entry")
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_each_keeps_its_own_checks() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let client = entities(&plane.nodes[master].grpc_uri()).await;
    // 64 writers of new entities at once: all acknowledged, in fewer log entries than writes.
    let writes = (0..64).map(|i| {
        let mut client = client.clone();
        async move {
            client
                .put(put(
                    &format!("g/{i:02}"),
                    r#"{"n":1}"#,
                    &format!("gk-{i}"),
                    None,
                ))
                .await
                .map(|r| r.into_inner())
        }
    });
    let answers = futures::future::join_all(writes).await;
    let seqs: BTreeSet<u64> = answers
        .iter()
        .map(|answer| {
            let answer = answer.as_ref().expect("every write is acknowledged");
            assert_eq!(answer.entity.as_ref().unwrap().version, 1);
            answer.seq
        })
        .collect();
    assert!(
        seqs.len() < 64,
        "64 concurrent writes took {} log entries: no group commit",
        seqs.len()
    );
    // 32 creates of one id with If-Match "absent" at once: exactly one wins, even when they
    // share a log entry.
    let creates = (0..32).map(|i| {
        let mut client = client.clone();
        async move {
            client
                .put(put("race", &format!(r#"{{"by":{i}}}"#), "", Some(0)))
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(won, 1, "exactly one create of 32 wins");
    assert!(refused.iter().all(|status| status.code() == Code::Aborted));
    // 16 writes with one idempotency key at once: applied once, every answer the same.
    let retries = (0..16).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .put(put("once", r#"{"x":1}"#, "same-key", None))
                .await
                .map(|r| r.into_inner())
        }
    });
    let answers: Vec<_> = futures::future::join_all(retries)
        .await
        .into_iter()
        .map(|answer| answer.expect("a keyed write is acknowledged"))
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| a.seq == answers[0].seq && a.entity.as_ref().unwrap().version == 1)
    );
    let read = client
        .clone()
        .get(pb::GetRequest { id: "once".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.entity.unwrap().version, 1);
}

#[tokio::test]
async fn compaction_bounds_the_store_and_a_copy_left_behind_jumps_to_a_snapshot() {
    let mut plane = Plane::start(
        1,
        options(&[
            "--state-snapshot-every",
            "20",
            "--state-retention-min-age",
            "1s",
        ]),
    )
    .await;
    let master = plane.wait_for_master(DEADLINE).await;
    let hot = plane.add("hot", &[]).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await;
    client
        .put(put("first", "{}", "", None))
        .await
        .expect("first write");
    let mut reader = entities(&plane.nodes[hot].grpc_uri()).await;
    eventually(DEADLINE, "the hot standby to read the first write", || {
        let mut reader = reader.clone();
        async move { reader.get(pb::GetRequest { id: "first".into() }).await.ok() }
    })
    .await;
    plane.nodes[hot].sigstop();
    let log_dir = plane.store_dir().join("state/log");
    let snapshot_dir = plane.store_dir().join("state/snapshots");
    let mut written = 0;
    let mut write_burst = async |count: usize| {
        for i in written..written + count {
            client
                .put(put(
                    &format!("c/{i:05}"),
                    &format!(r#"{{"i":{i}}}"#),
                    "",
                    None,
                ))
                .await
                .expect("write");
        }
        written += count;
    };
    write_burst(300).await;
    // Once the snapshots are older than the minimum age, the next snapshot's compaction leaves
    // only the log after the newest old snapshot and about one snapshot.
    let mut log_files = usize::MAX;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        write_burst(20).await;
        log_files = files_in(&log_dir);
        if log_files <= 45 {
            break;
        }
    }
    assert!(
        log_files <= 45,
        "{log_files} log entries after {written} writes"
    );
    assert!(
        files_in(&snapshot_dir) <= 3,
        "old snapshots are deleted: {} left",
        files_in(&snapshot_dir)
    );
    // The paused copy's next entry is gone: it loads a newer snapshot and catches up.
    plane.nodes[hot].sigcont();
    let last = format!("c/{:05}", written - 1);
    let read = eventually(DEADLINE, "the paused copy to catch up", || {
        let mut reader = reader.clone();
        let last = last.clone();
        async move {
            let read = reader.get(pb::GetRequest { id: last }).await.ok()?;
            Some(read.into_inner())
        }
    })
    .await;
    assert_eq!(read.entity.unwrap().version, 1);
    assert!(
        plane.nodes[hot]
            .log_text()
            .contains("loaded a newer snapshot"),
        "the copy jumped over the compacted log"
    );
    let listed = reader
        .list(pb::ListRequest {
            prefix: "c/".into(),
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entities.len(), written);
    // A node started now loads the compacted state whole.
    let late = plane.add("late", &[]).await;
    let mut late_reader = entities(&plane.nodes[late].grpc_uri()).await;
    let count = eventually(DEADLINE, "the new copy to load", || {
        let mut late_reader = late_reader.clone();
        async move {
            let listed = late_reader
                .list(pb::ListRequest {
                    prefix: "c/".into(),
                    page_size: 10_000,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (listed.entities.len() == written).then_some(listed.entities.len())
        }
    })
    .await;
    assert_eq!(count, written);
    late_reader
        .get(pb::GetRequest { id: "first".into() })
        .await
        .expect("the first write survives compaction");
}

#[tokio::test]
async fn a_watch_resumes_from_a_seq_and_a_forgotten_position_is_out_of_range() {
    let mut plane = Plane::start(1, options(&["--state-snapshot-every", "5"])).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let answer = client
            .put(put(&format!("w/{i}"), &format!(r#"{{"i":{i}}}"#), "", None))
            .await
            .unwrap()
            .into_inner();
        seqs.push(answer.seq);
    }
    // gRPC: from the seq of w/5, the kept changes w/5..w/9 come first, then new ones.
    let mut stream = client
        .watch(pb::WatchRequest {
            prefix: "w/".into(),
            start_seq: Some(seqs[5]),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 5..10 {
        let change = stream.message().await.unwrap().expect("a kept change");
        seen.push((change.id, change.seq));
    }
    let expected: Vec<_> = (5..10).map(|i| (format!("w/{i}"), seqs[i])).collect();
    assert_eq!(seen, expected);
    client.put(put("w/10", "{}", "", None)).await.unwrap();
    let live = stream.message().await.unwrap().expect("a live change");
    assert_eq!(live.id, "w/10");
    // SSE: Last-Event-ID resumes at that seq; each event carries its seq as its id.
    let http = reqwest::Client::new();
    let response = http
        .get(plane.nodes[master].url("/v1/entity-events?prefix=w/"))
        .header("Last-Event-ID", seqs[8].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut text = String::new();
    while !text.contains("\"w/10\"") {
        let chunk = tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .expect("SSE events")
            .unwrap()
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&format!("id: {}\n", seqs[8])), "{text}");
    assert!(text.contains("\"w/8\"") && text.contains("\"w/9\""));
    assert!(!text.contains("\"w/7\""), "{text}");
    // A copy that loaded a snapshot keeps no changes before it: OUT_OF_RANGE / 410.
    let hot = plane.add("hot", &[]).await;
    let mut reader = entities(&plane.nodes[hot].grpc_uri()).await;
    eventually(DEADLINE, "the hot standby to load", || {
        let mut reader = reader.clone();
        async move { reader.get(pb::GetRequest { id: "w/10".into() }).await.ok() }
    })
    .await;
    let refused = reader
        .watch(pb::WatchRequest {
            prefix: String::new(),
            start_seq: Some(1),
        })
        .await
        .expect_err("position 1 is before the snapshot the copy loaded");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    let gone = http
        .get(plane.nodes[hot].url("/v1/entity-events"))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let bad = http
        .get(plane.nodes[hot].url("/v1/entity-events?startSeq=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_damaged_entry_is_reported_with_its_key_and_a_snapshot_past_it_recovers() {
    let mut plane = Plane::start(1, options(&["--state-snapshot-every", "30"])).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let hot = plane.add("hot", &[]).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await;
    client.put(put("d/first", "{}", "", None)).await.unwrap();
    let mut reader = entities(&plane.nodes[hot].grpc_uri()).await;
    eventually(DEADLINE, "the hot standby to read", || {
        let mut reader = reader.clone();
        async move {
            reader
                .get(pb::GetRequest {
                    id: "d/first".into(),
                })
                .await
                .ok()
        }
    })
    .await;
    plane.nodes[hot].sigstop();
    let mut damaged_seq = 0;
    for i in 0..3 {
        let answer = client
            .put(put(&format!("d/{i}"), "{}", "", None))
            .await
            .unwrap()
            .into_inner();
        if i == 1 {
            damaged_seq = answer.seq;
        }
    }
    let name = format!("{damaged_seq:020}.json");
    std::fs::write(plane.store_dir().join("state/log").join(&name), b"{oops").unwrap();
    plane.nodes[hot].sigcont();
    let http = reqwest::Client::new();
    let health_url = plane.nodes[hot].url("/v1/server/ha/health?standbyok=true");
    let health: serde_json::Value = eventually(DEADLINE, "the damage to be reported", || {
        let http = http.clone();
        let url = health_url.clone();
        async move {
            let body: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
            body.get("stateDamage").is_some().then_some(body)
        }
    })
    .await;
    assert_eq!(health["state"], "HOT_STANDBY");
    assert!(
        health["stateDamage"].as_str().unwrap().contains(&name),
        "{health}"
    );
    let metrics = http
        .get(plane.nodes[hot].url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("haplane_state_damaged 1"), "{metrics}");
    assert!(plane.nodes[hot].log_text().contains(&name));
    // The copy is stuck before the damage and says it is behind.
    let stuck = reader
        .get(pb::GetRequest {
            id: "d/first".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stuck.as_of_seq < damaged_seq);
    assert!(
        reader
            .get(pb::GetRequest { id: "d/2".into() })
            .await
            .is_err()
    );
    // The master still holds the damaged entry's write; its next snapshot covers it, and the
    // copy loads that snapshot: nothing acknowledged is lost.
    for i in 3..40 {
        client
            .put(put(&format!("d/{i}"), "{}", "", None))
            .await
            .unwrap();
    }
    eventually(DEADLINE, "the damage to clear", || {
        let http = http.clone();
        let url = health_url.clone();
        async move {
            let body: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
            (body == "HOT_STANDBY").then_some(())
        }
    })
    .await;
    for i in 0..40 {
        eventually(DEADLINE, "every write on the recovered copy", || {
            let mut reader = reader.clone();
            async move {
                reader
                    .get(pb::GetRequest {
                        id: format!("d/{i}"),
                    })
                    .await
                    .ok()
            }
        })
        .await;
    }
}

#[tokio::test]
async fn an_entry_no_node_holds_stops_writes_with_its_key_until_an_operator_voids_it() {
    let (mut plane, seqs) = three_writes_then_stopped("v").await;
    // v/1's entry is damaged while no node runs: nobody holds it and no snapshot covers it.
    let name = format!("{:020}.json", seqs[1]);
    let entry = plane.store_dir().join("state/log").join(&name);
    std::fs::write(&entry, b"{oops").unwrap();
    let restarted = plane.add("again", &[]).await;
    plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[restarted].grpc_uri()).await;
    let refused = refused_for_data_loss(&client, "v/after").await;
    assert!(refused.message().contains(&name), "{refused:?}");
    // The operator's command: refused without --yes and for a readable entry, then done.
    let void = |seq: u64, yes: bool| void_entry(&plane, seq, yes);
    assert!(!void(seqs[1], false).status.success());
    let readable = void(seqs[2], true);
    assert!(!readable.status.success());
    assert!(String::from_utf8_lossy(&readable.stderr).contains("readable"));
    let done = void(seqs[1], true);
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).contains("lost"));
    let kept = plane.store_dir().join("state/damaged").join(&name);
    assert_eq!(std::fs::read(kept).unwrap(), b"{oops");
    // Writes resume; the voided entry's write is gone, the others are there.
    eventually(DEADLINE, "writes to resume", || {
        let mut client = client.clone();
        async move { client.put(put("v/after", "{}", "", None)).await.ok() }
    })
    .await;
    for (id, present) in [
        ("v/0", true),
        ("v/1", false),
        ("v/2", true),
        ("v/after", true),
    ] {
        let read = client.get(pb::GetRequest { id: id.into() }).await;
        assert_eq!(read.is_ok(), present, "{id}: {read:?}");
    }
    let health: serde_json::Value =
        reqwest::get(plane.nodes[restarted].url("/v1/server/ha/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(health, "MASTER");
}

#[tokio::test]
async fn the_sdk_reads_from_a_fresh_hot_copy_and_its_entity_watch_rides_a_failover() {
    use haplane_sdk::{Client, ConnectOptions};
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    let first = plane.wait_for_master(DEADLINE).await;
    let hot = plane.add("hot", &[]).await;
    let options = ConnectOptions::default()
        .with_failover_timeout(DEADLINE)
        .with_connect_timeout(Duration::from_millis(500))
        .with_keep_alive(Duration::from_millis(300));
    // Both nodes as seeds: the pushed view lists members only as of the last change of master.
    let seeds = [plane.nodes[first].grpc_uri(), plane.nodes[hot].grpc_uri()];
    let client = Client::connect(seeds, options).await.unwrap();
    // From the start of the log: the watch opens when first polled, after these writes.
    let mut changes = Box::pin(client.watch_entities("s/", Some(1)));
    client
        .put_entity("s/0", serde_json::json!({"n": 0}), None)
        .await
        .unwrap();
    // A generous lag bound is met by the hot copy once it has the entity; a zero bound is not
    // (a copy's lag is the time since it last reached the master's position), so the master
    // answers.
    let hot_id = plane.nodes[hot].id.clone();
    let from_copy = eventually(DEADLINE, "a read from the hot copy", || async {
        let read = client
            .get_entity_within("s/0", Duration::from_secs(10))
            .await
            .ok()?;
        (read.node_id == hot_id).then_some(read)
    })
    .await;
    assert_eq!(from_copy.entity.version, 1);
    assert!(from_copy.lag <= Duration::from_secs(10));
    let from_master = client
        .get_entity_within("s/0", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(from_master.node_id, plane.nodes[first].id);
    assert_eq!(from_master.lag, Duration::ZERO);
    for i in 1..5 {
        client
            .put_entity(&format!("s/{i}"), serde_json::json!({"n": i}), None)
            .await
            .unwrap();
    }
    // The hot copy must hold every change before the master dies, or they would be lost to it.
    eventually(DEADLINE, "the hot copy to have s/4", || async {
        client
            .get_entity_within("s/4", Duration::from_secs(10))
            .await
            .ok()
            .filter(|read| read.node_id == hot_id)
    })
    .await;
    let mut seen = Vec::new();
    let mut next_change = async |seen: &mut Vec<String>| {
        let change = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut changes))
            .await
            .expect("a change within the deadline")
            .expect("the watch goes on")
            .expect("no error");
        // Changes at the resume position come again: apply by version.
        if !seen.contains(&change.id) {
            seen.push(change.id);
        }
    };
    while seen.len() < 5 {
        next_change(&mut seen).await;
    }
    plane.nodes[first].kill9().await;
    let new_master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(new_master, hot);
    client
        .put_entity("s/5", serde_json::json!({"n": 5}), None)
        .await
        .unwrap();
    while seen.len() < 6 {
        next_change(&mut seen).await;
    }
    let expected: Vec<String> = (0..6).map(|i| format!("s/{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_new_master_never_fences_into_a_missing_entry_with_later_ones_after_it() {
    let (mut plane, seqs) = three_writes_then_stopped("m").await;
    // m/1's entry disappears; m/2's is still there after it.
    let name = format!("{:020}.json", seqs[1]);
    std::fs::remove_file(plane.store_dir().join("state/log").join(&name)).unwrap();
    let restarted = plane.add("again", &[]).await;
    plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[restarted].grpc_uri()).await;
    // The new master reports the gap instead of fencing into it (which would void m/2).
    let refused = refused_for_data_loss(&client, "m/after").await;
    assert!(
        refused
            .message()
            .contains(&format!("log entry {} is missing", seqs[1])),
        "{refused:?}"
    );
    let slot = plane.store_dir().join("state/log").join(&name);
    assert!(!slot.exists(), "nothing was written into the gap");
    // The operator voids the missing slot: m/2 survives, m/1 is the documented loss.
    let done = void_entry(&plane, seqs[1], true);
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).contains("was missing"));
    eventually(DEADLINE, "writes to resume", || {
        let mut client = client.clone();
        async move { client.put(put("m/after", "{}", "", None)).await.ok() }
    })
    .await;
    for (id, present) in [("m/0", true), ("m/1", false), ("m/2", true)] {
        let read = client.get(pb::GetRequest { id: id.into() }).await;
        assert_eq!(read.is_ok(), present, "{id}: {read:?}");
    }
}

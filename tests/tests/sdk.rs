//! The SDK against real nodes: the master view is pushed through crash and graceful failovers
//! without polling, `master_channel` follows the master, and entity writes survive a crash once.

use haplane_sdk::{Client, ConnectOptions, NodeState};
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::{Plane, PlaneOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn options() -> ConnectOptions {
    ConnectOptions::default()
        .with_failover_timeout(DEADLINE)
        .with_connect_timeout(Duration::from_millis(500))
        .with_keep_alive(Duration::from_millis(300))
}

/// Waits for a pushed view naming a master other than `old`.
async fn next_master(client: &Client, old: &str) -> haplane_sdk::MasterView {
    let mut views = client.watch_master();
    let view = tokio::time::timeout(
        DEADLINE,
        views.wait_for(|view| {
            view.as_ref()
                .is_some_and(|v| v.master.is_some() && v.master_id() != old)
        }),
    )
    .await
    .expect("a new master is pushed")
    .expect("client open");
    view.clone().expect("a view")
}

#[tokio::test]
async fn a_client_of_the_master_alone_is_told_of_the_new_master_without_polling() {
    for graceful in [false, true] {
        let mut plane = Plane::start(3, PlaneOptions::fast()).await;
        let master = plane.wait_for_master(DEADLINE).await;
        let client = Client::connect([plane.nodes[master].grpc_uri()], options())
            .await
            .unwrap();
        let first = client.wait_for_master(DEADLINE).await.unwrap();
        assert_eq!(first.master_id(), plane.nodes[master].id);
        assert_eq!(first.members.len(), 3, "members learnt from the stream");
        let before = client.stats();
        let stopped = Instant::now();
        if graceful {
            plane.nodes[master].sigterm();
        } else {
            plane.nodes[master].kill9().await;
        }
        let view = next_master(&client, first.master_id()).await;
        println!(
            "graceful={graceful}: told of {} after {:?}",
            view.master_id(),
            stopped.elapsed()
        );
        assert_eq!(view.epoch, first.epoch + 1);
        let after = client.stats();
        assert_eq!(
            after.unary_calls, before.unary_calls,
            "no unary call was made to find the master"
        );
        assert!(
            after.watch_streams > before.watch_streams,
            "the view came from a new stream"
        );
        let state = client.get_state().await.unwrap();
        assert_eq!(
            (state.node_id, state.state),
            (view.master_id().to_owned(), NodeState::Master)
        );
    }
}

#[tokio::test]
async fn master_channel_calls_follow_the_master_through_a_failover() {
    // Steady timings: every answer must come from a master, so the new master must keep its
    // lease on a loaded machine (with a 750 ms lease one could lapse and rightly answer FAILED).
    let mut plane = Plane::start(3, PlaneOptions::steady()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let client = Client::connect([plane.nodes[(master + 1) % 3].grpc_uri()], options())
        .await
        .unwrap();
    let mut ha = HaServiceClient::new(client.master_channel());
    let old_id = plane.nodes[master].id.clone();
    let mut answers: Vec<(Instant, Result<pb::GetStateResponse, tonic::Status>)> = Vec::new();
    let killed_at = Instant::now() + Duration::from_millis(500);
    let mut killed = false;
    let mut pushed_at = None;
    // Calls every 10 ms until two seconds after the push.
    let give_up = Instant::now() + DEADLINE;
    while pushed_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(2)) {
        assert!(
            Instant::now() < give_up,
            "the new master was pushed within {DEADLINE:?}"
        );
        if !killed && Instant::now() >= killed_at {
            plane.nodes[master].kill9().await;
            killed = true;
        }
        if killed && pushed_at.is_none() && client.master().is_some_and(|v| v.master_id() != old_id)
        {
            pushed_at = Some(Instant::now());
        }
        let answer = ha
            .get_state(pb::GetStateRequest {})
            .await
            .map(tonic::Response::into_inner);
        answers.push((Instant::now(), answer));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pushed_at = pushed_at.expect("the loop ends only after the push");
    let mut failures = 0;
    for (at, answer) in &answers {
        match answer {
            Ok(state) => {
                assert_eq!(
                    state.state,
                    pb::NodeState::Master as i32,
                    "a call reached a non-master: {state:?}"
                );
                if *at > pushed_at {
                    assert_ne!(state.node_id, old_id);
                }
            }
            Err(status) => {
                failures += 1;
                assert!(!status.message().is_empty(), "a clear error: {status:?}");
                assert!(
                    *at <= pushed_at + Duration::from_millis(500),
                    "failed after the push: {status}"
                );
            }
        }
    }
    println!(
        "master_channel: {} calls, {failures} failed around the crash",
        answers.len()
    );
}

#[tokio::test]
async fn sdk_entity_writes_survive_a_crash_failover_exactly_once() {
    let mut plane = Plane::start(3, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let seeds: Vec<String> = plane.nodes.iter().map(|n| n.grpc_uri()).collect();
    let client = Client::connect(seeds, options()).await.unwrap();
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..150 {
                let id = format!("sdk/{i:04}");
                client
                    .put_entity(&id, serde_json::json!({ "i": i }), None)
                    .await
                    .expect("write acknowledged");
                acknowledged.push(id);
            }
            acknowledged
        })
    };
    haplane_tests::eventually(DEADLINE, "some writes", || async {
        (client.list_entities("sdk/").await.ok()?.len() >= 30).then_some(())
    })
    .await;
    plane.nodes[master].kill9().await;
    let acknowledged = writer.await.unwrap();
    let stored: BTreeMap<String, u64> = client
        .list_entities("sdk/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.version))
        .collect();
    for id in &acknowledged {
        assert_eq!(stored.get(id), Some(&1), "{id} lost or applied twice");
    }
    assert_eq!(stored.len(), acknowledged.len());
}

#[tokio::test]
async fn the_entity_writes_example_creates_updates_by_version_and_deletes() {
    // Built before the plane starts, so the build does not load the machine under it.
    let example = haplane_tests::sdk_example_binary("entity_writes");
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let uris: Vec<String> = plane.nodes.iter().map(|node| node.grpc_uri()).collect();
    let run = || tokio::process::Command::new(&example).args(&uris).output();
    let out = run().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "created examples/counter: version",
        "count 3: version",
        "final count 3",
        "deleted examples/counter at log position",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from {stdout}");
    }
    let client = Client::connect([plane.nodes[master].grpc_uri()], options())
        .await
        .unwrap();
    let gone = client.get_entity("examples/counter").await.unwrap_err();
    assert!(
        matches!(
            gone,
            haplane_sdk::Error::Rejected {
                code: tonic::Code::NotFound,
                ..
            }
        ),
        "{gone:?}"
    );
}

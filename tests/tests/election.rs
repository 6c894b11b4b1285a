//! End-to-end election behaviour with real `haplane` processes on a directory store: who wins,
//! crash and graceful failover, start-up modes, operator hand-over, pauses, corrupt records.

use haplane_tests::haplane::pb::{self, NodeState};
use haplane_tests::{Plane, PlaneOptions, allow_non_master, eventually};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn args(pairs: &[&str]) -> Vec<String> {
    pairs.iter().map(|s| s.to_string()).collect()
}

fn is(state: &pb::GetStateResponse, expected: NodeState) -> bool {
    state.state == expected as i32
}

#[tokio::test]
async fn three_auto_nodes_elect_the_highest_priority_and_the_rest_are_hot_standby() {
    let mut plane = Plane::new(PlaneOptions::fast());
    plane
        .start_nodes(vec![
            ("n1".into(), args(&["--priority", "0"])),
            ("n2".into(), args(&["--priority", "5"])),
            ("n3".into(), args(&["--priority", "-1"])),
        ])
        .await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "n2");
    let states = plane.states().await;
    assert_eq!(states.len(), 3);
    for (index, state) in states {
        if index != master {
            assert!(is(&state, NodeState::HotStandby), "{state:?}");
            assert_eq!(state.master_id, "n2");
        }
    }
}

#[tokio::test]
async fn equal_priority_elects_the_lowest_node_id() {
    let mut plane = Plane::new(PlaneOptions::fast());
    plane
        .start_nodes(vec![
            ("c-node".into(), vec![]),
            ("a-node".into(), vec![]),
            ("b-node".into(), vec![]),
        ])
        .await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "a-node");
}

#[tokio::test]
async fn standby_takes_over_after_master_is_killed_and_reports_it_dead() {
    let mut plane = Plane::start(3, PlaneOptions::fast()).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let old_id = plane.nodes[old].id.clone();
    let old_epoch = plane.nodes[old].state().await.epoch;
    let killed_at = Instant::now();
    plane.nodes[old].kill9().await;
    let new = plane.wait_for_new_master(old, DEADLINE).await;
    let took = killed_at.elapsed();
    let state = plane.nodes[new].state().await;
    assert_eq!(state.epoch, old_epoch + 1);
    println!(
        "crash failover observed after {took:?} (bound timeout + 2 polls = {:?})",
        plane.options.failover_bound()
    );
    let listing = plane.nodes[new]
        .client()
        .await
        .list_states(pb::ListStatesRequest {})
        .await
        .unwrap()
        .into_inner();
    let dead = listing.nodes.iter().find(|n| n.node_id == old_id).unwrap();
    assert!(!dead.live, "{dead:?}");
    assert_eq!(
        dead.status,
        NodeState::Master as i32,
        "stored status is kept"
    );
    assert!(dead.last_seen_age_ms >= 1000, "{dead:?}");
}

#[tokio::test]
async fn sigterm_of_the_master_hands_over_without_waiting_for_the_timeout() {
    let options = PlaneOptions {
        heartbeat_timeout: Duration::from_secs(30),
        ..PlaneOptions::fast()
    };
    let mut plane = Plane::start(3, options).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let stopped_at = Instant::now();
    plane.nodes[old].sigterm();
    let new = plane.wait_for_new_master(old, Duration::from_secs(3)).await;
    println!("graceful hand-over took {:?}", stopped_at.elapsed());
    assert_ne!(new, old);
    assert_eq!(plane.nodes[old].wait_exit(DEADLINE).await, Some(0));
    let listing = plane.nodes[new]
        .client()
        .await
        .list_states(pb::ListStatesRequest {})
        .await
        .unwrap()
        .into_inner();
    let old_id = &plane.nodes[old].id;
    let record = listing.nodes.iter().find(|n| &n.node_id == old_id).unwrap();
    assert_eq!(record.status, NodeState::Terminated as i32);
}

#[tokio::test]
async fn master_mode_refuses_to_start_beside_a_live_master() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    plane.wait_for_master(DEADLINE).await;
    let (code, output) = plane
        .launch("m", &args(&["--ha-mode", "master"]))
        .await
        .exited();
    assert_ne!(code, Some(0));
    assert!(output.contains("live master"), "{output}");
}

#[tokio::test]
async fn a_second_process_under_a_live_nodes_id_refuses_to_start() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let id = plane.nodes[master].id.clone();
    let epoch = plane.nodes[master].state().await.epoch;
    // Two processes under one id would each take the other's claims for their own.
    for mode in [&[][..], &["--ha-mode", "master"][..]] {
        let (code, output) = plane.launch(&id, &args(mode)).await.exited();
        assert_ne!(code, Some(0), "{mode:?}");
        assert!(output.contains("is in use"), "{mode:?}: {output}");
    }
    let state = plane.nodes[master].state().await;
    assert!(is(&state, NodeState::Master));
    assert_eq!(state.epoch, epoch, "no claim was made under the shared id");
}

#[tokio::test]
async fn master_mode_starts_after_a_crashed_master() {
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    plane.wait_for_master(DEADLINE).await;
    plane.nodes[0].kill9().await;
    let index = plane.add("m", &args(&["--ha-mode", "master"])).await;
    assert!(is(&plane.nodes[index].state().await, NodeState::Master));
}

#[tokio::test]
async fn standby_modes_refuse_to_start_without_a_live_master() {
    let plane = Plane::new(PlaneOptions::fast());
    for mode in ["standby", "hot_standby", "HOT-STANDBY"] {
        let (code, output) = plane
            .launch("s", &args(&["--ha-mode", mode]))
            .await
            .exited();
        assert_ne!(code, Some(0), "{mode}");
        assert!(output.contains("no live master"), "{mode}: {output}");
    }
}

#[tokio::test]
async fn standby_mode_follows_a_master_and_hot_backup_is_never_promoted() {
    let mut plane = Plane::new(PlaneOptions::fast());
    let backup = plane
        .add(
            "backup",
            &args(&["--ha-mode", "hot-backup", "--priority", "100"]),
        )
        .await;
    assert!(is(&plane.nodes[backup].state().await, NodeState::HotBackup));
    plane.add("first", &[]).await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "first");
    let standby = plane.add("standby", &args(&["--ha-mode", "standby"])).await;
    assert!(is(&plane.nodes[standby].state().await, NodeState::Standby));

    plane.nodes[master].kill9().await;
    let new = plane.wait_for_new_master(master, DEADLINE).await;
    assert_eq!(plane.nodes[new].id, "standby");
    plane.nodes[new].kill9().await;
    // With only the backup left, nobody may become master, for several timeouts.
    let watch_until = Instant::now() + plane.options.heartbeat_timeout * 4;
    while Instant::now() < watch_until {
        let state = plane.nodes[backup].state().await;
        assert!(is(&state, NodeState::HotBackup), "{state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn promoting_a_standby_takes_over_and_the_old_master_steps_down() {
    let plane = Plane::start(3, PlaneOptions::fast()).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let old_epoch = plane.nodes[old].state().await.epoch;
    let target = (old + 1) % 3;
    let response = plane.nodes[target]
        .client()
        .await
        .set_state(allow_non_master(pb::SetStateRequest {
            mode: pb::HaMode::Master as i32,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.previous_state, NodeState::HotStandby as i32);
    let new = plane.wait_for_new_master(old, DEADLINE).await;
    assert_eq!(new, target);
    let state = plane.nodes[old].state().await;
    assert!(is(&state, NodeState::HotStandby), "{state:?}");
    assert_eq!(state.epoch, old_epoch + 1);
}

/// Promotions in quick succession: each one lands, even on a master deposed a moment ago that
/// has not yet seen the newer claim (it used to answer "already master" and do nothing).
#[tokio::test]
async fn back_to_back_promotions_each_take_effect() {
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let first = plane.wait_for_master(DEADLINE).await;
    let mut clients = [plane.nodes[0].client().await, plane.nodes[1].client().await];
    let mut target = 1 - first;
    for round in 0..40 {
        // No pause between rounds: the node promoted next was deposed by the previous round.
        let response = clients[target]
            .set_state(allow_non_master(pb::SetStateRequest {
                mode: pb::HaMode::Master as i32,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(
            response.previous_state,
            NodeState::Master as i32,
            "round {round}: node {target} answered as if it were still master"
        );
        target = 1 - target;
    }
    let last = 1 - target;
    let state = plane.nodes[last].state().await;
    assert!(is(&state, NodeState::Master), "{state:?}");
}

#[tokio::test]
async fn a_demoted_master_hands_over_and_does_not_win_again() {
    // Steady timings: `mid` must hold its lease through the whole watch below.
    let mut plane = Plane::new(PlaneOptions::steady());
    plane
        .start_nodes(vec![
            ("top".into(), args(&["--priority", "10"])),
            ("mid".into(), args(&["--priority", "5"])),
            ("low".into(), vec![]),
        ])
        .await;
    let top = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[top].id, "top");
    let previous = plane.nodes[top]
        .client()
        .await
        .set_state(pb::SetStateRequest {
            mode: pb::HaMode::HotStandby as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.previous_state, NodeState::Master as i32);
    let new = plane.wait_for_new_master(top, DEADLINE).await;
    assert_eq!(plane.nodes[new].id, "mid");
    // Over several timeouts the demoted node stays a standby.
    let until = Instant::now() + plane.options.heartbeat_timeout * 3;
    while Instant::now() < until {
        assert_eq!(
            plane
                .agreed_master()
                .await
                .map(|i| plane.nodes[i].id.clone()),
            Some("mid".into())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn set_priority_then_demote_elects_the_prioritised_node() {
    let plane = Plane::start(3, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "n1");
    let previous = plane.nodes[2]
        .client()
        .await
        .set_priority(allow_non_master(pb::SetPriorityRequest { priority: 50 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.previous_priority, 0);
    plane.nodes[master]
        .client()
        .await
        .set_state(pb::SetStateRequest {
            mode: pb::HaMode::Standby as i32,
        })
        .await
        .unwrap();
    let new = plane.wait_for_new_master(master, DEADLINE).await;
    assert_eq!(plane.nodes[new].id, "n3");
}

/// Polls every node and records which node reported MASTER for each epoch.
async fn record_masters(
    plane: &Plane,
    seen: &mut BTreeMap<u64, std::collections::BTreeSet<String>>,
) {
    for (_, state) in plane.states().await {
        if is(&state, NodeState::Master) {
            seen.entry(state.epoch).or_default().insert(state.node_id);
        }
    }
}

#[tokio::test]
async fn a_paused_master_never_shares_an_epoch_and_refuses_master_calls_after_resuming() {
    let plane = Plane::start(3, PlaneOptions::fast()).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let mut seen = BTreeMap::new();
    record_masters(&plane, &mut seen).await;
    plane.nodes[old].sigstop();
    let pause_until = Instant::now() + plane.options.heartbeat_timeout * 3;
    while Instant::now() < pause_until {
        record_masters(&plane, &mut seen).await;
    }
    plane.nodes[old].sigcont();
    // The resumed node must not act as master, even for its first request.
    let refused = plane.nodes[old]
        .client()
        .await
        .remove_terminated(pb::RemoveTerminatedRequest { node_id: None })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    let watch_until = Instant::now() + plane.options.heartbeat_timeout * 2;
    while Instant::now() < watch_until {
        record_masters(&plane, &mut seen).await;
    }
    let new = plane.wait_for_master(DEADLINE).await;
    assert_ne!(new, old);
    for (epoch, nodes) in &seen {
        assert_eq!(nodes.len(), 1, "epoch {epoch} had masters {nodes:?}");
    }
    assert!(
        seen.len() >= 2,
        "a new epoch was claimed during the pause: {seen:?}"
    );
    let state = plane.nodes[old].state().await;
    assert!(!is(&state, NodeState::Master), "{state:?}");
}

#[tokio::test]
async fn a_corrupt_node_record_is_skipped_and_the_plane_keeps_working() {
    let mut plane = Plane::new(PlaneOptions::fast());
    let nodes_dir = plane.store_dir().join("nodes");
    std::fs::create_dir_all(&nodes_dir).unwrap();
    std::fs::write(nodes_dir.join("broken.json"), b"{not json").unwrap();
    std::fs::write(
        nodes_dir.join("liar.json"),
        br#"{"node_id":"someone-else"}"#,
    )
    .unwrap();
    plane
        .start_nodes(vec![("n1".into(), vec![]), ("n2".into(), vec![])])
        .await;
    let master = plane.wait_for_master(DEADLINE).await;
    let listing = plane.nodes[master]
        .client()
        .await
        .list_states(pb::ListStatesRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listing.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(plane.nodes[master].log_text().contains("broken.json"));
    let metrics: serde_json::Value = reqwest::get(plane.nodes[master].url("/v1/server/ha/metrics"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metrics["skippedRecords"].as_u64().unwrap() >= 1,
        "{metrics}"
    );
    // And the plane still fails over.
    plane.nodes[master].kill9().await;
    plane.wait_for_new_master(master, DEADLINE).await;
}

#[tokio::test]
async fn a_restarted_node_with_the_same_id_rejoins() {
    let mut plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let other = 1 - master;
    let other_id = plane.nodes[other].id.clone();
    plane.nodes[other].kill9().await;
    plane.restart(other).await;
    let client_node = &plane.nodes[master];
    eventually(DEADLINE, "the restarted node live again", || async {
        let listing = client_node
            .client()
            .await
            .list_states(pb::ListStatesRequest {})
            .await
            .ok()?
            .into_inner();
        let row = listing.nodes.into_iter().find(|n| n.node_id == other_id)?;
        (row.live && row.status == NodeState::HotStandby as i32).then_some(())
    })
    .await;
    assert_eq!(plane.wait_for_master(DEADLINE).await, master);
    // The restarted master can also come back and rejoin as a standby after a failover.
    let master_id = plane.nodes[master].id.clone();
    plane.nodes[master].kill9().await;
    plane.wait_for_new_master(master, DEADLINE).await;
    plane.restart(master).await;
    let state = eventually(DEADLINE, "old master back as standby", || async {
        let state = plane.nodes[master].try_state().await?;
        is(&state, NodeState::HotStandby).then_some(state)
    })
    .await;
    assert_eq!(state.node_id, master_id);
    assert_ne!(state.master_id, master_id);
}

//! The SDK follower against real nodes with per-node store faults: a client seeded with one
//! standby only keeps, or finds again, the real master when that standby loses its store for
//! longer than the heartbeat timeout (the standby then cannot confirm the master and may say "no
//! master"), and follows a crash failover of the master to the new one.

use haplane_sdk::{Client, ConnectOptions, MasterView};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
/// Added to the timeout + 2 polls bound: a busy two-core machine runs three nodes and the build.
const SLACK: Duration = Duration::from_secs(3);

fn plane_options() -> PlaneOptions {
    PlaneOptions {
        per_node_faults: true,
        ..PlaneOptions::fast()
    }
}

/// Client options for `plane`: its poll period, short connect and keep-alive timeouts.
fn options(plane: &Plane) -> ConnectOptions {
    ConnectOptions::default()
        .with_failover_timeout(DEADLINE)
        .with_connect_timeout(Duration::from_millis(500))
        .with_keep_alive(Duration::from_millis(300))
        .with_poll_period(plane.options.poll_period)
}

/// `(master id, epoch)` of the client's current view, if it names a master.
fn named(client: &Client) -> Option<(String, u64)> {
    client
        .master()
        .map(|view| (view.master_id().to_owned(), view.epoch))
}

/// Records every view the client publishes from now on.
fn record_views(client: &Client) -> Arc<Mutex<Vec<MasterView>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut views = client.watch_master();
    views.mark_unchanged();
    let sink = seen.clone();
    tokio::spawn(async move {
        while views.changed().await.is_ok() {
            if let Some(view) = views.borrow_and_update().clone() {
                sink.lock().unwrap().push(view);
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_standby_that_loses_its_store_keeps_the_master() {
    // Steady timings: "the master never changed" needs its lease to hold through the outage.
    let steady = PlaneOptions {
        per_node_faults: true,
        ..PlaneOptions::steady()
    };
    let plane = Plane::start(3, steady).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let master_id = plane.nodes[master].id.clone();
    let epoch = plane.nodes[master].state().await.epoch;
    let standby = (master + 1) % 3;
    let standby_id = plane.nodes[standby].id.clone();
    let client = Client::connect([plane.nodes[standby].grpc_uri()], options(&plane))
        .await
        .unwrap();
    let expected = (master_id.clone(), epoch);
    eventually(DEADLINE, "the client to name the master", || async {
        (named(&client).as_ref() == Some(&expected)).then_some(())
    })
    .await;
    let seen = record_views(&client);

    // Twice the heartbeat timeout without a store on the seeded standby only.
    plane.set_faults(&standby_id, "outage = true\n");
    let began = Instant::now();
    tokio::time::sleep(plane.options.heartbeat_timeout * 2).await;
    let during = plane.nodes[standby].try_state().await;
    plane.set_faults(&standby_id, "");
    let ended = Instant::now();
    println!(
        "outage of {standby_id}'s store for {:?}; near its end {standby_id} said master {:?}; \
         the client streamed {} times so far",
        ended - began,
        during.map(|state| state.master_id),
        client.stats().watch_streams,
    );

    let bound = plane.options.failover_bound() + SLACK;
    eventually(
        bound,
        "the client to name the real master again after the outage",
        || async { (named(&client).as_ref() == Some(&expected)).then_some(()) },
    )
    .await;
    println!(
        "named the master again {:?} after the outage",
        ended.elapsed()
    );

    let now_master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(
        (
            plane.nodes[now_master].id.clone(),
            plane.nodes[now_master].state().await.epoch
        ),
        expected,
        "the master never changed"
    );
    let seen = seen.lock().unwrap().clone();
    for view in &seen {
        assert_eq!(
            (view.master_id().to_owned(), view.epoch),
            expected,
            "the client published a view other than the unchanged master: {view:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_standby_follows_a_crash_failover() {
    let mut plane = Plane::start(3, plane_options()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let old_id = plane.nodes[master].id.clone();
    let old_epoch = plane.nodes[master].state().await.epoch;
    let standby = (master + 1) % 3;
    let client = Client::connect([plane.nodes[standby].grpc_uri()], options(&plane))
        .await
        .unwrap();
    let first = client.wait_for_master(DEADLINE).await.unwrap();
    assert_eq!(
        (first.master_id().to_owned(), first.epoch),
        (old_id.clone(), old_epoch)
    );

    plane.nodes[master].kill9().await;
    let killed = Instant::now();
    let (new_id, new_epoch) = eventually(
        plane.options.failover_bound() + SLACK,
        "the client to name a new master",
        || async { named(&client).filter(|(id, _)| *id != old_id) },
    )
    .await;
    println!(
        "told of {new_id} in epoch {new_epoch} {:?} after the kill",
        killed.elapsed()
    );
    assert!(new_epoch > old_epoch, "a new master claims a newer epoch");
    let agreed = plane.wait_for_new_master(master, DEADLINE).await;
    let state = plane.nodes[agreed].state().await;
    assert_eq!((state.node_id, state.epoch), (new_id.clone(), new_epoch));
    let asked = client.get_state().await.unwrap();
    assert_eq!(asked.node_id, new_id, "calls go to the new master");
}

/// A standby without its store keeps showing the master it last saw, so when that master crashes
/// the standby never pushes the change. A call that finds the master unreachable makes the client
/// ask the other members (client rule 5), and it moves to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_standby_without_its_store_finds_the_new_master_when_the_old_one_dies() {
    let mut plane = Plane::start(3, plane_options()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let old_id = plane.nodes[master].id.clone();
    let old_epoch = plane.nodes[master].state().await.epoch;
    let standby = (master + 1) % 3;
    let standby_id = plane.nodes[standby].id.clone();
    let client = Client::connect([plane.nodes[standby].grpc_uri()], options(&plane))
        .await
        .unwrap();
    let first = client.wait_for_master(DEADLINE).await.unwrap();
    assert_eq!(first.master_id(), old_id);

    plane.set_faults(&standby_id, "outage = true\n");
    plane.nodes[master].kill9().await;
    let killed = Instant::now();
    // The third node has its store: it sees the crash and becomes master, or names who did.
    let third = 3 - master - standby;
    let new_id = eventually(DEADLINE, "the third node to name a new master", || async {
        let state = plane.nodes[third].try_state().await?;
        (!state.master_id.is_empty() && state.master_id != old_id).then_some(state.master_id)
    })
    .await;
    let new_master = plane
        .nodes
        .iter()
        .position(|node| node.id == new_id)
        .unwrap();
    let new_state = plane.nodes[new_master].state().await;
    assert!(new_state.epoch > old_epoch);
    let stale = plane.nodes[standby].state().await;
    println!(
        "{standby_id} without its store shows master {:?} in epoch {}; {} is master of epoch {}",
        stale.master_id, stale.epoch, new_state.node_id, new_state.epoch
    );

    let asked = client.get_state().await.unwrap();
    println!(
        "the call reached {} {:?} after the kill",
        asked.node_id,
        killed.elapsed()
    );
    assert_eq!(
        (asked.node_id, asked.epoch),
        (new_state.node_id.clone(), new_state.epoch),
        "the call went to the new master"
    );
    assert_eq!(
        named(&client),
        Some((new_state.node_id, new_state.epoch)),
        "the client names the new master"
    );
    plane.set_faults(&standby_id, "");
}

//! Exclusion end to end (docs/behaviour.md §9): real nodes, asymmetric store faults, operator
//! switchovers, a wiped store; every node's GetState is sampled every 20 ms and the timed rule of
//! `history::check` must find no node answering MASTER for an older epoch to a request sent after
//! another node's MASTER answer for a newer epoch arrived.

use haplane_tests::haplane::pb;
use haplane_tests::history::{self, History};
use haplane_tests::sampler::Sampler;
use haplane_tests::{Plane, PlaneOptions, eventually, launch};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn targets(plane: &Plane) -> Vec<(String, String)> {
    plane
        .nodes
        .iter()
        .map(|node| (node.id.clone(), node.grpc_uri()))
        .collect()
}

/// Runs the timed checker over `samples`; panics with the details when it finds a violation.
fn assert_no_overlap(samples: Vec<history::Sample>) {
    let masters = samples
        .iter()
        .filter(|sample| sample.state == pb::NodeState::Master)
        .count();
    assert!(
        masters > 0,
        "the sampler never saw a master: nothing was checked"
    );
    let history = History {
        samples,
        ..History::default()
    };
    let verdict = history::check(&history, &[]);
    assert!(
        verdict.passed(),
        "{} overlaps (longest {:?}):\n{}",
        verdict.overlaps.len(),
        verdict.longest_overlap(),
        history::details(&history, &verdict).join("\n")
    );
}

/// The scenario a user measured as 4.5 s of two masters: the master's store calls turn slow
/// (1.5 s each, on that node alone), then an operator promotes a standby over REST with the
/// override header. The promoted node must ask the master to step down (or wait its lease out)
/// before it acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promoting_a_standby_while_the_master_is_slow_never_makes_two_masters() {
    let options = PlaneOptions {
        poll_period: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_secs(10),
        per_node_faults: true,
        ..PlaneOptions::fast()
    };
    let plane = Plane::start(3, options).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let old_epoch = plane.nodes[old].state().await.epoch;
    let target = (old + 1) % 3;
    let sampler = Sampler::start(targets(&plane));
    plane.set_faults(&plane.nodes[old].id, "latency_ms = 1500\n");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let response = reqwest::Client::new()
        .post(plane.nodes[target].url("/v1/server/ha/state"))
        .header("Brooklyn-Allow-Non-Master-Access", "true")
        .form(&[("mode", "MASTER")])
        .send()
        .await
        .expect("promote over REST");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
    let new = eventually(DEADLINE, "the promoted node acts as master", || async {
        let state = plane.nodes[target].try_state().await?;
        (state.state == pb::NodeState::Master as i32).then_some(state)
    })
    .await;
    assert!(new.epoch > old_epoch, "{new:?}");
    // Keep sampling through the old master's slow polls after the hand-over.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_no_overlap(sampler.finish().await);
}

/// The server half of the stranded-client report: a standby whose store is out for longer than
/// the timeout cannot confirm the master, but failed reads are not silence, so it keeps naming
/// the master it knows (it used to publish "no master", stranding the clients it served).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_whose_store_is_out_keeps_naming_the_master() {
    // Steady timings: "no failover" needs the master's lease to hold through the outage.
    let options = PlaneOptions {
        per_node_faults: true,
        ..PlaneOptions::steady()
    };
    let plane = Plane::start(3, options).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let master_id = plane.nodes[master].id.clone();
    let standby = (master + 1) % 3;
    let sampler = Sampler::start(vec![(
        plane.nodes[standby].id.clone(),
        plane.nodes[standby].grpc_uri(),
    )]);
    // Out for twice the heartbeat timeout.
    plane.set_faults(&plane.nodes[standby].id, "outage = true\n");
    tokio::time::sleep(plane.options.heartbeat_timeout * 2).await;
    plane.set_faults(&plane.nodes[standby].id, "");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = sampler.finish().await;
    assert!(samples.len() > 50, "{} samples", samples.len());
    let wrong: Vec<_> = samples
        .iter()
        .filter(|sample| sample.master_id != master_id)
        .collect();
    assert!(
        wrong.is_empty(),
        "the standby named {:?} instead of {master_id} in {} of {} answers",
        wrong.first(),
        wrong.len(),
        samples.len()
    );
    assert_eq!(plane.agreed_master().await, Some(master), "no failover");
}

/// One master's store calls fail (an outage on that node alone, longer than its lease): it stops
/// acting before anyone takes over, and the others elect a new master without overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_cut_off_from_the_store_is_replaced_without_overlap() {
    let options = PlaneOptions {
        per_node_faults: true,
        ..PlaneOptions::fast()
    };
    let plane = Plane::start(3, options).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let sampler = Sampler::start(targets(&plane));
    tokio::time::sleep(Duration::from_millis(500)).await;
    plane.set_faults(&plane.nodes[old].id, "outage = true\n");
    // The cut-off node cannot read the new claim, so the plane does not agree until it is back.
    eventually(DEADLINE, "another node acts as master", || async {
        for (index, node) in plane.nodes.iter().enumerate() {
            let state = node.try_state().await;
            if index != old && state.is_some_and(|s| s.state == pb::NodeState::Master as i32) {
                return Some(index);
            }
        }
        None
    })
    .await;
    plane.set_faults(&plane.nodes[old].id, "");
    plane.wait_for_new_master(old, DEADLINE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = plane.nodes[old].state().await;
    assert_ne!(state.state, pb::NodeState::Master as i32, "{state:?}");
    assert_no_overlap(sampler.finish().await);
}

/// The store is wiped under a running plane and a new node starts on it: the newcomer must not
/// claim beside the live master (whose record reappears with its epoch), and the master finds
/// the store replaced, steps down and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_store_never_gets_a_second_master_and_the_old_one_says_why_it_stopped() {
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let old_epoch = plane.nodes[old].state().await.epoch;
    let sampler = Sampler::start(targets(&plane));
    for entry in std::fs::read_dir(plane.store_dir()).expect("store dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("wipe");
        } else {
            std::fs::remove_file(&path).expect("wipe");
        }
    }
    let newcomer = plane.add("n2", &[]).await;
    let newcomer_sampler = Sampler::start(vec![(
        plane.nodes[newcomer].id.clone(),
        plane.nodes[newcomer].grpc_uri(),
    )]);
    let stopped = eventually(DEADLINE, "the old master stops acting", || async {
        let state = plane.nodes[old].try_state().await?;
        (state.state == pb::NodeState::Failed as i32).then_some(state)
    })
    .await;
    assert!(
        plane.nodes[old]
            .log_text()
            .contains("replaced or rolled back"),
        "{stopped:?}"
    );
    let new = eventually(DEADLINE, "the newcomer takes over", || async {
        let state = plane.nodes[newcomer].try_state().await?;
        (state.state == pb::NodeState::Master as i32).then_some(state)
    })
    .await;
    assert!(
        new.epoch > old_epoch,
        "the new claim is above every epoch a record has seen: {new:?}"
    );
    let mut samples = sampler.finish().await;
    samples.extend(newcomer_sampler.finish().await);
    samples.sort_by_key(|sample| sample.received);
    assert_no_overlap(samples);
}

/// `--persist clean` wipes managed state only when no node's record is live: mid-failover there
/// is no live claim, yet a node may be about to serve that state. Here the only other node is a
/// live HOT_BACKUP (it serves reads of the state) and no claim exists at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persist_clean_refuses_while_any_node_is_live_even_without_a_claim() {
    let mut plane = Plane::new(PlaneOptions::fast());
    plane
        .add("backup", &["--ha-mode".into(), "hot-backup".into()])
        .await;
    let state = plane.nodes[0].state().await;
    assert_eq!(state.epoch, 0, "no claim exists: {state:?}");
    let args = plane.args_for("n3", &["--persist".into(), "clean".into()]);
    let (code, output) = launch(plane.dir.path(), "n3", &args).await.exited();
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("record is live"), "{output}");
}

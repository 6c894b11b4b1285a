//! Unit tests of the node runtime: real `node::start` loops of two or three nodes over one
//! in-memory store, peers reached in-process, under tokio's paused clock, so election timing,
//! switchover and the lease rule run in milliseconds without processes. After every 10 ms of
//! (virtual) time the tests check that at most one node acts as master.

use super::{
    Guard, NodeError, NodeHandle, NodeOptions, PeerError, Peers, PersistMode, StepDownAnswer, start,
};
use crate::clock::{Clock, TokioClock};
use crate::election::ElectionConfig;
use crate::store::memory::MemoryStore;
use futures::future::BoxFuture;
use haplane::{Epoch, HaMode, NodeId, NodeState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const POLL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(1);
const SAMPLE: Duration = Duration::from_millis(10);

/// Peers in this process, by URI: `Nudge` and `StepDown` go straight to their handles
/// (`StepDown` answered after `step_down_delay`, a slow peer).
#[derive(Debug, Default)]
struct LocalPeers {
    handles: Mutex<HashMap<String, NodeHandle>>,
    step_down_delay: Mutex<Duration>,
}

impl LocalPeers {
    fn handle(&self, uri: &str) -> Result<NodeHandle, PeerError> {
        let handles = self.handles.lock().map_err(|_| "poisoned")?;
        handles
            .get(uri)
            .cloned()
            .ok_or_else(|| format!("no peer at {uri}").into())
    }
}

impl Peers for LocalPeers {
    fn nudge<'a>(&'a self, uri: &'a str, _from: &'a str) -> BoxFuture<'a, Result<(), PeerError>> {
        Box::pin(async move {
            self.handle(uri)?.nudge();
            Ok(())
        })
    }

    fn step_down<'a>(
        &'a self,
        uri: &'a str,
        _from: &'a str,
        epoch: Epoch,
    ) -> BoxFuture<'a, Result<StepDownAnswer, PeerError>> {
        Box::pin(async move {
            let delay = *self.step_down_delay.lock().map_err(|_| "poisoned")?;
            tokio::time::sleep(delay).await;
            Ok(self.handle(uri)?.step_down(epoch))
        })
    }
}

/// Nodes on one in-memory store; each keeps its own view of the store (to stall it alone).
struct Plane {
    store: MemoryStore,
    peers: Arc<LocalPeers>,
    nodes: Vec<(NodeHandle, Arc<MemoryStore>)>,
    _stop: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
}

impl Plane {
    fn new() -> Self {
        let (stop_sender, stop) = watch::channel(false);
        Self {
            store: MemoryStore::default(),
            peers: Arc::default(),
            nodes: Vec::new(),
            _stop: stop_sender,
            stop,
        }
    }

    /// Starts node `id` (joining may take a while of virtual time) and returns its index.
    async fn start(&mut self, id: &str, priority: i64) -> usize {
        let view = Arc::new(self.store.view());
        let options = NodeOptions {
            election: ElectionConfig {
                node_id: NodeId::parse(id).unwrap(),
                node_uri: format!("http://{id}"),
                version: "1.0".to_owned(),
                heartbeat_timeout: TIMEOUT,
                safety_margin: Duration::from_millis(250),
                startup_grace: super::startup_grace(POLL),
                started_at_ms: crate::clock::wall_clock_ms(),
                pid: 1,
                hostname: "test".to_owned(),
            },
            ha_mode: HaMode::Auto,
            priority,
            poll_period: POLL,
            record_retention: Duration::from_secs(3600),
            persist: PersistMode::Auto,
            peers: Arc::<LocalPeers>::clone(&self.peers),
        };
        let (handle, _task) = start(
            options,
            Arc::<MemoryStore>::clone(&view),
            Arc::new(TokioClock),
            self.stop.clone(),
        )
        .await
        .unwrap();
        self.peers
            .handles
            .lock()
            .unwrap()
            .insert(format!("http://{id}"), handle.clone());
        self.nodes.push((handle, view));
        self.nodes.len() - 1
    }

    /// The nodes acting as master now (what readers of each node see).
    fn acting(&self) -> Vec<usize> {
        let now = TokioClock.now();
        (0..self.nodes.len())
            .filter(|&index| {
                self.nodes[index]
                    .0
                    .read_snapshot(|snapshot| snapshot.may_act_as_master(now))
            })
            .collect()
    }

    /// The nodes that name themselves master: in the view their watchers are told, or in the
    /// master their answers name (`GetState`'s `master_id`).
    fn named_by_themselves(&self) -> Vec<usize> {
        let now = TokioClock.now();
        (0..self.nodes.len())
            .filter(|&index| {
                let (handle, _) = &self.nodes[index];
                let (own_id, answers_name_self) = handle.read_snapshot(|snapshot| {
                    let named = snapshot.master_at(now).map(|master| master.id.clone());
                    (
                        snapshot.node_id.clone(),
                        named == Some(snapshot.node_id.clone()),
                    )
                });
                answers_name_self || handle.watch_view().borrow().master_id() == own_id
            })
            .collect()
    }

    /// Lets `span` of virtual time pass, checking after every `SAMPLE` that at most one node
    /// acts, and that a node names itself master (to watchers or in answers) only while it
    /// acts; returns the last sample.
    async fn run_for(&self, span: Duration) -> Vec<usize> {
        let mut acting = self.acting();
        let mut passed = Duration::ZERO;
        while passed < span {
            tokio::time::sleep(SAMPLE).await;
            passed += SAMPLE;
            acting = self.acting();
            assert!(acting.len() <= 1, "nodes {acting:?} act as master at once");
            let named = self.named_by_themselves();
            assert!(
                named.iter().all(|index| acting.contains(index)),
                "nodes {named:?} name themselves master; acting: {acting:?}"
            );
        }
        acting
    }

    /// Runs until `done` holds (checking exclusion throughout), at most `limit` of virtual time.
    async fn run_until(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let mut passed = Duration::ZERO;
        while !done(self) {
            assert!(passed < limit, "{what}: not within {limit:?}");
            self.run_for(SAMPLE).await;
            passed += SAMPLE;
        }
    }

    /// Runs until node `index` alone acts (within five timeouts).
    async fn until_sole_master(&self, index: usize) {
        self.run_until(TIMEOUT * 5, "one master", |plane| plane.acting() == [index])
            .await;
    }

    /// A plane of `first` (priority 10), master, and `second` (0), which has followed it for a
    /// timeout.
    async fn master_and_standby() -> (Self, usize, usize) {
        let mut plane = Self::new();
        let first = plane.start("first", 10).await;
        plane.until_sole_master(first).await;
        let second = plane.start("second", 0).await;
        plane.run_for(TIMEOUT).await;
        (plane, first, second)
    }

    /// Promotes node `index` (the operator's SetState MASTER, with the override) and runs until
    /// it alone acts, checking exclusion throughout.
    async fn promote(&self, index: usize) {
        let handle = self.nodes[index].0.clone();
        let promotion =
            tokio::spawn(async move { handle.set_mode(HaMode::Master, Guard::AnyNode).await });
        self.until_sole_master(index).await;
        promotion.await.unwrap().unwrap();
    }

    /// Half a poll after node `index`'s last poll renewed its lease, turns its store slow (360 ms
    /// a call, inside the 375 ms operation timeout): a scan it starts now (a list, then the
    /// record reads) outlasts the 750 ms lease, and the election fences only at its next poll.
    async fn slow_store_between_polls(&self, index: usize) {
        let mut snapshots = self.nodes[index].0.watch_snapshot();
        snapshots.borrow_and_update();
        snapshots.changed().await.unwrap();
        self.nodes[index].1.slow_down(Duration::from_millis(360));
        tokio::time::sleep(POLL / 2).await;
    }

    fn state(&self, index: usize) -> NodeState {
        let now = TokioClock.now();
        self.nodes[index]
            .0
            .read_snapshot(|snapshot| snapshot.effective_state(now))
    }

    fn master_id(&self, index: usize) -> String {
        self.nodes[index].0.read_snapshot(|snapshot| {
            snapshot
                .master
                .as_ref()
                .map_or(String::new(), |m| m.id.clone())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn one_master_is_elected_and_every_node_names_it() {
    let mut plane = Plane::new();
    let low = plane.start("low", 0).await;
    let high = plane.start("high", 10).await;
    let third = plane.start("third", 5).await;
    plane
        .run_until(TIMEOUT * 5, "a master", |plane| plane.acting().len() == 1)
        .await;
    plane.run_for(TIMEOUT * 3).await;
    // Started first with nobody to defer to, `low` may have been elected; it stays master
    // (no preemption). Either way exactly one acts and everyone names it.
    let master = plane.acting()[0];
    let master_id = ["low", "high", "third"][master];
    for index in [low, high, third] {
        assert_eq!(plane.master_id(index), master_id, "node {index}");
    }
    assert_eq!(plane.state(master), NodeState::Master);
}

#[tokio::test(start_paused = true)]
async fn a_step_down_request_is_seen_by_readers_before_the_loop_runs() {
    let mut plane = Plane::new();
    let only = plane.start("only", 0).await;
    plane.until_sole_master(only).await;
    let epoch = plane.nodes[only].0.read_snapshot(|snapshot| snapshot.epoch);
    // No time passes between the request and the check: the loop has not run.
    assert!(plane.nodes[only].0.step_down(epoch).stopped);
    assert!(plane.acting().is_empty());
    assert!(
        plane.named_by_themselves().is_empty(),
        "watchers are told before the answer leaves"
    );
    assert_ne!(plane.state(only), NodeState::Master);
    // A step-down from an older epoch than ours is declined once we master a newer one.
    plane.until_sole_master(only).await;
    let newer = plane.nodes[only].0.read_snapshot(|snapshot| snapshot.epoch);
    assert!(newer > epoch);
    assert!(!plane.nodes[only].0.step_down(epoch).stopped);
    assert_eq!(plane.acting(), [only]);
}

#[tokio::test(start_paused = true)]
async fn a_promotion_moves_the_master_without_overlap() {
    let (plane, first, second) = Plane::master_and_standby().await;
    plane.promote(second).await;
    plane.run_for(TIMEOUT * 2).await;
    assert_eq!(plane.acting(), [second]);
    assert_eq!(plane.master_id(first), "second");
}

#[tokio::test(start_paused = true)]
async fn a_master_asked_to_step_down_tells_its_watchers_before_its_stalled_loop_runs() {
    let (plane, first, second) = Plane::master_and_standby().await;
    // First's loop hangs in its store calls: only the step-down request itself can tell its
    // watchers, before second (whose store answers) claims. `run_for` checks every 10 ms.
    plane.nodes[first].1.stall(true);
    plane.run_for(POLL + SAMPLE).await;
    assert_eq!(plane.acting(), [first], "its lease outlasts a poll");
    plane.promote(second).await;
    assert_eq!(plane.named_by_themselves(), [second]);
    plane.nodes[first].1.stall(false);
    plane
        .run_until(TIMEOUT * 5, "first follows", |plane| {
            plane.master_id(first) == "second"
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_successor_acts_only_after_the_lease_its_predecessor_reported_to_a_role_watcher() {
    let (plane, first, second) = Plane::master_and_standby().await;
    // A sidecar beside first read its role: it may do leader-only work until that lease ends.
    let (role, _) = plane.nodes[first].0.promise_role();
    assert!(role.leader, "{role:?}");
    let reported = role.valid_until.unwrap();
    plane.promote(second).await;
    let acting_at = TokioClock.now();
    let margin = Duration::from_millis(250);
    assert!(
        acting_at >= reported + margin,
        "second acts {:?} before the end of the lease first reported, plus the margin",
        (reported + margin).saturating_duration_since(acting_at)
    );
    // Without a report, a switchover does not wait.
    let started = TokioClock.now();
    plane.promote(first).await;
    assert!(
        TokioClock.now() - started < margin,
        "{:?}",
        TokioClock.now() - started
    );
}

#[tokio::test(start_paused = true)]
async fn a_promotion_whose_step_down_answer_is_slow_claims_one_epoch() {
    let (plane, first, second) = Plane::master_and_standby().await;
    let epoch = plane.nodes[first]
        .0
        .read_snapshot(|snapshot| snapshot.epoch);
    // The answer takes longer than second's lease from its last heartbeat would last.
    *plane.peers.step_down_delay.lock().unwrap() = TIMEOUT * 2;
    plane.promote(second).await;
    let won = plane.nodes[second]
        .0
        .read_snapshot(|snapshot| snapshot.epoch);
    assert_eq!(
        won,
        epoch + 1,
        "an epoch was claimed and fenced before this one"
    );
    let states: Vec<NodeState> = plane.nodes[second]
        .0
        .history()
        .iter()
        .map(|change| change.state)
        .collect();
    assert!(!states.contains(&NodeState::Failed), "{states:?}");
}

#[tokio::test(start_paused = true)]
async fn a_change_let_through_as_master_is_refused_once_the_node_no_longer_acts() {
    let (plane, first, second) = Plane::master_and_standby().await;
    plane.promote(second).await;
    // What the service's guard let through on `first` while it was master reaches its loop
    // after the switchover: `set-state MASTER` must not become a promotion, nor a priority
    // change be acknowledged as the master's.
    let promote = plane.nodes[first]
        .0
        .set_mode(HaMode::Master, Guard::MasterOnly)
        .await;
    assert!(
        matches!(promote, Err(NodeError::NotMaster { .. })),
        "{promote:?}"
    );
    let priority = plane.nodes[first]
        .0
        .set_priority(50, Guard::MasterOnly)
        .await;
    assert!(
        matches!(priority, Err(NodeError::NotMaster { .. })),
        "{priority:?}"
    );
    plane.run_for(TIMEOUT * 2).await;
    assert_eq!(plane.acting(), [second]);
    assert_eq!(
        plane.nodes[first]
            .0
            .read_snapshot(|snapshot| snapshot.priority),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn a_master_whose_store_stalls_stops_acting_before_a_peer_takes_over() {
    let (plane, first, second) = Plane::master_and_standby().await;
    plane.nodes[first].1.stall(true);
    // `run_until` checks after every 10 ms that the two never act at once.
    plane
        .run_until(TIMEOUT * 10, "second master", |plane| {
            plane.acting() == [second]
        })
        .await;
    assert_ne!(plane.state(first), NodeState::Master);
    // Its store back, the old master follows the new one.
    plane.nodes[first].1.stall(false);
    plane
        .run_until(TIMEOUT * 5, "first follows", |plane| {
            plane.master_id(first) == "second"
        })
        .await;
    plane.run_for(TIMEOUT * 2).await;
    assert_eq!(plane.acting(), [second]);
}

#[tokio::test(start_paused = true)]
async fn a_demoted_master_is_seen_to_stop_before_its_stalled_store_call_returns() {
    let mut plane = Plane::new();
    let only = plane.start("only", 0).await;
    plane.until_sole_master(only).await;
    // The demotion's record write hangs: readers must see the node stop acting before it.
    plane.nodes[only].1.stall(true);
    let handle = plane.nodes[only].0.clone();
    let demotion =
        tokio::spawn(async move { handle.set_mode(HaMode::HotStandby, Guard::AnyNode).await });
    tokio::time::sleep(SAMPLE).await;
    assert!(
        plane.acting().is_empty(),
        "still acting while its store call hangs"
    );
    assert!(!demotion.is_finished(), "the write is still in flight");
    plane.nodes[only].1.stall(false);
    let answer = demotion.await.unwrap();
    assert!(answer.is_err(), "the stalled write timed out: {answer:?}");
}

#[tokio::test(start_paused = true)]
async fn the_role_stream_ends_a_stalled_masters_leadership_by_its_lease_before_a_peer_leads() {
    use futures::StreamExt;
    let (plane, first, second) = Plane::master_and_standby().await;
    let roles = Arc::new(Mutex::new(Vec::new()));
    let mut changes = Box::pin(plane.nodes[first].0.role_changes());
    let seen = Arc::clone(&roles);
    tokio::spawn(async move {
        while let Some(role) = changes.next().await {
            seen.lock().unwrap().push((TokioClock.now(), role));
        }
    });
    plane.run_for(SAMPLE).await;
    let leading = *roles.lock().unwrap().last().map(|(_, role)| role).unwrap();
    assert!(
        leading.leader && leading.valid_until.is_some(),
        "{leading:?}"
    );
    plane.nodes[first].1.stall(true);
    // No new snapshot reaches the stream while the store stalls: only the lease's end can.
    let mut passed = Duration::ZERO;
    while plane.acting() != [second] {
        let lost = roles.lock().unwrap().iter().any(|(_, role)| !role.leader);
        assert!(
            lost || plane.acting() != [second],
            "second leads before first's role stream said it lost"
        );
        assert!(passed < TIMEOUT * 10, "second never leads");
        plane.run_for(SAMPLE).await;
        passed += SAMPLE;
    }
    let roles = roles.lock().unwrap();
    let last_lease = roles
        .iter()
        .filter(|(_, role)| role.leader)
        .filter_map(|(_, role)| role.valid_until)
        .max()
        .unwrap();
    let (lost_at, lost) = roles.iter().find(|(_, role)| !role.leader).unwrap();
    assert!(
        *lost_at <= last_lease,
        "told at {lost_at:?}, lease to {last_lease:?}: {lost:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_listing_reports_this_node_as_it_stands_when_the_answer_is_built() {
    let (plane, first, _) = Plane::master_and_standby().await;
    plane.slow_store_between_polls(first).await;
    let listing = plane.nodes[first].0.list().await.unwrap();
    assert!(plane.acting().is_empty(), "the lease outlived the scan");
    let own = &listing.nodes[0].record;
    assert_eq!(own.node_id.as_str(), "first");
    assert_ne!(
        own.status,
        NodeState::Master,
        "listed MASTER while not acting"
    );
    assert_eq!(listing.master, None, "named itself master while not acting");
}

#[tokio::test(start_paused = true)]
async fn a_record_removal_whose_scan_outlasts_the_lease_is_not_acknowledged() {
    let (plane, first, _) = Plane::master_and_standby().await;
    plane.slow_store_between_polls(first).await;
    let removal = plane.nodes[first].0.remove_terminated(None).await;
    assert!(plane.acting().is_empty(), "the lease outlived the scan");
    assert!(
        matches!(removal, Err(NodeError::NotMaster { .. })),
        "acknowledged while not acting: {removal:?}"
    );
}

#[test]
fn a_process_that_exited_counts_as_gone_even_before_it_is_reaped() {
    assert!(
        !super::join::process_gone(std::process::id()),
        "this process runs"
    );
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not reaped yet: a zombie until `wait`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !super::join::process_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never counted as gone"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait().unwrap();
    assert!(super::join::process_gone(pid), "reaped");
}

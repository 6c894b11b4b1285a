//! The node runtime: one task that owns the `Election`, polls the store, executes the election's
//! decisions and operator commands, and publishes the node's snapshot and master view.

use crate::clock::{Clock, wall_clock_ms};
use crate::election::{
    Decision, Election, ElectionConfig, Lease, ModeChange, NodeSummary, StartupVerdict,
};
use crate::error::ServiceError;
use crate::store::{Key, PutMode, Store, StoreError};
use bytes::Bytes;
use haplane::{Epoch, HaMode, MasterClaim, MasterView, NodeId, NodeRecord, NodeState, PlaneInfo};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How many state changes the metrics endpoint keeps.
const HISTORY_LEN: usize = 200;
/// Store calls while joining wait up to this long: there is no lease yet to protect, and a
/// start-up should survive a load spike rather than exit.
const JOINING_OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The format of `plane.json` and the records this build writes.
const FORMAT_VERSION: u32 = 1;
/// Every this many polls a node re-reads `plane.json` and a master its own claim, to find a
/// store that was replaced or rolled back (one extra read, not one every poll: the request
/// budget of docs/behaviour.md).
const STORE_CHECK_EVERY: u64 = 10;

/// Runtime settings of a node (derived from `config::Settings` once the port is known).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub node_id: NodeId,
    pub node_uri: String,
    pub ha_mode: HaMode,
    pub priority: i64,
    pub version: String,
    pub poll_period: Duration,
    pub heartbeat_timeout: Duration,
    pub safety_margin: Duration,
    pub record_retention: Duration,
    /// Existing state is required (`--persist rebind`).
    pub require_existing: bool,
    /// Delete managed state at start-up (`--persist clean`), unless a live master holds it.
    pub clean_state: bool,
    /// How to reach peers for nudges.
    pub peers: crate::grpc::PeerClient,
}

/// What every reader of the node's state sees; republished after every poll and command.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node_id: String,
    pub node_uri: String,
    pub plane_id: String,
    pub mode: HaMode,
    pub state: NodeState,
    pub priority: i64,
    pub epoch: Epoch,
    pub master_id: String,
    pub master_uri: String,
    /// While master: until when, and from when, acting as master is allowed (standalone:
    /// forever).
    pub lease: Lease,
    pub standalone: bool,
    /// What a master that may not act yet (it waits for its predecessor's lease) reports.
    pub follower_state: NodeState,
    /// The managed-state position the master last published in its record.
    pub master_state_seq: u64,
}

impl Snapshot {
    /// Whether this node may act as master at `now` (state MASTER and a valid lease).
    pub fn may_act_as_master(&self, now: Instant) -> bool {
        crate::election::lease_allows_acting(self.state, self.standalone, self.lease, now)
    }

    /// The error for a master-only request on this node, naming the master it knows.
    pub fn not_master(&self) -> ServiceError {
        ServiceError::NotMaster {
            master_id: self.master_id.clone(),
            master_uri: self.master_uri.clone(),
        }
    }

    /// The state to report at `now`: a master whose lease lapsed (the loop is stuck on the store)
    /// reports FAILED rather than MASTER, and one still waiting out its predecessor's lease
    /// reports its follower state.
    pub fn effective_state(&self, now: Instant) -> NodeState {
        if self.state != NodeState::Master || self.may_act_as_master(now) {
            self.state
        } else if self.lease.until.is_some_and(|until| now < until) {
            self.follower_state
        } else {
            NodeState::Failed
        }
    }
}

impl Snapshot {
    /// This node no longer acts as master: its follower state, no lease.
    fn stop_acting(&mut self) {
        self.state = self.follower_state;
        self.lease = Lease::default();
    }
}

/// Publishes snapshots, and lets a switchover's step-down take effect for every reader at once,
/// without waiting for the runtime loop (which may be in the middle of slow store calls): a
/// master snapshot of an epoch a peer asked us to leave is never published again. Both sides
/// decide under the channel's lock, so a snapshot the loop built before the request cannot
/// overwrite the step-down.
#[derive(Debug, Clone)]
struct Publisher {
    sender: Arc<watch::Sender<Snapshot>>,
    /// The highest epoch a peer asked us to step down from (0: none).
    step_down_from: Arc<AtomicU64>,
}

impl Publisher {
    /// Publishes `snapshot`; answers the state it replaced.
    fn publish(&self, mut snapshot: Snapshot) -> NodeState {
        let mut previous = snapshot.state;
        self.sender.send_modify(|current| {
            let left = self.step_down_from.load(Ordering::SeqCst);
            if snapshot.state == NodeState::Master && !snapshot.standalone && snapshot.epoch <= left
            {
                snapshot.stop_acting();
            }
            previous = current.state;
            *current = snapshot;
        });
        previous
    }

    /// A peer asks us to leave `epoch`: whether we now surely do not act as master in it or
    /// any older one (false when we are master of a newer epoch than the asker knows).
    fn step_down(&self, epoch: Epoch, now: Instant) -> bool {
        let mut stopped = false;
        self.sender.send_modify(|current| {
            let newer = current.state == NodeState::Master && current.epoch > epoch;
            if current.standalone || newer {
                return;
            }
            self.step_down_from.fetch_max(epoch, Ordering::SeqCst);
            if current.state == NodeState::Master {
                current.stop_acting();
            }
            stopped = !current.may_act_as_master(now);
        });
        stopped
    }
}

/// One change of state, for the metrics' history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub state: NodeState,
    pub at_ms: i64,
}

/// `ListStates`: the plane as this node sees it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub plane_id: String,
    pub own_id: String,
    pub master_id: String,
    pub epoch: Epoch,
    pub nodes: Vec<NodeSummary>,
}

/// Counters shared with metrics.
#[derive(Debug)]
pub struct NodeCounters {
    pub skipped_records: AtomicU64,
    pub failovers: AtomicU64,
    pub polls: AtomicU64,
    /// Seconds each own-record (heartbeat) write took, successful or not.
    pub heartbeat_write_seconds: Histogram,
}

impl Default for NodeCounters {
    fn default() -> Self {
        Self {
            skipped_records: AtomicU64::default(),
            failovers: AtomicU64::default(),
            polls: AtomicU64::default(),
            // 0.25 ms to about 4 s.
            heartbeat_write_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

/// Requests the runtime loop carries out in order with its polls.
#[derive(Debug)]
enum Command {
    SetMode(HaMode, Reply<NodeState>),
    SetPriority(i64, Reply<i64>),
    List(Reply<Listing>),
    RemoveTerminated(Option<NodeId>, Reply<Vec<String>>),
    /// A peer asked us to leave `epoch` (switchover); readers already see us stepped down.
    StepDown(Epoch),
    Nudge,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store {store}: {source}")]
    Store { store: String, source: StoreError },
    #[error("{0}")]
    Refused(String),
    #[error("store {store}: {message}")]
    Corrupt { store: String, message: String },
}

/// The handle the service uses to talk to the runtime loop.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    publisher: Publisher,
    view: watch::Receiver<Arc<MasterView>>,
    history: Arc<Mutex<VecDeque<StateChange>>>,
    pub counters: Arc<NodeCounters>,
    pub clock: Arc<dyn Clock>,
    state_seq: Arc<AtomicU64>,
}

impl NodeHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Reads the current snapshot in place (no copy of its strings; hot paths use this).
    pub fn read_snapshot<R>(&self, read: impl FnOnce(&Snapshot) -> R) -> R {
        read(&self.snapshot.borrow())
    }

    /// A receiver of the node's snapshot, republished after every poll and command.
    pub fn watch_snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// A receiver of the master view: current value first, then each change of master.
    pub fn watch_view(&self) -> watch::Receiver<Arc<MasterView>> {
        self.view.clone()
    }

    pub fn history(&self) -> Vec<StateChange> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let shutting_down = || ServiceError::Unavailable("node is shutting down".to_owned());
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Changes the HA mode; answers the previous state.
    pub async fn set_mode(&self, mode: HaMode) -> Result<NodeState, ServiceError> {
        self.ask(|reply| Command::SetMode(mode, reply)).await
    }

    /// Changes the priority; answers the previous one.
    pub async fn set_priority(&self, priority: i64) -> Result<i64, ServiceError> {
        self.ask(|reply| Command::SetPriority(priority, reply))
            .await
    }

    /// Reads every record (at most once a poll period) and lists the plane.
    pub async fn list(&self) -> Result<Listing, ServiceError> {
        self.ask(Command::List).await
    }

    /// Master only: deletes terminated / long-dead records, or the one named.
    pub async fn remove_terminated(
        &self,
        node: Option<NodeId>,
    ) -> Result<Vec<String>, ServiceError> {
        self.ask(|reply| Command::RemoveTerminated(node, reply))
            .await
    }

    /// A peer asks this node to step down from `epoch` so that it can take over; answers at
    /// once, without waiting for the loop, whether this node no longer acts as master (true) or
    /// declines (false: it is master of a newer epoch than the asker knows). The loop then
    /// records the step-down in the store.
    pub fn step_down(&self, epoch: Epoch) -> bool {
        let stopped = self.publisher.step_down(epoch, self.clock.now());
        if stopped && self.commands.try_send(Command::StepDown(epoch)).is_err() {
            tracing::warn!(
                epoch,
                "step-down not queued for the loop; readers see it already"
            );
        }
        stopped
    }

    /// Sets the managed-state position this node publishes in its next record.
    pub fn publish_state_seq(&self, seq: u64) {
        self.state_seq.store(seq, Ordering::Relaxed);
    }

    /// Asks the loop to poll now (a peer stepped down or claimed).
    pub fn nudge(&self) {
        let _ = self.commands.try_send(Command::Nudge);
    }
}

/// Store keys of the layout (SPEC 4).
fn node_key(id: &NodeId) -> Result<Key, StoreError> {
    Key::parse(&format!("nodes/{id}.json"))
}

fn claim_key(epoch: Epoch) -> Result<Key, StoreError> {
    Key::parse(&format!("master/{epoch:020}.json"))
}

fn json_body<T: serde::Serialize>(value: &T) -> Result<Bytes, StoreError> {
    serde_json::to_vec_pretty(value)
        .map(Bytes::from)
        .map_err(|err| StoreError::Generic {
            message: format!("cannot encode: {err}"),
        })
}

/// The runtime loop's state.
struct Runtime {
    election: Election,
    options: NodeOptions,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    plane_id: String,
    snapshot: watch::Receiver<Snapshot>,
    publisher: Publisher,
    view: watch::Sender<Arc<MasterView>>,
    history: Arc<Mutex<VecDeque<StateChange>>>,
    counters: Arc<NodeCounters>,
    /// Set by the managed-state service; written into each record.
    state_seq: Arc<AtomicU64>,
    last_scan: Option<Instant>,
    last_cleanup: Instant,
    /// Polls made, for `STORE_CHECK_EVERY`.
    polls: u64,
    /// True until the node holds or may claim a lease (see `op_timeout`).
    joining: bool,
}

/// Starts a node on `store`: checks the plane, runs the start-up mode checks, and spawns the loop.
/// Returns the handle and the loop's task, which ends after a graceful stop once `shutdown` fires.
pub async fn start(
    options: NodeOptions,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(NodeHandle, tokio::task::JoinHandle<()>), StartError> {
    let now = clock.now();
    let config = ElectionConfig {
        node_id: options.node_id.clone(),
        node_uri: options.node_uri.clone(),
        version: options.version.clone(),
        heartbeat_timeout: options.heartbeat_timeout,
        safety_margin: options.safety_margin,
        startup_grace: options.poll_period * 2,
        started_at_ms: wall_clock_ms(),
        pid: std::process::id(),
        hostname: hostname(),
    };
    let election = Election::new(config, options.ha_mode, options.priority, now);
    let (snapshot, snapshot_rx) = watch::channel(Snapshot {
        node_id: options.node_id.to_string(),
        node_uri: options.node_uri.clone(),
        plane_id: String::new(),
        mode: options.ha_mode,
        state: election.state(),
        priority: options.priority,
        epoch: 0,
        master_id: String::new(),
        master_uri: String::new(),
        lease: Lease::default(),
        standalone: election.is_standalone(),
        follower_state: election.follower_state(),
        master_state_seq: 0,
    });
    let publisher = Publisher {
        sender: Arc::new(snapshot),
        step_down_from: Arc::new(AtomicU64::new(0)),
    };
    let (view, view_rx) = watch::channel(Arc::new(MasterView::default()));
    let mut runtime = Runtime {
        election,
        options,
        store,
        clock: clock.clone(),
        plane_id: String::new(),
        snapshot: snapshot_rx.clone(),
        publisher: publisher.clone(),
        view,
        history: Arc::new(Mutex::new(VecDeque::new())),
        counters: Arc::new(NodeCounters::default()),
        state_seq: Arc::new(AtomicU64::new(0)),
        last_scan: None,
        last_cleanup: now,
        polls: 0,
        joining: true,
    };
    runtime.join_plane().await?;
    let (commands, command_rx) = mpsc::channel(64);
    let handle = NodeHandle {
        commands,
        snapshot: snapshot_rx,
        publisher,
        view: view_rx,
        history: runtime.history.clone(),
        counters: runtime.counters.clone(),
        clock,
        state_seq: runtime.state_seq.clone(),
    };
    let task = tokio::spawn(runtime.run(command_rx, shutdown));
    Ok((handle, task))
}

/// This machine's host name (`unknown` if it cannot be read).
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

impl Runtime {
    fn op_timeout(&self) -> Duration {
        if self.joining {
            return JOINING_OP_TIMEOUT;
        }
        // A hung store call must not outlive the lease it could be renewing.
        (self
            .options
            .heartbeat_timeout
            .saturating_sub(self.options.safety_margin)
            / 2)
        .max(Duration::from_millis(50))
    }

    /// Runs one store call under the operation timeout. Every store call goes through here, and
    /// a node that stopped acting as master publishes that first (docs/behaviour.md, exclusion).
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.publish_if_stepped_down();
        let limit = self.op_timeout();
        tokio::time::timeout(limit, operation)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    message: format!("no answer within {}", humantime::format_duration(limit)),
                })
            })
    }

    fn store_error(&self, source: StoreError) -> StartError {
        StartError::Store {
            store: self.store.describe(),
            source,
        }
    }

    /// Start-up: plane.json, the claims, our first record, the members, the mode checks.
    async fn join_plane(&mut self) -> Result<(), StartError> {
        if self.election.is_standalone() {
            self.plane_id = "standalone".to_owned();
            self.publish();
            return Ok(());
        }
        self.load_or_create_plane().await?;
        self.load_claims().await.map_err(|e| self.store_error(e))?;
        self.write_record().await.map_err(|e| self.store_error(e))?;
        self.scan_members().await.map_err(|e| self.store_error(e))?;
        // Proving a record silent takes a read begun a full timeout after it was first seen.
        let deadline =
            self.clock.now() + self.options.heartbeat_timeout + self.options.poll_period * 3;
        loop {
            let now = self.clock.now();
            let verdict = if self.options.clean_state {
                // Any live node may be a master (or about to be one) that serves this state: an
                // unexpired claim is not needed for that, mid-failover there is none.
                match self.election.any_peer_liveness(now) {
                    Some(true) => StartupVerdict::Refuse(
                        "--persist clean: another node's record is live; refusing to wipe the state it may serve (stop every node first)"
                            .to_owned(),
                    ),
                    Some(false) => StartupVerdict::Wait,
                    None => self.election.startup_verdict(now),
                }
            } else {
                self.election.startup_verdict(now)
            };
            match verdict {
                StartupVerdict::Proceed => {
                    // Take up the follower state now, so the first answer is not INITIALIZING;
                    // any claim waits for the first poll (AUTO nodes are in their grace period).
                    self.election.decide(now);
                    break;
                }
                StartupVerdict::Refuse(message) => {
                    let _ = self.write_terminated().await;
                    return Err(StartError::Refused(message));
                }
                StartupVerdict::Wait if now >= deadline => {
                    return Err(StartError::Refused(
                        "could not tell whether the current master is live".to_owned(),
                    ));
                }
                StartupVerdict::Wait => {
                    tokio::time::sleep(self.options.poll_period).await;
                    self.poll_store().await;
                    if self.options.clean_state {
                        self.scan_members().await.map_err(|e| self.store_error(e))?;
                    }
                }
            }
        }
        if self.options.clean_state {
            self.delete_managed_state()
                .await
                .map_err(|e| self.store_error(e))?;
        }
        // From here on a lease may be at stake: store calls get the lease-derived bound.
        self.joining = false;
        if self.options.ha_mode == HaMode::Master
            && let Decision::Claim { epoch, reason } = self.election.startup_claim()
        {
            // The verdict found no master that may act: nothing to wait out.
            let won = self
                .claim(epoch, &reason, true)
                .await
                .map_err(|e| self.store_error(e))?;
            if !won {
                return Err(StartError::Refused(format!(
                    "--ha-mode master: another node claimed epoch {epoch} first"
                )));
            }
        }
        self.publish();
        Ok(())
    }

    async fn load_or_create_plane(&mut self) -> Result<(), StartError> {
        let key = Key::parse("plane.json").map_err(|e| self.store_error(e))?;
        let existing = match self.bounded(self.store.get(&key)).await {
            Ok(body) => Some(body),
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => return Err(self.store_error(err)),
        };
        let body = match existing {
            Some(body) => body,
            None if self.options.require_existing => {
                return Err(StartError::Refused(format!(
                    "--persist rebind: {} holds no plane to rebind to",
                    self.store.describe()
                )));
            }
            None => {
                let plane = PlaneInfo {
                    plane_id: format!("{:016x}", rand::random::<u64>()),
                    created_at: wall_clock_ms(),
                    format_version: FORMAT_VERSION,
                };
                let body = json_body(&plane).map_err(|e| self.store_error(e))?;
                match self
                    .bounded(self.store.put(&key, body.clone(), PutMode::Create))
                    .await
                {
                    Ok(()) => body,
                    // Another node created it first: use theirs.
                    Err(StoreError::AlreadyExists { .. }) => self
                        .bounded(self.store.get(&key))
                        .await
                        .map_err(|e| self.store_error(e))?,
                    Err(err) => return Err(self.store_error(err)),
                }
            }
        };
        let plane: PlaneInfo =
            serde_json::from_slice(&body).map_err(|err| StartError::Corrupt {
                store: self.store.describe(),
                message: format!("plane.json cannot be read: {err}"),
            })?;
        self.plane_id = plane.plane_id;
        Ok(())
    }

    /// Lists `master/` once and reads the highest claim.
    async fn load_claims(&mut self) -> Result<(), StoreError> {
        let keys = self.bounded(self.store.list("master/")).await?;
        let highest = keys
            .iter()
            .filter_map(|key| key.file_name().strip_suffix(".json")?.parse::<Epoch>().ok())
            .max();
        if let Some(epoch) = highest {
            self.read_claim(epoch).await?;
        }
        // Claims made while we listed are found by the next probe.
        self.probe_claims().await
    }

    /// Reads the claim at `epoch` into the election. An unreadable claim still burns its epoch.
    async fn read_claim(&mut self, epoch: Epoch) -> Result<(), StoreError> {
        let body = self.bounded(self.store.get(&claim_key(epoch)?)).await?;
        let claim = match serde_json::from_slice::<MasterClaim>(&body) {
            Ok(claim) if claim.epoch == epoch => claim,
            parsed => {
                tracing::warn!(key = %claim_key(epoch)?, error = ?parsed.err(), "unreadable master claim; treating its epoch as taken by nobody");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                MasterClaim {
                    epoch,
                    node_id: NodeId::parse("unreadable-claim").map_err(|e| {
                        StoreError::Generic {
                            message: e.to_string(),
                        }
                    })?,
                    node_uri: String::new(),
                    claimed_at: 0,
                    reason: "unreadable".to_owned(),
                }
            }
        };
        let was_master = self.election.state() == NodeState::Master;
        self.election.observe_claim(claim);
        if was_master && self.election.state() != NodeState::Master {
            tracing::warn!(epoch, "a newer master claim exists; stepping down");
            self.publish();
        }
        Ok(())
    }

    /// Probes `master/<known + 1>` until there is none (one GET at steady state). The read that
    /// finds none lets a master renew its lease (`Election::no_newer_claim`).
    async fn probe_claims(&mut self) -> Result<(), StoreError> {
        loop {
            let next = self.election.epoch() + 1;
            let started = self.clock.now();
            match self.read_claim(next).await {
                Ok(()) => continue,
                Err(StoreError::NotFound { .. }) => {
                    self.election.no_newer_claim(started, self.clock.now());
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads the claim of the highest epoch a record has seen, when it is above every claim we
    /// know: the plane moved on while we did not look (or the store lost that claim).
    async fn catch_up_claims(&mut self) -> Result<(), StoreError> {
        let seen = self.election.highest_epoch_seen();
        if seen <= self.election.epoch() {
            return Ok(());
        }
        match self.read_claim(seen).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every `STORE_CHECK_EVERY` polls: is this still the store we joined? `plane.json` must hold
    /// our plane id and, on a master, our claim must still be there. If not, the node stops
    /// acting and takes no further part until restarted.
    async fn check_store_identity(&mut self) -> Result<(), StoreError> {
        let plane_key = Key::parse("plane.json")?;
        let problem = match self.bounded(self.store.get(&plane_key)).await {
            Err(StoreError::NotFound { .. }) => Some("plane.json is gone".to_owned()),
            Err(err) => return Err(err),
            Ok(body) => match serde_json::from_slice::<PlaneInfo>(&body) {
                Ok(plane) if plane.plane_id == self.plane_id => None,
                Ok(plane) => Some(format!(
                    "plane id changed from {} to {}",
                    self.plane_id, plane.plane_id
                )),
                Err(err) => Some(format!("plane.json cannot be read: {err}")),
            },
        };
        let problem = match (problem, self.election.state() == NodeState::Master) {
            (None, true) => {
                let epoch = self.election.epoch();
                match self.bounded(self.store.get(&claim_key(epoch)?)).await {
                    Err(StoreError::NotFound { .. }) => {
                        Some(format!("our claim master/{epoch:020}.json is gone"))
                    }
                    Err(err) => return Err(err),
                    Ok(body) => match serde_json::from_slice::<MasterClaim>(&body) {
                        Ok(claim) if claim.node_id == self.options.node_id => None,
                        _ => Some(format!(
                            "our claim master/{epoch:020}.json now names another node"
                        )),
                    },
                }
            }
            (problem, _) => problem,
        };
        if let Some(problem) = problem {
            let why = format!(
                "store {} was replaced or rolled back ({problem}); this node stopped acting and takes no part until restarted",
                self.store.describe()
            );
            tracing::error!("{why}");
            self.election.store_replaced(why, self.clock.now());
            self.publish();
        }
        Ok(())
    }

    async fn write_record(&mut self) -> Result<(), StoreError> {
        let started = self.clock.now();
        self.election
            .set_state_seq(self.state_seq.load(Ordering::Relaxed));
        let record = self.election.next_record(wall_clock_ms(), started);
        let result = match (node_key(&record.node_id), json_body(&record)) {
            (Ok(key), Ok(body)) => {
                self.bounded(self.store.put(&key, body, PutMode::Overwrite))
                    .await
            }
            (Err(err), _) | (_, Err(err)) => Err(err),
        };
        let finished = self.clock.now();
        self.election
            .own_write_finished(started, finished, result.is_ok());
        self.counters
            .heartbeat_write_seconds
            .observe(finished.duration_since(started).as_secs_f64());
        result
    }

    async fn write_terminated(&mut self) -> Result<(), StoreError> {
        self.election.terminate();
        self.write_record().await
    }

    fn parse_record(&self, key: &Key, body: &[u8]) -> Option<NodeRecord> {
        match serde_json::from_slice::<NodeRecord>(body) {
            Ok(record) if key.file_name() == format!("{}.json", record.node_id) => Some(record),
            Ok(record) => {
                tracing::warn!(%key, node_id = %record.node_id, "record's node_id does not match its key; skipped");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(err) => {
                tracing::warn!(%key, error = %err, "unreadable node record; skipped");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Lists `nodes/` and reads every record (concurrently).
    async fn scan_members(&mut self) -> Result<(), StoreError> {
        let started = self.clock.now();
        let keys = self.bounded(self.store.list("nodes/")).await?;
        let this = &*self;
        let reads = keys
            .iter()
            .filter(|key| key.as_str().ends_with(".json"))
            .map(|key| async move { (key, this.bounded(this.store.get(key)).await) });
        let results = futures::future::join_all(reads).await;
        let now = self.clock.now();
        let mut present = BTreeSet::new();
        let mut records = Vec::new();
        for (key, result) in results {
            match result {
                Ok(body) => {
                    if let Some(record) = self.parse_record(key, &body) {
                        present.insert(record.node_id.clone());
                        records.push(record);
                    }
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        for record in records {
            self.election.observe_record(record, started, now);
        }
        let claimant = self.election.claim().map(|claim| claim.node_id.clone());
        for id in self.election.peer_ids().into_iter().chain(claimant) {
            if !present.contains(&id) {
                self.election.observe_absent(&id, started, now);
            }
        }
        self.last_scan = Some(now);
        Ok(())
    }

    /// Reads the current claimant's record (one GET), if it is someone else.
    async fn read_master_record(&mut self) -> Result<(), StoreError> {
        let Some(holder) = self.election.claim().map(|claim| claim.node_id.clone()) else {
            return Ok(());
        };
        if holder == self.options.node_id {
            return Ok(());
        }
        let key = node_key(&holder)?;
        let started = self.clock.now();
        match self.bounded(self.store.get(&key)).await {
            Ok(body) => {
                if let Some(record) = self.parse_record(&key, &body) {
                    self.election
                        .observe_record(record, started, self.clock.now());
                }
                Ok(())
            }
            Err(StoreError::NotFound { .. }) => {
                self.election
                    .observe_absent(&holder, started, self.clock.now());
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// One poll's reads and writes: own record, next-epoch probe, master's record, and a full
    /// scan only while an election may be needed.
    async fn poll_store(&mut self) {
        self.counters.polls.fetch_add(1, Ordering::Relaxed);
        self.polls += 1;
        self.election.decide(self.clock.now());
        if let Err(err) = self.write_record().await {
            tracing::warn!(error = %err, "heartbeat write failed");
        }
        if let Err(err) = self.probe_claims().await {
            tracing::warn!(error = %err, "cannot read master claims");
        }
        if let Err(err) = self.read_master_record().await {
            tracing::warn!(error = %err, "cannot read the master's record");
        }
        if self.election.wants_membership_scan(self.clock.now())
            && let Err(err) = self.scan_members().await
        {
            tracing::warn!(error = %err, "cannot read node records");
        }
        if let Err(err) = self.catch_up_claims().await {
            tracing::warn!(error = %err, "cannot read the newest claim a record names");
        }
        if self.polls.is_multiple_of(STORE_CHECK_EVERY)
            && self.election.store_problem().is_none()
            && let Err(err) = self.check_store_identity().await
        {
            tracing::warn!(error = %err, "cannot check the store's identity");
        }
    }

    async fn poll(&mut self) {
        self.poll_store().await;
        if let Decision::Claim { epoch, reason } = self.election.decide(self.clock.now()) {
            // The election claims only when no master may be acting.
            match self.claim(epoch, &reason, true).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(epoch, "another node claimed the epoch first; following it")
                }
                Err(err) => tracing::warn!(epoch, error = %err, "claim failed"),
            }
        }
        self.clean_up_if_due().await;
        self.publish();
    }

    /// Creates `master/<epoch>`; `Ok(false)` when another node got there first.
    /// `predecessor_stopped`: see `Election::claim_won`.
    async fn claim(
        &mut self,
        epoch: Epoch,
        reason: &str,
        predecessor_stopped: bool,
    ) -> Result<bool, StoreError> {
        let claim = MasterClaim {
            epoch,
            node_id: self.options.node_id.clone(),
            node_uri: self.options.node_uri.clone(),
            claimed_at: wall_clock_ms(),
            reason: reason.to_owned(),
        };
        let key = claim_key(epoch)?;
        match self
            .bounded(self.store.put(&key, json_body(&claim)?, PutMode::Create))
            .await
        {
            Ok(()) => {
                self.election
                    .claim_won(claim, predecessor_stopped, self.clock.now());
                if self.election.state() == NodeState::Master {
                    tracing::info!(epoch, reason, predecessor_stopped, "became master");
                    self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                // Publish before the record write: peers can read the claim from now on and
                // push it to clients, whose next call must find this node already MASTER.
                self.publish();
                if let Err(err) = self.write_record().await {
                    tracing::warn!(error = %err, "cannot publish the new claim in our record");
                }
                self.publish();
                self.nudge_peers();
                Ok(self.election.state() == NodeState::Master)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                self.read_claim(epoch).await?;
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// URIs of the peers that are live now.
    fn live_peer_uris(&self) -> Vec<String> {
        self.election
            .summaries(0, self.clock.now())
            .into_iter()
            .skip(1)
            .filter(|peer| peer.live && !peer.record.node_uri.is_empty())
            .map(|peer| peer.record.node_uri)
            .collect()
    }

    /// Tells every live peer to poll now, without waiting for the answers.
    fn nudge_peers(&self) {
        let from = self.options.node_id.to_string();
        for uri in self.live_peer_uris() {
            let from = from.clone();
            let peers = self.options.peers.clone();
            tokio::spawn(async move {
                if let Err(err) = peers.nudge(&uri, &from).await {
                    tracing::debug!(%uri, error = %err, "nudge not delivered");
                }
            });
        }
    }

    async fn clean_up_if_due(&mut self) {
        let now = self.clock.now();
        let period = self.options.record_retention.min(Duration::from_secs(60));
        if !self.election.may_act_as_master(now) || now.duration_since(self.last_cleanup) < period {
            return;
        }
        self.last_cleanup = now;
        let retention = self.options.record_retention;
        if let Err(err) = self.remove_records(None, retention).await {
            tracing::warn!(error = %err, "record clean-up failed");
        }
    }

    async fn delete_managed_state(&mut self) -> Result<(), StoreError> {
        for key in self.bounded(self.store.list("state/")).await? {
            match self.bounded(self.store.delete(&key)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn not_master(&self) -> ServiceError {
        let now = self.clock.now();
        let claim = self.election.active_master(now);
        ServiceError::NotMaster {
            master_id: claim
                .as_ref()
                .map(|c| c.node_id.to_string())
                .unwrap_or_default(),
            master_uri: claim.map(|c| c.node_uri).unwrap_or_default(),
        }
    }

    /// Master only: deletes `node`'s record, or every record `Election::removable` names —
    /// TERMINATED ones at least `terminated_age` old (0 on request, the retention when automatic)
    /// and FAILED or stale ones older than the retention.
    async fn remove_records(
        &mut self,
        node: Option<NodeId>,
        terminated_age: Duration,
    ) -> Result<Vec<String>, ServiceError> {
        if !self.election.may_act_as_master(self.clock.now()) {
            return Err(self.not_master());
        }
        self.scan_members().await?;
        let now = self.clock.now();
        let targets = match node {
            Some(id) if id == self.options.node_id => {
                return Err(ServiceError::FailedPrecondition(
                    "cannot remove the master's own record".to_owned(),
                ));
            }
            Some(id) if self.election.peer(&id).is_none() => {
                return Err(ServiceError::NotFound(format!("no record for node {id}")));
            }
            Some(id) => vec![id],
            None => self
                .election
                .removable(terminated_age, self.options.record_retention, now),
        };
        let mut removed = Vec::new();
        for id in targets {
            match self.bounded(self.store.delete(&node_key(&id)?)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {
                    tracing::info!(node_id = %id, "removed node record");
                    self.election.forget_peer(&id);
                    removed.push(id.to_string());
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(removed)
    }

    async fn set_mode(&mut self, mode: HaMode) -> Result<NodeState, ServiceError> {
        if mode == HaMode::Master && !self.election.is_standalone() {
            // A master deposed a moment ago by another node's promotion may not have seen the
            // newer claim yet; without this probe it would answer "already master" and do nothing.
            self.probe_claims().await?;
            self.publish();
        }
        let now = self.clock.now();
        let previous = self.snapshot.borrow().effective_state(now);
        let change = self
            .election
            .set_mode(mode, now)
            .map_err(|refused| ServiceError::FailedPrecondition(refused.0))?;
        tracing::info!(%mode, ?change, "mode changed by operator");
        match change {
            ModeChange::Done => {
                if !self.election.is_standalone() {
                    self.write_record().await?;
                }
            }
            ModeChange::SteppedDown => {
                self.write_record().await?;
                self.publish();
                self.nudge_peers();
            }
            ModeChange::Claim { .. } => self.promote().await?,
        }
        Ok(previous)
    }

    /// Operator promotion (switchover): ask the master that may be acting to step down, then
    /// claim the next epoch; re-read and retry once if a concurrent claim took it. A master that
    /// does not answer is waited out after the claim (`Election::claim_won`), never overlapped.
    async fn promote(&mut self) -> Result<(), ServiceError> {
        for _ in 0..2 {
            self.probe_claims().await?;
            let predecessor_stopped = match self.election.active_master(self.clock.now()) {
                Some(master) if master.node_id != self.options.node_id => {
                    self.ask_to_step_down(&master).await
                }
                _ => true,
            };
            let epoch = self.election.next_epoch();
            if self
                .claim(epoch, "promoted by operator", predecessor_stopped)
                .await?
            {
                return Ok(());
            }
        }
        Err(ServiceError::Unavailable(
            "promotion lost the claim race twice; try again".to_owned(),
        ))
    }

    /// Asks `master` to step down so that we can take over; whether it answered that it did.
    async fn ask_to_step_down(&self, master: &MasterClaim) -> bool {
        let from = self.options.node_id.to_string();
        match self
            .options
            .peers
            .step_down(&master.node_uri, &from, master.epoch)
            .await
        {
            Ok(true) => {
                tracing::info!(master = %master.node_id, epoch = master.epoch, "the master stepped down for us");
                true
            }
            Ok(false) => {
                tracing::warn!(master = %master.node_id, epoch = master.epoch, "the master declined to step down; waiting out its lease after our claim");
                false
            }
            Err(err) => {
                tracing::warn!(master = %master.node_id, error = %err, "cannot reach the master to ask it to step down; waiting out its lease after our claim");
                false
            }
        }
    }

    /// A peer's switchover request, already answered and published (`Publisher::step_down`):
    /// the election follows, then the released record is written and the peers told.
    async fn step_down(&mut self, epoch: Epoch) {
        let was_master = self.election.state() == NodeState::Master;
        self.election.step_down_for(epoch, self.clock.now());
        self.publish();
        if was_master && self.election.state() != NodeState::Master {
            tracing::info!(epoch, "stepped down for a switchover");
            if let Err(err) = self.write_record().await {
                tracing::warn!(error = %err, "cannot publish the step-down in our record");
            }
            self.nudge_peers();
        }
    }

    async fn list(&mut self) -> Result<Listing, ServiceError> {
        let fresh = self
            .last_scan
            .is_some_and(|at| self.clock.now().duration_since(at) < self.options.poll_period);
        if !fresh && !self.election.is_standalone() {
            self.scan_members().await?;
        }
        let now = self.clock.now();
        let snapshot = self.snapshot.borrow().clone();
        Ok(Listing {
            plane_id: self.plane_id.clone(),
            own_id: self.options.node_id.to_string(),
            master_id: snapshot.master_id,
            epoch: self.election.epoch(),
            nodes: self.election.summaries(wall_clock_ms(), now),
        })
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::SetMode(mode, reply) => {
                let result = self.set_mode(mode).await;
                let _ = reply.send(result);
            }
            Command::SetPriority(priority, reply) => {
                let previous = self.election.set_priority(priority);
                let result = if self.election.is_standalone() {
                    Ok(previous)
                } else {
                    self.write_record()
                        .await
                        .map(|()| previous)
                        .map_err(Into::into)
                };
                let _ = reply.send(result);
            }
            Command::List(reply) => {
                let result = self.list().await;
                let _ = reply.send(result);
            }
            Command::RemoveTerminated(node, reply) => {
                let result = self.remove_records(node, Duration::ZERO).await;
                let _ = reply.send(result);
            }
            Command::StepDown(epoch) => self.step_down(epoch).await,
            Command::Nudge => {
                if !self.election.is_standalone() {
                    self.poll().await;
                }
            }
        }
        self.publish();
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(self.options.poll_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => break,
                Some(command) = commands.recv() => self.handle(command).await,
                _ = ticker.tick(), if !self.election.is_standalone() => self.poll().await,
            }
        }
        self.stop().await;
    }

    /// Graceful stop: publish TERMINATED (releasing any claim), tell the peers, publish the view.
    async fn stop(&mut self) {
        if self.election.is_standalone() {
            self.election.terminate();
            self.publish();
            return;
        }
        let was_master = self.election.state() == NodeState::Master;
        match self.write_terminated().await {
            Ok(()) => tracing::info!(was_master, "published TERMINATED"),
            Err(err) => tracing::warn!(error = %err, "could not publish TERMINATED"),
        }
        self.publish();
        if was_master {
            let from = self.options.node_id.to_string();
            let peers = &self.options.peers;
            let nudges = self.live_peer_uris().into_iter().map(|uri| {
                let from = from.clone();
                async move { peers.nudge(&uri, &from).await }
            });
            let _ = tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(nudges))
                .await;
        }
    }

    /// Publishes at once when the election's state or lease differs from what readers see: a
    /// node that stopped acting as master must say so before its next store call.
    fn publish_if_stepped_down(&self) {
        let stale = {
            let published = self.snapshot.borrow();
            published.state != self.election.state() || published.lease != self.election.lease()
        };
        if stale {
            self.publish();
        }
    }

    /// Publishes the snapshot, the master view (watchers wake only on a change of master) and
    /// the state history.
    fn publish(&self) {
        let now = self.clock.now();
        // A master still waiting out its predecessor's lease names itself already: it starts
        // acting at an instant no publish marks, and its answers must then name it.
        let waiting = self.election.state() == NodeState::Master
            && self
                .election
                .lease()
                .acting_from
                .is_some_and(|from| now < from);
        let active = if waiting {
            self.election.claim().cloned()
        } else {
            self.election.active_master(now)
        };
        let (master_id, master_uri) = match (&active, self.election.is_standalone()) {
            (_, true) => (
                self.options.node_id.to_string(),
                self.options.node_uri.clone(),
            ),
            (Some(claim), false) => (claim.node_id.to_string(), claim.node_uri.clone()),
            (None, false) => (String::new(), String::new()),
        };
        let snapshot = Snapshot {
            node_id: self.options.node_id.to_string(),
            node_uri: self.options.node_uri.clone(),
            plane_id: self.plane_id.clone(),
            mode: self.election.mode(),
            state: self.election.state(),
            priority: self.election.priority(),
            epoch: self.election.epoch(),
            master_id: master_id.clone(),
            master_uri: master_uri.clone(),
            lease: self.election.lease(),
            standalone: self.election.is_standalone(),
            follower_state: self.election.follower_state(),
            master_state_seq: self.election.master_state_seq(),
        };
        let previous_state = self.publisher.publish(snapshot);
        let state = self.snapshot.borrow().state;
        if previous_state != state
            && let Ok(mut history) = self.history.lock()
        {
            tracing::info!(from = %previous_state, to = %state, "state changed");
            history.push_back(StateChange {
                state,
                at_ms: wall_clock_ms(),
            });
            while history.len() > HISTORY_LEN {
                history.pop_front();
            }
        }
        let view = MasterView {
            epoch: self.election.epoch(),
            master_id,
            master_uri,
            plane_id: self.plane_id.clone(),
            members: self.election.members(now),
        };
        // Shared, not copied, by every watcher: a change of master reaches thousands of streams.
        self.view.send_if_modified(|current| {
            let changed = current.master_differs(&view);
            *current = Arc::new(view);
            changed
        });
    }
}

//! The runtime loop: `start` joins the plane and spawns it; each poll runs the store calls and
//! the election's decision; commands run between polls; a graceful stop publishes TERMINATED.
//! Every store call goes through `Runtime::bounded`.

use super::handle::{Command, NodeCounters, NodeHandle};
use super::publish::{Publisher, Snapshot, StateChange, follow_role};
use super::role::Promises;
use super::{NodeOptions, StartError};
use crate::clock::Clock;
use crate::election::{Decision, Election, Lease};
use crate::store::{Store, StoreError};
use haplane::{MasterView, NodeState};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Store calls while joining wait up to this long: there is no lease yet to protect, and a
/// start-up should survive a load spike rather than exit.
const JOINING_OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Every this many polls a node re-reads `plane.json` and a master its own claim, to find a
/// store that was replaced or rolled back (one extra read, not one every poll: the request
/// budget of docs/behaviour.md).
const STORE_CHECK_EVERY: u64 = 10;

/// The runtime loop's state.
pub(super) struct Runtime {
    pub(super) election: Election,
    pub(super) options: NodeOptions,
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) plane_id: String,
    pub(super) snapshot: watch::Receiver<Snapshot>,
    pub(super) publisher: Publisher,
    pub(super) history: Arc<Mutex<VecDeque<StateChange>>>,
    pub(super) counters: Arc<NodeCounters>,
    /// Set by the managed-state service; written into each record.
    pub(super) state_seq: Arc<AtomicU64>,
    pub(super) last_scan: Option<Instant>,
    pub(super) last_cleanup: Instant,
    /// Polls made, for `STORE_CHECK_EVERY`.
    pub(super) polls: u64,
    /// True until the node holds or may claim a lease (see `op_timeout`).
    pub(super) joining: bool,
    /// The leases reported to role watchers, shared with the handle.
    pub(super) promises: Arc<Promises>,
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
    let election = Election::new(
        options.election.clone(),
        options.ha_mode,
        options.priority,
        now,
    );
    let (snapshot, snapshot_rx) = watch::channel(Snapshot {
        node_id: options.election.node_id.to_string(),
        node_uri: options.election.node_uri.clone(),
        plane_id: String::new(),
        mode: options.ha_mode,
        state: election.state(),
        priority: options.priority,
        epoch: 0,
        master: None,
        lease: Lease::default(),
        standalone: election.is_standalone(),
        follower_state: election.follower_state(),
        master_state_seq: 0,
    });
    let (view, view_rx) = watch::channel(Arc::new(MasterView::default()));
    let publisher = Publisher {
        sender: Arc::new(snapshot),
        step_down_from: Arc::new(AtomicU64::new(0)),
        view: Arc::new(view),
        proposed: Arc::default(),
        clock: Arc::clone(&clock),
    };
    let promises = Arc::new(Promises::new(options.election.safety_margin));
    let mut runtime = Runtime {
        election,
        options,
        store,
        clock: Arc::clone(&clock),
        plane_id: String::new(),
        snapshot: snapshot_rx.clone(),
        publisher: publisher.clone(),
        history: Arc::new(Mutex::new(VecDeque::new())),
        counters: Arc::new(NodeCounters::default()),
        state_seq: Arc::new(AtomicU64::new(0)),
        last_scan: None,
        last_cleanup: now,
        polls: 0,
        joining: true,
        promises,
    };
    runtime.join_plane().await?;
    let (commands, command_rx) = mpsc::channel(64);
    let handle = NodeHandle {
        commands,
        snapshot: snapshot_rx,
        publisher,
        view: view_rx,
        history: Arc::clone(&runtime.history),
        counters: Arc::clone(&runtime.counters),
        clock,
        state_seq: Arc::clone(&runtime.state_seq),
        state_damage: Arc::default(),
        state_ready: Arc::default(),
        promises: Arc::clone(&runtime.promises),
    };
    let follow = tokio::spawn(follow_role(handle.publisher.clone(), handle.role_changes()));
    let task = tokio::spawn(async move {
        runtime.run(command_rx, shutdown).await;
        follow.abort();
    });
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
    pub(super) fn op_timeout(&self) -> Duration {
        if self.joining {
            return JOINING_OP_TIMEOUT;
        }
        // A hung store call must not outlive the lease it could be renewing.
        (self
            .options
            .election
            .heartbeat_timeout
            .saturating_sub(self.options.election.safety_margin)
            / 2)
        .max(Duration::from_millis(50))
    }

    /// Runs one store call under the operation timeout. Every store call goes through here, and
    /// a node that stopped acting as master publishes that first (docs/behaviour.md, exclusion).
    pub(super) async fn bounded<T>(
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

    pub(super) fn store_error(&self, source: StoreError) -> StartError {
        StartError::Store {
            store: self.store.describe(),
            source,
        }
    }

    /// One poll's reads and writes: own record, next-epoch probe, master's record, and a full
    /// scan only while an election may be needed.
    pub(super) async fn poll_store(&mut self) {
        self.counters.polls.fetch_add(1, Ordering::Relaxed);
        NodeCounters::mark(&self.counters.last_poll, self.clock.now());
        self.polls += 1;
        self.election.decide(self.clock.now());
        let live = self
            .election
            .members(self.clock.now())
            .iter()
            .filter(|m| m.live)
            .count();
        self.counters
            .live_members
            .store(u64::try_from(live).unwrap_or(u64::MAX), Ordering::Relaxed);
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

    pub(super) async fn poll(&mut self) {
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

    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::SetMode(mode, guard, reply) => {
                let result = self.set_mode(mode, guard).await;
                let _ = reply.send(result);
            }
            Command::SetPriority(priority, guard, reply) => {
                let result = self.set_priority(priority, guard).await;
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

    pub(super) async fn run(
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
    pub(super) async fn stop(&mut self) {
        if self.election.is_standalone() {
            self.election.terminate();
            self.publish();
            return;
        }
        let was_master = self.election.state() == NodeState::Master;
        // Readers, watchers and role watchers are told at once; the record that lets another
        // node claim waits until a lease reported to role watchers, and the margin, have passed.
        self.election.terminate();
        self.publish();
        let promised = self.promises.with_margin(self.clock.now());
        if was_master && !promised.is_zero() {
            tracing::info!(?promised, "waiting out the lease reported to role watchers");
            tokio::time::sleep(promised).await;
        }
        match self.write_terminated().await {
            Ok(()) => tracing::info!(was_master, "published TERMINATED"),
            Err(err) => tracing::warn!(error = %err, "could not publish TERMINATED"),
        }
        self.publish();
        if was_master {
            let from = self.options.election.node_id.to_string();
            let peers = &self.options.peers;
            let nudges = self.live_peer_uris().into_iter().map(|uri| {
                let from = from.clone();
                async move { peers.nudge(&uri, &from).await }
            });
            let _ = tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(nudges))
                .await;
        }
    }
}

//! `Client`: follows the master (see `follower`), answers typed HA and entity calls on the master,
//! and during a failover waits for the next pushed master and retries what is safe to retry.

use crate::answers::{ClaimInfo, NodeInfo, PlaneStates, StateInfo, Stats};
use crate::endpoint::endpoint;
use crate::error::Error;
use crate::follower;
use crate::options::{ConnectOptions, FollowerSettings};
use crate::transport::NodeChannel;
use haplane::convert::node_state_from_wire;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane::{HaMode, MasterRef, MasterView, NodeState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and calls carrying an idempotency key: retry on any failover symptom.
    Safe,
    /// Retry only when the server said it did not apply the call (a non-master refusing it).
    IfRefused,
}

/// A live HOT_STANDBY or HOT_BACKUP node: (id, URI).
pub(crate) type HotCopy = (String, String);

/// How long the list of hot copies is reused before the master is asked again.
const HOT_COPIES_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    views: watch::Receiver<Option<MasterView>>,
    settings: FollowerSettings,
    options: ConnectOptions,
    channels: Mutex<HashMap<String, NodeChannel>>,
    /// The live hot copies and when the master listed them.
    hot_copies: Mutex<Option<(Instant, Vec<HotCopy>)>>,
    unary_calls: AtomicU64,
    watch_streams: Arc<AtomicU64>,
    /// Bumped when a call finds the master unreachable; the follower then asks the other members
    /// (client rule 5).
    unreachable: watch::Sender<u64>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// A client of a haplane plane. Cheap to clone; the background follower stops when the last
/// clone is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), haplane_sdk::Error> {
/// use haplane_sdk::{Client, ConnectOptions};
/// let client = Client::connect(["http://127.0.0.1:8081"], ConnectOptions::default()).await?;
/// let master = client.wait_for_master(std::time::Duration::from_secs(10)).await?;
/// println!("master {} at {}", master.master_id(), master.master_uri());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn not_master_refusal(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition
        && status
            .metadata()
            .get(haplane::wire::MASTER_ID_METADATA)
            .is_some()
}

impl Client {
    /// Connects to a plane through any of `endpoints` (the rest are learnt from the members the
    /// nodes report) and waits for the first view of the master.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), haplane_sdk::Error> {
    /// let client = haplane_sdk::Client::connect(
    ///     ["http://10.0.0.1:8081", "http://10.0.0.2:8081"],
    ///     haplane_sdk::ConnectOptions::default(),
    /// ).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`] for an endpoint that is not a valid URI,
    /// [`Error::NoEndpoint`] when none answered `WatchMaster` within the failover timeout.
    pub async fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let settings = FollowerSettings::from_options(&options);
        let seeds: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Err(Error::NoEndpoint("no endpoints given".into()));
        }
        for seed in &seeds {
            endpoint(seed, &settings.endpoint)?;
        }
        let (sender, mut views) = watch::channel(None);
        let (refusal_sender, mut refusals) = watch::channel(None);
        let watch_streams = Arc::new(AtomicU64::new(0));
        let (unreachable, unreachable_calls) = watch::channel(0);
        let follower = tokio::spawn(follower::follow(
            seeds.clone(),
            settings.clone(),
            sender,
            refusal_sender,
            Arc::clone(&watch_streams),
            unreachable_calls,
        ));
        // The first view, or the first refusal of our credentials (no point waiting longer).
        let first = tokio::time::timeout(options.failover_timeout, async {
            tokio::select! {
                found = views.wait_for(Option::is_some) => found.map(|_| ()).map_err(|_| Error::Closed),
                refused = refusals.wait_for(Option::is_some) => Err(match refused.as_deref() {
                    Ok(Some(status)) => Error::from_status(status),
                    _ => Error::Closed,
                }),
            }
        })
        .await
        .unwrap_or_else(|_| Err(Error::NoEndpoint(seeds.join(", "))));
        if let Err(err) = first {
            follower.abort();
            return Err(err);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                views,
                settings,
                options,
                channels: Mutex::new(HashMap::new()),
                hot_copies: Mutex::new(None),
                unary_calls: AtomicU64::new(0),
                watch_streams,
                unreachable,
                follower,
            }),
        })
    }

    /// The latest view of the plane (the master may be empty during a failover).
    pub fn view(&self) -> Option<MasterView> {
        self.inner.views.borrow().clone()
    }

    /// The current master's view, if the plane has one now.
    ///
    /// ```no_run
    /// # fn demo(client: &haplane_sdk::Client) {
    /// if let Some(master) = client.master() { println!("{}", master.master_uri()); }
    /// # }
    /// ```
    pub fn master(&self) -> Option<MasterView> {
        self.view().filter(|view| view.master.is_some())
    }

    /// A receiver that changes with every accepted view (pushed, never polled).
    ///
    /// ```no_run
    /// # async fn demo(client: haplane_sdk::Client) {
    /// let mut views = client.watch_master();
    /// while views.changed().await.is_ok() {
    ///     println!("{:?}", views.borrow().as_ref().map(|v| v.master.clone()));
    /// }
    /// # }
    /// ```
    pub fn watch_master(&self) -> watch::Receiver<Option<MasterView>> {
        self.inner.views.clone()
    }

    /// Waits until the plane has a master (at most `timeout`).
    ///
    /// # Errors
    ///
    /// [`Error::NoMaster`] when no master was shown within `timeout`, [`Error::Closed`] once the
    /// client is closed.
    pub async fn wait_for_master(&self, timeout: Duration) -> Result<MasterView, Error> {
        let mut views = self.inner.views.clone();
        let found = tokio::time::timeout(
            timeout,
            views.wait_for(|view| view.as_ref().is_some_and(|v| v.master.is_some())),
        )
        .await;
        match found {
            Ok(Ok(view)) => view.clone().ok_or(Error::Closed),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::NoMaster(timeout)),
        }
    }

    /// Counters of what the client has done.
    pub fn stats(&self) -> Stats {
        Stats {
            unary_calls: self.inner.unary_calls.load(Ordering::Relaxed),
            watch_streams: self.inner.watch_streams.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn failover_timeout(&self) -> Duration {
        self.inner.options.failover_timeout
    }

    /// A (cached, lazily connected) channel to `uri`.
    pub(crate) fn channel(&self, uri: &str) -> Result<NodeChannel, Error> {
        let mut channels = self.inner.channels.lock().map_err(|_| Error::Closed)?;
        if let Some(channel) = channels.get(uri) {
            return Ok(channel.clone());
        }
        let channel = lazy_channel(uri, &self.inner.settings)?;
        channels.insert(uri.to_owned(), channel.clone());
        Ok(channel)
    }

    /// The live HOT_STANDBY and HOT_BACKUP nodes (id, URI), as the master listed them at most
    /// `HOT_COPIES_REFRESH` ago (the pushed master view does not follow member changes).
    pub(crate) async fn hot_copies(&self) -> Result<Vec<HotCopy>, Error> {
        let cached = self
            .inner
            .hot_copies
            .lock()
            .map_err(|_| Error::Closed)?
            .clone()
            .filter(|(listed, _)| listed.elapsed() < HOT_COPIES_REFRESH);
        if let Some((_, copies)) = cached {
            return Ok(copies);
        }
        let copies: Vec<HotCopy> = self
            .list_states()
            .await?
            .nodes
            .into_iter()
            .filter(|node| {
                node.live && matches!(node.status, NodeState::HotStandby | NodeState::HotBackup)
            })
            .map(|node| (node.node_id, node.node_uri))
            .collect();
        *self.inner.hot_copies.lock().map_err(|_| Error::Closed)? =
            Some((Instant::now(), copies.clone()));
        Ok(copies)
    }

    /// Runs `call` against the master, waiting for the next pushed master and retrying as
    /// `retry` allows, within the failover timeout.
    pub(crate) async fn on_master<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, Error>
    where
        F: FnMut(NodeChannel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.options.failover_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let view = self.wait_for_master(remaining).await?;
            let channel = self.channel(view.master_uri())?;
            self.inner.unary_calls.fetch_add(1, Ordering::Relaxed);
            let status = match call(channel).await {
                Ok(value) => return Ok(value),
                Err(status) => status,
            };
            let retriable = not_master_refusal(&status)
                || (retry == Retry::Safe
                    && matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Unknown
                            | tonic::Code::Cancelled
                            | tonic::Code::DeadlineExceeded
                    ));
            if !retriable {
                return Err(Error::from_final_status(&status));
            }
            if status.code() == tonic::Code::Unavailable {
                self.inner
                    .unreachable
                    .send_modify(|count| *count = count.wrapping_add(1));
            }
            if Instant::now() >= deadline {
                return Err(Error::NoMaster(self.inner.options.failover_timeout));
            }
            // Wait briefly for a view newer than the one just tried (the push of the next
            // master), then try again.
            let mut views = self.inner.views.clone();
            views.borrow_and_update();
            let _ = tokio::time::timeout(Duration::from_millis(200), views.changed()).await;
        }
    }

    /// This plane's master's own state.
    ///
    /// # Errors
    ///
    /// [`Error::NoMaster`](crate::Error::NoMaster) when no master answered within the failover
    /// timeout (the call is retried on each master pushed until then);
    /// [`Error::Rejected`](crate::Error::Rejected) when the master refused it;
    /// [`Error::Closed`](crate::Error::Closed) once the client is closed.
    pub async fn get_state(&self) -> Result<StateInfo, Error> {
        let answer = self
            .on_master(Retry::Safe, |channel| async move {
                HaServiceClient::new(channel)
                    .get_state(pb::GetStateRequest {})
                    .await
            })
            .await?
            .into_inner();
        Ok(StateInfo {
            state: node_state_from_wire(answer.state)
                .map_err(|e| Error::Protocol(e.to_string()))?,
            node_id: answer.node_id,
            priority: answer.priority,
            epoch: answer.epoch,
            master: MasterRef::from_wire(answer.master_id, answer.master_uri),
            plane_id: answer.plane_id,
        })
    }

    /// Every node record, as the master sees them.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`].
    pub async fn list_states(&self) -> Result<PlaneStates, Error> {
        let answer = self
            .on_master(Retry::Safe, |channel| async move {
                HaServiceClient::new(channel)
                    .list_states(pb::ListStatesRequest {})
                    .await
            })
            .await?
            .into_inner();
        let nodes = answer
            .nodes
            .into_iter()
            .map(|node| {
                Ok(NodeInfo {
                    status: node_state_from_wire(node.status)
                        .map_err(|e| Error::Protocol(e.to_string()))?,
                    node_id: node.node_id,
                    node_uri: node.node_uri,
                    priority: node.priority,
                    live: node.live,
                    last_seen_age: Duration::from_millis(node.last_seen_age_ms),
                    heartbeat: node.heartbeat,
                    version: node.version,
                    epoch_seen: node.epoch_seen,
                    state_seq: node.state_seq,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(PlaneStates {
            plane_id: answer.plane_id,
            own_id: answer.own_id,
            master_id: (!answer.master_id.is_empty()).then_some(answer.master_id),
            epoch: answer.epoch,
            nodes,
        })
    }

    /// The plane's masters, newest first: the newest `limit` epochs (0: 100), from the claims
    /// in the store.
    ///
    /// # Errors
    ///
    /// As the other reads: no master within the failover timeout, or the master's refusal.
    pub async fn history(&self, limit: u32) -> Result<Vec<ClaimInfo>, Error> {
        let answer = self
            .on_master(Retry::Safe, |channel| async move {
                HaServiceClient::new(channel)
                    .history(pb::HistoryRequest { limit })
                    .await
            })
            .await?
            .into_inner();
        Ok(answer
            .claims
            .into_iter()
            .map(|claim| ClaimInfo {
                epoch: claim.epoch,
                node_id: claim.node_id,
                node_uri: claim.node_uri,
                claimed_at_ms: claim.claimed_at_ms,
                reason: claim.reason,
            })
            .collect())
    }

    /// Changes the master's HA mode (for example to hand over); answers its previous state.
    /// Not retried once delivered.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`], and [`Error::Unknown`](crate::Error::Unknown) when the
    /// connection broke after the call was sent: it may have been applied, so it is not retried.
    pub async fn set_state(&self, mode: HaMode) -> Result<NodeState, Error> {
        let wire = pb::HaMode::from(mode) as i32;
        let answer = self
            .on_master(Retry::IfRefused, |channel| async move {
                HaServiceClient::new(channel)
                    .set_state(pb::SetStateRequest { mode: wire })
                    .await
            })
            .await?
            .into_inner();
        node_state_from_wire(answer.previous_state).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Changes the master's priority; answers the previous one.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`], and [`Error::Unknown`](crate::Error::Unknown) when the
    /// connection broke after the call was sent: it may have been applied, so it is not retried.
    pub async fn set_priority(&self, priority: i64) -> Result<i64, Error> {
        let answer = self
            .on_master(Retry::IfRefused, |channel| async move {
                HaServiceClient::new(channel)
                    .set_priority(pb::SetPriorityRequest { priority })
                    .await
            })
            .await?
            .into_inner();
        Ok(answer.previous_priority)
    }

    /// Removes terminated and long-dead records (or the one named); answers the removed ids.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`].
    pub async fn remove_terminated(&self, node_id: Option<&str>) -> Result<Vec<String>, Error> {
        let node_id = node_id.map(str::to_owned);
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let node_id = node_id.clone();
                async move {
                    HaServiceClient::new(channel)
                        .remove_terminated(pb::RemoveTerminatedRequest { node_id })
                        .await
                }
            })
            .await?
            .into_inner();
        Ok(answer.removed)
    }
}

/// Opens a channel to `uri` for unary calls, lazily.
fn lazy_channel(uri: &str, settings: &FollowerSettings) -> Result<NodeChannel, Error> {
    Ok(NodeChannel::new(
        endpoint(uri, &settings.endpoint)?.connect_lazy(),
        settings.authorization.clone(),
    ))
}

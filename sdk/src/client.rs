//! `Client`: follows the master (see `follower`), answers typed HA and entity calls on the master,
//! and during a failover waits for the next pushed master and retries what is safe to retry.

use crate::error::Error;
use crate::follower::{self, FollowerSettings};
use crate::transport::{Credentials, NodeChannel};
use haplane::convert::node_state_from_wire;
use haplane::pb::{
    self, entity_service_client::EntityServiceClient, ha_service_client::HaServiceClient,
};
use haplane::{HaMode, MasterRef, MasterView, NodeState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a client connects and how long it rides out a failover.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long calls wait for a new master (and retry) during a failover. Default 30 s.
    pub failover_timeout: Duration,
    /// Per-endpoint connect timeout. Default 1 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a frozen node's stream is dropped after three missed
    /// pings. Default 1 s.
    pub keep_alive: Duration,
    /// The plane's poll period (the nodes' `--poll-period`). When the node the client streams
    /// from has shown no master (or a view the client does not believe) for this long, the
    /// client asks the other members for one and moves its stream to the master they report
    /// (`docs/client-rules.md`, rule 2). Default 1 s, the nodes' default.
    pub poll_period: Duration,
    /// For nodes started with `--auth-user`. Default none.
    pub credentials: Option<Credentials>,
    /// PEM CA certificate trusted (besides the system roots) for `https://` endpoints, e.g. read
    /// with `std::fs::read(ca_file)`. Default none.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            failover_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            poll_period: Duration::from_secs(1),
            credentials: None,
            ca_pem: None,
        }
    }
}

/// What the client has done, for tests and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Unary RPCs of the SDK's typed calls (not the follower's `GetState` probes of a node that
    /// shows no master; `master_channel` traffic is the caller's).
    pub unary_calls: u64,
    /// `WatchMaster` streams opened (one per member moved to).
    pub watch_streams: u64,
}

/// One node, as `get_state` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub node_id: String,
    pub state: NodeState,
    pub priority: i64,
    pub epoch: u64,
    /// The master the node knows of, `None` while it knows none.
    pub master: Option<MasterRef>,
    pub plane_id: String,
}

/// One node record, as `list_states` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub node_uri: String,
    pub status: NodeState,
    pub priority: i64,
    pub live: bool,
    pub last_seen_age: Duration,
    pub heartbeat: u64,
    pub version: String,
}

/// The plane, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneStates {
    pub plane_id: String,
    pub own_id: String,
    /// The master's id, `None` while the plane has none.
    pub master_id: Option<String>,
    pub epoch: u64,
    pub nodes: Vec<NodeInfo>,
}

/// A managed-state entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: String,
    /// A JSON object.
    pub attributes: serde_json::Value,
    pub version: u64,
    pub updated_epoch: u64,
}

/// Whether a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and calls carrying an idempotency key: retry on any failover symptom.
    Safe,
    /// Retry only when the server said it did not apply the call (a non-master refusing it).
    IfRefused,
}

#[derive(Debug)]
struct Inner {
    views: watch::Receiver<Option<MasterView>>,
    settings: FollowerSettings,
    options: ConnectOptions,
    channels: Mutex<HashMap<String, NodeChannel>>,
    unary_calls: AtomicU64,
    watch_streams: Arc<AtomicU64>,
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
    pub async fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let settings = FollowerSettings {
            connect_timeout: options.connect_timeout,
            keep_alive: options.keep_alive,
            poll_period: options.poll_period,
            ca_certificate: options
                .ca_pem
                .as_ref()
                .map(tonic::transport::Certificate::from_pem),
            authorization: options
                .credentials
                .as_ref()
                .and_then(Credentials::authorization),
        };
        let seeds: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Err(Error::NoEndpoint("no endpoints given".into()));
        }
        for seed in &seeds {
            follower::endpoint(seed, &settings)?;
        }
        let (sender, mut views) = watch::channel(None);
        let (refusal_sender, mut refusals) = watch::channel(None);
        let watch_streams = Arc::new(AtomicU64::new(0));
        let follower = tokio::spawn(follower::follow(
            seeds.clone(),
            settings.clone(),
            sender,
            refusal_sender,
            watch_streams.clone(),
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
                unary_calls: AtomicU64::new(0),
                watch_streams,
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
        let channel = follower::lazy_channel(uri, &self.inner.settings)?;
        channels.insert(uri.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Runs `call` against the master, waiting for the next pushed master and retrying as
    /// `retry` allows, within the failover timeout.
    async fn on_master<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, Error>
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
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        Error::Unknown(status.message().to_owned())
                    }
                    _ => Error::from_status(&status),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NoMaster(self.inner.options.failover_timeout));
            }
            // Wait briefly for a newer view (the push of the next master), then try again.
            let mut views = self.inner.views.clone();
            let _ = tokio::time::timeout(Duration::from_millis(200), views.changed()).await;
        }
    }

    /// This plane's master's own state.
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

    /// Changes the master's HA mode (for example to hand over); answers its previous state.
    /// Not retried once delivered.
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

    /// Reads one entity from the master.
    pub async fn get_entity(&self, id: &str) -> Result<Entity, Error> {
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let id = id.to_owned();
                async move {
                    EntityServiceClient::new(channel)
                        .get(pb::GetRequest { id })
                        .await
                }
            })
            .await?
            .into_inner();
        answer
            .entity
            .map(entity_from_wire)
            .ok_or_else(|| Error::Protocol("no entity in the answer".into()))?
    }

    /// Entities whose id starts with `prefix`, from the master.
    pub async fn list_entities(&self, prefix: &str) -> Result<Vec<Entity>, Error> {
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let prefix = prefix.to_owned();
                async move {
                    EntityServiceClient::new(channel)
                        .list(pb::ListRequest { prefix })
                        .await
                }
            })
            .await?
            .into_inner();
        answer.entities.into_iter().map(entity_from_wire).collect()
    }

    /// Creates or replaces an entity on the master. The write carries a fresh idempotency key,
    /// so it is retried through a failover and applied once.
    ///
    /// ```no_run
    /// # async fn demo(client: haplane_sdk::Client) -> Result<(), haplane_sdk::Error> {
    /// let entity = client.put_entity("apps/web", serde_json::json!({"replicas": 3}), None).await?;
    /// assert_eq!(entity.attributes["replicas"], 3);
    /// # Ok(()) }
    /// ```
    pub async fn put_entity(
        &self,
        id: &str,
        attributes: serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Entity, Error> {
        let key = new_idempotency_key();
        let attributes_json = attributes.to_string();
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let request = pb::PutRequest {
                    id: id.to_owned(),
                    attributes_json: attributes_json.clone(),
                    expected_version,
                    idempotency_key: key.clone(),
                };
                async move { EntityServiceClient::new(channel).put(request).await }
            })
            .await?
            .into_inner();
        answer
            .entity
            .map(entity_from_wire)
            .ok_or_else(|| Error::Protocol("no entity in the answer".into()))?
    }

    /// Deletes an entity on the master (idempotently, like `put_entity`); answers its log position.
    pub async fn delete_entity(
        &self,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, Error> {
        let key = new_idempotency_key();
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let request = pb::DeleteRequest {
                    id: id.to_owned(),
                    expected_version,
                    idempotency_key: key.clone(),
                };
                async move { EntityServiceClient::new(channel).delete(request).await }
            })
            .await?
            .into_inner();
        Ok(answer.seq)
    }
}

fn new_idempotency_key() -> String {
    format!(
        "sdk-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn entity_from_wire(entity: pb::Entity) -> Result<Entity, Error> {
    Ok(Entity {
        attributes: serde_json::from_str(&entity.attributes_json)
            .map_err(|e| Error::Protocol(e.to_string()))?,
        id: entity.id,
        version: entity.version,
        updated_epoch: entity.updated_epoch,
    })
}

//! `haplane launch`: opens the store, starts the node, serves gRPC and REST on one port, writes
//! the PID file, and stops gracefully on SIGTERM / SIGINT. `store.rs` opens the store,
//! `stop.rs` is `haplane stop`.

mod stop;
mod store;

pub use stop::{StopError, stop};

use crate::api::auth::{self, Authenticator};
use crate::api::grpc;
use crate::api::grpc::PeerClient;
use crate::api::grpc::entities::GrpcEntities;
use crate::api::rest::{self, entities as rest_entities};
use crate::clock::{Clock, TokioClock, wall_clock_ms};
use crate::config::{Settings, StoreLocation};
use crate::election::ElectionConfig;
use crate::node::{self, NodeHandle, NodeOptions};
use crate::serve;
use crate::service::HaCore;
use crate::state::log::StateLog;
use crate::state::service::StateService;
use crate::store::counting::CountingStore;
use crate::store::{Store, StoreError};
use haplane::NodeId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why `launch` ended with an error (the process exits non-zero with this message).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(StoreError),
    #[error("{0}")]
    Start(#[from] node::StartError),
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot register the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server failed: {0}")]
    Serve(#[from] serve::ServeError),
    #[error("the server task failed: {0}")]
    ServerTask(#[from] tokio::task::JoinError),
    #[error("--tls-cert / --tls-key: {0}")]
    Tls(#[from] serve::TlsError),
    #[error("--node-id: a node that serves no port needs an explicit id")]
    NodeIdRequired,
}

/// The default node id: `<hostname>-<port>`, reduced to the allowed characters, so a node
/// restarted on the same host and port keeps its identity.
fn default_node_id(port: u16) -> NodeId {
    let host: String = node::hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(NodeId::MAX_LEN - 6)
        .collect();
    NodeId::parse(&format!("{host}-{port}"))
        .or_else(|_| NodeId::parse(&format!("node-{port}")))
        .unwrap_or_else(|_| unreachable!("node-<port> is always a valid id"))
}

/// The node's runtime options: the settings with its id and URI, as this process runs it.
fn node_options(
    settings: &Settings,
    node_id: NodeId,
    node_uri: String,
    peers: PeerClient,
) -> NodeOptions {
    NodeOptions {
        election: ElectionConfig {
            node_id,
            node_uri,
            version: settings.node_version.clone(),
            heartbeat_timeout: settings.heartbeat_timeout,
            safety_margin: settings.safety_margin,
            startup_grace: node::startup_grace(settings.poll_period),
            started_at_ms: wall_clock_ms(),
            pid: std::process::id(),
            hostname: node::hostname(),
        },
        ha_mode: settings.ha_mode,
        priority: settings.priority,
        poll_period: settings.poll_period,
        record_retention: settings.record_retention,
        persist: settings.persist,
        peers: Arc::new(peers),
    }
}

/// Sets `sender` to true on the first SIGTERM or SIGINT.
fn stop_on_signal(sender: watch::Sender<bool>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL only");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        let _ = sender.send(true);
    });
}

/// Connections the kernel may hold completed but not yet accepted (capped by
/// `net.core.somaxconn`). Past it Linux drops the handshake's last ACK: the client believes it is
/// connected while the node never sees the connection, so a burst must fit.
const LISTEN_BACKLOG: u32 = 4096;

/// The node's listening socket on `address` (`SO_REUSEADDR`, as tokio's `bind` sets it).
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The listening socket, the address it got, and the node's id and advertised URI (both derived
/// from that address unless the settings name them).
struct Bound {
    listener: TcpListener,
    address: SocketAddr,
    node_id: NodeId,
    node_uri: String,
}

fn bind(settings: &Settings) -> Result<Bound, LaunchError> {
    let bind_error = |source| LaunchError::Bind {
        address: settings.bind,
        source,
    };
    let listener = listen(settings.bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let node_id = settings
        .node_id
        .clone()
        .unwrap_or_else(|| default_node_id(address.port()));
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let node_uri = settings
        .advertise_uri
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    Ok(Bound {
        listener,
        address,
        node_id,
        node_uri,
    })
}

/// gRPC, REST and the console on one router, behind the Host check and (if configured) the
/// credentials check; starts the managed-state service.
fn router(
    settings: &Settings,
    handle: &NodeHandle,
    counting: &Arc<CountingStore>,
    authenticator: Option<Arc<Authenticator>>,
    node_uri: &str,
    stopped: watch::Receiver<bool>,
) -> Result<axum::Router, LaunchError> {
    let core = HaCore::new(
        handle.clone(),
        settings.poll_period,
        settings.heartbeat_timeout,
        stopped.clone(),
        Arc::clone(counting),
        settings.limits.max_watchers,
    );
    let state_log = (settings.store != StoreLocation::None)
        .then(|| StateLog::new(Arc::<CountingStore>::clone(counting)));
    let state = StateService::new(state_log, handle.clone());
    tokio::spawn(state.clone().run(settings.poll_period, stopped));
    let grpc_routes = grpc::routes(
        core.clone(),
        GrpcEntities {
            state: state.clone(),
            core: core.clone(),
        },
        settings.poll_period,
    )?;
    let entities = rest_entities::router(state, &core);
    let mut app = rest::router(core, entities, grpc_routes.into_axum_router());
    if let Some(authenticator) = authenticator {
        app = app.layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::require_credentials,
        ));
    }
    // Outermost: a request for a foreign Host is refused before it can count as a failed login.
    Ok(app.layer(axum::middleware::from_fn_with_state(
        rest::HostPolicy::new(node_uri, &settings.allowed_hosts),
        rest::host_guard,
    )))
}

/// How connections are served: TLS, keep-alive and the connection limits.
fn connection_settings(
    settings: &Settings,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> serve::ConnectionSettings {
    serve::ConnectionSettings {
        tls,
        // Pings every poll period keep streams alive through proxies; a watcher too busy to
        // answer quickly is not dropped (a dead one only costs a parked task until TCP notices).
        http2_keepalive_interval: settings.poll_period,
        http2_keepalive_timeout: settings.heartbeat_timeout.max(Duration::from_secs(20)),
        handshake_timeout: settings.limits.handshake_timeout,
        header_read_timeout: settings.limits.header_read_timeout,
        body_read_timeout: settings.limits.body_read_timeout,
        idle_timeout: settings.limits.idle_timeout,
        max_connections: serve::connection_limit(settings.limits.max_connections),
        max_streams_per_connection: settings.limits.max_streams_per_connection,
    }
}

/// A node started in this process: `haplane launch`'s, or a participant embedded in another
/// program (`crate::participant`).
pub struct RunningNode {
    pub handle: NodeHandle,
    pub node_id: NodeId,
    pub node_uri: String,
    /// The port's address, when the node serves one.
    pub address: Option<SocketAddr>,
    /// The store, as the start-up line names it.
    pub store: String,
    node_task: tokio::task::JoinHandle<()>,
    stopped_sender: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<Result<(), serve::ServeError>>>,
}

/// The port a serving node listens on, and the TLS it serves.
struct Port {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    authenticator: Option<Arc<Authenticator>>,
}

/// Starts a node on the settings' store; with `serve`, also its gRPC and REST port. The node
/// runs until `stop` turns true (then it hands over gracefully); `RunningNode::finished` waits
/// for that.
pub async fn start(
    settings: &Settings,
    serve: bool,
    stop: watch::Receiver<bool>,
) -> Result<RunningNode, LaunchError> {
    let (port, address, node_id, node_uri) = if serve {
        let bound = bind(settings)?;
        let authenticator = settings
            .auth
            .as_ref()
            .map(|auth| Arc::new(Authenticator::new(auth)));
        // TLS first: a bad certificate must fail before the node joins the plane.
        let tls = settings
            .tls
            .as_ref()
            .map(|tls| serve::tls_acceptor(&tls.cert_pem, tls.key_pem.expose()))
            .transpose()?;
        let port = Port {
            listener: bound.listener,
            tls,
            authenticator,
        };
        (
            Some(port),
            Some(bound.address),
            bound.node_id,
            bound.node_uri,
        )
    } else {
        let node_id = settings
            .node_id
            .clone()
            .ok_or(LaunchError::NodeIdRequired)?;
        // Nothing listens: peers' nudges and step-down requests to it fail fast, and a peer
        // promoted over it waits out its lease instead.
        let node_uri = settings
            .advertise_uri
            .clone()
            .unwrap_or_else(|| NOT_SERVED_URI.to_owned());
        (None, None, node_id, node_uri)
    };
    let authenticator = port.as_ref().and_then(|port| port.authenticator.clone());
    let peers = PeerClient::new(
        settings.tls.as_ref().map(|tls| tls.peer_ca_pem.as_str()),
        match &authenticator {
            Some(auth) => auth.peer_authorization(),
            None => settings
                .auth
                .as_ref()
                .and_then(|auth| Authenticator::new(auth).peer_authorization()),
        },
    );
    let store = store::open_store(settings)
        .await
        .map_err(LaunchError::Store)?;
    store::warn_about_permissions(settings);
    #[cfg(feature = "test-support")]
    let store = crate::store::faulty::FaultyStore::wrap_if_enabled(store);
    #[cfg(not(feature = "test-support"))]
    if std::env::var_os(crate::store::FAULTS_ENV).is_some() {
        tracing::warn!("HAPLANE_TEST_STORE_FAULTS is ignored: this build has no test support");
    }
    let counting = Arc::new(CountingStore::new(store));
    let options = node_options(settings, node_id.clone(), node_uri.clone(), peers);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let (handle, node_task) =
        node::start(options, Arc::<CountingStore>::clone(&counting), clock, stop).await?;
    let (stopped_sender, stopped) = watch::channel(false);
    let server = match port {
        None => None,
        Some(port) => {
            let app = router(
                settings,
                &handle,
                &counting,
                port.authenticator,
                &node_uri,
                stopped.clone(),
            )?;
            Some(tokio::spawn(serve::serve(
                port.listener,
                connection_settings(settings, port.tls),
                // with_state(()) lets axum prepare its routes once instead of per request.
                app.with_state(()),
                serve::serving_threads(),
                stopped,
                // Lets streams deliver their last view and UNAVAILABLE before connections close.
                Duration::from_millis(200),
            )))
        }
    };
    Ok(RunningNode {
        handle,
        node_id,
        node_uri,
        address,
        store: counting.describe(),
        node_task,
        stopped_sender,
        server,
    })
}

/// What a node that serves no port advertises.
const NOT_SERVED_URI: &str = "http://127.0.0.1:0";

impl RunningNode {
    /// Waits for the node to stop (after its graceful hand-over), then closes its port.
    pub async fn finished(self) -> Result<(), LaunchError> {
        let _ = self.node_task.await;
        let _ = self.stopped_sender.send(true);
        let Some(server) = self.server else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(result) => Ok(result??),
            Err(_) => {
                tracing::warn!("connections did not close within 5s; exiting anyway");
                Ok(())
            }
        }
    }
}

/// Runs a node until it is stopped (SIGTERM / SIGINT).
pub async fn launch(settings: Settings) -> Result<(), LaunchError> {
    let (stop_sender, stop) = watch::channel(false);
    stop_on_signal(stop_sender);
    let running = start(&settings, true, stop).await?;
    write_pid_file(&settings.pid_file)?;
    println!(
        "haplane {} listening on {} (advertised as {}), store {}, state {}",
        running.node_id,
        running
            .address
            .map_or_else(|| "nothing".to_owned(), |address| address.to_string()),
        running.node_uri,
        running.store,
        running.handle.snapshot().state
    );
    let finished = running.finished().await;
    let _ = std::fs::remove_file(&settings.pid_file);
    finished
}

fn write_pid_file(path: &Path) -> Result<(), LaunchError> {
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
        LaunchError::PidFile {
            path: path.display().to_string(),
            source,
        }
    })
}

//! `haplane launch`: opens the store, starts the node, serves gRPC and REST on one port, writes
//! the PID file, and stops gracefully on SIGTERM / SIGINT. `running.rs` starts a node (for
//! `launch` and for an embedded participant), `store.rs` opens the store, `stop.rs` is
//! `haplane stop`.

mod running;
mod stop;
mod store;

pub use running::{RunningNode, start};
pub use stop::{StopError, stop};
pub use store::open_store;

use crate::api::auth::{self, Authenticator};
use crate::api::grpc;
use crate::api::grpc::PeerClient;
use crate::api::grpc::entities::GrpcEntities;
use crate::api::rest::{self, entities as rest_entities};
use crate::clock::wall_clock_ms;
use crate::config::{Settings, StoreLocation};
use crate::election::ElectionConfig;
use crate::node::{self, NodeHandle, NodeOptions};
use crate::serve;
use crate::service::HaCore;
use crate::state::log::StateLog;
use crate::state::service::StateService;
use crate::store::StoreError;
use crate::store::counting::CountingStore;
use haplane::NodeId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
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

/// gRPC, REST and the console on one router, behind the credentials check if configured (the
/// Host check runs before it, in `serve`: see `connection_settings`); starts the managed-state
/// service.
fn router(
    settings: &Settings,
    handle: &NodeHandle,
    counting: &Arc<CountingStore>,
    authenticator: Option<Arc<Authenticator>>,
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
    let state = StateService::new(state_log, handle.clone(), settings.state_snapshots);
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
    let mut app = rest::router(core, entities, grpc_routes);
    if let Some(authenticator) = authenticator {
        app = app.layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::require_credentials,
        ));
    }
    Ok(app)
}

/// How connections are served: TLS, the Host check, keep-alive and the connection limits.
fn connection_settings(
    settings: &Settings,
    tls: Option<tokio_rustls::TlsAcceptor>,
    node_uri: &str,
    authenticates: bool,
) -> serve::ConnectionSettings {
    serve::ConnectionSettings {
        tls,
        hosts: rest::HostPolicy::new(node_uri, &settings.allowed_hosts),
        // The credentials check throttles failed logins by the client's address.
        client_addresses: authenticates,
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

/// Runs a node until it is stopped (SIGTERM / SIGINT).
pub async fn launch(settings: Settings) -> Result<(), LaunchError> {
    let (stop_sender, stop) = watch::channel(false);
    stop_on_signal(stop_sender);
    // Before the node joins the plane: an unwritable PID file is a start-up error, not a node
    // that peers saw join (and perhaps elected) and then watch go silent.
    write_pid_file(&settings.pid_file)?;
    let running = match start(&settings, true, stop).await {
        Ok(running) => running,
        Err(err) => {
            let _ = std::fs::remove_file(&settings.pid_file);
            return Err(err);
        }
    };
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

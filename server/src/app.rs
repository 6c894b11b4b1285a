//! `haplane launch` and `haplane stop`: opens the store, starts the node, serves gRPC and REST on
//! one port, writes the PID file, and stops gracefully on SIGTERM / SIGINT.

use crate::auth::{self, Authenticator};
use crate::clock::{Clock, TokioClock, wall_clock_ms};
use crate::config::{Settings, StoreLocation};
use crate::election::ElectionConfig;
use crate::grpc::PeerClient;
use crate::grpc_entities::GrpcEntities;
use crate::node::{self, NodeOptions};
use crate::service::HaCore;
use crate::state::log::StateLog;
use crate::state::service::StateService;
use crate::store::counting::CountingStore;
use crate::store::disabled::NoStore;
use crate::store::fs::DirStore;
use crate::store::s3::{S3Options, S3Store};
use crate::store::{Store, StoreError};
use crate::{grpc, rest, rest_entities, serve};
use haplane::NodeId;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why `launch` ended with an error (the process exits non-zero with this message).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
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
    #[error("server failed: {0}")]
    Serve(String),
    #[error("--tls-cert / --tls-key: {0}")]
    Tls(String),
}

async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &settings.store {
        StoreLocation::None => Arc::new(NoStore),
        StoreLocation::Directory(path) => {
            let store = DirStore::open(path)?;
            if let Err(problem) = crate::store::nfs::check_directory_store(path) {
                if !settings.accept_nfs_lookup_cache_risk {
                    return Err(StoreError::Generic { message: problem });
                }
                tracing::warn!("{problem}; starting anyway (--accept-nfs-lookup-cache-risk)");
            }
            Arc::new(store)
        }
        StoreLocation::S3 {
            location,
            endpoint,
            path_style,
        } => {
            let mut options = S3Options::from_location(location)?;
            options.endpoint = endpoint.clone();
            options.path_style = *path_style;
            let store = S3Store::connect(options).await?;
            store.probe_conditional_writes().await?;
            Arc::new(store)
        }
    })
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

/// Warns (at start-up, without refusing: a shared deployment may have reasons, and refusing
/// would stop an upgraded node) about secret files that others may read or change, and a store
/// directory anyone may write to (whoever can write a record there can claim mastership or plant
/// peer URIs).
fn warn_about_permissions(settings: &Settings) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|metadata| metadata.permissions().mode() & 0o7777)
            .ok()
    };
    for path in &settings.secret_files {
        if let Some(mode) = mode(path).filter(|mode| mode & 0o077 != 0) {
            tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"), "a file holding secrets is open to its group or others; chmod 600 it");
        }
    }
    if let StoreLocation::Directory(root) = &settings.store
        && let Some(mode) = mode(root).filter(|mode| mode & 0o002 != 0)
    {
        tracing::warn!(path = %root.display(), mode = format!("{mode:04o}"), "the store directory is world-writable: any local user can write records; chmod o-w it");
    }
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
            startup_grace: settings.poll_period * 2,
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

/// Runs a node until it is stopped.
pub async fn launch(settings: Settings) -> Result<(), LaunchError> {
    let listener = listen(settings.bind).map_err(|source| LaunchError::Bind {
        address: settings.bind,
        source,
    })?;
    let address = listener.local_addr().map_err(|source| LaunchError::Bind {
        address: settings.bind,
        source,
    })?;
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
    let authenticator = settings
        .auth
        .as_ref()
        .map(|auth| Arc::new(Authenticator::new(auth)));
    let peers = PeerClient::new(
        settings.tls.as_ref().map(|tls| tls.peer_ca_pem.as_str()),
        authenticator
            .as_ref()
            .and_then(|auth| auth.peer_authorization()),
    );
    // TLS first: a bad certificate must fail before the node joins the plane.
    let tls = settings
        .tls
        .as_ref()
        .map(|tls| serve::tls_acceptor(&tls.cert_pem, tls.key_pem.expose()))
        .transpose()
        .map_err(LaunchError::Tls)?;
    let store = open_store(&settings).await.map_err(LaunchError::Store)?;
    warn_about_permissions(&settings);
    #[cfg(feature = "test-support")]
    let store = crate::store::faulty::FaultyStore::wrap_if_enabled(store);
    #[cfg(not(feature = "test-support"))]
    if std::env::var_os(crate::store::FAULTS_ENV).is_some() {
        tracing::warn!("HAPLANE_TEST_STORE_FAULTS is ignored: this build has no test support");
    }
    let counting = Arc::new(CountingStore::new(store));
    let options = node_options(&settings, node_id.clone(), node_uri.clone(), peers);
    let (stop_sender, stop) = watch::channel(false);
    stop_on_signal(stop_sender);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let (handle, node_task) = node::start(options, counting.clone(), clock, stop).await?;
    write_pid_file(&settings.pid_file)?;
    let (stopped_sender, stopped) = watch::channel(false);
    let core = HaCore::new(
        handle.clone(),
        settings.poll_period,
        settings.heartbeat_timeout,
        stopped.clone(),
        counting.clone(),
        settings.limits.max_watchers,
    );
    let state_log =
        (settings.store != StoreLocation::None).then(|| StateLog::new(counting.clone()));
    let state = StateService::new(state_log, handle.clone());
    tokio::spawn(state.clone().run(settings.poll_period, stopped.clone()));
    let grpc_routes = grpc::routes(
        core.clone(),
        GrpcEntities {
            state: state.clone(),
            core: core.clone(),
        },
        settings.poll_period,
    )
    .map_err(|err| LaunchError::Serve(err.to_string()))?;
    let entities = rest_entities::router(state, &core);
    let mut app = rest::router(core, entities, grpc_routes.into_axum_router());
    if let Some(authenticator) = authenticator {
        app = app.layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::require_credentials,
        ));
    }
    // Outermost: a request for a foreign Host is refused before it can count as a failed login.
    app = app.layer(axum::middleware::from_fn_with_state(
        rest::HostPolicy::new(&node_uri, &settings.allowed_hosts),
        rest::host_guard,
    ));
    let connections = serve::ConnectionSettings {
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
    };
    let server = serve::serve(
        listener,
        connections,
        // with_state(()) lets axum prepare its routes once instead of per request.
        app.with_state(()),
        serve::serving_threads(),
        stopped.clone(),
        // Lets streams deliver their last view and UNAVAILABLE before connections close.
        Duration::from_millis(200),
    );
    let server = tokio::spawn(server);
    println!(
        "haplane {node_id} listening on {address} (advertised as {node_uri}), store {}, state {}",
        counting.describe(),
        handle.snapshot().state
    );
    let _ = node_task.await;
    let _ = stopped_sender.send(true);
    let served = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_file(&settings.pid_file);
    match served {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(err))) => Err(LaunchError::Serve(err)),
        Ok(Err(err)) => Err(LaunchError::Serve(err.to_string())),
        Err(_) => {
            tracing::warn!("connections did not close within 5s; exiting anyway");
            Ok(())
        }
    }
}

/// Whether `pid` exists and has not exited (an exited child its parent has not reaped yet is a
/// zombie: it has stopped, so it counts as gone).
fn process_is_running(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state letter follows the parenthesised command name.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    state != Some("Z")
}

fn write_pid_file(path: &Path) -> Result<(), LaunchError> {
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
        LaunchError::PidFile {
            path: path.display().to_string(),
            source,
        }
    })
}

/// `haplane stop`: SIGTERM to the PID in `pid_file`, then wait (up to `wait`) for it to exit.
pub async fn stop(pid_file: &Path, wait: Duration) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|err| format!("cannot read pid file {}: {err}", pid_file.display()))?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("pid file {} does not hold a process id", pid_file.display()))?;
    // SAFETY: kill with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    while process_is_running(pid) {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "process {pid} did not exit within {}",
                humantime::format_duration(wait)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

//! Starting a node in this process, for `haplane launch` and for an embedded participant: its
//! identity and (optionally) its port, its store, the node itself and the server on the port.

use super::{
    LaunchError, connection_settings, default_node_id, listen, node_options, router, store,
};
use crate::api::auth::Authenticator;
use crate::api::grpc::PeerClient;
use crate::clock::{Clock, TokioClock};
use crate::config::Settings;
use crate::node::{self, NodeHandle};
use crate::serve;
use crate::store::Store;
use crate::store::counting::CountingStore;
use haplane::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a node that serves no port advertises.
const NOT_SERVED_URI: &str = "http://127.0.0.1:0";

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
    node_task: JoinHandle<()>,
    stopped_sender: watch::Sender<bool>,
    server: Option<JoinHandle<Result<(), serve::ServeError>>>,
}

/// The port a serving node listens on, and the TLS it serves.
struct Port {
    listener: TcpListener,
    address: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Who the node is, and its port when it serves one.
struct Identity {
    node_id: NodeId,
    node_uri: String,
    port: Option<Port>,
}

/// Binds the port (with `serve`) and names the node: the id and advertised URI derive from the
/// bound address unless the settings name them. A node without a port needs an explicit id.
fn identify(settings: &Settings, serve: bool) -> Result<Identity, LaunchError> {
    if !serve {
        // Nothing listens: peers' nudges and step-down requests to it fail fast, and a peer
        // promoted over it waits out its lease instead.
        return Ok(Identity {
            node_id: settings
                .node_id
                .clone()
                .ok_or(LaunchError::NodeIdRequired)?,
            node_uri: settings
                .advertise_uri
                .clone()
                .unwrap_or_else(|| NOT_SERVED_URI.to_owned()),
            port: None,
        });
    }
    let bind_error = |source| LaunchError::Bind {
        address: settings.bind,
        source,
    };
    let listener = listen(settings.bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    // TLS first: a bad certificate must fail before the node joins the plane.
    let tls = settings
        .tls
        .as_ref()
        .map(|tls| serve::tls_acceptor(&tls.cert_pem, tls.key_pem.expose()))
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Identity {
        node_id: settings
            .node_id
            .clone()
            .unwrap_or_else(|| default_node_id(address.port())),
        node_uri: settings
            .advertise_uri
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{address}")),
        port: Some(Port {
            listener,
            address,
            tls,
        }),
    })
}

/// The settings' store, checked, with the test faults when this build and the environment ask
/// for them, counted for the metrics.
async fn open_counted_store(settings: &Settings) -> Result<Arc<CountingStore>, LaunchError> {
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
    Ok(Arc::new(CountingStore::new(store)))
}

/// Starts a node on the settings' store; with `serve`, also its gRPC and REST port. The node
/// runs until `stop` turns true (then it hands over gracefully); `RunningNode::finished` waits
/// for that.
pub async fn start(
    settings: &Settings,
    serve: bool,
    stop: watch::Receiver<bool>,
) -> Result<RunningNode, LaunchError> {
    let Identity {
        node_id,
        node_uri,
        port,
    } = identify(settings, serve)?;
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
    let counting = open_counted_store(settings).await?;
    let options = node_options(settings, node_id.clone(), node_uri.clone(), peers);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let (handle, node_task) =
        node::start(options, Arc::<CountingStore>::clone(&counting), clock, stop).await?;
    let (stopped_sender, stopped) = watch::channel(false);
    let address = port.as_ref().map(|port| port.address);
    let server = match port {
        None => None,
        Some(port) => {
            let authenticates = authenticator.is_some();
            let app = router(settings, &handle, &counting, authenticator, stopped.clone())?;
            Some(tokio::spawn(serve::serve(
                port.listener,
                connection_settings(settings, port.tls, &node_uri, authenticates),
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

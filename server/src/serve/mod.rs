//! Serves the node's one port (gRPC, REST, console) on serving threads: one single-threaded
//! runtime per core, each owning the connections handed to it. Every connection is served by
//! hyper (HTTP/1.1 and HTTP/2, over TLS when configured) straight into the node's router.
//!
//! Why not the process's multi-threaded runtime: there, a stream task that queues a frame wakes
//! its connection task into the worker's "run next" slot, so a change of master pushed to the
//! hundred watch streams of one connection leaves in a hundred writes. On a single-threaded
//! runtime tasks run in the order they were woken: every stream queues its frame first, and the
//! connection writes them in one go. Connections are dealt round-robin, so the threads share the
//! load of many clients.
//!
//! HTTP/1.1 connections (REST clients, browsers, load-balancer checks) carry one request at a
//! time and gain nothing from that batching, so a plain connection that does not open with the
//! HTTP/2 preface is moved to one shared multi-threaded runtime. There an idle worker is left
//! parked while another takes the work; on the per-core threads every idle spell parks the
//! thread in `epoll_wait`, and each wake-up is a context switch (measured in BENCHMARKS.md,
//! "What moved the figures"). TLS connections stay on the serving thread that did their
//! handshake, whatever protocol they speak.
//!
//! Why not tonic's `Server`: its per-request layers (gRPC timeout, body boxing, routing through
//! its own router) cost REST requests a measurable share of their CPU (BENCHMARKS.md). gRPC
//! deadlines are still kept by the clients, which cancel the call when theirs passes.
//!
//! No connection lives forever and none can take the node's last file descriptors:
//! - a TLS handshake, or a plain connection's opening bytes (up to the whole 24-byte HTTP/2
//!   preface), must arrive within the handshake timeout;
//! - an HTTP/1.1 request head must arrive whole within the header read timeout (hyper's), and
//!   any request's body whole within the body read timeout of its head (`DeadlineBody`; a REST
//!   request answers 408, a gRPC call fails);
//! - a connection with no request in flight for the idle timeout is closed (GOAWAY, then dropped
//!   if the client does not close it). A request counts until its response body has ended, so an
//!   open WatchMaster or SSE stream keeps its connection; HTTP/2 keep-alive pings close one whose
//!   client stopped answering;
//! - at most `max_connections` are open, plus up to `MAX_SHEDS_CLOSING` shed ones still closing
//!   (by default the file-descriptor limit less a reserve for
//!   the store, peer calls and logs), so the node's own work never meets "Too many open files".
//!   At the limit, the oldest connection with no request in flight (one still opening, or idle)
//!   is closed to make room for the new one, if it is at least 250 ms old; otherwise the new one
//!   is closed at once;
//! - HTTP/2 clients may open at most `max_streams_per_connection` streams at once.

use crate::api::rest::HostPolicy;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;

mod accept;
mod activity;
mod served;
mod thread;
mod tls;

use accept::{Slot, accept};
use thread::ServingThread;
pub use tls::{TlsError, tls_acceptor};

/// Descriptors kept back from connections by default: an eighth of the limit, within these
/// bounds (the node's own files, store and peer connections, epoll and event descriptors).
const MIN_RESERVED_DESCRIPTORS: usize = 64;

const MAX_RESERVED_DESCRIPTORS: usize = 1024;

/// How every connection is served.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// Serve TLS (ALPN h2 and http/1.1) instead of plain HTTP/1.1 and HTTP/2.
    pub tls: Option<TlsAcceptor>,
    /// Checked for every request before the router sees it: a foreign Host or a cross-site
    /// change is answered here (one check per request, where a router layer would wrap, box and
    /// clone every route's service per request).
    pub hosts: HostPolicy,
    /// Attach each client's address to its requests (axum's `ConnectInfo`), for the credentials
    /// check's throttling; without credentials nothing reads it.
    pub client_addresses: bool,
    /// HTTP/2 pings this often keep streams alive through proxies...
    pub http2_keepalive_interval: Duration,
    /// ...and a connection that leaves one unanswered this long is closed.
    pub http2_keepalive_timeout: Duration,
    /// A TLS handshake, or a plain connection's opening bytes, must arrive within this.
    pub handshake_timeout: Duration,
    /// An HTTP/1.1 request head must arrive whole within this.
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this of its head.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// HTTP/2 streams a connection may have open at once.
    pub max_streams_per_connection: u32,
}

/// `configured`, or else the process's file-descriptor limit (`RLIMIT_NOFILE`, read now) less a
/// reserve for the node's own work. Logs the limit and what it leaves for connections.
pub fn connection_limit(configured: Option<usize>) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let Some(descriptors) = read.then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
    else {
        let error = io::Error::last_os_error();
        let max_connections = configured.unwrap_or(1024 - MIN_RESERVED_DESCRIPTORS);
        tracing::warn!(%error, max_connections, "cannot read the file-descriptor limit");
        return max_connections;
    };
    let reserve = (descriptors / 8).clamp(MIN_RESERVED_DESCRIPTORS, MAX_RESERVED_DESCRIPTORS);
    let derived = descriptors.saturating_sub(reserve).max(1);
    let max_connections = configured.unwrap_or(derived);
    if max_connections > derived {
        tracing::warn!(
            descriptors,
            max_connections,
            "--max-connections leaves fewer than {reserve} descriptors for the store and peers"
        );
    }
    tracing::info!(
        descriptors,
        reserve,
        max_connections,
        "file-descriptor limit (RLIMIT_NOFILE) and connection limit"
    );
    max_connections
}

/// Why the node could not serve its port.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the HTTP/1.1 runtime: {0}")]
    Http1Runtime(io::Error),
    #[error("cannot start a serving thread: {0}")]
    Thread(io::Error),
    #[error("cannot start a serving runtime: {0}")]
    ThreadRuntime(io::Error),
}

/// How many serving threads: one per core the process may use.
pub fn serving_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

/// Accepts on `listener` and serves `app` on `threads` threads until `stopped` is true, then
/// lets streams deliver their last message for `grace` before connections are shut down.
/// Resolves when every serving thread has finished, with the first error any of them met.
pub async fn serve(
    listener: TcpListener,
    settings: ConnectionSettings,
    app: Router,
    threads: usize,
    stopped: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ServeError> {
    let (closing_sender, closing) = watch::channel(false);
    let http = Arc::new(http_builder(&settings));
    let http1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("haplane-http1")
        .enable_all()
        .build()
        .map_err(ServeError::Http1Runtime)?;
    let mut connections = Vec::new();
    let mut finished = Vec::new();
    for index in 0..threads.max(1) {
        let (sender, receiver) = mpsc::unbounded_channel::<(StdTcpStream, Slot)>();
        let (done, finished_rx) = oneshot::channel();
        let thread = ServingThread {
            app: app.clone(),
            hosts: settings.hosts.clone(),
            client_addresses: settings.client_addresses,
            http: Arc::clone(&http),
            tls: settings.tls.clone(),
            handshake_timeout: settings.handshake_timeout,
            body_read_timeout: settings.body_read_timeout,
            idle_timeout: settings.idle_timeout,
            http1: http1.handle().clone(),
            closing: closing.clone(),
        };
        std::thread::Builder::new()
            .name(format!("haplane-serve-{index}"))
            .spawn(move || {
                let _ = done.send(run_on_own_runtime(thread.run(receiver)));
            })
            .map_err(ServeError::Thread)?;
        connections.push(sender);
        finished.push(finished_rx);
    }
    accept(&listener, &connections, settings.max_connections, stopped).await;
    // The port closes now; the threads keep their connections until `grace` has passed.
    drop(listener);
    tokio::time::sleep(grace).await;
    let _ = closing_sender.send(true);
    let mut first_error = None;
    for finished in finished {
        if let Ok(Err(err)) = finished.await {
            first_error.get_or_insert(err);
        }
    }
    // Every connection has ended by now (each serving thread waits for the ones it moved).
    http1.shutdown_background();
    first_error.map_or(Ok(()), Err)
}

/// HTTP/1.1 and HTTP/2 (by the connection's first bytes) with the settings' header read
/// timeout, keep-alive pings and stream cap.
fn http_builder(settings: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        // A watch is one stream: the fan-out benchmark opens 100 on each connection.
        .max_concurrent_streams(settings.max_streams_per_connection);
    builder
}

fn run_on_own_runtime(served: impl Future<Output = ()>) -> Result<(), ServeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::ThreadRuntime)?
        .block_on(served);
    Ok(())
}

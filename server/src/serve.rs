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
//! thread in `epoll_wait`, and each wake-up is a context switch (REST reads cost about 0.33
//! switches a request that way, against 0.20 for a bare axum server). TLS connections stay on the
//! serving thread that did their handshake, whatever protocol they speak.
//!
//! Why not tonic's `Server`: its per-request layers (gRPC timeout, body boxing, routing through
//! its own router) cost a REST request about a fifth of its CPU. gRPC deadlines are still kept by
//! the clients, which cancel the call when theirs passes.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A client that opens a connection and never finishes its TLS handshake, or never sends its
/// first bytes, is dropped after this (hyper's own limit for reading a request's head).
const OPENING_TIMEOUT: Duration = Duration::from_secs(30);

/// How an HTTP/2 connection without TLS opens (RFC 9113 §3.4); no HTTP/1.1 method starts so.
const HTTP2_PREFACE_START: &[u8] = b"PRI ";

/// How every connection is served.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// Serve TLS (ALPN h2 and http/1.1) instead of plain HTTP/1.1 and HTTP/2.
    pub tls: Option<TlsAcceptor>,
    /// HTTP/2 pings this often keep streams alive through proxies...
    pub http2_keepalive_interval: Duration,
    /// ...and a connection that leaves one unanswered this long is closed.
    pub http2_keepalive_timeout: Duration,
}

/// A TLS acceptor for a PEM certificate chain and private key.
pub fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("cannot read the certificate chain: {err}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| format!("cannot read the private key: {err}"))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| format!("the key does not fit the certificate: {err}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
) -> Result<(), String> {
    let (closing_sender, closing) = watch::channel(false);
    let http = Arc::new(http_builder(&settings));
    let http1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("haplane-http1")
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the HTTP/1.1 runtime: {err}"))?;
    let mut connections = Vec::new();
    let mut finished = Vec::new();
    for index in 0..threads.max(1) {
        let (sender, receiver) = mpsc::unbounded_channel::<StdTcpStream>();
        let (done, finished_rx) = oneshot::channel();
        let thread = ServingThread {
            app: app.clone(),
            http: http.clone(),
            tls: settings.tls.clone(),
            http1: http1.handle().clone(),
            closing: closing.clone(),
        };
        std::thread::Builder::new()
            .name(format!("haplane-serve-{index}"))
            .spawn(move || {
                let _ = done.send(run_on_own_runtime(thread.run(receiver)));
            })
            .map_err(|err| format!("cannot start a serving thread: {err}"))?;
        connections.push(sender);
        finished.push(finished_rx);
    }
    accept(&listener, &connections, stopped).await;
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

/// HTTP/1.1 and HTTP/2 (by the connection's first bytes), hyper's 30 s header read timeout.
fn http_builder(settings: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        // As tonic's server did: no cap on streams per connection (a watch is one stream).
        .max_concurrent_streams(None);
    builder
}

/// Deals accepted connections round-robin to the serving threads until `stopped`. A socket is
/// handed over as a std socket so that it registers with the serving thread's own reactor.
async fn accept(
    listener: &TcpListener,
    connections: &[mpsc::UnboundedSender<StdTcpStream>],
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        let stream = match accepted.and_then(|(stream, _)| handover(stream)) {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: the listener itself stays usable.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if connections[next].send(stream).is_err() {
            tracing::error!("a serving thread has stopped; not accepting any more connections");
            return;
        }
        next = (next + 1) % connections.len();
    }
}

/// TCP_NODELAY (otherwise Nagle holds back small frames until the client's delayed ACK, ~40 ms),
/// then out of this runtime's reactor.
fn handover(stream: TcpStream) -> io::Result<StdTcpStream> {
    stream.set_nodelay(true)?;
    stream.into_std()
}

/// What one serving thread needs to serve its connections.
struct ServingThread {
    app: Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    /// The shared runtime plain HTTP/1.1 connections are moved to.
    http1: tokio::runtime::Handle,
    /// True once connections should finish their streams and close.
    closing: watch::Receiver<bool>,
}

impl ServingThread {
    /// Serves each connection handed over until closing, then asks every connection to finish
    /// and waits for them to close.
    async fn run(self, mut handed_over: mpsc::UnboundedReceiver<StdTcpStream>) {
        let mut closing = self.closing.clone();
        let mut connections = JoinSet::new();
        // One shutdown signal per open connection: a oneshot costs a connection nothing to
        // poll, where a shared watch would take its lock on every wake-up of every connection.
        let mut shutdown_signals: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let stream = tokio::select! {
                stream = handed_over.recv() => stream,
                _ = closing.wait_for(|closing| *closing) => None,
            };
            let Some(stream) = stream else { break };
            match stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
            {
                Ok(stream) => {
                    let (signal, shutdown) = oneshot::channel();
                    shutdown_signals.retain(|signal| !signal.is_closed());
                    shutdown_signals.push(signal);
                    connections.spawn(self.connection(stream, shutdown));
                }
                Err(err) => tracing::warn!(error = %err, "cannot register a connection"),
            }
            while connections.try_join_next().is_some() {}
        }
        for signal in shutdown_signals {
            let _ = signal.send(());
        }
        while connections.join_next().await.is_some() {}
    }

    fn connection(
        &self,
        stream: TcpStream,
        mut shutdown: oneshot::Receiver<()>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (app, http, tls) = (self.app.clone(), self.http.clone(), self.tls.clone());
        let http1 = self.http1.clone();
        async move {
            let Some(tls) = tls else {
                let opening = tokio::time::timeout(OPENING_TIMEOUT, opens_http2(&stream));
                let opened = tokio::select! {
                    opened = opening => opened,
                    _ = &mut shutdown => return,
                };
                return match opened {
                    Ok(Ok(true)) => serve_connection(stream, app, &http, shutdown).await,
                    Ok(Ok(false)) => move_to(&http1, stream, app, http, shutdown).await,
                    Ok(Err(err)) => tracing::debug!(error = %err, "cannot read a connection"),
                    Err(_) => tracing::debug!("a connection sent nothing"),
                };
            };
            let handshake = tokio::time::timeout(OPENING_TIMEOUT, tls.accept(stream));
            let accepted = tokio::select! {
                accepted = handshake => accepted,
                _ = &mut shutdown => return,
            };
            match accepted {
                Ok(Ok(stream)) => serve_connection(stream, app, &http, shutdown).await,
                Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Whether the client opens with the HTTP/2 preface (peeked: the bytes stay for hyper).
async fn opens_http2(stream: &TcpStream) -> io::Result<bool> {
    let mut start = [0; HTTP2_PREFACE_START.len()];
    loop {
        let read = stream.peek(&mut start).await?;
        if read == start.len() || read == 0 || !HTTP2_PREFACE_START.starts_with(&start[..read]) {
            return Ok(start == HTTP2_PREFACE_START);
        }
        // Only part of the preface has arrived; peek would answer the same bytes at once.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves a plain connection on the HTTP/1.1 runtime; resolves when it has closed, so the
/// serving thread still counts it while it drains.
async fn move_to(
    runtime: &tokio::runtime::Handle,
    stream: TcpStream,
    app: Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    shutdown: oneshot::Receiver<()>,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(err) => return tracing::warn!(error = %err, "cannot hand over a connection"),
    };
    let served = runtime.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(stream, app, &http, shutdown).await,
            Err(err) => tracing::warn!(error = %err, "cannot register a connection"),
        }
    });
    let _ = served.await;
}

/// Serves one connection until the client closes it or, once told to shut down, until its
/// streams have ended (HTTP/2 GOAWAY; HTTP/1.1 closes after the response in flight).
async fn serve_connection<IO>(
    io: IO,
    app: Router,
    http: &auto::Builder<TokioExecutor>,
    mut shutdown: oneshot::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = &mut shutdown, if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

fn run_on_own_runtime(served: impl Future<Output = ()>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a serving runtime: {err}"))?
        .block_on(served);
    Ok(())
}

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

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

/// How an HTTP/2 connection without TLS opens (RFC 9113 §3.4); no HTTP/1.1 method starts so.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Descriptors kept back from connections by default: an eighth of the limit, within these
/// bounds (the node's own files, store and peer connections, epoll and event descriptors).
const MIN_RESERVED_DESCRIPTORS: usize = 64;
const MAX_RESERVED_DESCRIPTORS: usize = 1024;

/// A connection younger than this is never shed for a newer one: a burst of new connections
/// at the limit is refused instead of shedding the clients that arrived just before it and
/// have not yet sent their request.
const SHED_MIN_AGE: Duration = Duration::from_millis(250);

/// Open connections may exceed `max_connections` by at most this many, the shed ones still
/// closing (each on its own serving thread): a new connection that would go past it is refused,
/// so a flood cannot run the process out of descriptors while sheds are under way. Well inside
/// the descriptors kept back from connections (`MIN_RESERVED_DESCRIPTORS`).
const MAX_SHEDS_CLOSING: usize = 16;

/// How every connection is served.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// Serve TLS (ALPN h2 and http/1.1) instead of plain HTTP/1.1 and HTTP/2.
    pub tls: Option<TlsAcceptor>,
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
        let (sender, receiver) = mpsc::unbounded_channel::<(StdTcpStream, Slot)>();
        let (done, finished_rx) = oneshot::channel();
        let thread = ServingThread {
            app: app.clone(),
            http: http.clone(),
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
            .map_err(|err| format!("cannot start a serving thread: {err}"))?;
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

/// One of the `max_connections` places, held while its connection is open, with what the
/// accept loop needs to shed the connection.
struct Slot {
    open: Arc<AtomicUsize>,
    activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Asks the oldest connection in `accepted` (in accept order) that has no request in flight
/// and is at least `SHED_MIN_AGE` old to close; false when there is none. Forgets closed
/// connections on the way.
fn shed_oldest_idle(accepted: &mut VecDeque<Weak<Activity>>) -> bool {
    let mut index = 0;
    while index < accepted.len() {
        match accepted[index].upgrade() {
            None => {
                accepted.remove(index);
            }
            // The rest are younger still.
            Some(activity) if activity.opened.elapsed() < SHED_MIN_AGE => return false,
            Some(activity) if activity.idle_for().is_some() => {
                activity.shed.notify_one();
                accepted.remove(index);
                return true;
            }
            Some(_) => index += 1,
        }
    }
    false
}

/// Deals accepted connections round-robin to the serving threads until `stopped`. A socket is
/// handed over as a std socket so that it registers with the serving thread's own reactor.
/// At `max_connections` open ones, the oldest idle connection is shed for a new one, or the new
/// one is closed at once if all are busy (logged at most every 10 s, with how many).
async fn accept(
    listener: &TcpListener,
    connections: &[mpsc::UnboundedSender<(StdTcpStream, Slot)>],
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut by_age: VecDeque<Weak<Activity>> = VecDeque::new();
    let (mut shed, mut refused) = (0_u64, 0_u64);
    let mut last_warning: Option<Instant> = None;
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
        let open_now = open.load(Ordering::Relaxed);
        if open_now >= max_connections {
            // The shed connection gives its place back from its own thread, a moment later;
            // until then it counts in `open`, so `open_now - max_connections` are still closing.
            let room =
                open_now < max_connections + MAX_SHEDS_CLOSING && shed_oldest_idle(&mut by_age);
            if room {
                shed += 1;
            } else {
                refused += 1;
            }
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections,
                    shed,
                    refused,
                    "connection limit reached: shedding the oldest idle connections, refusing \
                     new ones when all are busy"
                );
                last_warning = Some(Instant::now());
                (shed, refused) = (0, 0);
            }
            if !room {
                drop(stream);
                continue;
            }
        }
        open.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        if by_age.len() >= max_connections.saturating_mul(2) {
            by_age.retain(|activity| activity.strong_count() > 0);
        }
        by_age.push_back(Arc::downgrade(&activity));
        let slot = Slot {
            open: open.clone(),
            activity,
        };
        if connections[next].send((stream, slot)).is_err() {
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
    handshake_timeout: Duration,
    body_read_timeout: Duration,
    idle_timeout: Duration,
    /// The shared runtime plain HTTP/1.1 connections are moved to.
    http1: tokio::runtime::Handle,
    /// True once connections should finish their streams and close.
    closing: watch::Receiver<bool>,
}

impl ServingThread {
    /// Serves each connection handed over until closing, then asks every connection to finish
    /// and waits for them to close.
    async fn run(self, mut handed_over: mpsc::UnboundedReceiver<(StdTcpStream, Slot)>) {
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
            let Some((stream, slot)) = stream else { break };
            match stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
            {
                Ok(stream) => {
                    let (signal, shutdown) = oneshot::channel();
                    shutdown_signals.retain(|signal| !signal.is_closed());
                    shutdown_signals.push(signal);
                    connections.spawn(self.connection(stream, slot, shutdown));
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

    /// Serves one connection; `slot` is given back when it closes.
    fn connection(
        &self,
        stream: TcpStream,
        slot: Slot,
        mut shutdown: oneshot::Receiver<()>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let served = Served {
            // The client's address, for per-address login throttling (`auth.rs`).
            peer: stream.peer_addr().ok(),
            app: self.app.clone(),
            http: self.http.clone(),
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            body_read_timeout: self.body_read_timeout,
            activity: slot.activity.clone(),
        };
        let (tls, http1) = (self.tls.clone(), self.http1.clone());
        async move {
            let _slot = slot;
            let activity = served.activity.clone();
            let shed = activity.shed.notified();
            tokio::pin!(shed);
            let Some(tls) = tls else {
                let opening = tokio::time::timeout(served.handshake_timeout, opens_http2(&stream));
                let opened = tokio::select! {
                    opened = opening => opened,
                    _ = &mut shutdown => return,
                    () = &mut shed => return tracing::debug!("shed an opening connection"),
                };
                return match opened {
                    Ok(Ok(true)) => served.serve(stream, shutdown).await,
                    Ok(Ok(false)) => move_to(&http1, stream, served, shutdown).await,
                    Ok(Err(err)) => tracing::debug!(error = %err, "cannot read a connection"),
                    Err(_) => tracing::debug!("a connection did not open in time"),
                };
            };
            let handshake = tokio::time::timeout(served.handshake_timeout, tls.accept(stream));
            let accepted = tokio::select! {
                accepted = handshake => accepted,
                _ = &mut shutdown => return,
                () = &mut shed => return tracing::debug!("shed a connection in its TLS handshake"),
            };
            match accepted {
                Ok(Ok(stream)) => served.serve(stream, shutdown).await,
                Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Whether the client opens with the whole HTTP/2 preface (peeked: the bytes stay for hyper);
/// false as soon as its bytes differ from it. Waits (under the caller's timeout) while only part
/// of the preface has arrived.
async fn opens_http2(stream: &TcpStream) -> io::Result<bool> {
    let mut start = [0; HTTP2_PREFACE.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        let read = stream.peek(&mut start).await?;
        if read == start.len() || read == 0 || !HTTP2_PREFACE.starts_with(&start[..read]) {
            return Ok(start == HTTP2_PREFACE);
        }
        // peek would answer the same bytes at once; back off so that many such connections
        // cost little CPU.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Serves a plain connection on the HTTP/1.1 runtime; resolves when it has closed, so the
/// serving thread still counts it while it drains.
async fn move_to(
    runtime: &tokio::runtime::Handle,
    stream: TcpStream,
    served: Served,
    shutdown: oneshot::Receiver<()>,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(err) => return tracing::warn!(error = %err, "cannot hand over a connection"),
    };
    let serving = runtime.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => served.serve(stream, shutdown).await,
            Err(err) => tracing::warn!(error = %err, "cannot register a connection"),
        }
    });
    let _ = serving.await;
}

/// What serving one connection takes.
struct Served {
    peer: Option<std::net::SocketAddr>,
    app: Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    idle_timeout: Duration,
    /// How long a connection closed for idleness may take to go.
    handshake_timeout: Duration,
    body_read_timeout: Duration,
    activity: Arc<Activity>,
}

impl Served {
    /// Serves one connection until the client closes it or, once told to shut down, until its
    /// streams have ended (HTTP/2 GOAWAY; HTTP/1.1 closes after the response in flight). A
    /// connection with no request in flight for the idle timeout (counted from its opening) is
    /// shut down the same way, and dropped if it is still open and idle a handshake timeout later.
    async fn serve<IO>(self, io: IO, mut shutdown: oneshot::Receiver<()>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let shed = activity.shed.notified();
        tokio::pin!(shed);
        let connection = self.http.serve_connection(
            TokioIo::new(io),
            TowerToHyperService::new(tracked(
                self.app,
                self.peer,
                self.body_read_timeout,
                activity.clone(),
            )),
        );
        tokio::pin!(connection);
        let idle_check = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle_check);
        let mut shutting_down = false;
        let mut closing_idle = false;
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
                // Only a connection with no request in flight is shed.
                () = &mut shed => return tracing::debug!("shed an idle connection"),
                () = &mut idle_check, if !shutting_down || closing_idle => {
                    let idle = activity.idle_for();
                    if closing_idle {
                        if idle.is_some() {
                            tracing::debug!("dropping an idle connection that did not close");
                            return;
                        }
                        // A stream opened as the GOAWAY left: let it finish.
                        idle_check.as_mut().reset(tokio::time::Instant::now() + self.idle_timeout);
                        continue;
                    }
                    let wait = match idle {
                        Some(idle) if idle >= self.idle_timeout => {
                            tracing::debug!("closing an idle connection");
                            shutting_down = true;
                            closing_idle = true;
                            connection.as_mut().graceful_shutdown();
                            self.handshake_timeout
                        }
                        Some(idle) => self.idle_timeout - idle,
                        None => self.idle_timeout,
                    };
                    idle_check.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
}

/// `app`, counting each request in `activity` until its response body has ended, with the
/// client's address (`peer`) on each request as axum's `ConnectInfo`, and its body held to
/// `body_read_timeout` (a REST request whose body is late is answered 408).
fn tracked<B>(
    app: Router,
    peer: Option<std::net::SocketAddr>,
    body_read_timeout: Duration,
    activity: Arc<Activity>,
) -> impl tower::Service<
    http::Request<B>,
    Response = axum::response::Response,
    Error = Infallible,
    Future: Send,
> + Clone
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    tower::service_fn(move |request: http::Request<B>| {
        let in_flight = activity.begin();
        let (mut parts, body) = request.into_parts();
        if let Some(peer) = peer {
            parts.extensions.insert(axum::extract::ConnectInfo(peer));
        }
        // Nothing to bound for a request whose body has ended already (a GET: the hot path) or
        // for gRPC reflection, a two-way stream a tool (grpcui) may keep open. A REST handler's
        // body extractor answers 400 for any body error; a late body is answered 408 instead
        // (gRPC carries its failure in the status).
        let bounded = !body.is_end_stream() && !parts.uri.path().contains(".ServerReflection/");
        let (body, late_rest_body) = if bounded {
            let timed_out = Arc::new(AtomicBool::new(false));
            let body = DeadlineBody {
                body,
                deadline: tokio::time::Instant::now() + body_read_timeout,
                timeout: body_read_timeout,
                timer: None,
                timed_out: timed_out.clone(),
            };
            let rest = !haplane::wire::is_grpc_request(&parts.headers);
            (Body::new(body), rest.then_some(timed_out))
        } else {
            (Body::new(body), None)
        };
        let response = app.clone().oneshot(http::Request::from_parts(parts, body));
        async move {
            let response = response.await?;
            if late_rest_body.is_some_and(|timed_out| timed_out.load(Ordering::Relaxed)) {
                let message = BodyReadTimeout(body_read_timeout).to_string();
                return Ok(crate::rest::error_response(
                    http::StatusCode::REQUEST_TIMEOUT,
                    &message,
                    serde_json::Value::Null,
                ));
            }
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    })
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive whole within {0:?} of its head")]
struct BodyReadTimeout(Duration);

/// A request body that fails with `BodyReadTimeout` once `deadline` has passed before it ended,
/// so a client sending a byte a second cannot hold its request (and connection) open. The timer
/// is set only if the body ever has to wait.
struct DeadlineBody<B> {
    body: B,
    deadline: tokio::time::Instant,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when the deadline cut the body off.
    timed_out: Arc<AtomicBool>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyReadTimeout(this.timeout).into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's requests in flight, and since when it has had none.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds since `opened`.
    last_ended_ms: AtomicU64,
    /// Notified when the accept loop sheds the connection to make room.
    shed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
            shed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How long the connection has had no request in flight; `None` while it has one.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ended_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }
}

/// One request in flight, from the call until its response body has ended or been dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ended = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.store(ended, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it ends.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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

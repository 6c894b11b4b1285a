//! A serving thread: its own single-threaded runtime serving the connections dealt to it (TLS
//! handshakes, HTTP/2 on the thread, plain HTTP/1.1 moved to the shared runtime).

use super::accept::Slot;
use super::served::Served;
use crate::api::rest::HostPolicy;
use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How an HTTP/2 connection without TLS opens (RFC 9113 §3.4); no HTTP/1.1 method starts so.
pub(super) const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What one serving thread needs to serve its connections.
pub(super) struct ServingThread {
    pub(super) app: Router,
    pub(super) hosts: HostPolicy,
    /// Whether requests carry the client's address (`ConnectionSettings::client_addresses`).
    pub(super) client_addresses: bool,
    pub(super) http: Arc<auto::Builder<TokioExecutor>>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) handshake_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    /// The shared runtime plain HTTP/1.1 connections are moved to.
    pub(super) http1: tokio::runtime::Handle,
    /// True once connections should finish their streams and close.
    pub(super) closing: watch::Receiver<bool>,
}

impl ServingThread {
    /// Serves each connection handed over until closing, then asks every connection to finish
    /// and waits for them to close.
    pub(super) async fn run(self, mut handed_over: mpsc::UnboundedReceiver<(StdTcpStream, Slot)>) {
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
    pub(super) fn connection(
        &self,
        stream: TcpStream,
        slot: Slot,
        mut shutdown: oneshot::Receiver<()>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let served = Served {
            // The client's address, for per-address login throttling (`api/auth/`).
            peer: self
                .client_addresses
                .then(|| stream.peer_addr().ok())
                .flatten(),
            app: self.app.clone(),
            hosts: self.hosts.clone(),
            http: Arc::clone(&self.http),
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            body_read_timeout: self.body_read_timeout,
            activity: Arc::clone(&slot.activity),
        };
        let (tls, http1) = (self.tls.clone(), self.http1.clone());
        async move {
            let _slot = slot;
            let activity = Arc::clone(&served.activity);
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
pub(super) async fn opens_http2(stream: &TcpStream) -> io::Result<bool> {
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
pub(super) async fn move_to(
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

//! Serves the node's one port (gRPC, REST, console) on serving threads: one single-threaded
//! runtime per core, each owning the connections handed to it.
//!
//! Why not the process's multi-threaded runtime: there, a stream task that queues a frame wakes
//! its connection task into the worker's "run next" slot, so a change of master pushed to the
//! hundred watch streams of one connection leaves in a hundred writes. On a single-threaded
//! runtime tasks run in the order they were woken: every stream queues its frame first, and the
//! connection writes them in one go. Connections are dealt round-robin, so the threads share the
//! load of many clients.

use std::future::Future;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::Routes;
use tonic::transport::Server;

/// How many serving threads: one per core the process may use.
pub fn serving_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

/// Accepts on `listener` and serves `routes` with `server`'s settings on `threads` threads until
/// `stopped` is true, then lets streams deliver their last message for `grace` before closing.
/// Resolves when every serving thread has finished, with the first error any of them met.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    routes: Routes,
    threads: usize,
    stopped: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), String> {
    let mut connections = Vec::new();
    let mut finished = Vec::new();
    for index in 0..threads.max(1) {
        let (sender, receiver) = mpsc::unbounded_channel::<StdTcpStream>();
        let (done, finished_rx) = oneshot::channel();
        let shutdown = shutdown_after(stopped.clone(), grace);
        let served = serving_thread(server.clone(), routes.clone(), receiver, shutdown);
        std::thread::Builder::new()
            .name(format!("haplane-serve-{index}"))
            .spawn(move || {
                let _ = done.send(run_on_own_runtime(served));
            })
            .map_err(|err| format!("cannot start a serving thread: {err}"))?;
        connections.push(sender);
        finished.push(finished_rx);
    }
    accept(&listener, &connections, stopped).await;
    // The port closes now; the threads keep their connections until `grace` has passed.
    drop(listener);
    let mut first_error = None;
    for finished in finished {
        if let Ok(Err(err)) = finished.await {
            first_error.get_or_insert(err);
        }
    }
    drop(connections);
    first_error.map_or(Ok(()), Err)
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
fn handover(stream: tokio::net::TcpStream) -> io::Result<StdTcpStream> {
    stream.set_nodelay(true)?;
    stream.into_std()
}

async fn shutdown_after(mut stopped: watch::Receiver<bool>, grace: Duration) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
    tokio::time::sleep(grace).await;
}

async fn serving_thread(
    server: Server,
    routes: Routes,
    receiver: mpsc::UnboundedReceiver<StdTcpStream>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let incoming = UnboundedReceiverStream::new(receiver).map(|stream| {
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
    });
    let mut server = server;
    server
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|err| err.to_string())
}

fn run_on_own_runtime(served: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a serving runtime: {err}"))?
        .block_on(served)
}

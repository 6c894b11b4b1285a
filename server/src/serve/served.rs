//! One served connection: hyper over the node's router, closed when idle past the timeout or
//! when the node stops; `tracked` counts each request until its response body ends.

use super::activity::{Activity, BodyReadTimeout, DeadlineBody, TrackedBody};
use crate::api::rest::HostPolicy;
use crate::service::watch_relay::on_connection;
use axum::Router;
use axum::body::{Body, Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// What serving one connection takes.
pub(super) struct Served {
    pub(super) peer: Option<std::net::SocketAddr>,
    pub(super) app: Router,
    pub(super) hosts: HostPolicy,
    pub(super) http: Arc<auto::Builder<TokioExecutor>>,
    pub(super) idle_timeout: Duration,
    /// How long a connection closed for idleness may take to go.
    pub(super) handshake_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    pub(super) activity: Arc<Activity>,
}

impl Served {
    /// Serves one connection until the client closes it or, once told to shut down, until its
    /// streams have ended (HTTP/2 GOAWAY; HTTP/1.1 closes after the response in flight). A
    /// connection with no request in flight for the idle timeout (counted from its opening) is
    /// shut down the same way, and dropped if it is still open and idle a handshake timeout later.
    pub(super) async fn serve<IO>(self, io: IO, mut shutdown: oneshot::Receiver<()>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::clone(&self.activity);
        let shed = activity.shed.notified();
        tokio::pin!(shed);
        let connection = self.http.serve_connection(
            TokioIo::new(Unvectored(io)),
            TowerToHyperService::new(tracked(
                self.app,
                self.hosts,
                self.peer,
                self.body_read_timeout,
                Arc::clone(&activity),
            )),
        );
        tokio::pin!(connection);
        let idle_check = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle_check);
        let mut shutting_down = false;
        let mut closing_idle = false;
        loop {
            tokio::select! {
                // The connection first: it is what woke the task nearly every time, and a fixed
                // order spares the random start.
                biased;
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

/// A connection that tells hyper it has no vectored writes, so hyper copies what it sends into
/// its write buffer and writes many frames at once. With vectored writes, h2 sends any DATA frame
/// larger than 256 bytes as its own buffer and must flush before the next: an SSE event of the
/// master view (~300 bytes) then cost one system call per watcher per change, half the node's
/// CPU in the fan-out. Without, frames up to 1 KiB are copied and batched, and HTTP/1.1 writes a
/// small response's head and body in one `write`.
struct Unvectored<IO>(IO);

impl<IO: AsyncRead + Unpin> AsyncRead for Unvectored<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Unvectored<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `app` behind `hosts`' check, counting each request in `activity` until its response body
/// has ended, with the client's address (`peer`) on each request as axum's `ConnectInfo`, and
/// its body held to `body_read_timeout` (a REST request whose body is late is answered 408).
pub(super) fn tracked<B>(
    app: Router,
    hosts: HostPolicy,
    peer: Option<std::net::SocketAddr>,
    body_read_timeout: Duration,
    activity: Arc<Activity>,
) -> impl tower::Service<
    http::Request<B>,
    Response = http::Response<TrackedBody>,
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
        let refusal = hosts.refusal(&parts.method, &parts.uri, &parts.headers);
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
                timed_out: Arc::clone(&timed_out),
            };
            let rest = !haplane::wire::is_grpc_request(&parts.headers);
            (Body::new(body), rest.then_some(timed_out))
        } else {
            (Body::new(body), None)
        };
        let routed = match refusal {
            Some(refused) => Err(refused),
            None => Ok(app.clone().oneshot(http::Request::from_parts(parts, body))),
        };
        // Boxed: hyper keeps each HTTP/2 stream's task sized for this future even after the
        // response is sent, and a watch stream lives as long as its watcher. Unboxed, the
        // routing future (the request's parts, the router's) made each watch's task ~900 bytes.
        Box::pin(on_connection(activity.number, async move {
            let response = match routed {
                Ok(response) => response.await?,
                Err(refused) => refused,
            };
            let response = match late_rest_body {
                Some(timed_out) if timed_out.load(Ordering::Relaxed) => {
                    request_timeout(body_read_timeout)
                }
                _ => response,
            };
            // Not boxed again: hyper takes the body type as it is.
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }))
    })
}

/// 408 for a REST request whose body arrived too late, in the REST shim's error shape
/// (`{"message", "error"}`).
fn request_timeout(limit: Duration) -> http::Response<Body> {
    let status = http::StatusCode::REQUEST_TIMEOUT;
    let body = serde_json::json!({
        "message": BodyReadTimeout(limit).to_string(),
        "error": status.as_u16(),
    });
    let mut response = http::Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

//! What a connection is doing: its requests in flight (`Activity`, `InFlight`, `TrackedBody`)
//! and the deadline for a request body to arrive whole (`DeadlineBody`).

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive whole within {0:?} of its head")]
pub(super) struct BodyReadTimeout(pub(super) Duration);

/// A request body that fails with `BodyReadTimeout` once `deadline` has passed before it ended,
/// so a client sending a byte a second cannot hold its request (and connection) open. The timer
/// is set only if the body ever has to wait.
pub(super) struct DeadlineBody<B> {
    pub(super) body: B,
    pub(super) deadline: tokio::time::Instant,
    pub(super) timeout: Duration,
    pub(super) timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when the deadline cut the body off.
    pub(super) timed_out: Arc<AtomicBool>,
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
pub(super) struct Activity {
    /// A number for the connection, unique in this process (its watchers' wake-up group).
    pub(super) number: u64,
    pub(super) opened: Instant,
    pub(super) in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds since `opened`.
    pub(super) last_ended_ms: AtomicU64,
    /// Notified when the accept loop sheds the connection to make room.
    pub(super) shed: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        static OPENED: AtomicU64 = AtomicU64::new(0);
        Self {
            number: OPENED.fetch_add(1, Ordering::Relaxed),
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
            shed: Notify::new(),
        }
    }

    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// How long the connection has had no request in flight; `None` while it has one.
    pub(super) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ended_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }
}

/// One request in flight, from the call until its response body has ended or been dropped.
pub(super) struct InFlight(pub(super) Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ended = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.store(ended, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it ends.
pub(super) struct TrackedBody {
    pub(super) body: Body,
    pub(super) _in_flight: InFlight,
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

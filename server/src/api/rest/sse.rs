//! Server-Sent Events responses: each item rendered to its event text (`event:`, `data:` lines,
//! `id:`), then `event: end` with the error that closed the stream, and a keep-alive comment after
//! a second without an event. The master watch renders each view's text once and hands every
//! watcher the same bytes; the body only copies a pointer per event.
//!
//! axum's `Sse` builds each event per watcher and re-arms its keep-alive timer after every event;
//! at thousands of watchers per change both showed in the fan-out profile. Here the timer is
//! re-armed only when it fires, from the time of the last event.

use crate::service::error::ServiceError;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;

/// At most this long without an event or a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// The keep-alive comment (what axum's `KeepAlive` sends).
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// One event's text: `event: NAME`, a `data:` line per line of `data`, `id:` if given, a blank line.
pub(super) fn render(event: &str, data: &str, id: Option<&str>) -> Bytes {
    let mut text = String::with_capacity(event.len() + data.len() + 24);
    text.push_str("event: ");
    text.push_str(event);
    text.push('\n');
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line.strip_suffix('\r').unwrap_or(line));
        text.push('\n');
    }
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

/// The SSE response for `items`: `render_item` gives each item's event text; an error item is
/// sent as `event: end` and ends the stream.
pub(super) fn response<T, S>(
    items: S,
    render_item: impl Fn(&T) -> Bytes + Send + Unpin + 'static,
) -> Response
where
    S: Stream<Item = Result<T, ServiceError>> + Send + 'static,
{
    let body = SseBody {
        items: Box::pin(items),
        render_item,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        last_sent: Instant::now(),
        ended: false,
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::new(body),
    )
        .into_response()
}

struct SseBody<S, R> {
    items: Pin<Box<S>>,
    render_item: R,
    /// Fires `KEEP_ALIVE` after it was last armed; re-armed from `last_sent` when it fires.
    keep_alive: Pin<Box<Sleep>>,
    last_sent: Instant,
    ended: bool,
}

impl<T, S, R> http_body::Body for SseBody<S, R>
where
    S: Stream<Item = Result<T, ServiceError>> + Send,
    R: Fn(&T) -> Bytes + Unpin,
{
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let text = match self.items.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => (self.render_item)(&item),
            Poll::Ready(Some(Err(err))) => {
                self.ended = true;
                render("end", &err.to_string(), None)
            }
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => loop {
                std::task::ready!(self.keep_alive.as_mut().poll(cx));
                let due = self.last_sent + KEEP_ALIVE;
                if due > Instant::now() {
                    // An event went out since the timer was armed: wait from that one.
                    self.keep_alive.as_mut().reset(due);
                    continue;
                }
                break Bytes::from_static(KEEP_ALIVE_COMMENT);
            },
        };
        let now = Instant::now();
        self.last_sent = now;
        if self.keep_alive.is_elapsed() {
            self.keep_alive.as_mut().reset(now + KEEP_ALIVE);
        }
        Poll::Ready(Some(Ok(Frame::data(text))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn an_event_is_its_name_each_data_line_and_its_id() {
        assert_eq!(
            render("master", "{\"epoch\":1}", None),
            "event: master\ndata: {\"epoch\":1}\n\n"
        );
        assert_eq!(
            render("end", "two\nlines", Some("7")),
            "event: end\ndata: two\ndata: lines\nid: 7\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn items_then_end_and_a_keep_alive_only_after_a_silent_second() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let items = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver);
        let mut body = response(items, |n: &u32| render("n", &n.to_string(), None)).into_body();
        let mut next = async || {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
        };
        sender.send(Ok(1)).unwrap();
        assert_eq!(next().await, "event: n\ndata: 1\n\n");
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(700)).await;
        sender.send(Ok(2)).unwrap();
        assert_eq!(next().await, "event: n\ndata: 2\n\n");
        assert_eq!(next().await, ":\n\n");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1700),
            "a second after the last event, not after the first"
        );
        assert_eq!(next().await, ":\n\n");
        assert_eq!(start.elapsed(), Duration::from_millis(2700));
        sender
            .send(Err(ServiceError::Unavailable("stopping".into())))
            .unwrap();
        assert!(next().await.starts_with("event: end\ndata: "));
        let after = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(after.is_none(), "nothing after the end");
    }
}

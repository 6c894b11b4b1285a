//! `HaService/WatchMaster` with each master event encoded once. A change of master reaches every
//! open stream at once; encoding it per stream (a `pb::MasterEvent` built, then framed through
//! tonic's per-stream buffer) cost as much as the rest of the fan-out. Here the first stream to
//! send a view encodes its gRPC frame (the 5-byte prefix and the message) and every other stream
//! sends a clone of the same bytes. The route is matched before the generated `HaService` routes;
//! the request, statuses and trailers are gRPC's, as tonic would answer them.

use crate::service::encoded::LastEncoded;
use crate::service::{HaCore, master_events};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use haplane::MasterView;
use haplane::pb;
use http::{HeaderMap, HeaderValue, header};
use http_body::Frame;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_stream::Stream;
use tonic::Status;

/// The path this module serves.
pub(super) const PATH: &str = "/haplane.v1.HaService/WatchMaster";

/// A request larger than this is not a `WatchMasterRequest` (a few bytes).
const MAX_REQUEST_BYTES: usize = 4096;

/// A message as gRPC sends it: uncompressed flag, big-endian length, the message.
fn grpc_frame(message: &impl Message) -> Bytes {
    let length = message.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + length);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(length).expect("a master event is far below 4 GiB"));
    message
        .encode(&mut frame)
        .expect("the buffer has the message's length");
    frame.freeze()
}

/// Each view's frame, encoded once for every stream of this process (keyed by the view's
/// identity: see `service::encoded`).
static FRAMES: LastEncoded<Bytes> = LastEncoded::new();

/// Serves one `WatchMaster` call.
pub(super) async fn serve(State(core): State<HaCore>, request: axum::extract::Request) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(err) => return status_only(Status::invalid_argument(format!("request body: {err}"))),
    };
    let min_epoch = match decode_request(&body) {
        Ok(request) => request.min_epoch.unwrap_or(0),
        Err(status) => return status_only(status),
    };
    let watcher = match core.count_watcher() {
        Ok(watcher) => watcher,
        Err(full) => return status_only(Status::from(full)),
    };
    let events = master_events(&core, min_epoch, watcher);
    let mut response = Response::new(Body::new(EventBody {
        events: Box::pin(events),
        ended: false,
    }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The one `WatchMasterRequest` of a call's body (a unary request: one uncompressed message).
fn decode_request(body: &[u8]) -> Result<pb::WatchMasterRequest, Status> {
    let malformed = |why: &str| Status::invalid_argument(format!("malformed request: {why}"));
    let (prefix, message) = body
        .split_at_checked(5)
        .ok_or_else(|| malformed("shorter than a gRPC frame"))?;
    if prefix[0] != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported",
        ));
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if message.len() != length {
        return Err(malformed("not exactly one message"));
    }
    pb::WatchMasterRequest::decode(message)
        .map_err(|err| malformed(&format!("malformed protobuf message: {err}")))
}

/// A trailers-only answer: `status` in the headers, no body.
fn status_only(status: Status) -> Response {
    status.into_http()
}

/// The trailers that end a stream with `status`.
fn trailers(status: Status) -> HeaderMap {
    let mut headers = status.into_http::<()>().into_parts().0.headers;
    headers.remove(header::CONTENT_TYPE);
    headers
}

/// The response body: one shared frame per view, then the trailers of the error that ended the
/// stream (the node shutting down).
struct EventBody<S> {
    events: Pin<Box<S>>,
    ended: bool,
}

impl<S> http_body::Body for EventBody<S>
where
    S: Stream<Item = Result<Arc<MasterView>, crate::service::error::ServiceError>> + Send,
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
        let frame = match std::task::ready!(self.events.as_mut().poll_next(cx)) {
            Some(Ok(view)) => {
                Frame::data(FRAMES.get(&view, |view| grpc_frame(&pb::MasterEvent::from(view))))
            }
            Some(Err(err)) => {
                self.ended = true;
                Frame::trailers(trailers(Status::from(err)))
            }
            None => {
                self.ended = true;
                Frame::trailers(trailers(Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_uncompressed_message() {
        let frame = grpc_frame(&pb::WatchMasterRequest { min_epoch: Some(7) });
        assert_eq!(decode_request(&frame).unwrap().min_epoch, Some(7));
        let empty = grpc_frame(&pb::WatchMasterRequest { min_epoch: None });
        assert_eq!(&empty[..], &[0, 0, 0, 0, 0]);
        assert_eq!(decode_request(&empty).unwrap().min_epoch, None);
        for (bad, code) in [
            (&[0u8, 0, 0][..], tonic::Code::InvalidArgument),
            (&[1, 0, 0, 0, 0][..], tonic::Code::Unimplemented),
            (&[0, 0, 0, 0, 2, 8][..], tonic::Code::InvalidArgument),
            (&[0, 0, 0, 0, 1, 0xff][..], tonic::Code::InvalidArgument),
        ] {
            assert_eq!(decode_request(bad).unwrap_err().code(), code, "{bad:?}");
        }
    }

    #[test]
    fn a_master_event_frame_is_the_prefix_and_the_message() {
        let view = MasterView {
            epoch: 2,
            ..MasterView::default()
        };
        let frame = grpc_frame(&pb::MasterEvent::from(&view));
        assert_eq!(frame[0], 0, "uncompressed");
        let length = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(length, frame.len() - 5);
        assert_eq!(pb::MasterEvent::decode(&frame[5..]).unwrap().epoch, 2);
    }
}
